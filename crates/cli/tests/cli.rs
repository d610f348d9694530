//! The `rktio disk` commands, run as a newcomer would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn rktio(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rktio"))
        .args(args)
        .current_dir(dir)
        .env_remove("RKTIO_KEY")
        .env_remove("RKTIO_PASSPHRASE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn field(o: &Output, name: &str) -> String {
    text(o)
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {name} in {}", text(o)))
}

#[test]
fn create_info_check_change_key_on_1gib() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(rktio(d, &["disk", "keygen", "k1"]).status.success());
    let o = rktio(
        d,
        &[
            "disk",
            "create",
            "data.img",
            "--size",
            "1G",
            "--key-file",
            "k1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::metadata(d.join("data.img")).unwrap().len(),
        1 << 30
    );
    let epoch: u64 = field(&o, "epoch:").parse().unwrap();
    let root = field(&o, "root:");

    let o = rktio(d, &["disk", "check", "data.img", "--key-file", "k1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 bad"), "{}", text(&o));

    // Pins: the right ones pass, a future epoch or another root is refused.
    let e = epoch.to_string();
    let o = rktio(
        d,
        &[
            "disk",
            "info",
            "data.img",
            "--key-file",
            "k1",
            "--expect-epoch",
            &e,
            "--expect-root",
            &root,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let e1 = (epoch + 1).to_string();
    let o = rktio(
        d,
        &[
            "disk",
            "check",
            "data.img",
            "--key-file",
            "k1",
            "--expect-epoch",
            &e1,
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("stale image"), "{}", text(&o));

    // Wrong key: a clear error, and the image is unchanged (compared whole on a
    // small image, so the test does not read 1 GiB twice).
    assert!(rktio(d, &["disk", "keygen", "k2"]).status.success());
    let o = rktio(d, &["disk", "info", "data.img", "--key-file", "k2"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong key"), "{}", text(&o));
    assert!(
        rktio(
            d,
            &[
                "disk",
                "create",
                "small.img",
                "--size",
                "4M",
                "--key-file",
                "k1"
            ]
        )
        .status
        .success()
    );
    let before = std::fs::read(d.join("small.img")).unwrap();
    for args in [
        &["disk", "info", "small.img", "--key-file", "k2"][..],
        &["disk", "check", "small.img", "--key-file", "k2"][..],
        &[
            "disk",
            "change-key",
            "small.img",
            "--key-file",
            "k2",
            "--new-key-file",
            "k1",
        ][..],
    ] {
        let o = rktio(d, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(text(&o).contains("wrong key"), "{}", text(&o));
    }
    assert!(std::fs::read(d.join("small.img")).unwrap() == before);

    // change-key: the new key opens it, the old one no longer does.
    let o = rktio(
        d,
        &[
            "disk",
            "change-key",
            "data.img",
            "--key-file",
            "k1",
            "--new-key-file",
            "k2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        rktio(d, &["disk", "check", "data.img", "--key-file", "k2"])
            .status
            .success()
    );
    assert!(
        !rktio(d, &["disk", "check", "data.img", "--key-file", "k1"])
            .status
            .success()
    );
}

#[test]
fn newcomer_mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = rktio(d, &["disk", "create", "x.img", "--size", "1G"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no key given"), "{}", text(&o));
    let o = rktio(d, &["disk", "info", "missing.img", "--key-file", "k"]);
    assert!(text(&o).contains("no such image"), "{}", text(&o));
    let o = rktio(
        d,
        &[
            "disk",
            "create",
            "x.img",
            "--size",
            "12Q",
            "--key-file",
            "k",
        ],
    );
    assert!(text(&o).contains("unknown size suffix"), "{}", text(&o));
    std::fs::write(d.join("plain.img"), vec![0u8; 1 << 20]).unwrap();
    assert!(rktio(d, &["disk", "keygen", "k"]).status.success());
    let o = rktio(d, &["disk", "info", "plain.img", "--key-file", "k"]);
    assert!(
        text(&o).contains("not a rkt-io sealed disk"),
        "{}",
        text(&o)
    );
    assert!(
        !rktio(d, &["disk", "keygen", "k"]).status.success(),
        "keygen must not overwrite a key"
    );
    let o = rktio(d, &["disk", "--help"]);
    assert!(text(&o).contains("change-key"));
}

#[test]
fn passphrase_from_environment_and_tampering_detected_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rktio"))
            .args(args)
            .current_dir(d)
            .env("RKTIO_PASSPHRASE", "open sesame")
            .output()
            .unwrap()
    };
    let o = run(&[
        "disk",
        "create",
        "p.img",
        "--size",
        "4M",
        "--raw",
        "--passphrase",
        "--backend",
        "file",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Argon2id"));
    let o = run(&["disk", "check", "p.img", "--passphrase", "--blocks-only"]);
    assert!(o.status.success(), "{}", text(&o));
    // Corrupt the only map node (the root, at block 2): check fails loudly.
    let mut img = std::fs::read(d.join("p.img")).unwrap();
    img[2 * 4096 + 100] ^= 1;
    std::fs::write(d.join("p.img"), &img).unwrap();
    let o = run(&["disk", "check", "p.img", "--passphrase", "--blocks-only"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("tampered"), "{}", text(&o));
}

#[test]
fn key_from_rktio_key_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |key: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rktio"))
            .args(args)
            .current_dir(d)
            .env("RKTIO_KEY", key)
            .output()
            .unwrap()
    };
    let k1 = "11".repeat(32);
    let k2 = "22".repeat(32);
    let o = run(&k1, &["disk", "create", "e.img", "--size", "4M"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(run(&k1, &["disk", "check", "e.img"]).status.success());
    let o = run(&k2, &["disk", "check", "e.img"]);
    assert!(text(&o).contains("wrong key"), "{}", text(&o));
    let o = run("not hex", &["disk", "check", "e.img"]);
    assert!(text(&o).contains("64 hex digits"), "{}", text(&o));
    // --key-env names another variable.
    let o = Command::new(env!("CARGO_BIN_EXE_rktio"))
        .args(["disk", "check", "e.img", "--key-env", "MY_KEY"])
        .current_dir(d)
        .env("MY_KEY", &k1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// `create --from DIR`, `ls`, `cat`, `check` (with e2fsck), `export`, `import`:
/// the SGX-LKL `sgx-lkl-disk create --copy` workflow.
#[test]
fn file_system_image_tooling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(src.join("etc/deep")).unwrap();
    std::fs::write(src.join("etc/hello.txt"), "CANARY-hello from the host\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(src.join("etc/deep/big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("etc/hello.txt", src.join("hello")).unwrap();
    assert!(rktio(d, &["disk", "keygen", "k"]).status.success());
    let o = rktio(
        d,
        &[
            "disk",
            "create",
            "fs.img",
            "--from",
            "src",
            "--key-file",
            "k",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The image file never holds the plaintext.
    let img = std::fs::read(d.join("fs.img")).unwrap();
    assert!(!img.windows(12).any(|w| w == b"CANARY-hello"));

    let o = rktio(d, &["disk", "ls", "fs.img", "/etc", "--key-file", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("hello.txt") && text(&o).contains("deep"),
        "{}",
        text(&o)
    );
    let o = rktio(d, &["disk", "ls", "fs.img", "--key-file", "k"]);
    assert!(text(&o).contains("hello -> etc/hello.txt"), "{}", text(&o));
    let o = rktio(d, &["disk", "cat", "fs.img", "/hello", "--key-file", "k"]);
    assert_eq!(o.stdout, b"CANARY-hello from the host\n");
    let o = rktio(
        d,
        &[
            "disk",
            "cat",
            "fs.img",
            "etc/deep/big.bin",
            "--key-file",
            "k",
        ],
    );
    assert!(o.stdout == big, "big file differs");
    let o = rktio(d, &["disk", "cat", "fs.img", "/nope", "--key-file", "k"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no such file"), "{}", text(&o));

    let o = rktio(d, &["disk", "check", "fs.img", "--key-file", "k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("e2fsck -fn: clean"), "{}", text(&o));

    let o = rktio(
        d,
        &["disk", "export", "fs.img", "plain.img", "--key-file", "k"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let fsck = Command::new("e2fsck")
        .args(["-fn", "plain.img"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", text(&fsck));
    let o = rktio(
        d,
        &["disk", "export", "fs.img", "plain.img", "--key-file", "k"],
    );
    assert!(
        !o.status.success(),
        "export must not overwrite without --force"
    );

    // A plain image made by mkfs.ext4 -d, imported.
    let o = rktio(
        d,
        &[
            "disk",
            "import",
            "plain.img",
            "again.img",
            "--key-file",
            "k",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rktio(
        d,
        &[
            "disk",
            "cat",
            "again.img",
            "/etc/hello.txt",
            "--key-file",
            "k",
        ],
    );
    assert_eq!(o.stdout, b"CANARY-hello from the host\n");

    // Tampering with a data block is caught by check.
    let mut img = std::fs::read(d.join("again.img")).unwrap();
    // Flip a bit in every written block past the superblocks: live data blocks,
    // map nodes and superseded copies alike.
    let mut flipped = 0;
    for b in img.chunks_mut(4096).skip(2) {
        if b.iter().any(|&x| x != 0) {
            b[17] ^= 0x40;
            flipped += 1;
        }
    }
    assert!(flipped > 100);
    std::fs::write(d.join("again.img"), &img).unwrap();
    let o = rktio(d, &["disk", "check", "again.img", "--key-file", "k"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("tampered") || text(&o).contains("integrity"),
        "{}",
        text(&o)
    );
}

/// `rktio wg genkey | rktio wg pubkey`, as with wireguard-tools.
#[test]
fn wg_genkey_and_pubkey() {
    let dir = tempfile::tempdir().unwrap();
    let o = rktio(dir.path(), &["wg", "genkey"]);
    assert!(o.status.success(), "{}", text(&o));
    let private = String::from_utf8(o.stdout).unwrap();
    assert_eq!(private.trim().len(), 44);
    let pubkey = |input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rktio"))
            .args(["wg", "pubkey"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    // RFC 7748 section 6.1 (Alice), in WireGuard's base64.
    let o = pubkey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim(),
        "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
    );
    let o = pubkey(&private);
    assert!(o.status.success());
    let o = pubkey("not a key");
    assert!(!o.status.success());
    assert!(text(&o).contains("base64"), "{}", text(&o));
}
