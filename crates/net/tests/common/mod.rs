#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Test hosts for the network tests: a peer network namespace this test creates,
//! linked to our stack by a TAP device or a veth pair (our end in a namespace of
//! its own), with wireguard-go, tcpdump and real clients in it. Everything started
//! is killed by PID and the namespaces deleted on drop.
use std::process::Command;

use rktio_net::{Cidr, Key, Net, Nic, PollConfig, Security, StackConfig, TcpOptions, WgConfig};
pub use rktio_testnet::*;

pub const CANARY: &[u8] = b"RKTIO-WIRE-CANARY-5f3a9c-";

pub fn body(n: usize) -> Vec<u8> {
    CANARY.iter().copied().cycle().take(n).collect()
}

/// A tiny HTTP/1.0 server on our stack: every GET gets `data`.
pub fn serve_http(net: &Net, data: Vec<u8>, requests: usize) -> std::thread::JoinHandle<()> {
    let mut l = net.tcp_listen(80, 8, TcpOptions::default()).unwrap();
    std::thread::spawn(move || {
        for _ in 0..requests {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "request cut short");
                req.extend_from_slice(&b[..n]);
            }
            assert!(req.starts_with(b"GET /"), "not a GET");
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                data.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&data).unwrap();
            s.shutdown(false, true);
            // Drain until the client closes.
            while s.read(&mut b).unwrap_or(0) > 0 {}
        }
    })
}

pub fn curl_sha(peer: &Peer, url: &str) -> String {
    peer.sh(&format!(
        "curl -sS --max-time 60 {url} | sha256sum | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

pub fn sha(data: &[u8]) -> String {
    let f = std::env::temp_dir().join(format!("rktio-sha-{}", std::process::id()));
    std::fs::write(&f, data).unwrap();
    let s = run(Command::new("sha256sum").arg(&f));
    let _ = std::fs::remove_file(&f);
    s.split_whitespace().next().unwrap().to_string()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn stack_config(security: Security) -> StackConfig {
    StackConfig {
        mac: None,
        addresses: vec![Cidr::parse("10.201.0.2/24").unwrap()],
        gateways: vec![],
        security,
        tuning: Default::default(),
    }
}

/// Starts our stack over `nic` with WireGuard (fresh keys), links the peer side
/// (`link`: the address for a TAP link, `None` when the link is already up) and
/// starts wireguard-go there as its peer.
pub fn start_wg(peer: &mut Peer, nic: Box<dyn Nic>, link: Option<&str>) -> Net {
    let (ours, theirs) = (Key::generate().unwrap(), Key::generate().unwrap());
    let text = our_wg_conf(&ours.to_base64(), &theirs.public().to_base64(), false);
    let wg = WgConfig::parse(&text).unwrap();
    let net = Net::start(
        nic,
        &stack_config(Security::WireGuard(wg)),
        PollConfig::default(),
    )
    .unwrap();
    if let Some(addr) = link {
        peer.link(addr);
    }
    peer.wireguard(
        &theirs.to_base64(),
        &ours.public().to_base64(),
        "10.201.0.2:51821",
    );
    net
}

/// Stops the capture and checks it saw at least `min` bytes and never the canary.
pub fn assert_capture_has_no_plaintext(peer: &mut Peer, pcap: &std::path::Path, min: usize) {
    peer.stop_capture();
    let wire = std::fs::read(pcap).unwrap();
    assert!(
        wire.len() > min,
        "the capture saw the transfer: {} bytes",
        wire.len()
    );
    assert!(!contains(&wire, CANARY), "plaintext on the wire");
}
