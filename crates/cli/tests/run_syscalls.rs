//! Every system call a program makes reaches the stack, not only the libc entry
//! points librktio interposes: raw `syscall()`, glibc's internal calls (scandir,
//! glob, nftw, freopen, tmpfile, posix_spawn's file actions), threads, signal
//! handlers, fork, and code made at run time (Syscall User Dispatch, see
//! crates/preload/src/trap.rs), in dynamic programs and in static ones, which
//! the loader runs (crates/preload/src/load.rs). Needs gcc (with the static libc
//! for the static binaries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

const CANARY: &str = "RKTIO-SYSCALL-CANARY-5e2b";

/// Builds tests/programs/syscalls.c into `dir` (not the test's own directory:
/// the binary holds the canary).
fn cc(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    build(dir, "syscalls.c", name, extra)
}

fn build(dir: &Path, source: &str, name: &str, extra: &[&str]) -> PathBuf {
    need("gcc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(source);
    let out = dir.join(name);
    let o = Command::new("gcc")
        .args(["-O1", "-pthread"])
        .args(extra)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "gcc: {}", text(&o));
    out
}

fn files_with(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for e in walk(dir) {
        if std::fs::read(&e).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(e);
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

/// Runs tests/programs/syscalls.c (built as `prog`) on a fresh image in `d` and
/// checks what it did: every call reached the stack, each refusal was said.
fn check_syscalls(d: &Path, prog: &Path) {
    let o = rktio(d, &["run", "--", prog.to_str().unwrap()], None);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let want = [
        "raw openat: 0",
        &format!("raw write: {}", CANARY.len() + 1),
        "raw close: 0",
        "bad path open: errno 14",
        "bad path raw stat: errno 14",
        // ., .., lost+found, raw.txt
        "scandir: 4",
        "glob: 1",
        "nftw: 3",
        "freopen: 1",
        // /tmp is not writable under the default policy: refused, said on stderr.
        "tmpfile: errno 13",
        &format!("thread write: {}", CANARY.len() + 8),
        "signal: 10",
        "handler on the thread's stack: 1",
        "resethand: 1",
        // The program's SIGSYS action serves SIGSYS that is sent; the kernel's
        // stays the stack's. A mask the program sets holds, without SIGSYS.
        "SIGSYS handler: 0",
        "SIGSYS raised: 31",
        "mask: 1",
        "statvfs: 4096",
        "fchmodat: 0",
        "mode: 384",
        "linkat: 0",
        "renameat2 noreplace: errno 17",
        "renameat2: 0",
        "copy_file_range: errno 18",
        "splice: errno 22",
        "preadv2: 6",
        "preadv2 bytes: 1",
        "mkfifo: 0",
        "fifo kept: 1",
        "fifo open: errno 6",
        "relative open: 1",
        "unix bind: 0",
        "unix bind again: errno 98",
        "unix inode: 1",
        "unix connect: 0",
        "unix read: 4",
        "unix connect to a file: errno 111",
        "jit openat: 0",
        &format!("jit write: {}", CANARY.len() + 5),
        // A forked child's raw open of a sealed path: EIO (one process per stack).
        "fork child: 5",
        // posix_spawn's open in the child fails (EIO): exec's exit status 127.
        "spawn file action: 127",
        "spawn: 0",
        "close_range: 0",
        "guessed numbers refused: 1",
        &format!("write after closefrom: {}", CANARY.len() + 7),
        "fsync after closefrom: 0",
    ];
    let lines: Vec<&str> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .map(String::as_str)
        .collect();
    for w in want {
        assert!(lines.contains(&w), "missing {w:?} in:\n{t}");
    }
    // Each refusal says what and why, once.
    for w in [
        "refused open of /tmp",
        "refused copy_file_range (system call 326)",
        "refused splice (system call 275)",
        "refused: a FIFO or socket on a sealed mount cannot be opened",
        "in a forked child (EIO)",
    ] {
        assert!(t.contains(w), "no {w:?} in:\n{t}");
    }
    // The files are on the sealed disk, in ciphertext; nothing reached the host.
    let o = rktio(d, &["disk", "ls", "d.img", "--key-file", "k", "/"], None);
    let ls = text(&o);
    for f in [
        "raw.txt",
        "thread.txt",
        "handler.txt",
        "moved.txt",
        "jit.txt",
        "copy.txt",
        "fifo",
        "u.sock",
        "after.txt",
    ] {
        assert!(ls.contains(f), "{f} not in the image: {ls}");
    }
    for f in ["spawned.txt", "child.txt"] {
        assert!(!ls.contains(f), "{f} in the image: {ls}");
    }
    let o = rktio(
        d,
        &["disk", "cat", "d.img", "--key-file", "k", "/thread.txt"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{CANARY}-thread\n")
    );
    assert!(
        files_with(d, CANARY.as_bytes()).is_empty(),
        "plaintext on the host: {:?}",
        files_with(d, CANARY.as_bytes())
    );
    assert!(!Path::new("/data").exists(), "/data appeared on the host");
    assert!(!d.join("fifo").exists());
}

#[test]
fn raw_and_libc_internal_calls_reach_the_stack() {
    let dir = setup("64M", "");
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = cc(bin.path(), "syscalls", &[]);
    check_syscalls(dir.path(), &prog);
}

/// The same program linked statically: the loader runs it (no dynamic loader
/// brings librktio in), and every call it makes reaches the stack the same way:
/// its thread, signals, fork and posix_spawn included.
#[test]
fn static_programs_run_covered() {
    let dir = setup("64M", "");
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = cc(bin.path(), "syscalls-static", &["-static"]);
    check_syscalls(dir.path(), &prog);
}

#[test]
fn static_pie_programs_run_covered() {
    let dir = setup("64M", "");
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = cc(bin.path(), "syscalls-static-pie", &["-static-pie"]);
    check_syscalls(dir.path(), &prog);
}

/// exec of a static program by a covered one goes through the loader too; a
/// script whose interpreter is static is refused (the loader runs a static
/// program only when it is run directly).
#[test]
fn exec_of_static_programs() {
    let dir = setup("64M", "");
    let d = dir.path();
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = cc(bin.path(), "syscalls-static", &["-static"]);
    // Exec'd by a covered shell (without a fork: one process per stack).
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "/bin/sh",
            "-c",
            &format!("exec {}", prog.display()),
        ],
        None,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for w in ["raw openat: 0", "thread write: 33", "spawn: 0"] {
        assert!(t.contains(w), "no {w:?} in:\n{t}");
    }
    let o = rktio(d, &["disk", "ls", "d.img", "--key-file", "k", "/"], None);
    assert!(text(&o).contains("thread.txt"), "{}", text(&o));
    assert!(files_with(d, CANARY.as_bytes()).is_empty());
    // A static program whose file is cut short: the loader refuses it before
    // anything of it runs.
    let cut = bin.path().join("cut");
    let bytes = std::fs::read(&prog).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::set_permissions(&cut, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = rktio(d, &["run", "--", cut.to_str().unwrap()], None);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(126), "{t}");
    assert!(
        t.contains("cannot load") && t.contains("past the end of the file"),
        "{t}"
    );
    // A script whose interpreter is the static program: refused, with a line.
    let script = bin.path().join("script");
    std::fs::write(&script, format!("#!{}\n", prog.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = rktio(d, &["run", "--", script.to_str().unwrap()], None);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("is statically linked"), "{t}");
    assert!(!t.contains("raw openat"), "{t}");
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "/bin/sh",
            "-c",
            &format!("{} ; echo status $?", script.display()),
        ],
        None,
    );
    let t = text(&o);
    assert!(
        t.contains("refused exec of") && t.contains("status 126"),
        "{t}"
    );
    assert!(!t.contains("raw openat"), "{t}");
}

#[test]
fn a_fault_in_the_stack_stops_the_program_with_a_line() {
    use std::os::unix::process::ExitStatusExt;
    let dir = setup("64M", "");
    let d = dir.path();
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = build(bin.path(), "fault.c", "fault", &[]);
    let o = rktio(d, &["run", "--", prog.to_str().unwrap()], None);
    let t = text(&o);
    assert!(t.contains("unmapped: -1 errno 14"), "{t}");
    assert_eq!(o.status.signal(), Some(libc_sigsegv()), "{t}");
    assert!(t.contains("a fault in the stack's code"), "{t}");
    // Its SIGSEGV handler did not run (it would have jumped out of the stack
    // mid-call), and nothing after it did.
    assert!(!t.contains("jumped out") && !t.contains("after:"), "{t}");
    assert!(!d.join("data").exists() && !Path::new("/data/after").exists());
}

fn libc_sigsegv() -> i32 {
    11
}

/// MAP_POPULATE on a shared mapping of a sealed file far longer than the file
/// (bbolt under etcd maps 10 GiB of a 16 KiB database): the stack's copy holds
/// the file's bytes and does not allocate the whole length (it did: etcd took
/// 12 s to open its database, three at once over a minute).
#[test]
fn a_prefaulted_mapping_longer_than_its_file_stays_small() {
    let dir = setup("64M", "");
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    let prog = build(bin.path(), "mmap_populate.c", "mmap_populate", &[]);
    let o = rktio(
        dir.path(),
        &["run", "--", prog.to_str().unwrap(), "/data/db"],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("data abcd"), "{out}");
    let rss: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS: {out}"));
    assert!(
        rss < 512 << 10,
        "{rss} KiB resident for 16 KiB of file: {out}"
    );
}
