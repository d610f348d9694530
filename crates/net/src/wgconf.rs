//! WireGuard configuration in the format `wg-quick` reads, and key helpers
//! compatible with `wg genkey` / `wg pubkey`.
//!
//! Unknown sections and keys are errors (with the line number), not silently
//! ignored: a typo in a security configuration must not pass.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A 32-byte key (private, public or preshared).
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Parses the base64 form (44 characters).
    pub fn from_base64(s: &str) -> Result<Key, String> {
        let v = B64
            .decode(s.trim())
            .map_err(|e| format!("not a base64 WireGuard key: {e}"))?;
        let a: [u8; 32] = v
            .try_into()
            .map_err(|v: Vec<u8>| format!("a WireGuard key is 32 bytes, this is {}", v.len()))?;
        Ok(Key(a))
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// A new random private key (as `wg genkey`).
    pub fn generate() -> Result<Key, String> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).map_err(|_| "system randomness failed".to_string())?;
        // Clamp as wg does, so the stored key is the canonical X25519 scalar.
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        Ok(Key(k))
    }

    /// The public key of this private key (as `wg pubkey`).
    pub fn public(&self) -> Key {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        Key(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

/// An address with its prefix length (`10.0.0.1/24`, `fd00::1/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this prefix (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Parses `ADDR/PREFIX` (or a bare address: a host prefix).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// `[Interface]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// PrivateKey.
    pub private_key: Key,
    /// Address (any number, comma-separated or repeated).
    pub addresses: Vec<Cidr>,
    /// ListenPort.
    pub listen_port: Option<u16>,
    /// MTU.
    pub mtu: Option<u16>,
}

/// `[Peer]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// PublicKey.
    pub public_key: Key,
    /// PresharedKey.
    pub preshared_key: Option<Key>,
    /// Endpoint (resolved).
    pub endpoint: Option<SocketAddr>,
    /// AllowedIPs.
    pub allowed_ips: Vec<Cidr>,
    /// PersistentKeepalive, seconds (0 or absent: off).
    pub persistent_keepalive: Option<u16>,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgConfig {
    /// The interface.
    pub interface: Interface,
    /// Its peers.
    pub peers: Vec<Peer>,
}

/// wg-quick keys that only matter to wg-quick's shell scripts: accepted and
/// ignored (they configure the host, which we are not).
const WG_QUICK_ONLY: &[&str] = &[
    "dns",
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
    "fwmark",
];

#[derive(Default)]
struct PeerDraft {
    public_key: Option<Key>,
    preshared_key: Option<Key>,
    endpoint: Option<SocketAddr>,
    allowed_ips: Vec<Cidr>,
    persistent_keepalive: Option<u16>,
    line: usize,
}

impl WgConfig {
    /// Parses the text of a wg-quick configuration file.
    pub fn parse(text: &str) -> Result<WgConfig, String> {
        enum Section {
            None,
            Interface,
            Peer,
        }
        let mut section = Section::None;
        let mut private_key = None;
        let mut addresses = Vec::new();
        let mut listen_port = None;
        let mut mtu = None;
        let mut seen_interface = false;
        let mut peers: Vec<PeerDraft> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = match line.to_ascii_lowercase().as_str() {
                    "[interface]" => {
                        if seen_interface {
                            return Err(format!("line {n}: a second [Interface]"));
                        }
                        seen_interface = true;
                        Section::Interface
                    }
                    "[peer]" => {
                        peers.push(PeerDraft {
                            line: n,
                            ..Default::default()
                        });
                        Section::Peer
                    }
                    _ => return Err(format!("line {n}: unknown section {line}")),
                };
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {n}: expected 'Key = Value', got '{line}'"))?;
            let key = k.trim().to_ascii_lowercase();
            let v = v.trim();
            let err = |e: String| format!("line {n}: {}: {e}", k.trim());
            let list = |v: &str| -> Result<Vec<Cidr>, String> {
                v.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(Cidr::parse)
                    .collect()
            };
            match section {
                Section::None => {
                    return Err(format!("line {n}: '{}' outside of a section", k.trim()));
                }
                Section::Interface => match key.as_str() {
                    "privatekey" => private_key = Some(Key::from_base64(v).map_err(err)?),
                    "address" => addresses.extend(list(v).map_err(err)?),
                    "listenport" => {
                        listen_port = Some(v.parse().map_err(|_| err("not a port".into()))?)
                    }
                    "mtu" => mtu = Some(v.parse().map_err(|_| err("not an MTU".into()))?),
                    k2 if WG_QUICK_ONLY.contains(&k2) => {
                        tracing::info!(
                            "line {n}: {} is for wg-quick's host setup; ignored",
                            k.trim()
                        );
                    }
                    _ => return Err(format!("line {n}: unknown [Interface] key '{}'", k.trim())),
                },
                Section::Peer => {
                    let p = peers
                        .last_mut()
                        .ok_or_else(|| format!("line {n}: no [Peer]"))?;
                    match key.as_str() {
                        "publickey" => p.public_key = Some(Key::from_base64(v).map_err(err)?),
                        "presharedkey" => p.preshared_key = Some(Key::from_base64(v).map_err(err)?),
                        "endpoint" => {
                            let addr = v
                                .to_socket_addrs()
                                .map_err(|e| err(format!("'{v}': {e}")))?
                                .next()
                                .ok_or_else(|| err(format!("'{v}' resolves to nothing")))?;
                            p.endpoint = Some(addr);
                        }
                        "allowedips" => p.allowed_ips.extend(list(v).map_err(err)?),
                        "persistentkeepalive" => {
                            let s: u16 = if v.eq_ignore_ascii_case("off") {
                                0
                            } else {
                                v.parse()
                                    .map_err(|_| err("not a number of seconds".into()))?
                            };
                            p.persistent_keepalive = (s > 0).then_some(s);
                        }
                        _ => return Err(format!("line {n}: unknown [Peer] key '{}'", k.trim())),
                    }
                }
            }
        }
        if !seen_interface {
            return Err("no [Interface] section".into());
        }
        let private_key = private_key.ok_or("[Interface] has no PrivateKey")?;
        let peers = peers
            .into_iter()
            .map(|p| {
                Ok(Peer {
                    public_key: p
                        .public_key
                        .ok_or_else(|| format!("[Peer] at line {} has no PublicKey", p.line))?,
                    preshared_key: p.preshared_key,
                    endpoint: p.endpoint,
                    allowed_ips: p.allowed_ips,
                    persistent_keepalive: p.persistent_keepalive,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(WgConfig {
            interface: Interface {
                private_key,
                addresses,
                listen_port,
                mtu,
            },
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_public_key() {
        // RFC 7748 section 6.1, Alice.
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let private = Key(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            private.public().0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let k = Key::generate().unwrap();
        assert_eq!(Key::from_base64(&k.to_base64()).unwrap(), k);
        assert_eq!(k.to_base64().len(), 44);
    }

    #[test]
    fn parses_wg_quick_files_and_rejects_mistakes() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap().public();
        let text = format!(
            "# a comment\n[Interface]\nPrivateKey = {}\nAddress = 10.9.0.1/24, fd00:9::1/64\nListenPort = 51820\nDNS = 1.1.1.1\n\n[Peer]\nPublicKey = {}\nEndpoint = 127.0.0.1:51821\nAllowedIPs = 10.9.0.2/32,fd00:9::2/128\nPersistentKeepalive = 25 # seconds\n",
            a.to_base64(),
            b.to_base64()
        );
        let c = WgConfig::parse(&text).unwrap();
        assert_eq!(c.interface.private_key, a);
        assert_eq!(c.interface.addresses.len(), 2);
        assert_eq!(c.interface.addresses[1].prefix, 64);
        assert_eq!(c.interface.listen_port, Some(51820));
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].public_key, b);
        assert_eq!(c.peers[0].endpoint.unwrap().port(), 51821);
        assert_eq!(c.peers[0].allowed_ips.len(), 2);
        assert_eq!(c.peers[0].persistent_keepalive, Some(25));

        for (bad, why) in [
            (
                text.replace("ListenPort", "ListenPrt"),
                "unknown [Interface] key",
            ),
            (text.replace("[Peer]", "[Peers]"), "unknown section"),
            (text.replace("/24", "/33"), "prefix length"),
            (text.replace(&a.to_base64(), "abc"), "base64"),
            (text.replace("PublicKey", "#"), "no PublicKey"),
            (text.replace("PrivateKey", "#"), "no PrivateKey"),
            ("Address = 1.2.3.4\n".to_string(), "outside of a section"),
            (
                text.replace("Endpoint = 127.0.0.1:51821", "Endpoint = nonsense"),
                "Endpoint",
            ),
        ] {
            let e = WgConfig::parse(&bad).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"[]=#,/:. \nabcdefPrivateKeyAddressPeerInterface0123456789+";
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let _ = WgConfig::parse(&s);
        }
    }
}
