//! Go programs under `rktio run`. Go's runtime makes its system calls itself
//! (not through libc), on goroutine stacks of a few KiB, from threads it starts
//! with raw clone, and preempts goroutines with signals: every call is trapped
//! (crates/preload/src/trap.rs) and the handler runs on a signal stack of the
//! stack's own (trap/altstack.rs). Both kinds of Go binary: a static one
//! (CGO_ENABLED=0, run by the loader) and a dynamic one (cgo, glibc). Debian's
//! caddy is the real program (dynamic, cgo). Needs golang-go and caddy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;
use rktio_posix::exec::{ExecKind, exec_kind};

const SECRET: &str = "RKTIO-GO-SECRET-3f81a";

/// Builds tests/programs/gofiles.go into `dir` (cgo on or off).
fn go_build(dir: &Path, name: &str, cgo: bool) -> PathBuf {
    need("go");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/gofiles.go");
    let out = dir.join(name);
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .output()
        .unwrap();
    assert!(o.status.success(), "go build: {}", text(&o));
    let mut head = std::fs::read(&out).unwrap();
    head.truncate(64 << 10);
    let want = if cgo {
        ExecKind::Dynamic
    } else {
        ExecKind::Static
    };
    assert_eq!(exec_kind(&head), want, "{name}");
    out
}

fn holds(p: &Path, needle: &[u8]) -> bool {
    std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// Runs the Go program on a fresh image and checks what it did and left.
fn check(prog: &Path) {
    let dir = setup("64M", "");
    let d = dir.path();
    let o = rktio(
        d,
        &["run", "--", prog.to_str().unwrap(), "/data", SECRET],
        None,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "goroutines: 8",
        "entries: [g1.txt g2.txt g3.txt g4.txt g5.txt g6.txt g7.txt lost+found renamed.txt]",
        &format!("size: {}", SECRET.len() * 507),
        // No [net]: refused, and said on stderr.
        "listen refused: listen tcp 127.0.0.1:0: socket: permission denied",
        "rktio: refused an internet socket",
        // os/exec: fork (a vfork-like clone) and exec of itself.
        "child: child ran",
        "done",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(
        !t.contains("fatal error") && !t.contains("goroutine "),
        "{t}"
    );
    // What it wrote is in the image, sealed: read back through the stack...
    let o = rktio(
        d,
        &["disk", "cat", "d.img", "--key-file", "k", "/renamed.txt"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let body = String::from_utf8_lossy(&o.stdout);
    assert!(body.ends_with(&format!("\n{SECRET}\n")), "{body}");
    // ... and in plaintext nowhere on the host.
    for e in std::fs::read_dir(d).unwrap().flatten() {
        assert!(
            !holds(&e.path(), SECRET.as_bytes()),
            "plaintext in {}",
            e.path().display()
        );
    }
    let o = rktio(d, &["disk", "check", "d.img", "--key-file", "k"], None);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn static_go_programs_run_covered() {
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    check(&go_build(bin.path(), "gofiles-static", false));
}

#[test]
fn dynamic_go_programs_run_covered() {
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    check(&go_build(bin.path(), "gofiles-cgo", true));
}

/// Debian's caddy (Go, cgo): it runs, directly and exec'd by a shell; with no
/// [net] it is refused a socket, as a C program is.
#[test]
fn caddy_runs_and_is_refused_host_sockets() {
    need("caddy");
    let dir = setup("64M", "");
    let d = dir.path();
    let o = rktio(d, &["run", "--", "caddy", "version"], None);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.starts_with("v2.") || t.contains("\n2.") || t.starts_with("2."),
        "{t}"
    );
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "/bin/sh",
            "-c",
            "caddy version; echo status $?",
        ],
        None,
    );
    let t = text(&o);
    assert!(t.contains("status 0") && !t.contains("goroutine "), "{t}");
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "caddy",
            "file-server",
            "--root",
            "/data",
            "--listen",
            "127.0.0.1:18099",
        ],
        None,
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("rktio: refused an internet socket") && t.contains("permission denied"),
        "{t}"
    );
}
