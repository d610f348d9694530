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
        match exec_kind(&head(&what)?) {
            ExecKind::Dynamic => return Ok(Verdict::Covered),
            ExecKind::Script(interp) => what = interp,
            ExecKind::Static => return Ok(Verdict::Static(what)),
            ExecKind::Foreign => return Ok(Verdict::Foreign(what)),
            ExecKind::Unknown => return Ok(Verdict::NotExecutable),
        }
    }
    Ok(Verdict::NotExecutable)
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
}
