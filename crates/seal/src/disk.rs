//! [`SealedDisk`]: the copy-on-write MAC tree over a block queue.

use crate::alloc::Allocator;
use crate::format::{
    self, Entry, FANOUT, Header, Kdf, MAC_OFFSET, RECORD_ENTRIES, RECORD_NONCE_LEN,
    SUPERBLOCK_SLOTS, Superblock, encode_node, tier_lengths,
};
use crate::keys::{self, Argon2Params, KeySource, Keys, Master};
use crate::{BLOCK_SIZE, Block, SealError};
use aws_lc_rs::{aead, hmac};
use rktio_blk::{BlockQueue, Completion, IoError, Op, Request};
use std::collections::{BTreeSet, HashSet, VecDeque};
use zeroize::Zeroizing;

mod log;
pub use log::LOG_RECORDS;
use log::{InFlight, Log};

/// Nonces reserved per superblock write. Nonces are never reused: a session only
/// uses nonces below the limit recorded in a durable superblock, and the next
/// session starts above it.
const NONCE_RESERVE: u64 = 1 << 32;
/// Lower-queue tag of flushes.
const FLUSH_USER: u64 = u64::MAX;

/// Options for creating a sealed disk.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    /// Spare blocks for copy-on-write, in percent of the data blocks (at least 64
    /// blocks). Bounds how much committed data can be rewritten between commits.
    pub overprovision_pct: u64,
    /// Argon2id costs, when the key is a passphrase.
    pub argon2: Argon2Params,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            overprovision_pct: 10,
            argon2: Argon2Params::default(),
        }
    }
}

/// Options for opening a sealed disk.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Refuse writes.
    pub read_only: bool,
    /// Refuse an image whose epoch is below this (a rollback).
    pub expect_epoch: Option<u64>,
    /// Refuse an image whose root is not exactly this (hex, as [`DiskInfo::root`]).
    pub expect_root: Option<String>,
}

/// What `info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Image identity (hex).
    pub uuid: String,
    /// Commits so far (superblocks and log records).
    pub epoch: u64,
    /// Names the committed state (hex): the root entry, or the last log record's
    /// entry after it. Pin it to demand this exact state.
    pub root: String,
    /// Log records since the last checkpoint.
    pub log_records: u64,
    /// Data blocks offered.
    pub logical_blocks: u64,
    /// Blocks in the image.
    pub physical_blocks: u64,
    /// Map tiers.
    pub depth: u32,
    /// Free blocks now.
    pub free_blocks: u64,
    /// "key" or "passphrase (Argon2id m=.. t=.. p=..)".
    pub key_kind: String,
    /// Data blocks written (not holes).
    pub used_blocks: u64,
}

/// Counters of a sealed disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealStats {
    /// Blocks read (including holes).
    pub reads: u64,
    /// Blocks written.
    pub writes: u64,
    /// Reads of never-written blocks (no I/O).
    pub hole_reads: u64,
    /// Blocks that failed authentication.
    pub integrity_failures: u64,
    /// Commits that wrote something.
    pub commits: u64,
    /// Map nodes written.
    pub map_writes: u64,
    /// Commits that appended a log record (one block and one flush).
    pub log_records: u64,
    /// Commits that wrote the map and a superblock (two flushes).
    pub checkpoints: u64,
}

/// A finished read or write.
#[derive(Debug)]
pub struct SealedCompletion {
    /// The caller's tag.
    pub user: u64,
    /// The block.
    pub lba: u64,
    /// For reads, the plaintext (in trusted memory); for writes, `None`.
    pub result: Result<Option<Box<Block>>, SealError>,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Data blocks that authenticated.
    pub good_blocks: u64,
    /// Never-written blocks.
    pub holes: u64,
    /// Map nodes (all authenticated when the disk opened).
    pub map_nodes: u64,
    /// Blocks that failed (first 100).
    pub bad_blocks: Vec<u64>,
    /// How many failed in all.
    pub bad_count: u64,
}

#[derive(Debug)]
enum Pending {
    Read {
        lba: u64,
        entry: Entry,
        user: u64,
    },
    Write {
        lba: u64,
        phys: u64,
        user: u64,
    },
    Meta {
        pos: usize,
        tier: u8,
        index: u64,
        entry: Entry,
    },
    MetaWrite,
    Super,
}

/// A sealed disk over any block queue. Single-threaded: the owner drives it.
pub struct SealedDisk<Q: BlockQueue> {
    q: Q,
    keys: Keys,
    header: Header,
    logical: u64,
    physical: u64,
    /// Free blocks a write must leave, so a commit can always write every map node.
    map_reserve: u64,
    /// tiers[0]: data entries; tiers[t]: entries of tier-t map nodes; tiers[depth]: [root].
    tiers: Vec<Vec<Entry>>,
    /// Dirty map nodes per tier (index into tiers[t]); dirty[0] unused.
    dirty: Vec<BTreeSet<u64>>,
    alloc: Allocator,
    /// The newest commit (its flush may still be in flight: see `durable`).
    last_epoch: u64,
    committed_root: Entry,
    /// Superblock slot of the newest superblock (the next goes to the other).
    sb_slot: u64,
    log: Log,
    /// Data blocks written since the last commit.
    since: BTreeSet<u64>,
    /// A log record written whose flush is still in flight (see `commit_begin`).
    inflight: Option<InFlight>,
    /// The newest epoch known durable.
    durable: u64,
    nonce_next: u64,
    nonce_limit: u64,
    read_only: bool,
    poisoned: Option<String>,
    free_slots: Vec<usize>,
    pending: Vec<Option<Pending>>,
    writing: HashSet<u64>,
    done: VecDeque<SealedCompletion>,
    outstanding: usize,
    batch: Vec<Option<Result<Box<Block>, SealError>>>,
    meta_error: Option<SealError>,
    sync_done: Vec<(u64, Result<(), IoError>)>,
    spare: Vec<Box<Block>>,
    scratch: Box<Block>,
    completions: Vec<Completion>,
    stats: SealStats,
}

impl<Q: BlockQueue> std::fmt::Debug for SealedDisk<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedDisk")
            .field("queue", &self.q.name())
            .field("logical", &self.logical)
            .field("epoch", &self.last_epoch)
            .finish_non_exhaustive()
    }
}

fn nonce_bytes(n: u64) -> aead::Nonce {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&n.to_le_bytes());
    aead::Nonce::assume_unique_for_key(b)
}

fn aad(uuid: &[u8; 16], tier: u8, index: u64) -> aead::Aad<[u8; 25]> {
    let mut a = [0u8; 25];
    a[..16].copy_from_slice(uuid);
    a[16] = tier;
    a[17..].copy_from_slice(&index.to_le_bytes());
    aead::Aad::from(a)
}

impl<Q: BlockQueue> SealedDisk<Q> {
    fn blank(
        q: Q,
        keys: Keys,
        header: Header,
        logical: u64,
        physical: u64,
    ) -> Result<Self, SealError> {
        if q.depth() < 2 {
            return Err(SealError::Invalid(
                "the block queue needs a depth of at least 2".into(),
            ));
        }
        let lens = tier_lengths(logical);
        let depth = q.depth();
        let mut nonce_base = [0u8; RECORD_NONCE_LEN];
        keys::fill_random(&mut nonce_base)?;
        Ok(Self {
            keys,
            header,
            logical,
            physical,
            // Every map node, the next log record, and a new log head.
            map_reserve: lens[1..].iter().sum::<u64>() + 3,
            tiers: lens
                .iter()
                .map(|n| vec![Entry::HOLE; *n as usize])
                .collect(),
            dirty: vec![BTreeSet::new(); lens.len()],
            alloc: Allocator::new(physical),
            last_epoch: 0,
            committed_root: Entry::HOLE,
            sb_slot: SUPERBLOCK_SLOTS - 1,
            log: Log {
                limit: LOG_RECORDS,
                nonce_base,
                ..Log::default()
            },
            since: BTreeSet::new(),
            inflight: None,
            durable: 0,
            nonce_next: 0,
            nonce_limit: 0,
            read_only: false,
            poisoned: None,
            free_slots: (0..depth).rev().collect(),
            pending: (0..depth).map(|_| None).collect(),
            writing: HashSet::new(),
            done: VecDeque::new(),
            outstanding: 0,
            batch: Vec::new(),
            meta_error: None,
            sync_done: Vec::new(),
            spare: Vec::new(),
            scratch: Box::new([0; BLOCK_SIZE]),
            completions: Vec::new(),
            stats: SealStats::default(),
            q,
        })
    }

    /// Formats the queue's device as a new, empty sealed disk and commits it.
    /// Everything on the device is lost.
    pub fn create(q: Q, key: &KeySource, opts: &CreateOptions) -> Result<Self, SealError> {
        let physical = q.blocks();
        let logical = format::logical_for(physical, opts.overprovision_pct).ok_or_else(|| {
            SealError::Invalid(format!(
                "a device of {physical} blocks is too small for a sealed disk"
            ))
        })?;
        let master = key.load()?;
        let kdf = match master {
            Master::Key(_) => Kdf::Raw,
            Master::Passphrase(_) => Kdf::Argon2id {
                m_kib: opts.argon2.m_kib,
                t: opts.argon2.t,
                p: opts.argon2.p,
            },
        };
        let mut header = Header {
            kdf,
            salt: [0; 32],
            uuid: [0; 16],
            wrap_nonce: [0; 12],
            wrapped: [0; 48],
        };
        keys::fill_random(&mut header.salt)?;
        keys::fill_random(&mut header.uuid)?;
        let dek = keys::generate_key()?;
        let kek = keys::kek(&master, &header)?;
        (header.wrap_nonce, header.wrapped) = keys::wrap(&kek, &header.uuid, &dek)?;
        let mut disk = Self::blank(q, Keys::from_dek(dek)?, header, logical, physical)?;
        // Wipe both slots so no older superblock can be mistaken for this disk's.
        disk.scratch.fill(0);
        for slot in 0..SUPERBLOCK_SLOTS {
            disk.write_raw_sync(slot)?;
        }
        disk.flush_sync()?;
        let d = disk.depth();
        disk.dirty[d].insert(0);
        disk.checkpoint()?;
        Ok(disk)
    }

    /// Opens a sealed disk: finds the newest authentic superblock, checks the pins,
    /// and loads (authenticating) the whole map.
    pub fn open(mut q: Q, key: &KeySource, opts: &OpenOptions) -> Result<Self, SealError> {
        let master = key.load()?;
        let mut raw: Vec<Box<Block>> = Vec::new();
        for slot in 0..SUPERBLOCK_SLOTS {
            let mut b = Box::new([0u8; BLOCK_SIZE]);
            rktio_blk::read_block(&mut q, slot, 0, &mut b)??;
            raw.push(b);
        }
        let mut best: Option<(Superblock, Keys, u64, [u8; 16])> = None;
        let mut first_err: Option<SealError> = None;
        let mut kek_cache: Option<(Header, Zeroizing<[u8; 32]>)> = None;
        for (slot, b) in raw.iter().enumerate() {
            let header = match Superblock::decode_header(&b[..]) {
                Ok(h) => h,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let kek = match &kek_cache {
                Some((h, k)) if h.kdf == header.kdf && h.salt == header.salt => k.clone(),
                _ => {
                    let k = match keys::kek(&master, &header) {
                        Ok(k) => k,
                        Err(e) => {
                            upgrade(&mut first_err, e);
                            continue;
                        }
                    };
                    kek_cache = Some((header.clone(), k.clone()));
                    k
                }
            };
            let dek = match keys::unwrap(&kek, &header) {
                Ok(d) => d,
                Err(e) => {
                    upgrade(&mut first_err, e);
                    continue;
                }
            };
            let k = Keys::from_dek(dek)?;
            if hmac::verify(&k.mac, &b[..MAC_OFFSET], &b[MAC_OFFSET..]).is_err() {
                upgrade(
                    &mut first_err,
                    SealError::Corrupt("superblock MAC mismatch".into()),
                );
                continue;
            }
            let sb = match Superblock::decode_authenticated(&b[..]) {
                Ok(sb) => sb,
                Err(e) => {
                    upgrade(&mut first_err, e);
                    continue;
                }
            };
            if best.as_ref().is_none_or(|(s, ..)| sb.epoch > s.epoch) {
                let mut mac = [0u8; 16];
                mac.copy_from_slice(&b[MAC_OFFSET..MAC_OFFSET + 16]);
                best = Some((sb, k, slot as u64, mac));
            }
        }
        let Some((sb, keys, sb_slot, sb_mac)) = best else {
            return Err(first_err.unwrap_or_else(|| SealError::NotSealed("no superblock".into())));
        };
        if sb.physical > q.blocks() {
            return Err(SealError::Corrupt(format!(
                "superblock says {} blocks but the device has {}",
                sb.physical,
                q.blocks()
            )));
        }
        let mut disk = Self::blank(q, keys, sb.header.clone(), sb.logical, sb.physical)?;
        disk.last_epoch = sb.epoch;
        disk.committed_root = sb.root;
        disk.sb_slot = sb_slot;
        disk.nonce_next = sb.nonce_limit;
        disk.nonce_limit = sb.nonce_limit;
        disk.read_only = opts.read_only;
        let d = disk.depth();
        disk.tiers[d][0] = sb.root;
        disk.load_map()?;
        disk.replay_log(sb.log_head, sb_mac)?;
        disk.durable = disk.last_epoch;
        // The pins cover the log: the epoch counts its records, and the root
        // names its last one.
        if let Some(min) = opts.expect_epoch
            && disk.last_epoch < min
        {
            return Err(SealError::Stale(format!(
                "image epoch {} is older than the expected {min}: the host may have rolled the image back",
                disk.last_epoch
            )));
        }
        if let Some(root) = &opts.expect_root
            && !root.eq_ignore_ascii_case(&disk.root())
        {
            return Err(SealError::Stale(format!(
                "image root {} (epoch {}) is not the expected {root}",
                disk.root(),
                disk.last_epoch
            )));
        }
        Ok(disk)
    }

    fn depth(&self) -> usize {
        self.tiers.len() - 1
    }

    /// Reads and authenticates every map node, top-down, and claims every block.
    fn load_map(&mut self) -> Result<(), SealError> {
        let d = self.depth();
        if !self.tiers[d][0].is_hole() && !self.alloc.claim_committed(self.tiers[d][0].phys) {
            return Err(SealError::Corrupt("root points at a reserved block".into()));
        }
        for t in (1..=d).rev() {
            let items: Vec<(u8, u64, Entry)> = self.tiers[t]
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.is_hole())
                .map(|(j, e)| (t as u8, j as u64, *e))
                .collect();
            let below = self.tiers[t - 1].len() as u64;
            for chunk in items.chunks(1024) {
                let blocks = self.read_batch(chunk)?;
                for ((_, j, _), r) in chunk.iter().zip(blocks) {
                    let node = r.map_err(|e| match e {
                        SealError::Integrity { .. } => SealError::Corrupt(format!(
                            "map node {j} of tier {t} failed authentication: the image was modified, swapped or rolled back"
                        )),
                        other => other,
                    })?;
                    let first = j * FANOUT;
                    let valid = (below - first).min(FANOUT) as usize;
                    let mut entries = Vec::with_capacity(valid);
                    format::decode_node(&node, valid, self.physical, &mut entries)?;
                    for (k, e) in entries.into_iter().enumerate() {
                        if !e.is_hole() && !self.alloc.claim_committed(e.phys) {
                            return Err(SealError::Corrupt(format!(
                                "block {} is referenced twice (tier {}, entry {})",
                                e.phys,
                                t - 1,
                                first + k as u64
                            )));
                        }
                        self.tiers[t - 1][(first as usize) + k] = e;
                    }
                    self.spare.push(node);
                }
            }
        }
        Ok(())
    }

    /// How many more blocks can be written before a commit is needed to reclaim
    /// copy-on-write space (a write past this fails with ENOSPC).
    pub fn write_budget(&self) -> u64 {
        self.alloc.free_blocks().saturating_sub(self.map_reserve)
    }

    /// Data blocks offered.
    pub fn logical_blocks(&self) -> u64 {
        self.logical
    }

    /// The committed epoch: durable commits so far (superblocks and log
    /// records; a commit whose flush is in flight does not count yet).
    pub fn epoch(&self) -> u64 {
        self.durable
    }

    /// Names the committed (durable) state (hex): the root entry, or after log
    /// records the last record's entry (which authenticates the whole chain back
    /// to the root).
    pub fn root(&self) -> String {
        match &self.inflight {
            Some(f) => f.before.hex(),
            None => self.log.last.unwrap_or(self.committed_root).hex(),
        }
    }

    /// Sets how many log records commits may append before one checkpoints
    /// instead (default [`LOG_RECORDS`]; 0: every commit checkpoints, as format
    /// version 1 did). Tests use small numbers to reach checkpoints often.
    pub fn set_log_limit(&mut self, records: usize) {
        self.log.limit = records;
    }

    /// Counters.
    pub fn stats(&self) -> SealStats {
        self.stats
    }

    /// The queue underneath.
    pub fn queue(&self) -> &Q {
        &self.q
    }

    /// Closes the disk (dropping uncommitted writes) and returns the queue, with
    /// nothing of ours left in flight in it.
    pub fn into_queue(mut self) -> Q {
        let _ = self.drain();
        self.q
    }

    /// A description of the disk.
    pub fn info(&self) -> DiskInfo {
        DiskInfo {
            uuid: crate::hex::encode(&self.header.uuid),
            epoch: self.epoch(),
            root: self.root(),
            log_records: self.log.records.len() as u64,
            logical_blocks: self.logical,
            physical_blocks: self.physical,
            depth: self.depth() as u32,
            free_blocks: self.alloc.free_blocks(),
            key_kind: match self.header.kdf {
                Kdf::Raw => "key (file or environment)".into(),
                Kdf::Argon2id { m_kib, t, p } => {
                    format!("passphrase (Argon2id m={m_kib} KiB t={t} p={p})")
                }
            },
            used_blocks: self.tiers[0].iter().filter(|e| !e.is_hole()).count() as u64,
        }
    }

    fn seal_into_slot(
        &mut self,
        slot: usize,
        tier: u8,
        index: u64,
        plain: &Block,
    ) -> Result<Entry, SealError> {
        let nonce = self.take_nonce()?;
        let mut tag = [0u8; 16];
        // Seal in trusted memory, then copy the ciphertext out: the host never sees
        // plaintext and cannot tamper with bytes between encryption and tagging.
        self.keys
            .block
            .seal_out_of_place_scatter(
                nonce_bytes(nonce),
                aad(&self.header.uuid, tier, index),
                plain,
                &mut self.scratch[..],
                &[],
                &mut tag,
            )
            .map_err(|_| SealError::Invalid("AES-GCM seal failed".into()))?;
        self.q.buffers_mut().copy_in(slot, &self.scratch[..])?;
        Ok(Entry {
            phys: 0,
            nonce,
            tag,
        })
    }

    /// Copies a ciphertext out of host memory and authenticates/decrypts it there.
    fn open_from_slot(
        &mut self,
        slot: usize,
        tier: u8,
        index: u64,
        e: &Entry,
    ) -> Result<Box<Block>, SealError> {
        let mut b = self
            .spare
            .pop()
            .unwrap_or_else(|| Box::new([0; BLOCK_SIZE]));
        self.q.buffers().copy_out(slot, &mut b[..])?;
        let ok = self
            .keys
            .block
            .open_in_place_separate_tag(
                nonce_bytes(e.nonce),
                aad(&self.header.uuid, tier, index),
                &e.tag,
                &mut b[..],
            )
            .is_ok();
        if ok {
            Ok(b)
        } else {
            self.stats.integrity_failures += 1;
            self.spare.push(b);
            Err(SealError::Integrity {
                lba: index,
                detail: format!(
                    "{} at physical block {} does not authenticate: it was modified, swapped or replayed by the host",
                    if tier == 0 { "data" } else { "map node" },
                    e.phys
                ),
            })
        }
    }

    fn take_nonce(&mut self) -> Result<u64, SealError> {
        if self.nonce_next >= self.nonce_limit {
            self.reserve_nonces()?;
        }
        let n = self.nonce_next;
        self.nonce_next += 1;
        Ok(n)
    }

    /// Makes a higher nonce limit durable without committing anything new: a log
    /// record with no entries, or (before the first log, on a version 1 image) a
    /// superblock with the same root.
    fn reserve_nonces(&mut self) -> Result<(), SealError> {
        self.check_writable()?;
        if self.nonce_next.checked_add(NONCE_RESERVE).is_none() {
            return Err(SealError::NoSpace("nonce space exhausted".into()));
        }
        if self.log.next != 0 {
            // Commits nothing: frees nothing.
            self.settle()?;
            self.record_begin(Vec::new(), false)?;
            return self.settle();
        }
        let limit = self.nonce_next + NONCE_RESERVE;
        let root = self.committed_root;
        self.write_superblock(root, limit, 0)
    }

    fn check_writable(&self) -> Result<(), SealError> {
        if self.read_only {
            return Err(SealError::ReadOnly);
        }
        if let Some(why) = &self.poisoned {
            return Err(SealError::Poisoned(why.clone()));
        }
        Ok(())
    }

    fn poison(&mut self, why: String) {
        tracing::error!(%why, "sealed disk poisoned");
        self.poisoned.get_or_insert(why);
    }

    // ---- lower queue plumbing ----

    fn acquire_slot(&mut self) -> Result<usize, SealError> {
        loop {
            if let Some(s) = self.free_slots.pop() {
                return Ok(s);
            }
            self.pump(1)?;
        }
    }

    /// Waits for at least `min` lower completions and handles them.
    fn pump(&mut self, min: usize) -> Result<(), SealError> {
        if min > 0 && self.q.in_flight() == 0 {
            // Waiting with nothing in flight would never end: a bookkeeping bug or a
            // queue that lost requests. Say so instead of hanging.
            return Err(SealError::Invalid(format!(
                "sealed disk waits for I/O but none is in flight ({} free slots, {} outstanding)",
                self.free_slots.len(),
                self.outstanding
            )));
        }
        let mut cs = std::mem::take(&mut self.completions);
        cs.clear();
        let r = self.q.poll(&mut cs, min.min(self.q.in_flight()));
        for c in cs.drain(..) {
            self.handle(c);
        }
        self.completions = cs;
        // A flush that completed counts even if the queue then failed.
        if self.inflight.is_some()
            && let Some((_, result)) = self.sync_done.pop()
        {
            self.flushed(result);
        }
        r?;
        if self.q.in_flight() == 0 {
            self.alloc.quiescent();
        }
        Ok(())
    }

    /// The flush of the commit in flight finished.
    fn flushed(&mut self, result: Result<(), IoError>) {
        let Some(f) = self.inflight.take() else {
            return;
        };
        match result {
            Ok(()) => {
                self.nonce_limit = self.nonce_limit.max(f.nonce_limit);
                self.alloc.commit_durable(f.superseded);
                self.durable = f.epoch;
            }
            Err(e) => self.poison(format!("flush failed: {e}")),
        }
    }

    /// Waits until no commit is in flight.
    fn settle(&mut self) -> Result<(), SealError> {
        while self.inflight.is_some() {
            if self.q.in_flight() == 0 {
                // The flush's completion was taken elsewhere: a bookkeeping bug.
                self.inflight = None;
                self.poison("a commit's flush completed unseen".into());
                break;
            }
            self.pump(1)?;
        }
        match &self.poisoned {
            Some(why) => Err(SealError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn drain(&mut self) -> Result<(), SealError> {
        while self.q.in_flight() > 0 {
            self.pump(1)?;
        }
        Ok(())
    }

    fn handle(&mut self, c: Completion) {
        if c.user == FLUSH_USER {
            self.sync_done.push((c.user, c.result));
            return;
        }
        let slot = c.user as usize;
        let Some(p) = self.pending.get_mut(slot).and_then(Option::take) else {
            tracing::warn!(user = c.user, "completion for no sealed request; ignored");
            return;
        };
        match p {
            Pending::Read { lba, entry, user } => {
                let result = match c.result {
                    Ok(()) => self.open_from_slot(slot, 0, lba, &entry).map(Some),
                    Err(e) => Err(SealError::Io(e)),
                };
                self.free_slots.push(slot);
                self.done.push_back(SealedCompletion { user, lba, result });
            }
            Pending::Write { lba, phys, user } => {
                self.writing.remove(&phys);
                self.free_slots.push(slot);
                let result = match c.result {
                    Ok(()) => Ok(None),
                    Err(e) => {
                        self.poison(format!("write of block {lba} failed: {e}"));
                        Err(SealError::Io(e))
                    }
                };
                self.done.push_back(SealedCompletion { user, lba, result });
            }
            Pending::Meta {
                pos,
                tier,
                index,
                entry,
            } => {
                let r = match c.result {
                    Ok(()) => self.open_from_slot(slot, tier, index, &entry),
                    Err(e) => Err(SealError::Io(e)),
                };
                self.free_slots.push(slot);
                if let Some(b) = self.batch.get_mut(pos) {
                    *b = Some(r);
                }
            }
            Pending::MetaWrite | Pending::Super => {
                self.free_slots.push(slot);
                if let Err(e) = c.result {
                    self.meta_error.get_or_insert(SealError::Io(e));
                }
            }
        }
    }

    fn submit_lower(&mut self, op: Op, slot: usize, p: Pending) -> Result<(), SealError> {
        self.pending[slot] = Some(p);
        if let Err(e) = self.q.submit(Request {
            op,
            user: slot as u64,
        }) {
            self.pending[slot] = None;
            self.free_slots.push(slot);
            return Err(e.into());
        }
        Ok(())
    }

    /// Reads and authenticates a batch of sealed blocks (map nodes, or data for check).
    fn read_batch(
        &mut self,
        items: &[(u8, u64, Entry)],
    ) -> Result<Vec<Result<Box<Block>, SealError>>, SealError> {
        self.batch = (0..items.len()).map(|_| None).collect();
        for (pos, (tier, index, entry)) in items.iter().enumerate() {
            let slot = self.acquire_slot()?;
            self.submit_lower(
                Op::Read {
                    block: entry.phys,
                    buf: slot,
                },
                slot,
                Pending::Meta {
                    pos,
                    tier: *tier,
                    index: *index,
                    entry: *entry,
                },
            )?;
        }
        self.drain()?;
        Ok(std::mem::take(&mut self.batch)
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SealError::Invalid("read lost".into()))))
            .collect())
    }

    fn write_raw_sync(&mut self, block: u64) -> Result<(), SealError> {
        let slot = self.acquire_slot()?;
        self.q.buffers_mut().copy_in(slot, &self.scratch[..])?;
        self.submit_lower(Op::Write { block, buf: slot }, slot, Pending::Super)?;
        self.drain()?;
        match self.meta_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn flush_sync(&mut self) -> Result<(), SealError> {
        self.drain()?;
        self.q.submit(Request {
            op: Op::Flush,
            user: FLUSH_USER,
        })?;
        self.drain()?;
        let r = self.sync_done.drain(..).find_map(|(_, r)| r.err());
        match r {
            Some(e) => Err(SealError::Io(e)),
            None => Ok(()),
        }
    }

    /// Writes a superblock for `root` at the next epoch, durably, into the slot the
    /// newest one is not in; the log starts afresh at `log_head`. The caller makes
    /// sure no log record is lost by it (the map holds them all).
    fn write_superblock(
        &mut self,
        root: Entry,
        nonce_limit: u64,
        log_head: u64,
    ) -> Result<(), SealError> {
        let epoch = self.last_epoch + 1;
        let sb = Superblock {
            header: self.header.clone(),
            epoch,
            logical: self.logical,
            physical: self.physical,
            nonce_limit,
            depth: self.depth() as u32,
            root,
            log_head,
        };
        let mut b = sb.encode();
        let tag = hmac::sign(&self.keys.mac, &b[..MAC_OFFSET]);
        b[MAC_OFFSET..].copy_from_slice(tag.as_ref());
        *self.scratch = *b;
        let slot = (self.sb_slot + 1) % SUPERBLOCK_SLOTS;
        let res = self.write_raw_sync(slot).and_then(|()| self.flush_sync());
        if let Err(e) = res {
            self.poison(format!("superblock write failed: {e}"));
            return Err(e);
        }
        self.sb_slot = slot;
        self.last_epoch = epoch;
        self.durable = epoch;
        self.nonce_limit = nonce_limit;
        self.committed_root = root;
        self.log.next = log_head;
        self.log.prev.copy_from_slice(&tag.as_ref()[..16]);
        self.log.records.clear();
        self.log.last = None;
        Ok(())
    }

    // ---- the data path ----

    /// Starts reading block `lba`; its plaintext arrives in a completion with `user`.
    pub fn submit_read(&mut self, lba: u64, user: u64) -> Result<(), SealError> {
        let entry = *self.tiers[0]
            .get(lba as usize)
            .ok_or(SealError::OutOfRange {
                lba,
                blocks: self.logical,
            })?;
        self.stats.reads += 1;
        self.outstanding += 1;
        if entry.is_hole() {
            self.stats.hole_reads += 1;
            let mut b = self
                .spare
                .pop()
                .unwrap_or_else(|| Box::new([0; BLOCK_SIZE]));
            b.fill(0);
            self.done.push_back(SealedCompletion {
                user,
                lba,
                result: Ok(Some(b)),
            });
            return Ok(());
        }
        // A write of this very block still in flight: let it land first.
        while self.writing.contains(&entry.phys) {
            self.pump(1)?;
        }
        let slot = self.acquire_slot()?;
        self.submit_lower(
            Op::Read {
                block: entry.phys,
                buf: slot,
            },
            slot,
            Pending::Read { lba, entry, user },
        )
        .inspect_err(|_| self.outstanding -= 1)
    }

    /// Starts writing `data` to block `lba`. The data is sealed before this returns.
    /// It is durable only after [`SealedDisk::commit`].
    pub fn submit_write(&mut self, lba: u64, data: &Block, user: u64) -> Result<(), SealError> {
        self.check_writable()?;
        if lba >= self.logical {
            return Err(SealError::OutOfRange {
                lba,
                blocks: self.logical,
            });
        }
        // Keep room for every map node a commit may have to write.
        if self.alloc.free_blocks() <= self.map_reserve {
            self.drain()?;
            if self.alloc.free_blocks() <= self.map_reserve {
                return Err(SealError::NoSpace(
                    "sealed disk out of copy-on-write space: commit (sync) to reclaim superseded blocks, or create the image with a larger --overprovision".into(),
                ));
            }
        }
        let slot = self.acquire_slot()?;
        let sealed = match self.seal_into_slot(slot, 0, lba, data) {
            Ok(e) => e,
            Err(e) => {
                self.free_slots.push(slot);
                return Err(e);
            }
        };
        let Some(phys) = self.alloc.alloc() else {
            self.free_slots.push(slot);
            return Err(SealError::NoSpace("no free block".into()));
        };
        let entry = Entry { phys, ..sealed };
        let old = std::mem::replace(&mut self.tiers[0][lba as usize], entry);
        self.alloc.supersede(old.phys);
        if self.depth() >= 1 {
            self.dirty[1].insert(lba / FANOUT);
        }
        self.writing.insert(phys);
        self.since.insert(lba);
        self.stats.writes += 1;
        self.outstanding += 1;
        self.submit_lower(
            Op::Write {
                block: phys,
                buf: slot,
            },
            slot,
            Pending::Write { lba, phys, user },
        )
        .inspect_err(|_| self.outstanding -= 1)
    }

    /// Collects finished reads and writes, waiting until at least `min` are there.
    pub fn poll(
        &mut self,
        min: usize,
        out: &mut Vec<SealedCompletion>,
    ) -> Result<usize, SealError> {
        if min > self.outstanding {
            return Err(SealError::Invalid(format!(
                "asked for {min} completions with {} outstanding",
                self.outstanding
            )));
        }
        while self.done.len() < min {
            self.pump(1)?;
        }
        let mut n = 0;
        if self.done.is_empty() && self.q.in_flight() > 0 {
            self.pump(0)?;
        }
        while let Some(c) = self.done.pop_front() {
            out.push(c);
            n += 1;
        }
        self.outstanding -= n;
        Ok(n)
    }

    /// Requests submitted and not yet returned by `poll`.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Gives a read buffer back for reuse.
    pub fn recycle(&mut self, b: Box<Block>) {
        if self.spare.len() < 1024 {
            self.spare.push(b);
        }
    }

    /// Reads one block (synchronously). The synchronous calls use the tag
    /// `u64::MAX`; do not give that tag to asynchronous requests in flight meanwhile.
    pub fn read(&mut self, lba: u64, out: &mut Block) -> Result<(), SealError> {
        self.submit_read(lba, u64::MAX)?;
        let b = self.wait_for(u64::MAX)?;
        if let Some(b) = b {
            out.copy_from_slice(&b[..]);
            self.recycle(b);
        }
        Ok(())
    }

    /// Writes one block (synchronously; durable after commit).
    pub fn write(&mut self, lba: u64, data: &Block) -> Result<(), SealError> {
        self.submit_write(lba, data, u64::MAX)?;
        self.wait_for(u64::MAX).map(|_| ())
    }

    fn wait_for(&mut self, user: u64) -> Result<Option<Box<Block>>, SealError> {
        loop {
            if let Some(pos) = self.done.iter().position(|c| c.user == user) {
                let c = self
                    .done
                    .remove(pos)
                    .ok_or_else(|| SealError::Invalid("lost completion".into()))?;
                self.outstanding -= 1;
                return c.result;
            }
            self.pump(1)?;
        }
    }

    /// Makes every write so far durable, atomically: after a crash the disk opens at
    /// either the previous commit or this one, never in between. Returns the epoch.
    ///
    /// A commit of at most [`format::RECORD_ENTRIES`] blocks appends a record to the
    /// log (one block, one flush); a larger one, or one when the log is full or
    /// space is short, checkpoints (the map and a superblock, two flushes).
    pub fn commit(&mut self) -> Result<u64, SealError> {
        let epoch = self.commit_begin()?;
        self.wait_durable(epoch)?;
        Ok(epoch)
    }

    /// Starts a commit of every write so far and returns its epoch; it is
    /// durable once [`SealedDisk::poll_durable`] says so (or after
    /// [`SealedDisk::wait_durable`]). A commit through the log returns with its
    /// flush in flight, so the caller can let other work (more writes) go on
    /// meanwhile; the next commit's record waits for that flush. A checkpoint
    /// returns durable. With nothing new written, the epoch of the last commit
    /// (which may still be in flight).
    pub fn commit_begin(&mut self) -> Result<u64, SealError> {
        self.check_writable()?;
        if self.since.is_empty() {
            if self.inflight.is_none() {
                self.drain()?;
            }
            if let Some(why) = &self.poisoned {
                return Err(SealError::Poisoned(why.clone()));
            }
            return Ok(self.last_epoch);
        }
        self.settle()?;
        let fits = self.log.next != 0
            && self.since.len() <= RECORD_ENTRIES
            && self.log.records.len() < self.log.limit
            && self.alloc.free_blocks() > self.map_reserve;
        if !fits {
            return self.checkpoint();
        }
        let entries = self
            .since
            .iter()
            .map(|&lba| (lba, self.tiers[0][lba as usize]))
            .collect();
        self.record_begin(entries, true)?;
        self.since.clear();
        self.stats.commits += 1;
        Ok(self.last_epoch)
    }

    /// Whether the commit of `epoch` is durable, looking at finished I/O without
    /// waiting. An error if the disk failed (poisoned) before it was.
    pub fn poll_durable(&mut self, epoch: u64) -> Result<bool, SealError> {
        if self.durable < epoch && self.q.in_flight() > 0 {
            self.pump(0)?;
        }
        if self.durable >= epoch {
            return Ok(true);
        }
        match &self.poisoned {
            Some(why) => Err(SealError::Poisoned(why.clone())),
            None if self.inflight.is_none() => Err(SealError::Invalid(format!(
                "epoch {epoch} is not a commit in flight (durable: {})",
                self.durable
            ))),
            None => Ok(false),
        }
    }

    /// Waits until the commit of `epoch` is durable.
    pub fn wait_durable(&mut self, epoch: u64) -> Result<(), SealError> {
        while !self.poll_durable(epoch)? {
            self.pump(1)?;
        }
        Ok(())
    }

    /// Writes every dirty map node and a superblock naming the new root and a new
    /// log head; the old log's blocks are free once that is durable.
    fn checkpoint(&mut self) -> Result<u64, SealError> {
        self.check_writable()?;
        self.settle()?;
        self.drain()?;
        if let Some(why) = &self.poisoned {
            return Err(SealError::Poisoned(why.clone()));
        }
        let d = self.depth();
        // Enough nonces for every node we may write, from one durable reservation.
        let nodes: u64 = self.dirty.iter().map(|s| s.len() as u64).sum::<u64>() + d as u64;
        if self.nonce_next + nodes > self.nonce_limit {
            self.reserve_nonces()?;
        }
        let mut node = Box::new([0u8; BLOCK_SIZE]);
        for t in 1..=d {
            let dirty = std::mem::take(&mut self.dirty[t]);
            for j in dirty {
                let first = (j * FANOUT) as usize;
                let last = (first + FANOUT as usize).min(self.tiers[t - 1].len());
                encode_node(&self.tiers[t - 1][first..last], &mut node);
                let slot = self.acquire_slot()?;
                let sealed = self.seal_into_slot(slot, t as u8, j, &node)?;
                let phys = self
                    .alloc
                    .alloc()
                    .ok_or_else(|| SealError::NoSpace("no free block for the map".into()))?;
                let entry = Entry { phys, ..sealed };
                let old = std::mem::replace(&mut self.tiers[t][j as usize], entry);
                self.alloc.supersede(old.phys);
                if t < d {
                    self.dirty[t + 1].insert(j / FANOUT);
                }
                self.stats.map_writes += 1;
                self.submit_lower(
                    Op::Write {
                        block: phys,
                        buf: slot,
                    },
                    slot,
                    Pending::MetaWrite,
                )?;
            }
        }
        self.drain()?;
        if let Some(e) = self.meta_error.take() {
            self.poison(format!("map write failed: {e}"));
            return Err(e);
        }
        if let Err(e) = self.flush_sync() {
            self.poison(format!("flush failed: {e}"));
            return Err(e);
        }
        let root = self.tiers[d][0];
        let limit = self
            .nonce_next
            .saturating_add(NONCE_RESERVE)
            .max(self.nonce_limit);
        let head = self
            .alloc
            .alloc()
            .ok_or_else(|| SealError::NoSpace("no free block for the log".into()))?;
        let old_log: Vec<u64> = self
            .log
            .records
            .iter()
            .copied()
            .chain((self.log.next != 0).then_some(self.log.next))
            .collect();
        self.write_superblock(root, limit, head)?;
        for b in old_log {
            self.alloc.supersede(b);
        }
        self.alloc.committed();
        self.since.clear();
        self.stats.commits += 1;
        self.stats.checkpoints += 1;
        Ok(self.last_epoch)
    }

    /// Reads and authenticates every written block; `progress(done, total)`.
    pub fn check(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<CheckReport, SealError> {
        let mut report = CheckReport {
            map_nodes: self.tiers[1..]
                .iter()
                .flatten()
                .filter(|e| !e.is_hole())
                .count() as u64,
            ..Default::default()
        };
        let total = self.logical;
        let mut lba = 0u64;
        while lba < total {
            let end = (lba + 1024).min(total);
            let items: Vec<(u8, u64, Entry)> = (lba..end)
                .filter_map(|i| {
                    let e = self.tiers[0][i as usize];
                    (!e.is_hole()).then_some((0u8, i, e))
                })
                .collect();
            report.holes += (end - lba) - items.len() as u64;
            let results = self.read_batch(&items)?;
            for ((_, i, _), r) in items.iter().zip(results) {
                match r {
                    Ok(b) => {
                        report.good_blocks += 1;
                        self.recycle(b);
                    }
                    Err(SealError::Integrity { .. }) | Err(SealError::Io(_)) => {
                        report.bad_count += 1;
                        if report.bad_blocks.len() < 100 {
                            report.bad_blocks.push(*i);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            lba = end;
            progress(lba, total);
        }
        Ok(report)
    }

    /// Re-wraps the data key under a new master key and writes both superblock
    /// slots, so neither holds the old wrapping. Data is not re-encrypted: a copy of
    /// the image taken earlier still opens with the old key.
    pub fn change_key(&mut self, new: &KeySource, argon2: Argon2Params) -> Result<(), SealError> {
        self.check_writable()?;
        let master = new.load()?;
        let mut header = self.header.clone();
        header.kdf = match master {
            Master::Key(_) => Kdf::Raw,
            Master::Passphrase(_) => Kdf::Argon2id {
                m_kib: argon2.m_kib,
                t: argon2.t,
                p: argon2.p,
            },
        };
        keys::fill_random(&mut header.salt)?;
        let kek = keys::kek(&master, &header)?;
        (header.wrap_nonce, header.wrapped) = keys::wrap(&kek, &header.uuid, &self.keys.dek)?;
        // The log is folded into the map first: records chain to the superblock
        // they follow, and both slots are rewritten here.
        if !self.since.is_empty() || !self.log.records.is_empty() || self.log.next == 0 {
            self.checkpoint()?;
        }
        self.header = header;
        let (root, limit, head) = (self.committed_root, self.nonce_limit, self.log.next);
        self.write_superblock(root, limit, head)?;
        self.write_superblock(root, limit, head)
    }
}

/// Keeps the most telling error: a wrong key beats "not sealed"; corruption beats both.
fn upgrade(slot: &mut Option<SealError>, e: SealError) {
    let rank = |e: &SealError| match e {
        SealError::NotSealed(_) => 0,
        SealError::WrongKey(_) | SealError::Key(_) => 1,
        _ => 2,
    };
    if slot.as_ref().is_none_or(|old| rank(&e) > rank(old)) {
        *slot = Some(e);
    }
}

#[cfg(test)]
mod tests;
