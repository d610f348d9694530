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
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rktio_net::{Cidr, Key, Net, PollConfig, Security, StackConfig, TapNic, TcpOptions, WgConfig};

const CANARY: &[u8] = b"RKTIO-WIRE-CANARY-5f3a9c-";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: install it (.ci/run does)");
}

/// A peer namespace with a TAP link to our stack; everything it started is
/// killed by PID and the namespace deleted on drop.
struct Peer {
    ns: String,
    tap: String,
    wg: String,
    dir: PathBuf,
    children: Vec<Child>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Peer {
    fn new() -> Peer {
        for t in [
            "ip",
            "ping",
            "wireguard-go",
            "wg",
            "tcpdump",
            "curl",
            "python3",
        ] {
            need(t);
        }
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let ns = format!("rkt-peer-{id}");
        let dir = std::env::temp_dir().join(format!("rktio-interop-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("ip").args(["netns", "add", &ns]));
        Peer {
            ns,
            tap: format!("rkt{id}"),
            wg: format!("wg{id}"),
            dir,
            children: Vec::new(),
        }
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]);
        c
    }

    fn sh(&self, script: &str) -> String {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// Moves the kernel side of our TAP device into the namespace and addresses it.
    fn link(&self, addr: &str) {
        run(Command::new("ip").args(["link", "set", &self.tap, "netns", &self.ns]));
        self.sh(&format!(
            "ip link set lo up && ip addr add {addr} dev {t} && ip link set {t} up",
            t = self.tap
        ));
    }

    /// Starts wireguard-go in the namespace, configured with wg(8).
    fn wireguard(&mut self, key: &Key, our_public: &Key, our_endpoint: &str) {
        let child = self
            .cmd("wireguard-go")
            .args(["-f", &self.wg])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wireguard-go");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let sock = format!("/var/run/wireguard/{}.sock", self.wg);
        while !Path::new(&sock).exists()
            || self
                .cmd("ip")
                .args(["link", "show", &self.wg])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "wireguard-go did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        let kf = self.dir.join("peer.key");
        std::fs::write(&kf, key.to_base64()).unwrap();
        self.sh(&format!(
            "wg set {w} private-key {k} listen-port 51820 peer {p} allowed-ips 10.202.0.2/32 endpoint {e} && \
             ip addr add 10.202.0.1/24 dev {w} && ip link set {w} mtu 1420 up",
            w = self.wg,
            k = kf.display(),
            p = our_public.to_base64(),
            e = our_endpoint
        ));
    }

    /// Starts tcpdump on the link, writing to a file; returns its path.
    fn capture(&mut self) -> PathBuf {
        let f = self.dir.join("wire.pcap");
        let child = self
            .cmd("tcpdump")
            .args(["-i", &self.tap, "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(&f)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        self.children.push(child);
        // tcpdump prints "listening on" once it captures.
        let c = self.children.last_mut().unwrap();
        let mut err = c.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            let n = err.read(&mut b).unwrap();
            assert!(n > 0, "tcpdump exited: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&b[..n]);
        }
        // Keep reading its stderr so its exit summary cannot die of SIGPIPE.
        std::thread::spawn(move || while err.read(&mut b).unwrap_or(0) > 0 {});
        f
    }

    fn stop_capture(&mut self) {
        // tcpdump is the last child started; SIGINT flushes and closes the file.
        let c = self.children.pop().unwrap();
        run(Command::new("kill").args(["-INT", &c.id().to_string()]));
        let mut c = c;
        c.wait().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        // wireguard-go, killed, leaves its control socket behind.
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.wg));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn body(n: usize) -> Vec<u8> {
    CANARY.iter().copied().cycle().take(n).collect()
}

/// A tiny HTTP/1.0 server on our stack: every GET gets `data`.
fn serve_http(net: &Net, data: Vec<u8>, requests: usize) -> std::thread::JoinHandle<()> {
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

fn curl_sha(peer: &Peer, url: &str) -> String {
    peer.sh(&format!(
        "curl -sS --max-time 60 {url} | sha256sum | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

fn sha(data: &[u8]) -> String {
    let f = std::env::temp_dir().join(format!("rktio-sha-{}", std::process::id()));
    std::fs::write(&f, data).unwrap();
    let s = run(Command::new("sha256sum").arg(&f));
    let _ = std::fs::remove_file(&f);
    s.split_whitespace().next().unwrap().to_string()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn stack_config(security: Security) -> StackConfig {
    StackConfig {
        mac: [2, 0, 0, 0, 2, 2],
        addresses: vec![Cidr::parse("10.201.0.2/24").unwrap()],
        gateways: vec![],
        security,
    }
}

#[test]
fn wireguard_go_peer_talks_to_our_stack() {
    let mut peer = Peer::new();
    let (ours, theirs) = (Key::generate().unwrap(), Key::generate().unwrap());
    let wg = WgConfig::parse(&format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.202.0.2/24\nListenPort = 51821\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.202.0.1/32\nEndpoint = 10.201.0.1:51820\n",
        ours.to_base64(),
        theirs.public().to_base64()
    ))
    .unwrap();
    let nic = TapNic::open(&peer.tap, 1500).unwrap();
    let net = Net::start(
        Box::new(nic),
        &stack_config(Security::WireGuard(wg)),
        PollConfig::default(),
    )
    .unwrap();
    peer.link("10.201.0.1/24");
    peer.wireguard(&theirs, &ours.public(), "10.201.0.2:51821");
    let pcap = peer.capture();

    // ping through the tunnel (smoltcp answers echo requests).
    let out = peer.sh("ping -c 3 -i 0.2 -W 5 10.202.0.2");
    assert!(out.contains("3 received"), "{out}");

    // TCP echo from the peer side against our stack.
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
         data=(b'{c}'*40000)\n\
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
        c = String::from_utf8_lossy(CANARY)
    );
    let out = run(peer.cmd("python3").args(["-c", &py]));
    assert_eq!(out.trim(), "ok");
    let (from, total) = echo.join().unwrap();
    assert_eq!(from.ip().to_string(), "10.202.0.1");
    assert_eq!(total, CANARY.len() * 40000);

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

    peer.stop_capture();
    let wire = std::fs::read(&pcap).unwrap();
    assert!(wire.len() > data.len(), "the capture saw the transfer");
    assert!(!contains(&wire, CANARY), "plaintext on the wire");
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
