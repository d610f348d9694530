//! `bench/net`: TCP throughput, the kernel vs our stack, side by side.
//!
//! The real iperf3 client runs in a peer network namespace in every row; the
//! server side is the kernel (iperf3 -s) or our stack (an iperf3-protocol server
//! on rkt-io's sockets), over the same kind of link:
//! - kernel over veth, plaintext; kernel through a wireguard-go tunnel (wireguard-go
//!   on both sides);
//! - ours over AF_XDP on the veth and over TAP, plaintext and WireGuard (the peer
//!   runs wireguard-go);
//! - ours at both ends (`ours<->ours`): a second stack of ours takes the peer's
//!   end of the veth and runs our iperf3-protocol client, plaintext and through
//!   WireGuard between the two stacks, so the row measures our own cost, not
//!   wireguard-go's.
//!
//! Both directions (peer -> server and, with -R, server -> peer). Host calls per
//! packet come from rkt-io's counters (every call our stack makes to the host).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rktio_bench::iperf3::{Iperf3Server, run_client};
use rktio_net::{
    Cidr, Key, Net, Nic, PollConfig, Security, StackConfig, TapNic, WgConfig, XdpConfig, XdpNic,
};
use rktio_sys::HostCalls;
use rktio_testnet::{Peer, WgPeer, our_wg_conf, run};

#[derive(Debug, Parser)]
#[command(about = "TCP throughput: kernel vs rkt-io (AF_XDP, TAP; WireGuard on/off), with iperf3")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Only these rows (comma-separated: kernel,kernel-wg,xdp,xdp-wg,ours-ours,
    /// ours-ours-wg,tap,tap-wg).
    #[arg(long)]
    only: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Row {
    name: &'static str,
    up: f64,
    down: f64,
    calls_per_packet: Option<f64>,
    note: String,
}

/// Runs the iperf3 client in the peer namespace; returns Gbit/s as the receiver
/// saw it, or what iperf3 said went wrong.
fn client(peer: &Peer, to: &str, seconds: u32, reverse: bool) -> Result<f64, String> {
    let mut c = peer.cmd("iperf3");
    c.args([
        "-c",
        to,
        "-t",
        &seconds.to_string(),
        "-J",
        "--connect-timeout",
        "10000",
    ]);
    if reverse {
        c.arg("-R");
    }
    let out = c.output().map_err(|e| format!("iperf3: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "iperf3 printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        let r = if reverse { " -R" } else { "" };
        return Err(format!("iperf3 -c {to}{r}: {e}"));
    }
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

fn kernel_server(ns: &str) -> Child {
    let c = Command::new("ip")
        .args(["netns", "exec", ns, "iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    // Wait until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run(Command::new("ip").args(["netns", "exec", ns, "ss", "-ltn"])).contains(":5201") {
        assert!(Instant::now() < deadline, "iperf3 -s did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    c
}

fn kernel_row(name: &'static str, peer: &Peer, ns: &str, to: &str, secs: u32) -> Row {
    let mut srv = kernel_server(ns);
    let up = client(peer, to, secs, false).expect("kernel, forward");
    let down = client(peer, to, secs, true).expect("kernel, reverse");
    let _ = srv.kill();
    let _ = srv.wait();
    eprintln!("{name}: {up:.3} / {down:.3} Gbit/s");
    Row {
        name,
        up,
        down,
        calls_per_packet: None,
        note: String::new(),
    }
}

/// Both directions' results, or a panic that says what each end saw.
fn both_ways<E: std::fmt::Debug, F: std::fmt::Debug>(
    name: &str,
    up: Result<f64, E>,
    down: Result<f64, E>,
    server: ServerThread<F>,
) -> (f64, f64) {
    let (a, b) = server.join().expect("server thread");
    match (up, down, a, b) {
        (Ok(u), Ok(d), Ok(_), Ok(_)) => (u, d),
        (u, d, a, b) => panic!(
            "{name}: client forward {u:?}, reverse {d:?}; server forward {a:?}, reverse {b:?}"
        ),
    }
}

/// The server thread of a row: its forward and reverse tests.
type ServerThread<F> = std::thread::JoinHandle<(
    Result<rktio_bench::iperf3::TestResult, F>,
    Result<rktio_bench::iperf3::TestResult, F>,
)>;

/// Our stack with an iperf3 server on it, measured both ways.
fn ours_row(name: &'static str, peer: &Peer, net: Net, to: &str, secs: u32) -> Row {
    let mut srv = Iperf3Server::listen(&net, 5201).expect("listen 5201");
    let h = std::thread::spawn(move || {
        let a = srv.serve_one();
        let b = srv.serve_one();
        (a, b)
    });
    let calls0 = HostCalls::snapshot();
    let s0 = net.stats();
    let up = client(peer, to, secs, false);
    if up.is_err() {
        // Let the server thread's second test end too.
        let _ = client(peer, to, 1, true);
    }
    let down = client(peer, to, secs, true);
    let (up, down) = both_ways(name, up, down, h);
    let calls = HostCalls::snapshot().since(&calls0);
    let s1 = net.stats();
    let packets = (s1.nic.rx_frames + s1.nic.tx_frames) - (s0.nic.rx_frames + s0.nic.tx_frames);
    let note = format!(
        "host calls: {calls}; tx dropped (ring full) {}, WireGuard out dropped {}",
        s1.nic.tx_dropped_full - s0.nic.tx_dropped_full,
        s1.wg_out_dropped - s0.wg_out_dropped
    );
    measured(name, (up, down), calls.total(), packets, note)
}

/// A row of ours, printed as it is made.
fn measured(
    name: &'static str,
    (up, down): (f64, f64),
    calls: u64,
    packets: u64,
    note: String,
) -> Row {
    eprintln!("{name}: {up:.3} / {down:.3} Gbit/s");
    Row {
        name,
        up,
        down,
        calls_per_packet: Some(calls as f64 / packets.max(1) as f64),
        note,
    }
}

/// Both ends ours: an iperf3 server on `server`, our iperf3 client on
/// `client` (the peer's end of the link), measured both ways; Gbit/s as the
/// receiving side counted.
fn ours_ours_row(name: &'static str, server: Net, client: Net, to: &str, secs: u32) -> Row {
    let mut srv = Iperf3Server::listen(&server, 5201).expect("listen 5201");
    let h = std::thread::spawn(move || (srv.serve_one(), srv.serve_one()));
    let calls0 = HostCalls::snapshot();
    let frames = |n: &Net| {
        let s = n.stats();
        s.nic.rx_frames + s.nic.tx_frames
    };
    let f0 = frames(&server) + frames(&client);
    let to = to.parse().expect("address");
    let gbit = |r: rktio_bench::iperf3::TestResult| r.bytes as f64 * 8.0 / r.seconds / 1e9;
    let up = run_client(&client, to, secs, false).map(gbit);
    let down = run_client(&client, to, secs, true).map(gbit);
    let (up, down) = both_ways(name, up, down, h);
    let calls = HostCalls::snapshot().since(&calls0);
    let packets = frames(&server) + frames(&client) - f0;
    let note = format!("host calls (both stacks): {calls}");
    measured(name, (up, down), calls.total(), packets, note)
}

fn stack(security: Security) -> StackConfig {
    StackConfig {
        mac: None,
        addresses: vec![Cidr::parse("10.201.0.2/24").expect("cidr")],
        gateways: vec![],
        security,
        tuning: Default::default(),
    }
}

fn wg_config(ours: &Key, theirs_public: &Key) -> WgConfig {
    WgConfig::parse(&our_wg_conf(
        &ours.to_base64(),
        &theirs_public.to_base64(),
        true,
    ))
    .expect("wg config")
}

fn start(nic: Box<dyn Nic>, security: Security) -> Net {
    Net::start(nic, &stack(security), PollConfig::default()).expect("start stack")
}

fn main() {
    let args = Args::parse();
    let want = |r: &str| {
        args.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|x| x.trim() == r))
    };
    let secs = args.seconds.max(1);
    let (ours_key, peer_key) = (Key::generate().expect("key"), Key::generate().expect("key"));
    let mut rows = Vec::new();

    // Veth: peer namespace B (10.201.0.1, wireguard-go wg at 10.202.0.1), ours A.
    let mut veth = Peer::new();
    let (ns_a, dev_a) = veth.veth_link("10.201.0.1/24");
    let wg_b = veth.wg.clone();
    let ns_b = veth.ns.clone();
    veth.wireguard_in(
        &ns_b,
        &wg_b,
        &WgPeer {
            key_b64: &peer_key.to_base64(),
            listen_port: 51820,
            address: "10.202.0.1/24",
            peer_public_b64: &ours_key.public().to_base64(),
            allowed_ips: "10.202.0.2/32",
            endpoint: Some("10.201.0.2:51821"),
        },
    );
    if want("kernel") || want("kernel-wg") {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns_a,
            "ip",
            "addr",
            "add",
            "10.201.0.2/24",
            "dev",
            &dev_a,
        ]));
        if want("kernel") {
            rows.push(kernel_row(
                "kernel, veth, plaintext",
                &veth,
                &ns_a,
                "10.201.0.2",
                secs,
            ));
        }
        if want("kernel-wg") {
            // The same keys as our stack uses below, so the peer's side stays as is.
            let wg_a = format!("{wg_b}a");
            veth.wireguard_in(
                &ns_a,
                &wg_a,
                &WgPeer {
                    key_b64: &ours_key.to_base64(),
                    listen_port: 51821,
                    address: "10.202.0.2/24",
                    peer_public_b64: &peer_key.public().to_base64(),
                    allowed_ips: "10.202.0.1/32",
                    endpoint: Some("10.201.0.1:51820"),
                },
            );
            rows.push(kernel_row(
                "kernel, wireguard-go tunnel",
                &veth,
                &ns_a,
                "10.202.0.2",
                secs,
            ));
            // Stop our side's wireguard-go (the last child): its interface goes too.
            let mut c = veth.children.pop().expect("wireguard-go");
            let _ = c.kill();
            let _ = c.wait();
        }
        run(Command::new("ip").args(["netns", "exec", &ns_a, "ip", "addr", "flush", "dev", &dev_a]));
    }
    // Our server's side of the tunnel, with the peer's key.
    let ours_wg = || Security::WireGuard(wg_config(&ours_key, &peer_key.public()));
    let xdp = || -> Box<dyn Nic> {
        Box::new(XdpNic::open_in_netns(&ns_a, &dev_a, 1500, XdpConfig::default()).expect("xdp"))
    };
    if want("xdp") {
        let net = start(xdp(), Security::Plaintext);
        rows.push(ours_row(
            "ours, AF_XDP, plaintext",
            &veth,
            net,
            "10.201.0.2",
            secs,
        ));
    }
    if want("xdp-wg") {
        let net = start(xdp(), ours_wg());
        rows.push(ours_row(
            "ours, AF_XDP, WireGuard",
            &veth,
            net,
            "10.202.0.2",
            secs,
        ));
    }
    // Both ends ours: the peer's end of the veth taken by a second stack of
    // ours with our iperf3 client (the peer namespace's kernel and its
    // wireguard-go see nothing while it holds the link).
    let peer_end = |security: Security| -> Net {
        let nic = XdpNic::open_in_netns(&veth.ns, &veth.tap, 1500, XdpConfig::default())
            .expect("xdp on the peer's end");
        let cfg = StackConfig {
            addresses: vec![Cidr::parse("10.201.0.1/24").expect("cidr")],
            ..stack(security)
        };
        Net::start(Box::new(nic), &cfg, PollConfig::default()).expect("start the peer stack")
    };
    if want("ours-ours") {
        let server = start(xdp(), Security::Plaintext);
        let client = peer_end(Security::Plaintext);
        rows.push(ours_ours_row(
            "ours<->ours, AF_XDP, plaintext",
            server,
            client,
            "10.201.0.2:5201",
            secs,
        ));
    }
    if want("ours-ours-wg") {
        let server = start(xdp(), ours_wg());
        let conf = format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.202.0.1/24\nListenPort = 51820\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.202.0.2/32\nEndpoint = 10.201.0.2:51821\n",
            peer_key.to_base64(),
            ours_key.public().to_base64()
        );
        let client = peer_end(Security::WireGuard(
            WgConfig::parse(&conf).expect("peer wg config"),
        ));
        rows.push(ours_ours_row(
            "ours<->ours, AF_XDP, WireGuard",
            server,
            client,
            "10.202.0.2:5201",
            secs,
        ));
    }
    drop(veth);

    if want("tap") || want("tap-wg") {
        let mut tap = Peer::new();
        let open =
            |t: &Peer| -> Box<dyn Nic> { Box::new(TapNic::open(&t.tap, 1500).expect("tap")) };
        if want("tap") {
            let nic = open(&tap);
            tap.link("10.201.0.1/24");
            let net = start(nic, Security::Plaintext);
            rows.push(ours_row(
                "ours, TAP, plaintext",
                &tap,
                net,
                "10.201.0.2",
                secs,
            ));
        }
        if want("tap-wg") {
            // A new TAP device (the last one went with its stack): link it again.
            let nic = open(&tap);
            tap.link("10.201.0.1/24");
            tap.wireguard(
                &peer_key.to_base64(),
                &ours_key.public().to_base64(),
                "10.201.0.2:51821",
            );
            let net = start(
                nic,
                Security::WireGuard(wg_config(&ours_key, &peer_key.public())),
            );
            rows.push(ours_row(
                "ours, TAP, WireGuard",
                &tap,
                net,
                "10.202.0.2",
                secs,
            ));
        }
    }

    println!();
    println!("TCP throughput, iperf3 client in a peer namespace, {secs} s per direction, Gbit/s");
    println!(
        "{:<30} {:>12} {:>12} {:>18}",
        "server side", "peer->server", "server->peer", "host calls/packet"
    );
    for r in &rows {
        let calls = r
            .calls_per_packet
            .map_or("-".to_string(), |c| format!("{c:.3}"));
        println!(
            "{:<30} {:>12.3} {:>12.3} {:>18}",
            r.name, r.up, r.down, calls
        );
    }
    let get = |n: &str| rows.iter().find(|r| r.name == n);
    let ratio = |a: &str, b: &str| {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            println!(
                "{a} / {b}: {:.2}x peer->server, {:.2}x server->peer",
                x.up / y.up.max(1e-9),
                x.down / y.down.max(1e-9)
            );
        }
    };
    println!();
    ratio("ours, AF_XDP, WireGuard", "kernel, wireguard-go tunnel");
    ratio(
        "ours<->ours, AF_XDP, WireGuard",
        "kernel, wireguard-go tunnel",
    );
    ratio("ours<->ours, AF_XDP, plaintext", "kernel, veth, plaintext");
    ratio("ours, TAP, WireGuard", "kernel, wireguard-go tunnel");
    ratio("ours, AF_XDP, plaintext", "kernel, veth, plaintext");
    ratio("ours, TAP, plaintext", "kernel, veth, plaintext");
    for r in &rows {
        if !r.note.is_empty() {
            println!("{}: {}", r.name, r.note);
        }
    }
}
