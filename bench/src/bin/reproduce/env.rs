//! Where workloads run: the storage each mode gives a program (a host directory,
//! a gocryptfs mount, a sealed image under `rktio run`) and the network test bed
//! (a peer namespace with the client, linked by veth or TAP to the server: the
//! kernel, the kernel behind wireguard-go, or our stack). Everything started is
//! killed by PID, mounts are unmounted and namespaces deleted on drop.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rktio_net::Key;
use rktio_testnet::{Peer, WgPeer, our_wg_conf};

use crate::report::{DM_INTEGRITY, NATIVE, OURS_DIRECT, OURS_HOST, OURS_PLAIN};

/// The `rktio` binary (built next to this one by bench/reproduce).
pub fn rktio_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rktio")))
        .unwrap_or_else(|| PathBuf::from("rktio"))
}

/// A child's output, collected as it comes (so a chatty child never blocks).
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    fn attach(c: &mut Child) -> Collected {
        let out = Collected::default();
        let pipes: Vec<Box<dyn std::io::Read + Send>> = [
            c.stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            c.stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut p in pipes {
            let o = out.0.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 8192];
                while let Ok(n) = p.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut v) = o.lock() {
                        v.extend_from_slice(&b[..n]);
                    }
                }
            });
        }
        out
    }

    /// What came so far, as text.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

/// Runs a command to its end, at most `limit`; returns (success, stdout+stderr).
/// Stdout comes first in the text only when the command writes nothing to stderr
/// while stdout is open, so parsers look for their markers anywhere.
pub fn run_for(cmd: &mut Command, limit: Duration) -> Result<(bool, String, String), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut c = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let (mut so, mut se) = (c.stdout.take(), c.stderr.take());
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = so.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = se.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = c.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    match status {
        None => Err(format!(
            "{} did not finish in {} s: {}",
            prog_name(cmd),
            limit.as_secs(),
            tail(&format!("{out}{err}"))
        )),
        Some(st) => Ok((st.success(), out, err)),
    }
}

/// Like [`run_for`], but a failure is an error carrying the output's tail.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let name = prog_name(cmd);
    let (ok, out, err) = run_for(cmd, limit)?;
    if ok {
        Ok(out)
    } else {
        Err(format!("{name} failed: {}", tail(&format!("{out}{err}"))))
    }
}

fn prog_name(cmd: &Command) -> String {
    let mut v = vec![cmd.get_program().to_string_lossy().into_owned()];
    v.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    // Skip wrappers so the message names the program that ran.
    let skip = ["ip", "netns", "exec", "run", "--", "-c"];
    let name = v
        .iter()
        .find(|a| {
            !skip.contains(&a.as_str())
                && !a.starts_with("rkt-")
                && !a.ends_with("rktio")
                && !a.ends_with(".toml")
        })
        .cloned()
        .unwrap_or_default();
    Path::new(&name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or(name)
}

/// The last few lines of some output, on one line (without our stats report,
/// which ours print last: the program's own error comes before it).
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("rktio stats:"))
        .collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join(" / ")
}

/// A server in the background, killed (by PID) when dropped.
#[derive(Debug)]
pub struct Bg {
    child: Child,
    /// Its output so far.
    pub out: Collected,
}

impl Bg {
    /// Starts `cmd` with its output collected.
    pub fn start(cmd: &mut Command) -> Result<Bg, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
        let out = Collected::attach(&mut child);
        Ok(Bg { child, out })
    }

    /// Fails with the server's output if it has exited.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!("server exited ({st}): {}", tail(&self.out.text()))),
            _ => Ok(()),
        }
    }
}

impl Bg {
    /// Asks the server to exit (SIGTERM), waits up to 10 s, and gives its output
    /// (for ours, with the stats report it prints at exit).
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Let the readers take the last bytes.
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.out.text()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a program's files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A directory on the host's ext4.
    Native,
    /// A gocryptfs (FUSE) mount over a directory on the same disk.
    Gocryptfs,
    /// A sealed image, `file` backend (pread/pwrite: a host call per I/O).
    SealedFile,
    /// A sealed image, `uring` backend (SQPOLL io_uring, O_DIRECT).
    SealedUring,
    /// The kernel's own authenticated encryption: ext4 on dm-crypt (aes-xts)
    /// over dm-integrity (journal mode, hmac-sha256), LUKS2 on a loop device.
    DmIntegrity,
}

impl Storage {
    /// The mode's name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Native => NATIVE,
            Storage::Gocryptfs => "gocryptfs",
            Storage::SealedFile => OURS_HOST,
            Storage::SealedUring => OURS_DIRECT,
            Storage::DmIntegrity => DM_INTEGRITY,
        }
    }
}

/// A prepared place for a program's files (and, for ours, its config).
#[derive(Debug)]
pub struct Store {
    /// This mode's scratch directory (images, configs, keys).
    pub dir: PathBuf,
    /// The directory the program sees its files in.
    pub data: PathBuf,
    cfg: Option<PathBuf>,
    /// dm-crypt: the mapping and loop device to take down.
    dm: Option<(String, String)>,
    mnt: Option<PathBuf>,
}

/// Settings for a store.
#[derive(Debug, Default, Clone)]
pub struct StoreOpts {
    /// Sealed image size in MiB.
    pub image_mib: u64,
    /// Files to start with (copied in; sealed with `disk create --from`).
    pub seed: Option<PathBuf>,
    /// Page cache of our file system in MiB.
    pub cache_mib: u64,
    /// More rktio.toml text (a [net] section, [host] paths).
    pub extra_toml: String,
    /// Ours: the network in plaintext instead of WireGuard (no wireguard-go peer).
    pub plaintext: bool,
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to),
        Duration::from_secs(120),
    )
    .map(|_| ())
}

impl Store {
    /// Prepares storage of `kind` under `work` (a fresh subdirectory).
    pub fn new(kind: Storage, work: &Path, o: &StoreOpts) -> Result<Store, String> {
        let slug: String = kind
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = work.join(slug);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let t = Duration::from_secs(600);
        match kind {
            Storage::Native => {
                let data = dir.join("data");
                std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
                if let Some(s) = &o.seed {
                    copy_dir(s, &data)?;
                }
                Ok(Store {
                    dir,
                    data,
                    cfg: None,
                    mnt: None,
                    dm: None,
                })
            }
            Storage::Gocryptfs => {
                let (cipher, mnt) = (dir.join("cipher"), dir.join("data"));
                for d in [&cipher, &mnt] {
                    std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
                }
                let pw = dir.join("pw");
                std::fs::write(&pw, "rktio-bench-passphrase\n").map_err(|e| e.to_string())?;
                run_ok(
                    Command::new("gocryptfs")
                        .args(["-init", "-q", "-scryptn", "10", "-passfile"])
                        .arg(&pw)
                        .arg(&cipher),
                    t,
                )?;
                run_ok(
                    Command::new("gocryptfs")
                        .args(["-q", "-passfile"])
                        .arg(&pw)
                        .arg(&cipher)
                        .arg(&mnt),
                    t,
                )?;
                let s = Store {
                    dir,
                    data: mnt.clone(),
                    cfg: None,
                    mnt: Some(mnt),
                    dm: None,
                };
                if let Some(seed) = &o.seed {
                    copy_dir(seed, &s.data)?;
                }
                Ok(s)
            }
            Storage::DmIntegrity => dm_integrity(dir, o),
            Storage::SealedFile | Storage::SealedUring => {
                let rk = rktio_bin();
                run_ok(
                    Command::new(&rk)
                        .args(["disk", "keygen"])
                        .arg(dir.join("k")),
                    t,
                )?;
                let mut c = Command::new(&rk);
                c.args(["disk", "create"])
                    .arg(dir.join("d.img"))
                    // Host blocks allocated up front, as for the native file fio lays out:
                    // O_DIRECT writes into a sparse file's holes are several times
                    // slower on the host's ext4.
                    .args([
                        "--size",
                        &format!("{}M", o.image_mib.max(64)),
                        "--preallocate",
                    ])
                    .arg("--key-file")
                    .arg(dir.join("k"));
                if let Some(s) = &o.seed {
                    c.arg("--from").arg(s);
                }
                run_ok(&mut c, t)?;
                let backend = if kind == Storage::SealedFile {
                    "file"
                } else {
                    "uring"
                };
                let cfg = dir.join("rktio.toml");
                std::fs::write(
                    &cfg,
                    format!(
                        "[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_file = \"k\"\n\
                         backend = \"{backend}\"\ncache_mib = {}\n{}",
                        o.cache_mib.max(64),
                        o.extra_toml
                    ),
                )
                .map_err(|e| e.to_string())?;
                Ok(Store {
                    dir,
                    data: PathBuf::from("/data"),
                    cfg: Some(cfg),
                    mnt: None,
                    dm: None,
                })
            }
        }
    }

    /// A command running `prog` on this storage, inside `netns` if given (for
    /// ours: `rktio run` with the store's config).
    pub fn cmd(&self, netns: Option<&str>, prog: &str) -> Command {
        let mut v: Vec<String> = Vec::new();
        if let Some(ns) = netns {
            v.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        if let Some(cfg) = &self.cfg {
            v.push(rktio_bin().display().to_string());
            v.extend([
                "run".into(),
                "-c".into(),
                cfg.display().to_string(),
                "--".into(),
            ]);
        }
        v.push(prog.into());
        let mut c = Command::new(&v[0]);
        c.args(&v[1..]);
        c
    }

    /// A path the program sees, under its data directory.
    pub fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            return self.data.display().to_string();
        }
        self.data.join(rel).display().to_string()
    }
}

/// ext4 on LUKS2 with dm-integrity (hmac-sha256, journal mode) under dm-crypt
/// (aes-xts-plain64, 512-bit key), on a loop device over a file in `dir`.
fn dm_integrity(dir: PathBuf, o: &StoreOpts) -> Result<Store, String> {
    let devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    if !devices.lines().any(|l| l.ends_with(" device-mapper")) {
        return Err(
            "unavailable: this kernel has no device-mapper (CONFIG_BLK_DEV_DM; /proc/devices lists none), so dm-crypt and dm-integrity cannot run here"
                .into(),
        );
    }
    for t in ["cryptsetup", "losetup", "mkfs.ext4"] {
        if Command::new(t).arg("--version").output().is_err() {
            return Err(format!(
                "needs {t}: apt-get install --no-install-recommends cryptsetup-bin mount e2fsprogs"
            ));
        }
    }
    let t = Duration::from_secs(900);
    let img = dir.join("dm.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(o.image_mib.max(64) << 20))
        .map_err(|e| format!("{}: {e}", img.display()))?;
    let key = dir.join("k");
    let mut k = [0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .and_then(|()| std::fs::write(&key, k))
        .map_err(|e| e.to_string())?;
    let lo = run_ok(
        Command::new("losetup").args(["--find", "--show"]).arg(&img),
        t,
    )?
    .trim()
    .to_string();
    let name = format!("rktio-bench-{}", std::process::id());
    let data = dir.join("data");
    // From here the Store takes the mapping down when dropped.
    let s = Store {
        dir,
        data: data.clone(),
        cfg: None,
        mnt: None,
        dm: Some((name.clone(), lo.clone())),
    };
    run_ok(
        Command::new("cryptsetup")
            .args(["luksFormat", "--type", "luks2", "--batch-mode"])
            .args(["--cipher", "aes-xts-plain64", "--key-size", "512"])
            .args(["--integrity", "hmac-sha256"])
            .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
            .arg("--key-file")
            .arg(&key)
            .arg(&lo),
        t,
    )?;
    run_ok(
        Command::new("cryptsetup")
            .args(["open", "--key-file"])
            .arg(&key)
            .args([&lo, &name]),
        t,
    )?;
    let dev = format!("/dev/mapper/{name}");
    run_ok(Command::new("mkfs.ext4").args(["-q", &dev]), t)?;
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    run_ok(Command::new("mount").arg(&dev).arg(&data), t)?;
    if let Some(seed) = &o.seed {
        copy_dir(seed, &data)?;
    }
    Ok(s)
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(m) = &self.mnt {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
        if let Some((name, lo)) = &self.dm {
            let _ = Command::new("umount")
                .arg(&self.data)
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("cryptsetup")
                .args(["close", name])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("losetup")
                .args(["-d", lo])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the server side of a network workload reaches the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Kernel TCP/IP over the veth, plaintext.
    Native,
    /// Kernel TCP/IP through a wireguard-go tunnel (wireguard-go on both ends).
    WireguardGo,
    /// Our stack on a TAP device, WireGuard on (a host call per frame batch),
    /// files on the `file` backend.
    OursTap,
    /// Our stack on AF_XDP on the veth, WireGuard on, files on `uring`.
    OursXdp,
    /// The same in plaintext (no tunnel): the stack's own cost, apart from
    /// the crypto's, against the kernel's plaintext TCP/IP.
    OursXdpPlain,
}

impl NetMode {
    /// The mode's name in the results.
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Native => NATIVE,
            NetMode::WireguardGo => "wireguard-go",
            NetMode::OursTap => OURS_HOST,
            NetMode::OursXdp => OURS_DIRECT,
            NetMode::OursXdpPlain => OURS_PLAIN,
        }
    }

    /// The storage that goes with it.
    pub fn storage(self) -> Storage {
        match self {
            NetMode::Native | NetMode::WireguardGo => Storage::Native,
            NetMode::OursTap => Storage::SealedFile,
            NetMode::OursXdp | NetMode::OursXdpPlain => Storage::SealedUring,
        }
    }

    /// All five, in table order.
    pub fn all() -> [NetMode; 5] {
        [
            NetMode::Native,
            NetMode::WireguardGo,
            NetMode::OursTap,
            NetMode::OursXdp,
            NetMode::OursXdpPlain,
        ]
    }

    /// Is the traffic in a tunnel (WireGuard, smaller MTU)?
    pub fn tunnel(self) -> bool {
        matches!(
            self,
            NetMode::WireguardGo | NetMode::OursTap | NetMode::OursXdp
        )
    }
}

/// A peer namespace with the client, the link, WireGuard where the mode has it,
/// and the server's storage. Fields drop in order: servers go first (the caller
/// holds them), then the store, then the namespaces.
#[derive(Debug)]
pub struct Bed {
    /// The server's storage (its rktio.toml carries the [net] section).
    pub store: Store,
    /// The namespace the server process runs in (`None`: the root namespace).
    pub server_ns: Option<String>,
    /// The address clients in the peer namespace use.
    pub addr: &'static str,
    /// The address of the peer (the client side), as the server sees it.
    pub peer_addr: &'static str,
    /// The peer namespace and everything started in it.
    pub peer: Peer,
    tap: Option<String>,
}

impl Bed {
    /// Builds the test bed for `mode` under `work`.
    pub fn new(mode: NetMode, work: &Path, o: &StoreOpts) -> Result<Bed, String> {
        let mut peer = Peer::new();
        let (k_ours, k_peer) = (
            Key::generate().map_err(|e| e.to_string())?,
            Key::generate().map_err(|e| e.to_string())?,
        );
        let mut o = o.clone();
        o.plaintext |= mode == NetMode::OursXdpPlain;
        let t = Duration::from_secs(30);
        let ns_exec = |ns: &str, script: &str| {
            run_ok(
                Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]),
                t,
            )
        };
        let (server_ns, addr, peer_addr, tap) = match mode {
            NetMode::Native | NetMode::WireguardGo => {
                let (ns, dev) = peer.veth_link("10.201.0.1/24");
                ns_exec(
                    &ns,
                    &format!("ip link set lo up && ip addr add 10.201.0.2/24 dev {dev}"),
                )?;
                if mode == NetMode::Native {
                    (Some(ns), "10.201.0.2", "10.201.0.1", None)
                } else {
                    let (pns, pwg) = (peer.ns.clone(), peer.wg.clone());
                    let (a, b) = (k_ours.to_base64(), k_peer.to_base64());
                    let (pa, pb) = (k_ours.public().to_base64(), k_peer.public().to_base64());
                    peer.wireguard_in(
                        &pns,
                        &pwg,
                        &WgPeer {
                            key_b64: &b,
                            listen_port: 51820,
                            address: "10.202.0.1/24",
                            peer_public_b64: &pa,
                            allowed_ips: "10.202.0.2/32",
                            endpoint: Some("10.201.0.2:51821"),
                        },
                    );
                    peer.wireguard_in(
                        &ns,
                        &format!("{pwg}s"),
                        &WgPeer {
                            key_b64: &a,
                            listen_port: 51821,
                            address: "10.202.0.2/24",
                            peer_public_b64: &pb,
                            allowed_ips: "10.202.0.1/32",
                            endpoint: Some("10.201.0.1:51820"),
                        },
                    );
                    (Some(ns), "10.202.0.2", "10.202.0.1", None)
                }
            }
            NetMode::OursXdp | NetMode::OursXdpPlain | NetMode::OursTap => {
                let (iface, netns_line, server_ns, tap) = if mode != NetMode::OursTap {
                    let (ns, dev) = peer.veth_link("10.201.0.1/24");
                    (dev, format!("netns = \"{ns}\"\n"), None, None)
                } else {
                    // A persistent TAP in the peer namespace, addressed before we
                    // attach, so nothing races the server's start; the server
                    // process runs in that namespace and opens it there.
                    let tap = peer.tap.clone();
                    ns_exec(
                        &peer.ns,
                        &format!(
                            "ip link set lo up && ip tuntap add dev {tap} mode tap && \
                             ip addr add 10.201.0.1/24 dev {tap} && ip link set {tap} up"
                        ),
                    )?;
                    (tap.clone(), String::new(), Some(peer.ns.clone()), Some(tap))
                };
                let security = if o.plaintext {
                    "plaintext = true".to_string()
                } else {
                    "wireguard = \"wg.conf\"".to_string()
                };
                o.extra_toml = format!(
                    "[net]\nbackend = \"{}\"\ninterface = \"{iface}\"\n{netns_line}\
                     address = [\"10.201.0.2/24\"]\n{security}\n{}",
                    if mode != NetMode::OursTap {
                        "xdp"
                    } else {
                        "tap"
                    },
                    o.extra_toml
                );
                if o.plaintext {
                    (server_ns, "10.201.0.2", "10.201.0.1", tap)
                } else {
                    peer.wireguard(
                        &k_peer.to_base64(),
                        &k_ours.public().to_base64(),
                        "10.201.0.2:51821",
                    );
                    (server_ns, "10.202.0.2", "10.202.0.1", tap)
                }
            }
        };
        let store = Store::new(mode.storage(), work, &o)?;
        if matches!(
            mode,
            NetMode::OursTap | NetMode::OursXdp | NetMode::OursXdpPlain
        ) {
            std::fs::write(
                store.dir.join("wg.conf"),
                our_wg_conf(&k_ours.to_base64(), &k_peer.public().to_base64(), false),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(Bed {
            store,
            server_ns,
            addr,
            peer_addr,
            peer,
            tap,
        })
    }

    /// The server-side command for `prog` (in its namespace, on its storage).
    pub fn server(&self, prog: &str) -> Command {
        self.store.cmd(self.server_ns.as_deref(), prog)
    }

    /// A command in the peer (client) namespace.
    pub fn client(&self, prog: &str) -> Command {
        self.peer.cmd(prog)
    }

    /// Starts a server with `cmd` and waits until it accepts TCP on every port.
    pub fn serve(&self, cmd: &mut Command, ports: &[u16]) -> Result<Bg, String> {
        let mut srv = Bg::start(cmd)?;
        for &p in ports {
            self.wait_tcp(&mut srv, p)?;
        }
        Ok(srv)
    }

    /// iperf3 -s on port 5201. It keeps a MAP_SHARED buffer file in TMPDIR: on
    /// our mount for ours.
    pub fn iperf3_server(&self, stats: bool) -> Result<Bg, String> {
        let mut c = self.server("iperf3");
        c.args(["-s", "-p", "5201"])
            .env("TMPDIR", self.store.path(""));
        if stats {
            c.env("RKTIO_STATS", "1");
        }
        self.serve(&mut c, &[5201])
    }

    /// Waits until something accepts TCP at our address and `port`, from the peer.
    pub fn wait_tcp(&self, srv: &mut Bg, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            srv.alive()?;
            let ok = self
                .client("python3")
                .args([
                    "-c",
                    &format!(
                        "import socket; socket.create_connection(('{}', {port}), timeout=1).close()",
                        self.addr
                    ),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}:{port} never accepted; server: {}",
                    self.addr,
                    tail(&srv.out.text())
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(t) = &self.tap {
            let _ = Command::new("ip")
                .args(["netns", "exec", &self.peer.ns, "ip", "link", "del", t])
                .stderr(Stdio::null())
                .status();
        }
    }
}
