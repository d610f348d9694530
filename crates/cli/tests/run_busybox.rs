//! Debian's busybox-static under `rktio run`: a statically linked program (glibc,
//! no dynamic loader to bring librktio in) that the loader runs covered
//! (crates/preload/src/load.rs). Before the loader, `busybox sh -c "echo SECRET >
//! MOUNT/x"` wrote SECRET in plaintext into the host directory under a mount.
//! Needs busybox-static (apt-get install --no-install-recommends busybox-static).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;
use common::*;

const SECRET: &str = "RKTIO-BUSYBOX-SECRET-91c4";
const BUSYBOX: &str = "/bin/busybox";

fn busybox() {
    need("busybox");
    let mut head = std::fs::read(BUSYBOX).unwrap();
    head.truncate(64 << 10);
    // The Debian package busybox-static: a static executable (no PT_INTERP).
    assert_eq!(
        rktio_posix::exec::exec_kind(&head),
        rktio_posix::exec::ExecKind::Static,
        "{BUSYBOX} is not the static busybox (install busybox-static)"
    );
}

/// A sealed image mounted at `d/m`, a directory that exists on the host too.
fn setup_at_host_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = dir.path();
    assert!(rktio(d, &["disk", "keygen", "k"], None).status.success());
    let o = rktio(
        d,
        &[
            "disk",
            "create",
            "d.img",
            "--size",
            "64M",
            "--key-file",
            "k",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = d.join("m");
    std::fs::create_dir(&m).unwrap();
    let m = m.to_str().unwrap().to_owned();
    std::fs::write(
        d.join("rktio.toml"),
        format!("[[mount]]\npath = \"{m}\"\nimage = \"d.img\"\nkey_file = \"k\"\n"),
    )
    .unwrap();
    (dir, m)
}

fn run(d: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", "--", BUSYBOX];
    all.extend_from_slice(args);
    let o = rktio(d, &all, None);
    let t = text(&o);
    assert!(o.status.success(), "busybox {args:?}: {t}");
    t
}

fn image_has(d: &Path, path: &str) -> String {
    let o = rktio(d, &["disk", "cat", "d.img", "--key-file", "k", path], None);
    assert!(o.status.success(), "{path}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn plaintext_on_host(d: &Path) -> bool {
    fn walk(p: &Path, hit: &mut bool) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, hit);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()))
            {
                *hit = true;
            }
        }
    }
    let mut hit = false;
    walk(d, &mut hit);
    hit
}

#[test]
fn busybox_shell_writes_only_ciphertext() {
    busybox();
    let (dir, m) = setup_at_host_dir();
    let d = dir.path();
    // The issue's own case: the shell's redirections (its own open and write),
    // then exec of an applet (busybox runs /proc/self/exe, which the loader
    // answers with busybox), which reads back what the shell wrote: exec
    // commits first. (Commands the shell forks cannot reach the image yet: one
    // process per stack.)
    let t = run(
        d,
        &[
            "sh",
            "-c",
            &format!("echo {SECRET} > {m}/x && echo two >> {m}/x; exec cat {m}/x"),
        ],
    );
    assert!(t.contains(&format!("{SECRET}\ntwo\n")), "{t}");
    assert_eq!(
        std::fs::read_dir(&m).unwrap().count(),
        0,
        "the host directory under the mount got files"
    );
    assert_eq!(image_has(d, "/x"), format!("{SECRET}\ntwo\n"));
    assert!(!plaintext_on_host(d), "plaintext on the host");
}

#[test]
fn busybox_applets_on_a_sealed_mount() {
    busybox();
    let (dir, m) = setup_at_host_dir();
    let d = dir.path();
    let f = |p: &str| format!("{m}/{p}");
    run(d, &["sh", "-c", &format!("echo {SECRET} > {}", f("a"))]);
    run(d, &["cp", &f("a"), &f("b")]);
    run(d, &["mkdir", "-p", &f("t/u")]);
    run(d, &["mv", &f("b"), &f("t/u/b")]);
    run(
        d,
        &[
            "dd",
            "if=/dev/zero",
            &format!("of={}", f("zero")),
            "bs=4k",
            "count=64",
        ],
    );
    run(d, &["tar", "cf", &f("t.tar"), "-C", &m, "t", "a"]);
    run(d, &["rm", "-r", &f("t")]);
    run(d, &["tar", "xf", &f("t.tar"), "-C", &m]);
    let sums = run(d, &["sha256sum", &f("a"), &f("t/u/b")]);
    let lines: Vec<&str> = sums.lines().filter(|l| l.contains(&m)).collect();
    assert_eq!(lines.len(), 2, "{sums}");
    assert_eq!(
        lines[0].split_whitespace().next(),
        lines[1].split_whitespace().next(),
        "{sums}"
    );
    let ls = run(d, &["ls", "-lR", &m]);
    for want in ["t.tar", "zero", "262144", "b"] {
        assert!(ls.contains(want), "no {want} in {ls}");
    }
    let found = run(d, &["find", &m, "-name", "b"]);
    assert!(found.contains(&f("t/u/b")), "{found}");
    assert_eq!(image_has(d, "/t/u/b"), format!("{SECRET}\n"));
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), 0);
    assert!(!plaintext_on_host(d), "plaintext on the host");
}
