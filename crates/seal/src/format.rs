//! On-disk structures of the sealed disk, and their parsers.
//!
//! Everything read from the image is untrusted until authenticated; the parsers here
//! check every field and return [`SealError::Corrupt`] instead of panicking. See
//! docs/FORMAT.md for the layout.

use crate::SealError;
use rktio_blk::BLOCK_SIZE;

/// Magic at the start of each superblock slot.
pub const MAGIC: [u8; 8] = *b"RKTIOSD\0";
/// Format version this code writes. Version 1 (no log) is read too; its first
/// checkpoint writes a version 2 superblock.
pub const VERSION: u32 = 2;
/// The oldest format version this code reads.
pub const OLDEST_VERSION: u32 = 1;
/// Entries per map node.
pub const FANOUT: u64 = 128;
/// Bytes of one map entry.
pub const ENTRY_LEN: usize = 32;
/// Physical blocks of the two superblock slots.
pub const SUPERBLOCK_SLOTS: u64 = 2;
/// Where the superblock MAC starts.
pub const MAC_OFFSET: usize = BLOCK_SIZE - 32;

/// Key derivation recorded in the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// A 256-bit key (key file or environment), through HKDF.
    Raw,
    /// A passphrase through Argon2id with these costs, then HKDF.
    Argon2id {
        /// Memory in KiB.
        m_kib: u32,
        /// Iterations.
        t: u32,
        /// Lanes.
        p: u32,
    },
}

/// Upper bounds on Argon2 costs we accept from an image (a hostile image must not
/// make us allocate without limit).
pub const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
/// Upper bound on iterations.
pub const ARGON2_MAX_T: u32 = 16;
/// Upper bound on lanes.
pub const ARGON2_MAX_P: u32 = 16;

/// A reference to one sealed block: where it lives and how to check it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// Physical block; 0 means "never written" (reads as zeros).
    pub phys: u64,
    /// The nonce counter it was sealed with.
    pub nonce: u64,
    /// Its AES-GCM tag.
    pub tag: [u8; 16],
}

impl Entry {
    /// The hole: a block never written.
    pub const HOLE: Entry = Entry {
        phys: 0,
        nonce: 0,
        tag: [0; 16],
    };

    /// Is this a hole?
    pub fn is_hole(&self) -> bool {
        self.phys == 0
    }

    /// Serializes into 32 bytes.
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.phys.to_le_bytes());
        out[8..16].copy_from_slice(&self.nonce.to_le_bytes());
        out[16..32].copy_from_slice(&self.tag);
    }

    /// Parses 32 untrusted bytes; `physical` bounds the block number.
    pub fn decode(b: &[u8], physical: u64) -> Result<Entry, SealError> {
        if b.len() < ENTRY_LEN {
            return Err(SealError::Corrupt("short map entry".into()));
        }
        let e = Entry {
            phys: le64(&b[0..8]),
            nonce: le64(&b[8..16]),
            tag: b[16..32].try_into().unwrap_or([0; 16]),
        };
        if e.is_hole() {
            if e != Entry::HOLE {
                return Err(SealError::Corrupt("malformed hole entry".into()));
            }
        } else if e.phys < SUPERBLOCK_SLOTS || e.phys >= physical {
            return Err(SealError::Corrupt(format!(
                "map entry points at block {} outside the data area (2..{physical})",
                e.phys
            )));
        }
        Ok(e)
    }

    /// Hex of the 32 bytes (the "root" when this is the root entry).
    pub fn hex(&self) -> String {
        let mut b = [0u8; ENTRY_LEN];
        self.encode(&mut b);
        crate::hex::encode(&b)
    }
}

/// Tiers of the map for `logical` blocks: lengths from tier 0 (data) to the top,
/// whose single entry is the root. There is always at least one map tier.
pub fn tier_lengths(logical: u64) -> Vec<u64> {
    let mut v = vec![logical];
    loop {
        let last = *v.last().unwrap_or(&1);
        let next = last.div_ceil(FANOUT).max(1);
        v.push(next);
        if next == 1 {
            return v;
        }
    }
}

/// Map nodes (blocks) needed for `logical` data blocks.
pub fn map_nodes(logical: u64) -> u64 {
    tier_lengths(logical)[1..]
        .iter()
        .fold(0u64, |a, n| a.saturating_add(*n))
}

/// Physical blocks needed for `logical` data blocks with `slack` spare blocks for
/// copy-on-write.
pub fn physical_for(logical: u64, slack: u64) -> u64 {
    SUPERBLOCK_SLOTS
        .saturating_add(logical)
        .saturating_add(map_nodes(logical).saturating_mul(2))
        .saturating_add(slack)
}

/// Copy-on-write spare blocks for `logical` blocks at `overprovision_pct` percent.
pub fn slack_for(logical: u64, overprovision_pct: u64) -> u64 {
    (logical.saturating_mul(overprovision_pct) / 100).max(64)
}

/// The largest logical size that fits `physical` blocks.
pub fn logical_for(physical: u64, overprovision_pct: u64) -> Option<u64> {
    let fits = |l: u64| physical_for(l, slack_for(l, overprovision_pct)) <= physical;
    if !fits(1) {
        return None;
    }
    let (mut lo, mut hi) = (1u64, physical);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The parts of a superblock readable before the key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Key derivation.
    pub kdf: Kdf,
    /// KDF salt.
    pub salt: [u8; 32],
    /// Image identity.
    pub uuid: [u8; 16],
    /// Nonce of the key wrap.
    pub wrap_nonce: [u8; 12],
    /// Wrapped data key with its tag.
    pub wrapped: [u8; 48],
}

/// A whole superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Key material and identity.
    pub header: Header,
    /// Counts superblock writes; the higher valid slot wins.
    pub epoch: u64,
    /// Data blocks the disk offers.
    pub logical: u64,
    /// Blocks in the image file.
    pub physical: u64,
    /// Every nonce used so far is below this.
    pub nonce_limit: u64,
    /// Map tiers above the data.
    pub depth: u32,
    /// Entry of the top map node.
    pub root: Entry,
    /// Block of the first log record after this superblock (0: no log).
    pub log_head: u64,
}

impl Superblock {
    /// Serializes without the MAC (bytes MAC_OFFSET.. stay zero).
    pub fn encode(&self) -> Box<[u8; BLOCK_SIZE]> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        let h = &self.header;
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let (id, m, t, p) = match h.kdf {
            Kdf::Raw => (0u32, 0, 0, 0),
            Kdf::Argon2id { m_kib, t, p } => (1, m_kib, t, p),
        };
        b[12..16].copy_from_slice(&id.to_le_bytes());
        b[16..20].copy_from_slice(&m.to_le_bytes());
        b[20..24].copy_from_slice(&t.to_le_bytes());
        b[24..28].copy_from_slice(&p.to_le_bytes());
        b[32..64].copy_from_slice(&h.salt);
        b[64..80].copy_from_slice(&h.uuid);
        b[80..92].copy_from_slice(&h.wrap_nonce);
        b[92..140].copy_from_slice(&h.wrapped);
        b[140..148].copy_from_slice(&self.epoch.to_le_bytes());
        b[148..156].copy_from_slice(&self.logical.to_le_bytes());
        b[156..164].copy_from_slice(&self.physical.to_le_bytes());
        b[164..172].copy_from_slice(&self.nonce_limit.to_le_bytes());
        b[172..176].copy_from_slice(&self.depth.to_le_bytes());
        self.root.encode(&mut b[180..212]);
        b[212..220].copy_from_slice(&self.log_head.to_le_bytes());
        b
    }

    /// Parses the key-independent header of an untrusted slot.
    pub fn decode_header(b: &[u8]) -> Result<Header, SealError> {
        if b.len() != BLOCK_SIZE {
            return Err(SealError::Corrupt("superblock is not 4096 bytes".into()));
        }
        if b[0..8] != MAGIC {
            return Err(SealError::NotSealed("no rkt-io superblock magic".into()));
        }
        let version = le32(&b[8..12]);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(SealError::Unsupported(format!(
                "sealed disk format version {version}; this build reads versions {OLDEST_VERSION} to {VERSION}"
            )));
        }
        let kdf = match le32(&b[12..16]) {
            0 => Kdf::Raw,
            1 => {
                let (m_kib, t, p) = (le32(&b[16..20]), le32(&b[20..24]), le32(&b[24..28]));
                if !(8..=ARGON2_MAX_M_KIB).contains(&m_kib)
                    || !(1..=ARGON2_MAX_T).contains(&t)
                    || !(1..=ARGON2_MAX_P).contains(&p)
                {
                    return Err(SealError::Corrupt(format!(
                        "Argon2id parameters out of range (m={m_kib} KiB, t={t}, p={p})"
                    )));
                }
                Kdf::Argon2id { m_kib, t, p }
            }
            other => {
                return Err(SealError::Corrupt(format!(
                    "unknown key derivation {other}"
                )));
            }
        };
        Ok(Header {
            kdf,
            salt: arr(&b[32..64]),
            uuid: arr(&b[64..80]),
            wrap_nonce: arr(&b[80..92]),
            wrapped: arr(&b[92..140]),
        })
    }

    /// Parses an untrusted slot whose MAC the caller has already verified.
    pub fn decode_authenticated(b: &[u8]) -> Result<Superblock, SealError> {
        let header = Self::decode_header(b)?;
        let logical = le64(&b[148..156]);
        let physical = le64(&b[156..164]);
        let depth = le32(&b[172..176]);
        if logical == 0 || physical < physical_for(logical, 0) {
            return Err(SealError::Corrupt(format!(
                "superblock geometry inconsistent ({logical} data blocks in {physical} blocks)"
            )));
        }
        if depth as usize != tier_lengths(logical).len() - 1 {
            return Err(SealError::Corrupt(format!(
                "superblock map depth {depth} wrong for {logical} blocks"
            )));
        }
        let root = Entry::decode(&b[180..212], physical)?;
        let log_head = le64(&b[212..220]);
        if log_head != 0 && !(SUPERBLOCK_SLOTS..physical).contains(&log_head) {
            return Err(SealError::Corrupt(format!(
                "log head {log_head} outside the data area (2..{physical})"
            )));
        }
        Ok(Superblock {
            header,
            epoch: le64(&b[140..148]),
            logical,
            physical,
            nonce_limit: le64(&b[164..172]),
            depth,
            root,
            log_head,
        })
    }
}

/// Plaintext bytes at the start of a log record block: the (random) nonce it was
/// sealed with.
pub const RECORD_NONCE_LEN: usize = 12;
/// Bytes of a log record's body (sealed; between the nonce and the tag).
pub const RECORD_BODY: usize = BLOCK_SIZE - RECORD_NONCE_LEN - 16;
/// Bytes of the body before the entries.
const RECORD_HEADER: usize = 32;
/// Bytes of one record entry: the logical block and its new map entry.
const RECORD_ENTRY_LEN: usize = 8 + ENTRY_LEN;
/// Entries one record holds (100); a commit with more is a checkpoint.
pub const RECORD_ENTRIES: usize = (RECORD_BODY - RECORD_HEADER) / RECORD_ENTRY_LEN;
/// Magic at the start of a record's (sealed) body.
const RECORD_MAGIC: [u8; 8] = *b"RKTIOLOG";

/// One commit appended to the log: the data entries it changed, where the next
/// record goes, and the nonce limit it makes durable. See docs/FORMAT.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Block reserved for the next record.
    pub next: u64,
    /// Every nonce used so far is below this.
    pub nonce_limit: u64,
    /// (logical block, its new entry), at most [`RECORD_ENTRIES`].
    pub entries: Vec<(u64, Entry)>,
}

impl LogRecord {
    /// Serializes into a record body (the part that is sealed).
    pub fn encode(&self, out: &mut [u8; RECORD_BODY]) {
        out.fill(0);
        out[0..8].copy_from_slice(&RECORD_MAGIC);
        let n = self.entries.len().min(RECORD_ENTRIES);
        out[8..12].copy_from_slice(&(n as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.next.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce_limit.to_le_bytes());
        for (i, (lba, e)) in self.entries.iter().take(n).enumerate() {
            let at = RECORD_HEADER + i * RECORD_ENTRY_LEN;
            out[at..at + 8].copy_from_slice(&lba.to_le_bytes());
            e.encode(&mut out[at + 8..at + RECORD_ENTRY_LEN]);
        }
    }

    /// Parses an authenticated record body; every field is still checked against
    /// the disk's geometry.
    pub fn decode(b: &[u8], logical: u64, physical: u64) -> Result<LogRecord, SealError> {
        if b.len() != RECORD_BODY || b[0..8] != RECORD_MAGIC {
            return Err(SealError::Corrupt("log record without its magic".into()));
        }
        let n = le32(&b[8..12]) as usize;
        if n > RECORD_ENTRIES {
            return Err(SealError::Corrupt(format!(
                "log record claims {n} entries (at most {RECORD_ENTRIES})"
            )));
        }
        let next = le64(&b[16..24]);
        if !(SUPERBLOCK_SLOTS..physical).contains(&next) {
            return Err(SealError::Corrupt(format!(
                "log record points at block {next} outside the data area (2..{physical})"
            )));
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let at = RECORD_HEADER + i * RECORD_ENTRY_LEN;
            let lba = le64(&b[at..at + 8]);
            if lba >= logical {
                return Err(SealError::Corrupt(format!(
                    "log record names block {lba} past the end ({logical} blocks)"
                )));
            }
            entries.push((
                lba,
                Entry::decode(&b[at + 8..at + RECORD_ENTRY_LEN], physical)?,
            ));
        }
        Ok(LogRecord {
            next,
            nonce_limit: le64(&b[24..32]),
            entries,
        })
    }
}

/// Serializes a map node: `FANOUT` entries, holes past `entries.len()`.
pub fn encode_node(entries: &[Entry], out: &mut [u8; BLOCK_SIZE]) {
    out.fill(0);
    for (i, e) in entries.iter().take(FANOUT as usize).enumerate() {
        e.encode(&mut out[i * ENTRY_LEN..(i + 1) * ENTRY_LEN]);
    }
}

/// Parses an (authenticated) map node; `valid` entries are in use, the rest must be holes.
pub fn decode_node(
    b: &[u8; BLOCK_SIZE],
    valid: usize,
    physical: u64,
    out: &mut Vec<Entry>,
) -> Result<(), SealError> {
    for i in 0..FANOUT as usize {
        let e = Entry::decode(&b[i * ENTRY_LEN..(i + 1) * ENTRY_LEN], physical)?;
        if i < valid {
            out.push(e);
        } else if !e.is_hole() {
            return Err(SealError::Corrupt(
                "map node has entries past the end of the disk".into(),
            ));
        }
    }
    Ok(())
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(arr(b))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(arr(b))
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = b.len().min(N);
    a[..n].copy_from_slice(&b[..n]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_sizes() {
        assert_eq!(tier_lengths(1), vec![1, 1]);
        assert_eq!(tier_lengths(128), vec![128, 1]);
        assert_eq!(tier_lengths(129), vec![129, 2, 1]);
        assert_eq!(tier_lengths(262_144), vec![262_144, 2048, 16, 1]);
        let phys = 262_144 + 10_000;
        let l = logical_for(phys, 5).unwrap();
        assert!(physical_for(l, slack_for(l, 5)) <= phys);
        assert!(physical_for(l + 1, slack_for(l + 1, 5)) > phys);
        assert_eq!(logical_for(10, 10), None);
    }

    #[test]
    fn superblock_round_trip() {
        let sb = Superblock {
            header: Header {
                kdf: Kdf::Argon2id {
                    m_kib: 1024,
                    t: 2,
                    p: 1,
                },
                salt: [1; 32],
                uuid: [2; 16],
                wrap_nonce: [3; 12],
                wrapped: [4; 48],
            },
            epoch: 7,
            logical: 300,
            physical: 1000,
            nonce_limit: 1 << 40,
            depth: 2,
            root: Entry {
                phys: 5,
                nonce: 9,
                tag: [6; 16],
            },
            log_head: 77,
        };
        let b = sb.encode();
        assert_eq!(Superblock::decode_authenticated(&b[..]).unwrap(), sb);
    }

    /// Stand-in for a fuzzer on stable Rust: random and mutated superblocks and map
    /// nodes never panic the parsers.
    #[test]
    fn parsers_survive_garbage() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = Superblock {
            header: Header {
                kdf: Kdf::Raw,
                salt: [0; 32],
                uuid: [0; 16],
                wrap_nonce: [0; 12],
                wrapped: [0; 48],
            },
            epoch: 1,
            logical: 1000,
            physical: 2000,
            nonce_limit: 10,
            depth: 2,
            root: Entry::HOLE,
            log_head: 0,
        }
        .encode();
        for i in 0..20_000 {
            let mut b = *good;
            if i % 2 == 0 {
                for _ in 0..(rnd() % 8 + 1) {
                    let pos = (rnd() % 212) as usize;
                    b[pos] = rnd() as u8;
                }
            } else {
                for x in b.iter_mut().take(256) {
                    *x = rnd() as u8;
                }
                b[0..8].copy_from_slice(&MAGIC);
                b[8..12].copy_from_slice(&VERSION.to_le_bytes());
            }
            let _ = Superblock::decode_authenticated(&b[..]);
            let mut out = Vec::new();
            let _ = decode_node(&b, (rnd() % 129) as usize, rnd() % 5000, &mut out);
            let _ = LogRecord::decode(&b[..RECORD_BODY], rnd() % 5000, rnd() % 5000);
        }
    }

    #[test]
    fn record_round_trip_and_bounds() {
        let r = LogRecord {
            next: 9,
            nonce_limit: 1 << 33,
            entries: (0..RECORD_ENTRIES as u64)
                .map(|i| {
                    (
                        i * 3,
                        Entry {
                            phys: 10 + i,
                            nonce: i,
                            tag: [i as u8; 16],
                        },
                    )
                })
                .collect(),
        };
        let mut b = [0u8; RECORD_BODY];
        r.encode(&mut b);
        assert_eq!(LogRecord::decode(&b, 1000, 1000).unwrap(), r);
        // A block past the end, an entry outside the data area, a next outside it.
        assert!(LogRecord::decode(&b, 200, 1000).is_err());
        assert!(LogRecord::decode(&b, 1000, 100).is_err());
        let mut bad = b;
        bad[8..12].copy_from_slice(&(RECORD_ENTRIES as u32 + 1).to_le_bytes());
        assert!(LogRecord::decode(&bad, 1000, 1000).is_err());
        assert!(LogRecord::decode(&b[1..], 1000, 1000).is_err());
    }
}
