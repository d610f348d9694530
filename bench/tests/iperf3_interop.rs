#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real iperf3 client (Debian's), in a peer namespace behind wireguard-go,
//! against an iperf3 server on our stack over TAP with WireGuard: both
//! directions and two parallel streams complete, and the bytes the client
//! reports match what our server counted.
use rktio_bench::iperf3::Iperf3Server;
use rktio_net::{Cidr, Key, Net, PollConfig, Security, StackConfig, TapNic, WgConfig};
use rktio_testnet::{Peer, our_wg_conf, run};

fn client(peer: &Peer, args: &[&str]) -> serde_json::Value {
    let mut c = peer.cmd("iperf3");
    c.args([
        "-c",
        "10.202.0.2",
        "-t",
        "1",
        "-J",
        "--connect-timeout",
        "10000",
    ]);
    c.args(args);
    serde_json::from_str(&run(&mut c)).expect("iperf3 JSON")
}

#[test]
fn real_iperf3_client_against_our_stack() {
    let mut peer = Peer::new();
    let (ours, theirs) = (Key::generate().unwrap(), Key::generate().unwrap());
    let wg = WgConfig::parse(&our_wg_conf(
        &ours.to_base64(),
        &theirs.public().to_base64(),
        false,
    ))
    .unwrap();
    let nic = TapNic::open(&peer.tap, 1500).unwrap();
    let cfg = StackConfig {
        mac: None,
        addresses: vec![Cidr::parse("10.201.0.2/24").unwrap()],
        gateways: vec![],
        security: Security::WireGuard(wg),
        tuning: Default::default(),
    };
    let net = Net::start(Box::new(nic), &cfg, PollConfig::default()).unwrap();
    peer.link("10.201.0.1/24");
    peer.wireguard(
        &theirs.to_base64(),
        &ours.public().to_base64(),
        "10.201.0.2:51821",
    );
    let mut srv = Iperf3Server::listen(&net, 5201).unwrap();
    let server =
        std::thread::spawn(move || (0..3).map(|_| srv.serve_one().unwrap()).collect::<Vec<_>>());
    let fwd = client(&peer, &[]);
    let rev = client(&peer, &["-R"]);
    let par = client(&peer, &["-P", "2"]);
    let ours = server.join().unwrap();
    let sent = fwd["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    assert!(sent > 0 && ours[0].bytes > 0 && !ours[0].reverse);
    // Everything the client sent before TEST_END arrived (the server stops
    // counting at TEST_END, and TCP delivered in order).
    assert!(
        ours[0].bytes <= sent && ours[0].bytes * 10 >= sent * 9,
        "{sent} vs {:?}",
        ours[0]
    );
    let got = rev["end"]["sum_received"]["bytes"].as_u64().unwrap();
    assert!(
        got > 0 && ours[1].reverse && ours[1].bytes >= got,
        "{got} vs {:?}",
        ours[1]
    );
    assert_eq!(ours[2].streams, 2);
    assert!(par["end"]["sum_received"]["bytes"].as_u64().unwrap() > 0);
    assert!(par["error"].is_null(), "{par}");
}
