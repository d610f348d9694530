//! The sealed disk's log of commits (docs/FORMAT.md, "Log records" and
//! "Protocol"): the record a small commit appends, and the replay at open.

use super::{FLUSH_USER, NONCE_RESERVE, Pending, SealedDisk};
use crate::format::{Entry, FANOUT, LogRecord, RECORD_BODY, RECORD_ENTRIES, RECORD_NONCE_LEN};
use crate::{BLOCK_SIZE, Block, SealError};
use aws_lc_rs::aead;
use rktio_blk::{BlockQueue, Op, Request};

/// Log records appended before a commit checkpoints instead (writes the map and a
/// superblock): bounds the blocks the log holds and the reads an open replays.
pub const LOG_RECORDS: usize = 256;
/// The AAD tier byte of log records (map tiers are 1..=depth, far below).
const LOG_TIER: u8 = 0xff;

/// A commit whose record is written and whose flush is in flight.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) epoch: u64,
    /// What named the durable state before it (see `root`).
    pub(super) before: Entry,
    /// Blocks the commit superseded: free once it is durable.
    pub(super) superseded: Vec<u64>,
    /// The nonce limit the record makes durable.
    pub(super) nonce_limit: u64,
}

/// The log of commits since the last checkpoint (docs/FORMAT.md, "Protocol").
#[derive(Debug, Default)]
pub(super) struct Log {
    /// Block reserved for the next record (0: no log yet, a version 1 image).
    pub(super) next: u64,
    /// Chain value the next record is bound to: the last record's tag, or the
    /// first 16 bytes of the superblock's MAC.
    pub(super) prev: [u8; 16],
    /// Blocks of the records since the checkpoint.
    pub(super) records: Vec<u64>,
    /// The last record (its block, nonce, tag): names the committed state.
    pub(super) last: Option<Entry>,
    /// Records before a commit checkpoints.
    pub(super) limit: usize,
    /// This session's record nonces: a random 96-bit start, counted up from
    /// (drawn at open: the random generator may be gone when the program exits
    /// and the last commit runs).
    pub(super) nonce_base: [u8; RECORD_NONCE_LEN],
    pub(super) nonces_used: u64,
}

impl Log {
    /// The next record nonce: the random start plus a count in its low 64 bits.
    pub(super) fn next_nonce(&mut self) -> [u8; RECORD_NONCE_LEN] {
        let mut n = self.nonce_base;
        let mut low = [0u8; 8];
        low.copy_from_slice(&n[..8]);
        let low = u64::from_le_bytes(low).wrapping_add(self.nonces_used);
        n[..8].copy_from_slice(&low.to_le_bytes());
        self.nonces_used += 1;
        n
    }
}

/// A log record named as a map entry: its block, the first 8 bytes of its nonce,
/// its tag.
fn record_id(at: u64, nonce: &[u8; RECORD_NONCE_LEN], tag: [u8; 16]) -> Entry {
    let mut n = [0u8; 8];
    n.copy_from_slice(&nonce[..8]);
    Entry {
        phys: at,
        nonce: u64::from_le_bytes(n),
        tag,
    }
}

/// Additional data of a log record: the image, the epoch it commits, the chain
/// value before it, and the block it sits in.
fn record_aad(uuid: &[u8; 16], epoch: u64, prev: &[u8; 16], at: u64) -> aead::Aad<[u8; 49]> {
    let mut a = [0u8; 49];
    a[..16].copy_from_slice(uuid);
    a[16] = LOG_TIER;
    a[17..25].copy_from_slice(&epoch.to_le_bytes());
    a[25..41].copy_from_slice(prev);
    a[41..].copy_from_slice(&at.to_le_bytes());
    aead::Aad::from(a)
}

impl<Q: BlockQueue> SealedDisk<Q> {
    /// Reads the log after the superblock, as far as its records authenticate and
    /// chain, and applies it to the map. The last record counts only if every
    /// data block it names authenticates: a commit writes its record and its
    /// data together and flushes once, so a power cut can leave the record
    /// without its data.
    pub(super) fn replay_log(&mut self, head: u64, sb_mac: [u8; 16]) -> Result<(), SealError> {
        self.log.next = head;
        self.log.prev = sb_mac;
        if head == 0 {
            return Ok(());
        }
        if !self.alloc.claim_committed(head) {
            return Err(SealError::Corrupt(format!(
                "the log starts at block {head}, which the map uses"
            )));
        }
        let mut records: Vec<(Entry, LogRecord)> = Vec::new();
        let (mut at, mut prev, mut epoch) = (head, sb_mac, self.last_epoch);
        let mut raw = Box::new([0u8; BLOCK_SIZE]);
        // A chain cannot be longer than the blocks there are: stops a hostile loop.
        while (records.len() as u64) < self.physical {
            rktio_blk::read_block(&mut self.q, at, 0, &mut raw)??;
            let Some((id, rec)) = self.open_record(&mut raw, at, epoch + 1, &prev) else {
                break;
            };
            prev = id.tag;
            epoch += 1;
            at = rec.next;
            records.push((id, rec));
        }
        if let Some((_, last)) = records.last() {
            let items: Vec<(u8, u64, Entry)> = last
                .entries
                .iter()
                .filter(|(_, e)| !e.is_hole())
                .map(|(lba, e)| (0u8, *lba, *e))
                .collect();
            let mut whole = true;
            for chunk in items.chunks(1024) {
                for r in self.read_batch(chunk)? {
                    match r {
                        Ok(b) => self.recycle(b),
                        Err(SealError::Integrity { .. }) => whole = false,
                        Err(e) => return Err(e),
                    }
                }
            }
            if !whole {
                tracing::warn!(
                    "the last log record's data did not all reach the disk: opening at the commit before it"
                );
                records.pop();
            }
        }
        let mut limit = self.nonce_limit;
        for (id, rec) in records {
            for (lba, e) in &rec.entries {
                let old = self.tiers[0][*lba as usize];
                if !old.is_hole() && !self.alloc.release_committed(old.phys) {
                    return Err(SealError::Corrupt(format!(
                        "log record at block {} replaces block {lba} whose old copy is not in use",
                        id.phys
                    )));
                }
                if !e.is_hole() && !self.alloc.claim_committed(e.phys) {
                    return Err(SealError::Corrupt(format!(
                        "block {} is referenced twice (log record at block {}, block {lba})",
                        e.phys, id.phys
                    )));
                }
                self.tiers[0][*lba as usize] = *e;
                if self.depth() >= 1 {
                    self.dirty[1].insert(lba / FANOUT);
                }
            }
            if !self.alloc.claim_committed(rec.next) {
                return Err(SealError::Corrupt(format!(
                    "log record at block {} reserves block {}, which is in use",
                    id.phys, rec.next
                )));
            }
            limit = limit.max(rec.nonce_limit);
            self.last_epoch += 1;
            self.log.prev = id.tag;
            self.log.next = rec.next;
            self.log.records.push(id.phys);
            self.log.last = Some(id);
        }
        self.nonce_limit = limit;
        self.nonce_next = limit;
        Ok(())
    }

    /// Authenticates and parses the record in `raw` (read from block `at`), which
    /// must be the one for `epoch` chained to `prev`; `None` if it is not (the end
    /// of the log: never written, torn, or not this chain's).
    fn open_record(
        &mut self,
        raw: &mut Block,
        at: u64,
        epoch: u64,
        prev: &[u8; 16],
    ) -> Option<(Entry, LogRecord)> {
        let nonce: [u8; RECORD_NONCE_LEN] = raw[..RECORD_NONCE_LEN].try_into().ok()?;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&raw[BLOCK_SIZE - 16..]);
        let body = &mut raw[RECORD_NONCE_LEN..RECORD_NONCE_LEN + RECORD_BODY];
        self.keys
            .log
            .open_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                record_aad(&self.header.uuid, epoch, prev, at),
                &tag,
                body,
            )
            .ok()?;
        match LogRecord::decode(body, self.logical, self.physical) {
            Ok(r) => Some((record_id(at, &nonce, tag), r)),
            Err(e) => {
                // Authentic yet malformed: only our own bug could write it.
                tracing::warn!("log record at block {at} authenticates but is malformed: {e}");
                None
            }
        }
    }

    /// Appends a log record with `entries` and starts the one flush that makes it
    /// durable (`flushed` finishes it). Data writes still in flight are waited
    /// for but not flushed first: opening checks the last record's data (see
    /// `replay_log`). `commits` says the record holds every block written since
    /// the last commit (what they replaced is freed once it is durable); a record
    /// that only raises the nonce limit commits nothing. No other commit may be
    /// in flight: records are durable one after the other.
    pub(super) fn record_begin(
        &mut self,
        entries: Vec<(u64, Entry)>,
        commits: bool,
    ) -> Result<(), SealError> {
        if self.inflight.is_some() {
            return Err(SealError::Invalid("a commit is already in flight".into()));
        }
        let at = self.log.next;
        if at == 0 || entries.len() > RECORD_ENTRIES {
            return Err(SealError::Invalid(
                "no room in the log for this record".into(),
            ));
        }
        let next = self
            .alloc
            .alloc()
            .ok_or_else(|| SealError::NoSpace("no free block for the log".into()))?;
        // Records are sealed under their own key, with nonces counted from a
        // random 96-bit start per session: a record rewritten after a crash never
        // repeats one, and the data's counter needs no reservation for it.
        let nonce = self.log.next_nonce();
        let limit = self
            .nonce_next
            .saturating_add(NONCE_RESERVE)
            .max(self.nonce_limit);
        let epoch = self.last_epoch + 1;
        let rec = LogRecord {
            next,
            nonce_limit: limit,
            entries,
        };
        // Sealed in trusted memory, then copied to the host buffer.
        let mut body = Box::new([0u8; RECORD_BODY]);
        rec.encode(&mut body);
        let tag = self
            .keys
            .log
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                record_aad(&self.header.uuid, epoch, &self.log.prev, at),
                &mut body[..],
            )
            .map_err(|_| SealError::Invalid("AES-GCM seal failed".into()))?;
        let mut tag16 = [0u8; 16];
        tag16.copy_from_slice(tag.as_ref());
        self.scratch[..RECORD_NONCE_LEN].copy_from_slice(&nonce);
        self.scratch[RECORD_NONCE_LEN..RECORD_NONCE_LEN + RECORD_BODY].copy_from_slice(&body[..]);
        self.scratch[BLOCK_SIZE - 16..].copy_from_slice(&tag16);
        let slot = self.acquire_slot()?;
        self.q.buffers_mut().copy_in(slot, &self.scratch[..])?;
        self.submit_lower(
            Op::Write {
                block: at,
                buf: slot,
            },
            slot,
            Pending::MetaWrite,
        )?;
        self.drain()?;
        if let Some(why) = &self.poisoned {
            return Err(SealError::Poisoned(why.clone()));
        }
        if let Some(e) = self.meta_error.take() {
            self.poison(format!("log write failed: {e}"));
            return Err(e);
        }
        let superseded = if commits {
            self.alloc.commit_written()
        } else {
            Vec::new()
        };
        if let Err(e) = self.q.submit(Request {
            op: Op::Flush,
            user: FLUSH_USER,
        }) {
            self.poison(format!("flush failed: {e}"));
            return Err(e.into());
        }
        self.inflight = Some(InFlight {
            epoch,
            before: self.log.last.unwrap_or(self.committed_root),
            superseded,
            nonce_limit: limit,
        });
        self.last_epoch = epoch;
        self.log.prev = tag16;
        self.log.records.push(at);
        self.log.next = next;
        self.log.last = Some(record_id(at, &nonce, tag16));
        self.stats.log_records += 1;
        Ok(())
    }
}
