//! Keys: where the master key comes from, how it unlocks the data key, and the
//! per-purpose subkeys derived from that.
//!
//! master key (key file | environment | passphrase via Argon2id)
//!   -> HKDF-SHA256(salt) -> key-encryption key (KEK)
//!   -> AES-256-GCM unwraps the random 256-bit data key (DEK) stored in the superblock
//!   -> HKDF-SHA256 -> block key (AES-256-GCM) and superblock MAC key (HMAC-SHA256)
//!
//! Changing the key re-wraps the DEK; the data is not re-encrypted. Every secret
//! lives in a zeroize-on-drop buffer.

use crate::SealError;
use crate::format::{Header, Kdf};
use aws_lc_rs::{aead, hkdf, hmac, rand};
use rktio_sys::HostFile;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where the master key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A file holding 32 raw bytes or 64 hex digits.
    File(PathBuf),
    /// An environment variable holding 64 hex digits.
    Env(String),
    /// A passphrase (stretched with Argon2id).
    Passphrase(Zeroizing<String>),
    /// The key itself.
    Bytes(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Env(v) => write!(f, "environment variable {v}"),
            KeySource::Passphrase(_) => write!(f, "passphrase"),
            KeySource::Bytes(_) => write!(f, "key bytes"),
        }
    }
}

/// Argon2id costs for a new passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// 64 MiB, 3 passes, 1 lane (OWASP's second recommended setting).
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// A loaded master secret.
pub(crate) enum Master {
    Key(Zeroizing<[u8; 32]>),
    Passphrase(Zeroizing<Vec<u8>>),
}

impl KeySource {
    pub(crate) fn load(&self) -> Result<Master, SealError> {
        match self {
            KeySource::Bytes(k) => Ok(Master::Key(k.clone())),
            KeySource::Passphrase(p) => {
                if p.is_empty() {
                    return Err(SealError::Key("the passphrase is empty".into()));
                }
                Ok(Master::Passphrase(Zeroizing::new(p.as_bytes().to_vec())))
            }
            KeySource::File(path) => {
                let raw = Zeroizing::new(
                    HostFile::read_small(path, 4096)
                        .map_err(|e| SealError::Key(format!("cannot read key file: {e}")))?,
                );
                parse_key(&raw).map(Master::Key).ok_or_else(|| {
                    SealError::Key(format!(
                        "key file {} must hold 32 raw bytes or 64 hex digits (make one with `rktio disk keygen`)",
                        path.display()
                    ))
                })
            }
            KeySource::Env(var) => {
                let v = Zeroizing::new(std::env::var(var).map_err(|_| {
                    SealError::Key(format!("environment variable {var} is not set"))
                })?);
                parse_key(v.as_bytes())
                    .map(Master::Key)
                    .ok_or_else(|| SealError::Key(format!("{var} must hold 64 hex digits")))
            }
        }
    }
}

/// 32 raw bytes, or 64 hex digits with optional surrounding whitespace.
fn parse_key(raw: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let mut k = Zeroizing::new([0u8; 32]);
    if raw.len() == 32 {
        k.copy_from_slice(raw);
        return Some(k);
    }
    let s = std::str::from_utf8(raw).ok()?.trim();
    crate::hex::decode_into(s, &mut k[..])?;
    Some(k)
}

/// A fresh random 256-bit key.
pub fn generate_key() -> Result<Zeroizing<[u8; 32]>, SealError> {
    let mut k = Zeroizing::new([0u8; 32]);
    fill_random(&mut k[..])?;
    Ok(k)
}

pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), SealError> {
    rand::fill(out).map_err(|_| SealError::Key("the system random generator failed".into()))
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(&mut out[..]))
        .map_err(|_| SealError::Key("HKDF failed".into()))?;
    Ok(out)
}

/// Derives the key-encryption key for a header from the master secret.
pub(crate) fn kek(master: &Master, header: &Header) -> Result<Zeroizing<[u8; 32]>, SealError> {
    match (master, header.kdf) {
        (Master::Key(k), Kdf::Raw) => hkdf32(&header.salt, &k[..], b"rktio-seal v1 kek"),
        (Master::Passphrase(p), Kdf::Argon2id { m_kib, t, p: lanes }) => {
            let params = argon2::Params::new(m_kib, t, lanes, Some(32))
                .map_err(|e| SealError::Corrupt(format!("Argon2id parameters rejected: {e}")))?;
            let mut stretched = Zeroizing::new([0u8; 32]);
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(p, &header.salt, &mut stretched[..])
                .map_err(|e| SealError::Key(format!("Argon2id failed: {e}")))?;
            hkdf32(&header.salt, &stretched[..], b"rktio-seal v1 kek")
        }
        (Master::Key(_), Kdf::Argon2id { .. }) => Err(SealError::WrongKey(
            "this image is sealed with a passphrase, not a key file or key variable".into(),
        )),
        (Master::Passphrase(_), Kdf::Raw) => Err(SealError::WrongKey(
            "this image is sealed with a key file or key variable, not a passphrase".into(),
        )),
    }
}

/// The key wrap's own version, in its additional data: the wrap has not changed
/// since format version 1, so images of every version unwrap alike.
const KEY_WRAP_VERSION: u32 = 1;

fn wrap_aad(uuid: &[u8; 16]) -> [u8; 28] {
    let mut a = [0u8; 28];
    a[..8].copy_from_slice(&crate::format::MAGIC);
    a[8..12].copy_from_slice(&KEY_WRAP_VERSION.to_le_bytes());
    a[12..].copy_from_slice(uuid);
    a
}

/// Wraps the data key under a KEK: returns (nonce, ciphertext+tag).
pub(crate) fn wrap(
    kek: &[u8; 32],
    uuid: &[u8; 16],
    dek: &[u8; 32],
) -> Result<([u8; 12], [u8; 48]), SealError> {
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, kek)
            .map_err(|_| SealError::Key("bad KEK".into()))?,
    );
    let mut nonce = [0u8; 12];
    fill_random(&mut nonce)?;
    let mut buf = Zeroizing::new([0u8; 48]);
    buf[..32].copy_from_slice(dek);
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(wrap_aad(uuid)),
            &mut buf[..32],
        )
        .map_err(|_| SealError::Key("key wrap failed".into()))?;
    buf[32..].copy_from_slice(tag.as_ref());
    Ok((nonce, *buf))
}

/// Unwraps the data key; a wrong key is [`SealError::WrongKey`].
pub(crate) fn unwrap(kek: &[u8; 32], header: &Header) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, kek)
            .map_err(|_| SealError::Key("bad KEK".into()))?,
    );
    let mut buf = Zeroizing::new(header.wrapped);
    let (ct, tag) = buf.split_at_mut(32);
    key.open_in_place_separate_tag(
        aead::Nonce::assume_unique_for_key(header.wrap_nonce),
        aead::Aad::from(wrap_aad(&header.uuid)),
        tag,
        ct,
    )
    .map_err(|_| SealError::WrongKey("wrong key or passphrase for this image".into()))?;
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(&buf[..32]);
    Ok(dek)
}

/// The working keys of an open disk.
pub(crate) struct Keys {
    pub(crate) dek: Zeroizing<[u8; 32]>,
    pub(crate) block: aead::LessSafeKey,
    /// Seals log records, under random nonces (the data key's counter nonces stay
    /// the data's and the map's alone).
    pub(crate) log: aead::LessSafeKey,
    pub(crate) mac: hmac::Key,
}

impl Keys {
    pub(crate) fn from_dek(dek: Zeroizing<[u8; 32]>) -> Result<Self, SealError> {
        let bk = hkdf32(b"", &dek[..], b"rktio-seal v1 block aes-256-gcm")?;
        let mk = hkdf32(b"", &dek[..], b"rktio-seal v1 superblock hmac-sha256")?;
        let lk = hkdf32(b"", &dek[..], b"rktio-seal v2 log aes-256-gcm")?;
        let block = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &bk[..])
                .map_err(|_| SealError::Key("bad block key".into()))?,
        );
        let log = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &lk[..])
                .map_err(|_| SealError::Key("bad log key".into()))?,
        );
        Ok(Self {
            dek,
            block,
            log,
            mac: hmac::Key::new(hmac::HMAC_SHA256, &mk[..]),
        })
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}
