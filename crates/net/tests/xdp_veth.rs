#![allow(clippy::unwrap_used, clippy::expect_used)]
//! AF_XDP over a veth pair: our end in a namespace of its own (no kernel address:
//! the XDP program hands every frame to our socket), the peer's end in the peer
//! namespace. Plaintext first (ping and curl from the peer), then WireGuard with
//! wireguard-go as the peer (ping, curl byte-exact, and a capture on the link
//! never holding the plaintext).
//!
//! Needs root, iproute2, wireguard-go, wireguard-tools, tcpdump, curl
//! (`.ci/run` installs them); a missing one fails the test.
mod common;

use common::*;
use rktio_net::{Net, PollConfig, Security, XdpConfig, XdpMode, XdpNic};

#[test]
fn xdp_on_veth_plaintext_then_wireguard_go() {
    let mut peer = Peer::new();
    let (ns, dev) = peer.veth_link("10.201.0.1/24");

    // Plaintext, explicitly.
    let nic = XdpNic::open_in_netns(&ns, &dev, 1500, XdpConfig::default()).unwrap();
    assert_eq!(nic.mode(), XdpMode::Copy, "veth offers copy mode");
    let net = Net::start(
        Box::new(nic),
        &stack_config(Security::Plaintext),
        PollConfig::default(),
    )
    .unwrap();
    let out = peer.sh("ping -c 3 -i 0.2 -W 5 10.201.0.2");
    assert!(out.contains("3 received"), "{out}");
    let data = body(2 << 20);
    let server = serve_http(&net, data.clone(), 1);
    assert_eq!(curl_sha(&peer, "http://10.201.0.2/plain"), sha(&data));
    server.join().unwrap();
    let s = net.stats();
    // 2 MiB left as over 1000 frames; what comes back is the pings, the
    // request and ACKs, whose number the peer's GRO and delayed ACKs decide
    // (exactly 100 were seen once): only that some came.
    assert!(s.nic.rx_frames > 20 && s.nic.tx_frames > 1000, "{s:?}");
    drop(net);

    // WireGuard with a standard peer.
    let nic = XdpNic::open_in_netns(&ns, &dev, 1500, XdpConfig::default()).unwrap();
    let net = start_wg(&mut peer, Box::new(nic), None);
    let pcap = peer.capture();
    let out = peer.sh("ping -c 3 -i 0.2 -W 5 10.202.0.2");
    assert!(out.contains("3 received"), "{out}");
    let server = serve_http(&net, data.clone(), 1);
    assert_eq!(curl_sha(&peer, "http://10.202.0.2/wg"), sha(&data));
    server.join().unwrap();
    assert_capture_has_no_plaintext(&mut peer, &pcap, data.len() / 2);
    let s = net.stats();
    assert!(s.wg.tx_packets > 1000, "{s:?}");
}
