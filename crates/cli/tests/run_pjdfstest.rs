//! pjdfstest (crates.io, the POSIX file-system conformance suite) under
//! `rktio run` on a sealed mount, against the same suite on kernel ext4 (a loop
//! device) on this machine, same configuration: every test that passes on ext4
//! passes on ours, but for the ones named in `KNOWN` (docs/COMPAT.md says why).
//! Needs root, pjdfstest (`cargo install pjdfstest --locked --version 0.2.2`),
//! mkfs.ext4, and the users nobody (group nogroup) and daemon (group daemon).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// The suite's configuration, for both runs: Linux ext4's features, two
/// unprivileged users Debian has.
const CONFIG: &str = r#"[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["daemon", "daemon"],
]
"#;

/// Tests that pass on kernel ext4 and not on ours, each with why.
const KNOWN: &[(&str, &str)] = &[
    (
        "open::etxtbsy",
        "runs a program from the mount in a child process (one process per stack)",
    ),
    (
        "truncate::etxtbsy",
        "runs a program from the mount in a child process (one process per stack)",
    ),
    (
        "rmdir::ebusy",
        "mounts on the sealed mount (mount(2) is refused)",
    ),
];

/// `name -> outcome` ("ok", "FAILED", "skipped") from the suite's output.
fn outcomes(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, verdict) = (w.next()?, w.next()?);
            let line = name.contains("::")
                && w.next().is_none()
                && matches!(verdict, "ok" | "FAILED" | "skipped");
            line.then(|| (name.to_owned(), verdict.to_owned()))
        })
        .collect()
}

fn summary(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"))
        .to_owned()
}

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", text(&o));
}

/// The suite on kernel ext4 in a loop-mounted image in `d`.
fn native(d: &Path, cfg: &Path) -> String {
    let img = d.join("ext4.img");
    let mnt = d.join("ext4");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!(
        "truncate -s 256M {i} && mkfs.ext4 -q -F {i} && mount -o loop {i} {m}",
        i = img.display(),
        m = mnt.display()
    ));
    let o = Command::new("pjdfstest")
        .arg("-c")
        .arg(cfg)
        .arg("-p")
        .arg(&mnt)
        .output()
        .unwrap();
    sh(&format!("umount {}", mnt.display()));
    text(&o)
}

#[test]
fn pjdfstest_passes_on_a_sealed_mount_what_it_passes_on_ext4() {
    for t in ["pjdfstest", "mkfs.ext4"] {
        need(t);
    }
    let dir = setup("256M", "");
    let d = dir.path();
    let cfg = d.join("pjdfstest.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    std::fs::write(
        d.join("rktio.toml"),
        format!(
            "[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_file = \"k\"\n\n[host]\nread = [\"{}\"]\n",
            cfg.display()
        ),
    )
    .unwrap();

    let theirs = native(d, &cfg);
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "pjdfstest",
            "-c",
            cfg.to_str().unwrap(),
            "-p",
            "/data",
        ],
        None,
    );
    let ours = text(&o);
    let (t, u) = (outcomes(&theirs), outcomes(&ours));
    assert!(t.len() > 300, "ext4 run incomplete:\n{theirs}");
    println!("kernel ext4: {}", summary(&theirs));
    println!("sealed mount: {}", summary(&ours));

    let known = |name: &str| {
        KNOWN
            .iter()
            .find(|(k, _)| name.contains(k))
            .map(|(_, why)| *why)
    };
    let mut regressions = Vec::new();
    let mut known_failing = 0;
    for (name, verdict) in &t {
        if verdict != "ok" {
            continue;
        }
        match (u.get(name).map(String::as_str), known(name)) {
            (Some("ok"), Some(_)) => {
                regressions.push(format!("{name} passes now: take it off KNOWN"));
            }
            (Some("ok"), None) => {}
            (_, Some(_)) => known_failing += 1,
            (got, None) => regressions.push(format!("{name}: {got:?}")),
        }
    }
    assert!(
        regressions.is_empty(),
        "{} differences from kernel ext4:\n{}\n\n{ours}",
        regressions.len(),
        regressions.join("\n")
    );
    println!("passing on ext4, known to fail here: {known_failing}");
}
