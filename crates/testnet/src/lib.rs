//! Test hosts for rkt-io's network tests and benchmarks: a peer network namespace
//! the caller creates, linked to our stack by a TAP device or a veth pair (our
//! end in a namespace of its own), with wireguard-go, tcpdump and real clients in
//! it. Everything started is killed by PID and the namespaces deleted on drop.
//!
//! Test tooling: a failed setup step panics with the command and its output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs a command; panics with its output unless it succeeds. Returns stdout.
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

/// Panics unless `tool` is on PATH.
pub fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: install it (.ci/run does)");
}

/// A peer namespace linked to our stack; everything it started is killed by PID
/// and the namespaces deleted on drop.
#[derive(Debug)]
pub struct Peer {
    /// The peer namespace.
    pub ns: String,
    /// The link's name in the peer namespace (TAP or veth).
    pub tap: String,
    /// The WireGuard interface name for wireguard-go.
    pub wg: String,
    /// Scratch directory (keys, captures).
    pub dir: PathBuf,
    /// Processes started in the namespaces.
    pub children: Vec<Child>,
    /// Our own namespace, for a veth link.
    pub ours: Option<String>,
    /// More namespaces a test made (deleted with the peer's).
    pub extra_ns: Vec<String>,
    wg_socks: Vec<String>,
}

/// Our stack's side of the usual test tunnel, as wg-quick text: address
/// 10.202.0.2/24 on port 51821, one peer (wireguard-go at 10.201.0.1:51820, address
/// 10.202.0.1/32); `keepalive` adds PersistentKeepalive, so we handshake at once.
pub fn our_wg_conf(our_private_b64: &str, peer_public_b64: &str, keepalive: bool) -> String {
    format!(
        "[Interface]\nPrivateKey = {our_private_b64}\nAddress = 10.202.0.2/24\nListenPort = 51821\n\
         [Peer]\nPublicKey = {peer_public_b64}\nAllowedIPs = 10.202.0.1/32\nEndpoint = 10.201.0.1:51820\n{}",
        if keepalive {
            "PersistentKeepalive = 25\n"
        } else {
            ""
        }
    )
}

/// A wireguard-go interface's settings.
#[derive(Debug, Clone, Copy)]
pub struct WgPeer<'a> {
    /// Its private key (base64).
    pub key_b64: &'a str,
    /// ListenPort.
    pub listen_port: u16,
    /// Its address with prefix.
    pub address: &'a str,
    /// The other side's public key (base64).
    pub peer_public_b64: &'a str,
    /// The other side's AllowedIPs.
    pub allowed_ips: &'a str,
    /// The other side's endpoint, if known.
    pub endpoint: Option<&'a str>,
}

impl Default for Peer {
    fn default() -> Self {
        Self::new()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Peer {
    /// A new peer namespace; panics if a tool the tests use is missing.
    pub fn new() -> Peer {
        for t in [
            "ip",
            "ethtool",
            "ping",
            "wireguard-go",
            "wg",
            "tcpdump",
            "curl",
            "python3",
            "iperf3",
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
            extra_ns: Vec::new(),
            children: Vec::new(),
            wg_socks: Vec::new(),
        }
    }

    /// A command to run in the peer namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]);
        c
    }

    /// Runs a shell script in the peer namespace; returns stdout.
    pub fn sh(&self, script: &str) -> String {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// Moves the kernel side of our TAP device (named `self.tap`) into the
    /// namespace and addresses it.
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
        // on veth and XDP hands such frames over unfinished. Our stack finishes
        // them (rktio-net's offload::finish_received, tested with `tx on` in
        // xdp_veth); the beds have the kernel compute them, as frames from a real
        // wire carry them.
        self.sh(&format!(
            "ip link set lo up && ip addr add {addr} dev {t} && ip link set {t} up && \
             ethtool -K {t} tx off >/dev/null",
            t = self.tap
        ));
        (ours_ns, ours_dev)
    }

    /// Starts wireguard-go in the peer namespace as the usual test peer: address
    /// 10.202.0.1/24, port 51820, our stack (10.202.0.2) as its one peer.
    pub fn wireguard(&mut self, key_b64: &str, our_public_b64: &str, our_endpoint: &str) {
        let ns = self.ns.clone();
        let wg = self.wg.clone();
        self.wireguard_in(
            &ns,
            &wg,
            &WgPeer {
                key_b64,
                listen_port: 51820,
                address: "10.202.0.1/24",
                peer_public_b64: our_public_b64,
                allowed_ips: "10.202.0.2/32",
                endpoint: Some(our_endpoint),
            },
        );
    }

    /// Starts wireguard-go as interface `ifname` in namespace `ns` and configures
    /// it with wg(8).
    pub fn wireguard_in(&mut self, ns: &str, ifname: &str, p: &WgPeer<'_>) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "wireguard-go", "-f", ifname]);
        let child = c
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wireguard-go");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let sock = format!("/var/run/wireguard/{ifname}.sock");
        let up = || {
            Command::new("ip")
                .args(["netns", "exec", ns, "ip", "link", "show", ifname])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        while !Path::new(&sock).exists() || !up() {
            assert!(Instant::now() < deadline, "wireguard-go did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wg_socks.push(sock);
        let kf = self.dir.join(format!("{ifname}.key"));
        std::fs::write(&kf, p.key_b64).unwrap();
        let endpoint = p
            .endpoint
            .map(|e| format!(" endpoint {e}"))
            .unwrap_or_default();
        run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!(
                "wg set {w} private-key {k} listen-port {lp} peer {pk} allowed-ips {a}{endpoint} && \
                 ip addr add {addr} dev {w} && ip link set {w} mtu 1420 up",
                w = ifname,
                k = kf.display(),
                lp = p.listen_port,
                pk = p.peer_public_b64,
                a = p.allowed_ips,
                addr = p.address,
            ),
        ]));
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

    /// Stops the capture started last (tcpdump flushes and closes the file).
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
        for ns in std::iter::once(&self.ns)
            .chain(self.ours.iter())
            .chain(self.extra_ns.iter())
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // wireguard-go, killed, leaves its control socket behind.
        for s in &self.wg_socks {
            let _ = std::fs::remove_file(s);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
