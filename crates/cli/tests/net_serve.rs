//! `rktio net serve` as a user runs it: a sealed image made with `rktio disk create
//! --from`, served over our stack on a TAP device with WireGuard, fetched by curl
//! behind wireguard-go in a peer namespace, byte-exact; a missing file is a 404.
//! Needs root and the peer tools (see rktio-testnet); `.ci/run` installs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rktio_testnet::{Peer, our_wg_conf, run};

fn rktio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rktio"));
    c.env_remove("RKTIO_KEY").env_remove("RKTIO_PASSPHRASE");
    c
}

#[test]
fn serve_a_sealed_image_over_wireguard_to_curl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("root/www")).unwrap();
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(d.join("root/www/blob"), &body).unwrap();
    run(rktio().current_dir(d).args(["disk", "keygen", "k"]));
    run(rktio().current_dir(d).args([
        "disk",
        "create",
        "app.img",
        "--from",
        "root",
        "--key-file",
        "k",
    ]));
    let key = |args: &[&str]| run(rktio().current_dir(d).args(args)).trim().to_string();
    let (ours, theirs) = (key(&["wg", "genkey"]), key(&["wg", "genkey"]));
    let pubkey = |k: &str| {
        let mut c = rktio()
            .args(["wg", "pubkey"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), k.as_bytes()).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    std::fs::write(
        d.join("wg.conf"),
        our_wg_conf(&ours, &pubkey(&theirs), false),
    )
    .unwrap();

    let mut peer = Peer::new();
    let srv = rktio()
        .current_dir(d)
        .args([
            "net",
            "serve",
            "app.img",
            "--key-file",
            "k",
            "--tap",
            &peer.tap,
            "--address",
            "10.201.0.2/24",
            "--wg",
            "wg.conf",
            "--requests",
            "2",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed with the peer's processes if the test fails.
    peer.children.insert(0, srv);
    // The TAP device appears once the stack is up; then link the peer to it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("ip")
        .args(["link", "show", &peer.tap])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "rktio net serve did not create its TAP device"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    peer.link("10.201.0.1/24");
    peer.wireguard(&theirs, &pubkey(&ours), "10.201.0.2:51821");
    let got = peer.sh("curl -sS --max-time 60 http://10.202.0.2/www/blob | sha256sum");
    let want = run(Command::new("sha256sum").arg(d.join("root/www/blob")));
    assert_eq!(got.split(' ').next(), want.split(' ').next());
    let code =
        peer.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 30 http://10.202.0.2/nope");
    assert_eq!(code.trim(), "404");
    let out = peer.children.remove(0).wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("200 /www/blob 1500000 bytes"), "{log}");
    assert!(log.contains("2 requests"), "{log}");
}
