//! A block queue that misbehaves on purpose, over any backend: it plays the hostile
//! or failing host so the layers above can prove they notice.

use crate::{
    BLOCK_SIZE, BlkError, Block, BlockQueue, Completion, HostBuffers, IoError, Op, QueueStats,
    Request,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One kind of misbehaviour. Write numbers count from 1, over all writes the wrapper saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads of `block` come back with bit `bit` (0..32768) flipped.
    FlipBit {
        /// Block.
        block: u64,
        /// Bit index within the block.
        bit: u32,
    },
    /// Reads of `block` return the oldest version written through the wrapper
    /// (needs [`FaultControl::record_history`]).
    ReplayOld {
        /// Block.
        block: u64,
    },
    /// Reads of `a` return `b`'s contents and the other way round.
    Swap {
        /// One block.
        a: u64,
        /// The other.
        b: u64,
    },
    /// Write number `nth` reports success but is not written.
    DropWrite {
        /// Which write.
        nth: u64,
    },
    /// Write number `nth` persists only its first `keep_bytes`; the rest keeps the
    /// previous contents (as recorded), or zeros.
    TearWrite {
        /// Which write.
        nth: u64,
        /// Bytes of the new data that land.
        keep_bytes: usize,
    },
    /// Every read or write of `block` fails with EIO.
    Eio {
        /// Block.
        block: u64,
    },
    /// Every flush fails with EIO.
    FailFlush,
    /// A volatile write cache, then a power failure when write `after_writes + 1`
    /// arrives: writes sit in the cache until a flush; at the cut, each cached block
    /// independently keeps its old contents or one of its cached versions, the write
    /// in progress may land torn (512-byte sectors at random), and from then on every
    /// request fails with EIO. Choices come from `seed`.
    PowerCut {
        /// Writes that happen before the power fails.
        after_writes: u64,
        /// Seed for the choices made at the cut.
        seed: u64,
    },
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    writes: u64,
    record_history: bool,
    history: HashMap<u64, Vec<Box<Block>>>,
    cache: Vec<(u64, Box<Block>)>,
    cut: bool,
    injected: u64,
}

impl State {
    fn power_cut(&self) -> Option<(u64, u64)> {
        self.faults.iter().find_map(|f| match f {
            Fault::PowerCut { after_writes, seed } => Some((*after_writes, *seed)),
            _ => None,
        })
    }
    fn has(&self, pred: impl Fn(&Fault) -> bool) -> bool {
        self.faults.iter().any(pred)
    }
}

/// A handle to arm faults and read what happened, shareable with tests.
#[derive(Debug, Clone, Default)]
pub struct FaultControl(Arc<Mutex<State>>);

impl FaultControl {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Adds a fault.
    pub fn arm(&self, f: Fault) {
        self.state().faults.push(f);
    }
    /// Removes all faults (a cut that happened stays cut).
    pub fn clear(&self) {
        self.state().faults.clear();
    }
    /// Keeps a copy of every write (for [`Fault::ReplayOld`] and [`Fault::TearWrite`]).
    pub fn record_history(&self, on: bool) {
        self.state().record_history = on;
    }
    /// Writes seen so far.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }
    /// Has the power been cut?
    pub fn is_cut(&self) -> bool {
        self.state().cut
    }
    /// How many requests were tampered with.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }
}

/// Wraps a block queue and injects the faults armed on its [`FaultControl`].
///
/// It keeps the inner queue's last buffer slot for itself (writing back its cache),
/// so its depth is one less than the inner queue's.
#[derive(Debug)]
pub struct FaultyQueue<Q: BlockQueue> {
    inner: Q,
    ctl: FaultControl,
    ready: VecDeque<Completion>,
    pending: HashMap<u64, Op>,
    rng: u64,
}

const SYNC_USER: u64 = u64::MAX - 1;

impl<Q: BlockQueue> FaultyQueue<Q> {
    /// Wraps `inner` (depth at least 2).
    pub fn new(inner: Q, ctl: FaultControl) -> Result<Self, BlkError> {
        if inner.depth() < 2 {
            return Err(BlkError::Invalid(
                "fault injector needs an inner queue of depth 2 or more".into(),
            ));
        }
        Ok(Self {
            inner,
            ctl,
            ready: VecDeque::new(),
            pending: HashMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        })
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    fn reserved(&self) -> usize {
        self.inner.depth() - 1
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn synth(&mut self, req: Request, result: Result<(), IoError>) {
        self.ready.push_back(Completion {
            user: req.user,
            op: req.op,
            result,
        });
    }

    /// Applies read-side faults to a completion that came from the inner queue.
    fn fix_up(&mut self, mut c: Completion) -> Completion {
        if let Some(orig) = self.pending.remove(&c.user) {
            c.op = orig;
        }
        if let (Op::Read { block, buf }, Ok(())) = (c.op, &c.result) {
            let flips: Vec<u32> = self
                .ctl
                .state()
                .faults
                .iter()
                .filter_map(|f| match f {
                    Fault::FlipBit { block: b, bit } if *b == block => Some(*bit),
                    _ => None,
                })
                .collect();
            if !flips.is_empty() {
                let mut data = [0u8; BLOCK_SIZE];
                if self.inner.buffers().copy_out(buf, &mut data).is_ok() {
                    for bit in flips {
                        let i = (bit as usize / 8) % BLOCK_SIZE;
                        data[i] ^= 1 << (bit % 8);
                    }
                    let _ = self.inner.buffers_mut().copy_in(buf, &data);
                    self.ctl.state().injected += 1;
                }
            }
        }
        c
    }

    /// Runs one request on the inner queue through the reserved slot, right now.
    fn inner_sync(
        &mut self,
        op: Op,
        data: Option<&Block>,
    ) -> Result<Result<(), IoError>, BlkError> {
        if let Some(d) = data {
            let slot = self.reserved();
            self.inner.buffers_mut().copy_in(slot, d)?;
        }
        self.inner.submit(Request {
            op,
            user: SYNC_USER,
        })?;
        let mut out = Vec::new();
        loop {
            self.inner.poll(&mut out, 1)?;
            let mut mine = None;
            for c in out.drain(..) {
                if c.user == SYNC_USER && mine.is_none() {
                    mine = Some(c.result);
                } else {
                    let c = self.fix_up(c);
                    self.ready.push_back(c);
                }
            }
            if let Some(r) = mine {
                return Ok(r);
            }
        }
    }

    /// Writes the volatile cache back to the inner queue, in order.
    fn write_back(&mut self) -> Result<Result<(), IoError>, BlkError> {
        let cache = std::mem::take(&mut self.ctl.state().cache);
        let slot = self.reserved();
        for (block, data) in cache {
            let r = self.inner_sync(Op::Write { block, buf: slot }, Some(&data))?;
            if r.is_err() {
                return Ok(r);
            }
        }
        Ok(Ok(()))
    }

    /// The power fails: some cached writes land, the one in progress may tear.
    fn cut(&mut self, in_progress: (u64, Block)) -> Result<(), BlkError> {
        let cache = std::mem::take(&mut self.ctl.state().cache);
        let mut order: Vec<u64> = Vec::new();
        let mut versions: HashMap<u64, Vec<Box<Block>>> = HashMap::new();
        for (b, d) in cache {
            if !versions.contains_key(&b) {
                order.push(b);
            }
            versions.entry(b).or_default().push(d);
        }
        let slot = self.reserved();
        for b in order {
            let vs = versions.remove(&b).unwrap_or_default();
            let pick = (self.next_rand() % (vs.len() as u64 + 1)) as usize;
            if pick > 0 {
                let _ = self.inner_sync(
                    Op::Write {
                        block: b,
                        buf: slot,
                    },
                    Some(&vs[pick - 1]),
                )?;
            }
        }
        // The write in progress: nothing, or a random subset of its sectors.
        if self.next_rand().is_multiple_of(2) {
            let (b, new) = in_progress;
            let mut old = [0u8; BLOCK_SIZE];
            if self
                .inner_sync(
                    Op::Read {
                        block: b,
                        buf: slot,
                    },
                    None,
                )?
                .is_ok()
            {
                self.inner.buffers().copy_out(slot, &mut old)?;
            }
            let mask = self.next_rand();
            for s in 0..BLOCK_SIZE / 512 {
                if mask & (1 << s) != 0 {
                    old[s * 512..(s + 1) * 512].copy_from_slice(&new[s * 512..(s + 1) * 512]);
                }
            }
            let _ = self.inner_sync(
                Op::Write {
                    block: b,
                    buf: slot,
                },
                Some(&old),
            )?;
        }
        let _ = self.inner_sync(Op::Flush, None)?;
        let mut st = self.ctl.state();
        st.cut = true;
        st.injected += 1;
        Ok(())
    }
}

fn dead() -> Result<(), IoError> {
    Err(IoError::eio("device lost power (injected)"))
}

impl<Q: BlockQueue> BlockQueue for FaultyQueue<Q> {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn blocks(&self) -> u64 {
        self.inner.blocks()
    }
    fn depth(&self) -> usize {
        self.inner.depth() - 1
    }
    fn buffers(&self) -> &HostBuffers {
        self.inner.buffers()
    }
    fn buffers_mut(&mut self) -> &mut HostBuffers {
        self.inner.buffers_mut()
    }
    fn submit(&mut self, req: Request) -> Result<(), BlkError> {
        if let Some(buf) = req.op.buf()
            && buf >= self.depth()
        {
            return Err(BlkError::BadBuffer(buf));
        }
        if let Some(block) = req.op.block()
            && block >= self.blocks()
        {
            return Err(BlkError::OutOfRange {
                block,
                blocks: self.blocks(),
            });
        }
        if self.ctl.is_cut() {
            self.synth(req, dead());
            return Ok(());
        }
        let mut op = req.op;
        match req.op {
            Op::Write { block, buf } => {
                let mut data = [0u8; BLOCK_SIZE];
                self.inner.buffers().copy_out(buf, &mut data)?;
                let (n, cut, eio, dropped, tear) = {
                    let mut st = self.ctl.state();
                    st.writes += 1;
                    let n = st.writes;
                    let cut = st.power_cut();
                    let eio = st.has(|f| matches!(f, Fault::Eio { block: b } if *b == block));
                    let dropped = st.has(|f| matches!(f, Fault::DropWrite { nth } if *nth == n));
                    let tear = st.faults.iter().find_map(|f| match f {
                        Fault::TearWrite { nth, keep_bytes } if *nth == n => Some(*keep_bytes),
                        _ => None,
                    });
                    (n, cut, eio, dropped, tear)
                };
                if let Some((after, seed)) = cut {
                    if n > after {
                        self.rng = seed;
                        self.cut((block, data))?;
                        self.synth(req, dead());
                    } else {
                        let mut st = self.ctl.state();
                        st.cache.push((block, Box::new(data)));
                        if st.record_history {
                            st.history.entry(block).or_default().push(Box::new(data));
                        }
                        drop(st);
                        self.synth(req, Ok(()));
                    }
                    return Ok(());
                }
                if eio {
                    self.ctl.state().injected += 1;
                    self.synth(
                        req,
                        Err(IoError::eio(format!("injected EIO writing block {block}"))),
                    );
                    return Ok(());
                }
                if dropped {
                    self.ctl.state().injected += 1;
                    self.synth(req, Ok(()));
                    return Ok(());
                }
                let mut st = self.ctl.state();
                if let Some(keep) = tear {
                    let keep = keep.min(BLOCK_SIZE);
                    let mut torn = st
                        .history
                        .get(&block)
                        .and_then(|v| v.last())
                        .map_or([0u8; BLOCK_SIZE], |b| **b);
                    torn[..keep].copy_from_slice(&data[..keep]);
                    st.injected += 1;
                    drop(st);
                    self.inner.buffers_mut().copy_in(buf, &torn)?;
                    st = self.ctl.state();
                }
                if st.record_history {
                    st.history.entry(block).or_default().push(Box::new(data));
                }
            }
            Op::Read { block, buf } => {
                let mut st = self.ctl.state();
                if st.has(|f| matches!(f, Fault::Eio { block: b } if *b == block)) {
                    st.injected += 1;
                    drop(st);
                    self.synth(
                        req,
                        Err(IoError::eio(format!("injected EIO reading block {block}"))),
                    );
                    return Ok(());
                }
                let cached = st
                    .cache
                    .iter()
                    .rev()
                    .find(|(b, _)| *b == block)
                    .map(|(_, d)| **d);
                let replay =
                    if st.has(|f| matches!(f, Fault::ReplayOld { block: b } if *b == block)) {
                        st.history
                            .get(&block)
                            .filter(|v| v.len() >= 2)
                            .map(|v| *v[0])
                    } else {
                        None
                    };
                if replay.is_some() {
                    st.injected += 1;
                }
                let swap = st.faults.iter().find_map(|f| match f {
                    Fault::Swap { a, b } if *a == block => Some(*b),
                    Fault::Swap { a, b } if *b == block => Some(*a),
                    _ => None,
                });
                drop(st);
                if let Some(data) = replay.or(cached) {
                    self.inner.buffers_mut().copy_in(buf, &data)?;
                    self.synth(req, Ok(()));
                    return Ok(());
                }
                if let Some(other) = swap {
                    self.ctl.state().injected += 1;
                    op = Op::Read { block: other, buf };
                }
            }
            Op::Flush => {
                if self.ctl.state().has(|f| matches!(f, Fault::FailFlush)) {
                    self.ctl.state().injected += 1;
                    self.synth(req, Err(IoError::eio("injected flush failure")));
                    return Ok(());
                }
                if self.ctl.state().power_cut().is_some() {
                    let r = self.write_back()?;
                    if r.is_err() {
                        self.synth(req, r);
                        return Ok(());
                    }
                }
            }
        }
        self.inner.submit(Request { op, user: req.user })?;
        self.pending.insert(req.user, req.op);
        Ok(())
    }
    fn kick(&mut self) -> Result<(), BlkError> {
        self.inner.kick()
    }
    fn poll(&mut self, out: &mut Vec<Completion>, min: usize) -> Result<usize, BlkError> {
        let in_flight = self.in_flight();
        if min > in_flight {
            return Err(BlkError::WaitTooMany {
                want: min,
                in_flight,
            });
        }
        let mut got = 0;
        while let Some(c) = self.ready.pop_front() {
            out.push(c);
            got += 1;
        }
        let want = min.saturating_sub(got).min(self.inner.in_flight());
        let mut tmp = Vec::new();
        self.inner.poll(&mut tmp, want)?;
        for c in tmp {
            let c = self.fix_up(c);
            out.push(c);
            got += 1;
        }
        // inner_sync (during fix-ups) may have parked more completions.
        while let Some(c) = self.ready.pop_front() {
            out.push(c);
            got += 1;
        }
        Ok(got)
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.ready.len()
    }
    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }
}
