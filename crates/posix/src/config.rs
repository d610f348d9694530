//! `rktio.toml`: what a program run on the stack gets (sealed mounts, the network,
//! the host path policy, polling knobs). Unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Sealed mounts (`[[mount]]`).
    #[serde(default)]
    pub mount: Vec<MountConfig>,
    /// The network (`[net]`); none means the program's internet sockets are refused.
    pub net: Option<NetConfig>,
    /// What the program may reach on the host outside the mounts (`[host]`).
    #[serde(default)]
    pub host: HostConfig,
    /// Polling knobs (`[poll]`).
    #[serde(default)]
    pub poll: PollKnobs,
    /// Print statistics at exit (also `RKTIO_STATS=1`).
    #[serde(default)]
    pub stats: bool,
}

/// Block backend of a mount.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// io_uring with SQPOLL: no system call per I/O.
    #[default]
    Uring,
    /// pread/pwrite: one system call per I/O (the baseline).
    File,
}

/// One sealed mount.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Where the program sees it (an absolute path, e.g. `/data`).
    pub path: String,
    /// The sealed image (relative paths are relative to the config file).
    pub image: PathBuf,
    /// Key file (32 raw bytes or 64 hex digits).
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the key (64 hex digits).
    pub key_env: Option<String>,
    /// Environment variable holding a passphrase.
    pub passphrase_env: Option<String>,
    /// Block backend.
    #[serde(default)]
    pub backend: BackendName,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Page cache size in MiB (default 64).
    pub cache_mib: Option<usize>,
    /// Refuse the image if its epoch is lower (a rollback).
    pub expect_epoch: Option<u64>,
}

/// NIC backend of the network.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NicName {
    /// AF_XDP on an existing interface.
    Xdp,
    /// A TAP device.
    Tap,
}

/// The network.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// `xdp` or `tap`.
    pub backend: NicName,
    /// The interface (xdp: an existing one; tap: the device name).
    pub interface: String,
    /// xdp: the network namespace the interface is in.
    pub netns: Option<String>,
    /// Our addresses on the wire (CIDR).
    pub address: Vec<String>,
    /// Default gateways.
    #[serde(default)]
    pub gateway: Vec<String>,
    /// A wg-quick style WireGuard file (the default: everything goes through it).
    pub wireguard: Option<PathBuf>,
    /// Send in plaintext instead (must be said explicitly).
    #[serde(default)]
    pub plaintext: bool,
    /// Frames per NIC batch (default 64; 1 switches batching off).
    pub batch: Option<usize>,
    /// xdp: ask the driver for zero-copy first (default true; false: copy mode).
    #[serde(default = "yes")]
    pub zero_copy: bool,
    /// xdp: send through AF_PACKET with offloads (TCP super-segments and
    /// checksums the kernel finishes; default true; false: AF_XDP's tx ring).
    #[serde(default = "yes")]
    pub offload: bool,
    /// Check the checksums of packets out of the WireGuard tunnel too (default
    /// false: WireGuard's AEAD already authenticated them).
    #[serde(default)]
    pub verify_tunnel_checksums: bool,
}

/// The host path policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Host paths the program may open read-only, besides the defaults.
    #[serde(default)]
    pub read: Vec<String>,
    /// Host paths the program may write (create, change, remove).
    #[serde(default)]
    pub write: Vec<String>,
    /// Start from the default read-only system paths (true unless said otherwise).
    #[serde(default = "yes")]
    pub defaults: bool,
}

fn yes() -> bool {
    true
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            read: Vec::new(),
            write: Vec::new(),
            defaults: true,
        }
    }
}

/// Polling knobs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PollKnobs {
    /// Microseconds a poller spins before it parks.
    #[serde(default = "spin_default")]
    pub spin_us: u64,
}

fn spin_default() -> u64 {
    50
}

impl Default for PollKnobs {
    fn default() -> Self {
        Self {
            spin_us: spin_default(),
        }
    }
}

/// Read-only system paths every program may open by default (libraries, locale,
/// time zones, /proc): nothing in them is the program's data.
pub const DEFAULT_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/lib",
    "/var/cache",
];

/// Host paths every program may write by default: the null and terminal devices.
pub const DEFAULT_WRITE: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/pts",
    "/proc/self/fd",
];

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses a configuration; relative paths in it are made relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut c: Config =
            toml::from_str(text).map_err(|e| ConfigError(format!("rktio.toml: {e}")))?;
        for m in &mut c.mount {
            if m.image.is_relative() {
                m.image = base.join(&m.image);
            }
            if let Some(k) = &mut m.key_file
                && k.is_relative()
            {
                *k = base.join(&*k);
            }
        }
        if let Some(n) = &mut c.net
            && let Some(w) = &mut n.wireguard
            && w.is_relative()
        {
            *w = base.join(&*w);
        }
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen: Vec<&str> = Vec::new();
        for m in &self.mount {
            if !m.path.starts_with('/') || m.path.len() < 2 {
                return Err(ConfigError(format!(
                    "mount path {:?}: must be an absolute path other than /",
                    m.path
                )));
            }
            let keys = [
                m.key_file.is_some(),
                m.key_env.is_some(),
                m.passphrase_env.is_some(),
            ];
            if keys.iter().filter(|k| **k).count() > 1 {
                return Err(ConfigError(format!(
                    "mount {}: give one of key_file, key_env, passphrase_env",
                    m.path
                )));
            }
            let p = m.path.trim_end_matches('/');
            if seen.contains(&p) {
                return Err(ConfigError(format!("mount {p}: mounted twice")));
            }
            seen.push(p);
        }
        if let Some(n) = &self.net {
            if n.wireguard.is_none() && !n.plaintext {
                return Err(ConfigError(
                    "[net]: give `wireguard = \"FILE\"` (a wg-quick file), or `plaintext = true` to send in the clear"
                        .into(),
                ));
            }
            if n.wireguard.is_some() && n.plaintext {
                return Err(ConfigError(
                    "[net]: `wireguard` and `plaintext = true` contradict each other".into(),
                ));
            }
            if n.address.is_empty() {
                return Err(ConfigError(
                    "[net]: `address` needs at least one CIDR".into(),
                ));
            }
            if n.netns.is_some() && n.backend != NicName::Xdp {
                return Err(ConfigError("[net]: `netns` is for the xdp backend".into()));
            }
            if n.batch.is_some_and(|b| !(1..=1024).contains(&b)) {
                return Err(ConfigError(
                    "[net]: `batch` must be 1 to 1024 frames".into(),
                ));
            }
        }
        for p in self.host.read.iter().chain(&self.host.write) {
            if !p.starts_with('/') {
                return Err(ConfigError(format!(
                    "[host]: {p:?} must be an absolute path"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            r#"
stats = true
[[mount]]
path = "/data"
image = "d.img"
key_file = "d.key"
backend = "file"
[net]
backend = "tap"
interface = "rk0"
address = ["10.0.0.2/24"]
wireguard = "wg0.conf"
[host]
write = ["/tmp"]
[poll]
spin_us = 10
"#,
            Path::new("/etc/x"),
        )
        .unwrap();
        assert_eq!(c.mount[0].image, Path::new("/etc/x/d.img"));
        assert_eq!(c.mount[0].backend, BackendName::File);
        assert_eq!(
            c.net.unwrap().wireguard.unwrap(),
            Path::new("/etc/x/wg0.conf")
        );
        assert!(c.host.defaults);
        assert_eq!(c.poll.spin_us, 10);
    }

    #[test]
    fn unknown_keys_and_contradictions_are_refused() {
        let e = Config::parse(
            "[[mount]]\npath=\"/d\"\nimage=\"i\"\nkey_fil=\"k\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.0.contains("unknown field `key_fil`"), "{e}");
        let e = Config::parse("[nett]\n", Path::new(".")).unwrap_err();
        assert!(e.0.contains("unknown field `nett`"), "{e}");
        let e = Config::parse(
            "[net]\nbackend=\"tap\"\ninterface=\"t\"\naddress=[\"10.0.0.1/24\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.0.contains("plaintext = true"), "{e}");
        let e =
            Config::parse("[[mount]]\npath=\"data\"\nimage=\"i\"\n", Path::new(".")).unwrap_err();
        assert!(e.0.contains("absolute"), "{e}");
    }

    #[test]
    fn tuning_knobs() {
        let net =
            "[net]\nbackend=\"xdp\"\ninterface=\"e\"\naddress=[\"10.0.0.1/24\"]\nplaintext=true\n";
        let c = Config::parse(net, Path::new(".")).unwrap().net.unwrap();
        assert_eq!(c.batch, None);
        assert!(
            c.zero_copy && c.offload && !c.verify_tunnel_checksums,
            "fast settings by default"
        );
        let c = Config::parse(
            &format!(
                "{net}batch=1\nzero_copy=false\noffload=false\nverify_tunnel_checksums=true\n"
            ),
            Path::new("."),
        )
        .unwrap()
        .net
        .unwrap();
        assert_eq!(c.batch, Some(1));
        assert!(!c.zero_copy && !c.offload && c.verify_tunnel_checksums);
        for bad in ["batch=0\n", "batch=1025\n"] {
            let e = Config::parse(&format!("{net}{bad}"), Path::new(".")).unwrap_err();
            assert!(e.0.contains("`batch` must be 1 to 1024"), "{e}");
        }
    }
}
