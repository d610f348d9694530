//! What a program file is, for exec: `rktio run` covers a program only through
//! `librktio.so`, which the dynamic loader brings in. A static executable (no
//! `PT_INTERP`) would run with nothing of ours in it, so exec refuses it.
//!
//! The bytes come from a host file: anything may be in them. Every offset is
//! checked; a file this parser does not understand is `Unknown`, never a panic.

/// What the first bytes of a program file say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecKind {
    /// A dynamically linked x86-64 ELF executable (it names an interpreter).
    Dynamic,
    /// An x86-64 ELF executable without an interpreter (static or static-pie).
    Static,
    /// A `#!` script and its interpreter's path.
    Script(Vec<u8>),
    /// An ELF file for another machine or class.
    Foreign,
    /// Not something exec can run, or program headers past `head`.
    Unknown,
}

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Classifies a program file from its first bytes (read at least 4 KiB: the
/// program headers normally follow the ELF header).
pub fn exec_kind(head: &[u8]) -> ExecKind {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&c| c == b'\n').next().unwrap_or(rest);
        let line = line.trim_ascii_start();
        let interp = line
            .split(|c| c.is_ascii_whitespace())
            .next()
            .unwrap_or(b"");
        if interp.is_empty() {
            return ExecKind::Unknown;
        }
        return ExecKind::Script(interp.to_vec());
    }
    if !head.starts_with(b"\x7fELF") {
        return ExecKind::Unknown;
    }
    // ELFCLASS64, little-endian, x86-64.
    if head.get(4) != Some(&2) || head.get(5) != Some(&1) {
        return ExecKind::Foreign;
    }
    if u16_at(head, 18) != Some(EM_X86_64) {
        return ExecKind::Foreign;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (u64_at(head, 32), u16_at(head, 54), u16_at(head, 56))
    else {
        return ExecKind::Unknown;
    };
    if phentsize < 56 {
        return ExecKind::Unknown;
    }
    let Ok(phoff) = usize::try_from(phoff) else {
        return ExecKind::Unknown;
    };
    for i in 0..usize::from(phnum) {
        let Some(off) = usize::from(phentsize)
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
        else {
            return ExecKind::Unknown;
        };
        match u32_at(head, off) {
            Some(PT_INTERP) => return ExecKind::Dynamic,
            Some(_) => {}
            None => return ExecKind::Unknown,
        }
    }
    ExecKind::Static
}

/// Whether exec of a program would run covered by librktio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A dynamic program, or a script whose interpreter chain ends in one.
    Covered,
    /// This file (the program, or an interpreter) is statically linked.
    Static(Vec<u8>),
    /// This file is for another machine.
    Foreign(Vec<u8>),
    /// Not something exec runs (the kernel answers ENOEXEC), or a chain of
    /// interpreters longer than the kernel follows.
    NotExecutable,
}

/// The kernel follows `#!` at most this deep (BINPRM_MAX_RECURSION).
const MAX_INTERPRETERS: usize = 4;

/// Follows `path` through its `#!` interpreters, reading each file's first
/// bytes with `head`, to what exec would run.
pub fn verdict<E>(
    path: &[u8],
    mut head: impl FnMut(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Verdict, E> {
    let mut what = path.to_vec();
    for _ in 0..=MAX_INTERPRETERS {
        let h = head(&what)?;
        match exec_kind(&h) {
            ExecKind::Dynamic => return Ok(Verdict::Covered),
            ExecKind::Script(interp) => what = interp,
            ExecKind::Static => return Ok(Verdict::Static(what)),
            ExecKind::Foreign => return Ok(Verdict::Foreign(what)),
            ExecKind::Unknown => return Ok(Verdict::NotExecutable),
        }
    }
    Ok(Verdict::NotExecutable)
}

/// One `PT_LOAD` segment of a program image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Where its bytes start in the file.
    pub offset: u64,
    /// Where it goes in memory (before the load bias of a static-pie program).
    pub vaddr: u64,
    /// How many bytes come from the file...
    pub filesz: u64,
    /// ... and how many it takes in memory (the rest is zeroes: .bss).
    pub memsz: u64,
    /// PF_R (4), PF_W (2), PF_X (1).
    pub flags: u32,
}

/// What the loader needs of a statically linked program: where its segments go
/// and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// ET_DYN (static-pie): loaded at a base of the loader's choosing.
    pub relocatable: bool,
    /// The entry point (before the load bias).
    pub entry: u64,
    /// Where the program headers are in memory (AT_PHDR, before the bias).
    pub phdr: u64,
    /// Size and number of the program headers (AT_PHENT, AT_PHNUM).
    pub phent: u16,
    pub phnum: u16,
    /// The PT_LOAD segments, in ascending address order, on pages of their own.
    pub segments: Vec<Segment>,
    /// PT_GNU_STACK asks for an executable stack.
    pub exec_stack: bool,
}

impl Image {
    /// The first page and the end (page-rounded) of what the segments take.
    pub fn span(&self) -> (u64, u64) {
        let first = self.segments.first().map_or(0, |s| s.vaddr & !(PAGE - 1));
        let end = self
            .segments
            .last()
            .map_or(0, |s| page_up(s.vaddr + s.memsz));
        (first, end)
    }
}

/// Why a program file cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Not an x86-64 ELF executable.
    NotElf,
    /// It names an interpreter: the dynamic loader runs it, not ours.
    Dynamic,
    /// Its headers say something impossible (the reason).
    Bad(&'static str),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::NotElf => f.write_str("not an x86-64 ELF executable"),
            ImageError::Dynamic => f.write_str("a dynamically linked program"),
            ImageError::Bad(why) => write!(f, "a malformed ELF file ({why})"),
        }
    }
}

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;
const PT_PHDR: u32 = 6;
const PT_GNU_STACK: u32 = 0x6474_e551;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// The lowest address a fixed program may take (vm.mmap_min_addr's default)...
const LOWEST: u64 = 0x1_0000;
/// ... and the top of the user address space (47 bits, less the stack's room).
const HIGHEST: u64 = 0x7f00_0000_0000;

fn page_up(x: u64) -> u64 {
    x.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// Reads a static (or static-pie) program's headers from its first bytes
/// (`head`, at least the first 64 KiB or the whole file) and checks them against
/// the file's length: every segment inside the file, aligned as mmap needs, the
/// segments in order and on pages of their own, all below the top of user space.
pub fn parse_image(head: &[u8], file_len: u64) -> Result<Image, ImageError> {
    use ImageError::Bad;
    if !head.starts_with(b"\x7fELF")
        || head.get(4) != Some(&2)
        || head.get(5) != Some(&1)
        || u16_at(head, 18) != Some(EM_X86_64)
    {
        return Err(ImageError::NotElf);
    }
    let relocatable = match u16_at(head, 16) {
        Some(ET_EXEC) => false,
        Some(ET_DYN) => true,
        _ => return Err(ImageError::NotElf),
    };
    let entry = u64_at(head, 24).ok_or(Bad("short header"))?;
    let phoff = u64_at(head, 32).ok_or(Bad("short header"))?;
    let phent = u16_at(head, 54).ok_or(Bad("short header"))?;
    let phnum = u16_at(head, 56).ok_or(Bad("short header"))?;
    if phent != 56 || phnum == 0 {
        return Err(Bad("no program headers of the size x86-64 programs have"));
    }
    let ph_bytes = u64::from(phent) * u64::from(phnum);
    let mut segments: Vec<Segment> = Vec::new();
    let mut phdr = None;
    let mut exec_stack = false;
    for i in 0..u64::from(phnum) {
        let off = usize::try_from(
            phoff
                .checked_add(i * u64::from(phent))
                .ok_or(Bad("program headers"))?,
        )
        .map_err(|_| Bad("program headers"))?;
        let ty = u32_at(head, off).ok_or(Bad("program headers past the first 64 KiB"))?;
        let flags = u32_at(head, off + 4).ok_or(Bad("program headers"))?;
        let word = |k: usize| u64_at(head, off + 8 + 8 * k).ok_or(Bad("program headers"));
        let (offset, vaddr, filesz, memsz) = (word(0)?, word(1)?, word(3)?, word(4)?);
        match ty {
            PT_INTERP => return Err(ImageError::Dynamic),
            PT_PHDR => phdr = Some(vaddr),
            PT_GNU_STACK => exec_stack = flags & 1 != 0,
            PT_LOAD => {
                if filesz > memsz {
                    return Err(Bad("a segment's file part is larger than its memory"));
                }
                if offset.checked_add(filesz).is_none_or(|e| e > file_len) {
                    return Err(Bad("a segment reaches past the end of the file"));
                }
                if vaddr % PAGE != offset % PAGE {
                    return Err(Bad(
                        "a segment's address and offset disagree modulo the page",
                    ));
                }
                let end = vaddr
                    .checked_add(memsz)
                    .ok_or(Bad("a segment wraps around"))?;
                if end > HIGHEST {
                    return Err(Bad("a segment lies above user space"));
                }
                if let Some(prev) = segments.last()
                    && vaddr & !(PAGE - 1) < page_up(prev.vaddr + prev.memsz)
                {
                    return Err(Bad("segments out of order or sharing a page"));
                }
                segments.push(Segment {
                    offset,
                    vaddr,
                    filesz,
                    memsz,
                    flags,
                });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(Bad("no loadable segment"));
    }
    let phdr = match phdr {
        Some(p) => p,
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && phoff + ph_bytes <= s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .ok_or(Bad("the program headers are in no segment"))?,
    };
    let image = Image {
        relocatable,
        entry,
        phdr,
        phent,
        phnum,
        segments,
        exec_stack,
    };
    let (first, end) = image.span();
    if !relocatable && first < LOWEST {
        return Err(Bad(
            "a segment lies below the lowest address a program may take",
        ));
    }
    if !(first..end).contains(&entry) {
        return Err(Bad("the entry point is outside the program"));
    }
    if !(first..end).contains(&phdr) {
        return Err(Bad("the program headers are outside the program"));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str) -> Vec<u8> {
        let mut b = std::fs::read(path).unwrap_or_default();
        b.truncate(64 << 10);
        b
    }

    #[test]
    fn system_programs() {
        assert_eq!(exec_kind(&head("/bin/sh")), ExecKind::Dynamic);
        assert_eq!(
            exec_kind(b"#! /bin/sh -e\necho"),
            ExecKind::Script(b"/bin/sh".to_vec())
        );
        assert_eq!(exec_kind(b"#!\n"), ExecKind::Unknown);
        assert_eq!(exec_kind(b"hello"), ExecKind::Unknown);
        assert_eq!(exec_kind(b"\x7fELF\x01\x01"), ExecKind::Foreign);
    }

    #[test]
    fn truncated_and_hostile_headers() {
        let sh = head("/bin/sh");
        for n in [0, 4, 20, 40, 63, 64, 100] {
            let k = exec_kind(&sh[..n.min(sh.len())]);
            assert!(
                matches!(k, ExecKind::Unknown | ExecKind::Foreign),
                "{n}: {k:?}"
            );
        }
        let mut h = sh.clone();
        h[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(exec_kind(&h), ExecKind::Unknown);
        let mut h = sh;
        h[56..58].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(exec_kind(&h), ExecKind::Static);
    }

    #[test]
    fn interpreter_chains() {
        let files = |p: &[u8]| -> Result<Vec<u8>, ()> {
            Ok(match p {
                b"/s1" => b"#!/s2\n".to_vec(),
                b"/s2" => b"#!/static\n".to_vec(),
                b"/loop" => b"#!/loop\n".to_vec(),
                b"/dyn" => b"#!/bin/sh\n".to_vec(),
                b"/static" => {
                    let mut h = head("/bin/sh");
                    h[56..58].copy_from_slice(&0u16.to_le_bytes());
                    h
                }
                _ => head(std::str::from_utf8(p).map_err(|_| ())?),
            })
        };
        assert_eq!(verdict(b"/bin/sh", files), Ok(Verdict::Covered));
        assert_eq!(verdict(b"/dyn", files), Ok(Verdict::Covered));
        assert_eq!(
            verdict(b"/s1", files),
            Ok(Verdict::Static(b"/static".to_vec()))
        );
        assert_eq!(verdict(b"/loop", files), Ok(Verdict::NotExecutable));
    }

    #[test]
    fn images_of_static_programs() {
        // A static executable made here, and hostile edits of it.
        let dir = std::env::temp_dir().join(format!("rktio-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("s.c");
        std::fs::write(&src, "int main(void){return 0;}").unwrap();
        let bin = dir.join("s");
        let ok = std::process::Command::new("gcc")
            .args(["-static", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .expect("gcc is needed for this test");
        assert!(ok.success(), "gcc -static failed (libc6-dev is needed)");
        let file = std::fs::read(&bin).unwrap();
        let len = file.len() as u64;
        let img = parse_image(&file[..file.len().min(64 << 10)], len).unwrap();
        assert!(!img.relocatable);
        let (first, end) = img.span();
        assert!(first >= LOWEST && end > first && (first..end).contains(&img.entry));
        assert_eq!(
            parse_image(&head("/bin/sh"), 1 << 30),
            Err(ImageError::Dynamic)
        );
        assert_eq!(parse_image(b"#!/bin/sh\n", 10), Err(ImageError::NotElf));
        // Truncated files and headers never panic.
        for n in [0, 16, 60, 64, 120, 500] {
            assert!(parse_image(&file[..n], len).is_err(), "{n}");
        }
        assert!(
            parse_image(&file, 100).is_err(),
            "segments past the end of the file"
        );
        // Flip each byte of the headers: an error or an image, never a panic.
        let ph = 64 + 56 * usize::from(img.phnum);
        for i in 0..ph {
            let mut h = file[..ph.max(4096)].to_vec();
            h[i] ^= 0xff;
            let _ = parse_image(&h, len);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
