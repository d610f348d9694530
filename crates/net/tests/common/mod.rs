#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Test hosts for the network tests: a peer network namespace this test creates,
//! linked to our stack by a TAP device or a veth pair (our end in a namespace of
//! its own), with wireguard-go, tcpdump and real clients in it. Everything started
//! is killed by PID and the namespaces deleted on drop.
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rktio_net::{Cidr, Key, Net, Security, StackConfig, TcpOptions};

pub const CANARY: &[u8] = b"RKTIO-WIRE-CANARY-5f3a9c-";

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn need(tool: &str) {
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
pub struct Peer {
    pub ns: String,
    /// The link's name in the peer namespace (TAP or veth).
    pub tap: String,
    pub wg: String,
    pub dir: PathBuf,
    pub children: Vec<Child>,
    /// Our own namespace, for a veth link.
    pub ours: Option<String>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Peer {
    pub fn new() -> Peer {
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
            ours: None,
            children: Vec::new(),
        }
    }

    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]);
        c
    }

    pub fn sh(&self, script: &str) -> String {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// Moves the kernel side of our TAP device into the namespace and addresses it.
    pub fn link(&self, addr: &str) {
        run(Command::new("ip").args(["link", "set", &self.tap, "netns", &self.ns]));
        self.sh(&format!(
            "ip link set lo up && ip addr add {addr} dev {t} && ip link set {t} up",
            t = self.tap
        ));
    }

    /// A veth pair: `self.tap` in the peer namespace with `addr`, the other end
    /// (returned) up in a new namespace of ours with no kernel address.
    pub fn veth_link(&mut self, addr: &str) -> (String, String) {
        let ours_ns = format!("{}-us", self.ns);
        let ours_dev = format!("{}u", self.tap);
        run(Command::new("ip").args(["netns", "add", &ours_ns]));
        self.ours = Some(ours_ns.clone());
        run(Command::new("ip").args([
            "link", "add", &ours_dev, "netns", &ours_ns, "type", "veth", "peer", "name", &self.tap,
            "netns", &self.ns,
        ]));
        run(Command::new("ip").args([
            "netns", "exec", &ours_ns, "ip", "link", "set", &ours_dev, "up",
        ]));
        // The peer's kernel leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL)
        // on veth and XDP hands such frames over unfinished: have it compute them,
        // as frames from a real wire carry them.
        self.sh(&format!(
            "ip link set lo up && ip addr add {addr} dev {t} && ip link set {t} up && \
             ethtool -K {t} tx off >/dev/null",
            t = self.tap
        ));
        (ours_ns, ours_dev)
    }

    /// Starts wireguard-go in the namespace, configured with wg(8).
    pub fn wireguard(&mut self, key: &Key, our_public: &Key, our_endpoint: &str) {
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
    pub fn capture(&mut self) -> PathBuf {
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

    pub fn stop_capture(&mut self) {
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
        mac: [2, 0, 0, 0, 2, 2],
        addresses: vec![Cidr::parse("10.201.0.2/24").unwrap()],
        gateways: vec![],
        security,
    }
}
