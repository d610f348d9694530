#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Interop with a standard WireGuard peer that is not ours: wireguard-go (with
//! wireguard-tools) in a network namespace this test creates, reached over a TAP
//! device whose kernel side is moved into that namespace. The peer pings our
//! stack, runs a TCP echo against it, fetches a file from an HTTP server on our
//! stack with curl, and serves a TCP echo that our stack connects to; tcpdump on
//! the link meanwhile must never see the plaintext. With plaintext mode explicitly
//! on, the same capture does see it (so the check can fail).
//!
//! Needs root, iproute2, wireguard-go, wireguard-tools, tcpdump, curl and python3
//! (`.ci/run` installs them); a missing one fails the test.
mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::process::Stdio;

use common::*;
use rktio_net::{Net, PollConfig, Security, TapNic, TcpOptions};

/// The peer's echo: this many canaries (2 MB, 8 times our 256 KiB buffers).
const ECHO_REPEATS: usize = 80_000;

#[test]
fn wireguard_go_peer_talks_to_our_stack() {
    let mut peer = Peer::new();
    let nic = TapNic::open(&peer.tap, 1500).unwrap();
    let net = start_wg(&mut peer, Box::new(nic), Some("10.201.0.1/24"));
    let pcap = peer.capture();

    // ping through the tunnel (smoltcp answers echo requests).
    let out = peer.sh("ping -c 3 -i 0.2 -W 5 10.202.0.2");
    assert!(out.contains("3 received"), "{out}");

    // TCP echo from the peer side against our stack, several times our buffers
    // (full duplex with both receive buffers full).
    let mut l = net.tcp_listen(7, 4, TcpOptions::default()).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, from) = l.accept().unwrap();
        let mut b = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = s.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&b[..n]).unwrap();
            total += n;
        }
        s.shutdown(false, true);
        (from, total)
    });
    let py = format!(
        "import socket,threading\n\
         data=(b'{c}'*{n})\n\
         s=socket.create_connection(('10.202.0.2',7),timeout=60)\n\
         got=[]\n\
         def rd():\n\
         \x20   while True:\n\
         \x20       b=s.recv(65536)\n\
         \x20       if not b: break\n\
         \x20       got.append(b)\n\
         t=threading.Thread(target=rd); t.start()\n\
         s.sendall(data); s.shutdown(socket.SHUT_WR); t.join()\n\
         print('ok' if b''.join(got)==data else 'bad %d' % len(b''.join(got)))\n",
        c = String::from_utf8_lossy(CANARY),
        n = ECHO_REPEATS
    );
    let out = run(peer.cmd("python3").args(["-c", &py]));
    assert_eq!(out.trim(), "ok");
    let (from, total) = echo.join().unwrap();
    assert_eq!(from.ip().to_string(), "10.202.0.1");
    assert_eq!(total, CANARY.len() * ECHO_REPEATS);

    // curl fetches a file from an HTTP server on our stack, byte-exact.
    let data = body(3 << 20);
    let server = serve_http(&net, data.clone(), 1);
    assert_eq!(curl_sha(&peer, "http://10.202.0.2/file"), sha(&data));
    server.join().unwrap();

    // Our stack as the client: connect out through the tunnel to the peer.
    let srv = peer
        .cmd("python3")
        .args([
            "-c",
            "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('10.202.0.1',9999)); s.listen(1); print('ready', flush=True)\n\
             c,_=s.accept()\nwhile True:\n    b=c.recv(65536)\n    if not b: break\n    c.sendall(b)\nc.close()\n",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    peer.children.insert(0, srv);
    let mut line = [0u8; 6];
    peer.children[0]
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    let to: SocketAddr = "10.202.0.1:9999".parse().unwrap();
    let mut c = net.tcp_connect(to, TcpOptions::default()).unwrap();
    let msg = body(200_000);
    let reader = {
        let mut got = Vec::new();
        c.write_all(&msg).unwrap();
        c.shutdown(false, true);
        let mut b = vec![0u8; 65536];
        loop {
            let n = c.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        got
    };
    assert!(reader == msg, "echo from the peer differs");

    assert_capture_has_no_plaintext(&mut peer, &pcap, data.len() / 2);
    let s = net.stats();
    assert!(s.wg.rx_packets > 100 && s.wg.tx_packets > 1000, "{s:?}");
    assert_eq!(s.wg.rx_dropped_source, 0, "{s:?}");
}

#[test]
fn plaintext_mode_is_visible_on_the_wire() {
    let mut peer = Peer::new();
    need("tcpdump");
    let nic = TapNic::open(&peer.tap, 1500).unwrap();
    let net = Net::start(
        Box::new(nic),
        &stack_config(Security::Plaintext),
        PollConfig::default(),
    )
    .unwrap();
    peer.link("10.201.0.1/24");
    let pcap = peer.capture();
    let data = body(256 << 10);
    let server = serve_http(&net, data.clone(), 1);
    assert_eq!(curl_sha(&peer, "http://10.201.0.2/x"), sha(&data));
    server.join().unwrap();
    peer.stop_capture();
    let wire = std::fs::read(&pcap).unwrap();
    assert!(
        contains(&wire, CANARY),
        "plaintext mode, yet no plaintext seen in {} captured bytes",
        wire.len()
    );
}
