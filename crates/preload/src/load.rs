//! The loader: runs a statically linked program (static or static-pie) inside a
//! process the stack already covers, since no dynamic loader would bring
//! librktio into it.
//!
//! `rktio run` (or the trap's exec) starts the loader, the `rktio` binary
//! itself, with librktio preloaded, the program's arguments (argv[0] included)
//! and its path in RKTIO_LOAD. librktio's constructor starts the stack and the
//! trap as for any program, then, instead of returning to the loader's `main`,
//! maps the program as the kernel's exec would (`map_image`), builds its initial
//! stack (`build_stack`: arguments, environment, auxiliary vector), and jumps to
//! its entry point with dispatch on: its every system call, from its first
//! instruction, comes to the trap. How the program and the stack share the
//! thread (two thread pointers) is in `trap/loaded.rs`.
//!
//! The program file comes from the host; its headers are checked by
//! `rktio_posix::exec::parse_image`. Anything wrong stops here with a line on
//! stderr and exit status 126, before the program runs.

use std::ffi::{CStr, CString, c_char};

use rktio_posix::exec::{Image, parse_image};

use crate::trap;

const PAGE: u64 = 4096;
/// The program's stack (its RLIMIT_STACK, as the kernel's default)...
const STACK: u64 = 8 << 20;
/// ... and the room its heap (brk) may grow into.
const BRK_ROOM: u64 = 1 << 30;

fn page_up(x: u64) -> u64 {
    x.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// The program to load (RKTIO_LOAD in the environment the constructor got).
pub fn requested(envp: *const *const c_char) -> Option<CString> {
    env_iter(envp)
        .find_map(|e| e.strip_prefix(b"RKTIO_LOAD="))
        .filter(|p| !p.is_empty())
        .and_then(|p| CString::new(p).ok())
}

/// The entries of a NULL-terminated array of C strings.
fn env_iter<'a>(v: *const *const c_char) -> impl Iterator<Item = &'a [u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if v.is_null() || i >= 1 << 20 {
            return None;
        }
        // SAFETY: the loader got argv and envp from the dynamic loader: arrays
        // of C strings, each ending with a NULL pointer.
        let p = unsafe { *v.add(i) };
        if p.is_null() {
            return None;
        }
        i += 1;
        // SAFETY: as above, a NUL-terminated string that lives as long as the process.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    })
}

fn fail(path: &CStr, why: impl std::fmt::Display) -> ! {
    eprintln!("rktio: cannot load {}: {why}", path.to_string_lossy());
    std::process::exit(126)
}

fn sys(nr: i64, a: [u64; 6]) -> Result<u64, i64> {
    let r = trap::raw(nr, a);
    if r < 0 { Err(-r) } else { Ok(r as u64) }
}

fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i64, off: u64) -> Result<u64, i64> {
    sys(
        libc::SYS_mmap,
        [addr, len, prot as u64, flags as u64, fd as u64, off],
    )
}

/// Whether `path` is a program the loader can run, checked before an exec
/// replaces the process (the exec then fails as the kernel's would): a regular
/// file the caller may execute, with headers `parse_image` accepts.
pub fn check(path: &CStr) -> Result<(), (i32, String)> {
    let r = trap::raw(
        libc::SYS_faccessat2,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            libc::X_OK as u64,
            libc::AT_EACCESS as u64,
            0,
            0,
        ],
    );
    if r < 0 {
        return Err((-r as i32, "not executable".into()));
    }
    let fd = sys(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    )
    .map_err(|e| (e as i32, "cannot open it".to_owned()))?;
    let r = read_image(fd);
    trap::raw(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    r.map(|_| ())
}

/// Reads and checks the headers of the program open at `fd`.
fn read_image(fd: u64) -> Result<Image, (i32, String)> {
    // SAFETY: stat is plain data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys(
        libc::SYS_fstat,
        [fd, &mut st as *mut libc::stat as u64, 0, 0, 0, 0],
    )
    .map_err(|e| (e as i32, "fstat failed".to_owned()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err((libc::EACCES, "not a regular file".into()));
    }
    let mut head = vec![0u8; 64 << 10];
    let n = sys(
        libc::SYS_pread64,
        [fd, head.as_mut_ptr() as u64, head.len() as u64, 0, 0, 0],
    )
    .map_err(|e| (e as i32, "cannot read it".to_owned()))?;
    head.truncate(n as usize);
    parse_image(&head, st.st_size as u64).map_err(|e| (libc::ENOEXEC, e.to_string()))
}

/// Loads `path` and runs it with the loader's own arguments and environment
/// (less RKTIO_LOAD). Called by the constructor once the stack and the trap are
/// up; never returns.
pub fn run(path: &CStr, argv: *const *const c_char, envp: *const *const c_char) -> ! {
    if !trap::can_switch_fs() {
        fail(
            path,
            "this machine does not let user code switch thread pointers (FSGSBASE), which a statically linked program needs beside the stack",
        );
    }
    let (entry, sp) = {
        // The stack's code: its calls pass (the selector goes to BLOCK as the
        // program starts).
        let _in = trap::InStack::enter();
        if let Err((_, why)) = check(path) {
            fail(path, why);
        }
        let fd = sys(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| fail(path, std::io::Error::from_raw_os_error(e as i32)));
        let (image, bias, brk_start) = map_image(fd, path);
        trap::raw(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
        // The heap: reserved after the program, as the kernel places brk
        // (anywhere else if that is taken).
        let brk = mmap(
            brk_start,
            BRK_ROOM,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
        .or_else(|_| {
            mmap(
                0,
                BRK_ROOM,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        })
        .unwrap_or_else(|e| fail(path, format!("no room for its heap (errno {e})")));
        let sp = build_stack(&image, bias, path, argv, envp);
        trap::prepare(path.to_owned(), brk, brk + BRK_ROOM);
        (image.entry.wrapping_add(bias), sp)
    };
    trap::enter(entry, sp)
}

/// Maps the program's segments; returns its image, its load bias (0 for a
/// fixed-address program) and where its heap goes.
fn map_image(fd: u64, path: &CStr) -> (Image, u64, u64) {
    let image = read_image(fd).unwrap_or_else(|(_, why)| fail(path, why));
    let (first, end) = image.span();
    let span = end - first;
    let (bias, fixed) = if image.relocatable {
        // Anywhere the kernel likes: reserve the whole span, then map over it.
        let at = mmap(
            0,
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
        .unwrap_or_else(|e| fail(path, format!("no room for {span} bytes (errno {e})")));
        (at.wrapping_sub(first), libc::MAP_FIXED)
    } else {
        (0, libc::MAP_FIXED_NOREPLACE)
    };
    for s in &image.segments {
        let prot = (if s.flags & 4 != 0 { libc::PROT_READ } else { 0 })
            | (if s.flags & 2 != 0 {
                libc::PROT_WRITE
            } else {
                0
            })
            | (if s.flags & 1 != 0 { libc::PROT_EXEC } else { 0 });
        // The bias wraps for a static-pie placed below its link address.
        let start = (s.vaddr & !(PAGE - 1)).wrapping_add(bias);
        let file_end = (s.vaddr + s.filesz).wrapping_add(bias);
        let mem_end = page_up(s.vaddr + s.memsz).wrapping_add(bias);
        let bss_in_page = s.memsz > s.filesz && file_end % PAGE != 0;
        let mut anon_from = start;
        if s.filesz > 0 {
            let len = page_up(file_end) - start;
            let first_prot = if bss_in_page {
                prot | libc::PROT_WRITE
            } else {
                prot
            };
            let at = mmap(
                start,
                len,
                first_prot,
                libc::MAP_PRIVATE | fixed,
                fd as i64,
                s.offset & !(PAGE - 1),
            )
            .unwrap_or_else(|e| {
                fail(
                    path,
                    format!("cannot map a segment at {start:#x} (errno {e}: taken by the loader?)"),
                )
            });
            if at != start {
                fail(path, format!("a segment landed at {at:#x}, not {start:#x}"));
            }
            if bss_in_page {
                let n = page_up(file_end) - file_end;
                // SAFETY: [file_end, its page's end) is in the private, writable
                // mapping just made: the start of .bss, which must read as zeroes.
                unsafe { std::ptr::write_bytes(file_end as *mut u8, 0, n as usize) };
                if prot & libc::PROT_WRITE == 0 {
                    sys(libc::SYS_mprotect, [start, len, prot as u64, 0, 0, 0])
                        .unwrap_or_else(|e| fail(path, format!("mprotect: errno {e}")));
                }
            }
            anon_from = page_up(file_end);
        }
        if mem_end > anon_from {
            mmap(
                anon_from,
                mem_end - anon_from,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
                -1,
                0,
            )
            .unwrap_or_else(|e| {
                fail(
                    path,
                    format!("cannot map .bss at {anon_from:#x} (errno {e})"),
                )
            });
        }
    }
    (image, bias, end.wrapping_add(bias))
}

/// The auxiliary vector's keys the loader fills.
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_PLATFORM: u64 = 15;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;
/// Passed on as the kernel gave them to the loader.
const PASSED: [u64; 9] = [11, 12, 13, 14, 16, 17, 33, 51, 0];
/// HWCAP2_FSGSBASE: the program is not told it may switch thread pointers
/// itself (GS is the stack's).
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// Builds the program's initial stack as the kernel's exec does: argc, argv,
/// envp, the auxiliary vector, then the strings. Returns the stack pointer.
fn build_stack(
    image: &Image,
    bias: u64,
    path: &CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> u64 {
    let args: Vec<&[u8]> = env_iter(argv).collect();
    let env: Vec<&[u8]> = env_iter(envp)
        .filter(|e| !e.starts_with(b"RKTIO_LOAD="))
        .collect();
    let mut strings: Vec<u8> = Vec::new();
    let mut put = |b: &[u8]| {
        let at = strings.len();
        strings.extend_from_slice(b);
        strings.push(0);
        at
    };
    let arg_at: Vec<usize> = args.iter().map(|a| put(a)).collect();
    let env_at: Vec<usize> = env.iter().map(|e| put(e)).collect();
    let execfn_at = put(path.to_bytes());
    let platform_at = put(b"x86_64");
    let random_at = strings.len();
    let mut random = [0u8; 16];
    trap::raw(
        libc::SYS_getrandom,
        [random.as_mut_ptr() as u64, 16, 0, 0, 0, 0],
    );
    strings.extend_from_slice(&random);

    let base = mmap(
        0,
        STACK + PAGE,
        libc::PROT_READ | libc::PROT_WRITE | if image.exec_stack { libc::PROT_EXEC } else { 0 },
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
        -1,
        0,
    )
    .unwrap_or_else(|e| fail(path, format!("no room for its stack (errno {e})")));
    // A guard page below it.
    trap::raw(
        libc::SYS_mprotect,
        [base, PAGE, libc::PROT_NONE as u64, 0, 0, 0],
    );
    let top = base + PAGE + STACK;
    let strings_at = (top - 16 - strings.len() as u64) & !15;
    let s = |off: usize| strings_at + off as u64;

    let mut words: Vec<u64> = Vec::new();
    words.push(args.len() as u64);
    words.extend(arg_at.iter().map(|&o| s(o)));
    words.push(0);
    words.extend(env_at.iter().map(|&o| s(o)));
    words.push(0);
    let mut aux = |k: u64, v: u64| {
        words.push(k);
        words.push(v);
    };
    aux(AT_PHDR, image.phdr.wrapping_add(bias));
    aux(AT_PHENT, u64::from(image.phent));
    aux(AT_PHNUM, u64::from(image.phnum));
    aux(AT_PAGESZ, PAGE);
    aux(AT_BASE, 0);
    aux(AT_FLAGS, 0);
    aux(AT_ENTRY, image.entry.wrapping_add(bias));
    aux(AT_PLATFORM, s(platform_at));
    aux(AT_SECURE, 0);
    aux(AT_RANDOM, s(random_at));
    aux(AT_EXECFN, s(execfn_at));
    // SAFETY: getauxval reads the auxiliary vector; no preconditions.
    aux(
        AT_HWCAP2,
        unsafe { libc::getauxval(AT_HWCAP2) } & !HWCAP2_FSGSBASE,
    );
    for k in PASSED {
        if k == 0 {
            break;
        }
        // SAFETY: as above.
        let v = unsafe { libc::getauxval(k) };
        if v != 0 || k < 16 {
            aux(k, v);
        }
    }
    words.push(0);
    words.push(0);
    let sp = (strings_at - 8 * words.len() as u64) & !15;
    if sp < base + PAGE + (64 << 10) {
        fail(path, "its arguments and environment do not fit its stack");
    }
    // SAFETY: [sp, top) lies in the stack mapped above (checked just now), which
    // nothing else uses yet; the words and the strings do not overlap (the
    // words end at or below strings_at).
    unsafe {
        std::ptr::copy_nonoverlapping(strings.as_ptr(), strings_at as *mut u8, strings.len());
        std::ptr::copy_nonoverlapping(words.as_ptr(), sp as *mut u64, words.len());
    }
    sp
}
