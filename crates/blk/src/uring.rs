//! io_uring backend: SQPOLL, O_DIRECT, registered file and buffers.

use crate::file::image_blocks;
use crate::{
    BLOCK_SIZE, BlkError, BlockQueue, Completion, FLUSH_SLOTS, HostBuffers, IoError, Op,
    PollConfig, QueueStats, Request, Tracker,
};
use rktio_sys::{HostFile, RawCompletion, Uring, UringConfig, UringOp};
use std::time::Instant;

/// A block queue on io_uring. With SQPOLL, steady-state I/O makes no host call:
/// submissions are stores to the shared ring and completions are loads from it.
#[derive(Debug)]
pub struct UringQueue {
    ring: Uring,
    tracker: Tracker,
    /// Requests in flight, indexed by the tag we hand the host as user_data.
    slab: Vec<Option<Request>>,
    free_tags: Vec<usize>,
    raw: Vec<RawCompletion>,
    poll: PollConfig,
    /// Current spin budget (see [`PollConfig`]).
    spin: std::time::Duration,
    /// When the budget last grew (it halves after a second without growing).
    grown: Instant,
}

impl UringQueue {
    /// A queue of `depth` slots over `file`.
    pub fn new(
        file: HostFile,
        depth: usize,
        sqpoll_idle_ms: Option<u32>,
        poll: PollConfig,
    ) -> Result<Self, BlkError> {
        let blocks = image_blocks(&file)?;
        let depth = depth.clamp(1, 1024);
        let tags = depth + FLUSH_SLOTS;
        let bufs = HostBuffers::new(depth)?;
        let ring = Uring::new(
            file,
            bufs,
            UringConfig {
                entries: tags.next_power_of_two() as u32,
                sqpoll_idle_ms,
            },
        )?;
        if !ring.file().is_direct() {
            tracing::warn!("uring backend without O_DIRECT: I/O goes through the host page cache");
        }
        Ok(Self {
            ring,
            tracker: Tracker::new(depth, blocks),
            slab: vec![None; tags],
            free_tags: (0..tags).rev().collect(),
            raw: Vec::with_capacity(tags * 2),
            poll,
            spin: poll.spin,
            grown: Instant::now(),
        })
    }

    /// Is a kernel SQ poller running?
    pub fn is_sqpoll(&self) -> bool {
        self.ring.is_sqpoll()
    }

    /// Is the image opened with O_DIRECT?
    pub fn is_direct(&self) -> bool {
        self.ring.file().is_direct()
    }

    /// Checks what the host reported and turns it into a completion.
    fn accept(&mut self, raw: RawCompletion, out: &mut Vec<Completion>) -> bool {
        let Some(req) = usize::try_from(raw.user_data)
            .ok()
            .and_then(|t| self.slab.get_mut(t))
            .and_then(Option::take)
        else {
            self.tracker.stats.host_protocol_errors += 1;
            tracing::warn!(
                user_data = raw.user_data,
                "host posted a completion for no request in flight; ignored"
            );
            return false;
        };
        self.free_tags.push(raw.user_data as usize);
        let result = match (req.op, raw.result) {
            (_, r) if r < 0 => Err(IoError {
                errno: -r,
                detail: format!("host failed {:?}", req.op),
            }),
            (Op::Flush, _) => Ok(()),
            (_, r) if r as usize == BLOCK_SIZE => Ok(()),
            (op, r) => {
                self.tracker.stats.host_protocol_errors += 1;
                Err(IoError::eio(format!(
                    "host reported {r} bytes moved for a {BLOCK_SIZE}-byte {op:?}"
                )))
            }
        };
        self.tracker.release(&req.op, result.is_ok());
        out.push(Completion {
            user: req.user,
            op: req.op,
            result,
        });
        true
    }

    fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        self.ring.reap(&mut raw);
        let n = raw.drain(..).filter(|r| self.accept(*r, out)).count();
        self.raw = raw;
        n
    }
}

impl BlockQueue for UringQueue {
    fn name(&self) -> &'static str {
        "uring"
    }
    fn blocks(&self) -> u64 {
        self.tracker.blocks()
    }
    fn depth(&self) -> usize {
        self.ring.buffers().slots()
    }
    fn buffers(&self) -> &HostBuffers {
        self.ring.buffers()
    }
    fn buffers_mut(&mut self) -> &mut HostBuffers {
        self.ring.buffers_mut()
    }
    fn submit(&mut self, req: Request) -> Result<(), BlkError> {
        let Some(&tag) = self.free_tags.last() else {
            return Err(BlkError::QueueFull(self.tracker.in_flight()));
        };
        self.tracker.admit(&req.op)?;
        let op = match req.op {
            Op::Read { block, buf } => UringOp::Read { slot: buf, block },
            Op::Write { block, buf } => UringOp::Write { slot: buf, block },
            Op::Flush => UringOp::Flush,
        };
        let mut pushed = self.ring.push(op, tag as u64)?;
        if !pushed {
            self.ring.submit()?;
            pushed = self.ring.push(op, tag as u64)?;
        }
        if !pushed {
            self.tracker.release(&req.op, true);
            return Err(BlkError::QueueFull(self.tracker.in_flight()));
        }
        self.free_tags.pop();
        self.slab[tag] = Some(req);
        Ok(())
    }
    fn kick(&mut self) -> Result<(), BlkError> {
        Ok(self.ring.submit()?)
    }
    fn poll(&mut self, out: &mut Vec<Completion>, min: usize) -> Result<usize, BlkError> {
        self.tracker.check_wait(min)?;
        self.ring.submit()?;
        let mut got = self.reap(out);
        if got >= min {
            return Ok(got);
        }
        let mut start = Instant::now();
        let mut spins = 0u32;
        let mut parked = false;
        while got < min {
            got += self.reap(out);
            if got >= min {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() >= self.spin {
                // Nothing came while spinning: sleep in the host until it does.
                let t = Instant::now();
                self.ring.wait((min - got) as u32)?;
                let slept = t.elapsed();
                if !parked && slept < self.spin {
                    // A short park: spinning a little longer would have done.
                    self.spin = (self.spin * 2).min(self.poll.max_spin.max(self.poll.spin));
                    self.grown = Instant::now();
                }
                parked = true;
                start = Instant::now();
            } else {
                std::hint::spin_loop();
            }
        }
        if self.spin > self.poll.spin && self.grown.elapsed() > std::time::Duration::from_secs(1) {
            self.spin = (self.spin / 2).max(self.poll.spin);
            self.grown = Instant::now();
        }
        Ok(got)
    }
    fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }
    fn stats(&self) -> QueueStats {
        self.tracker.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rktio_sys::{FileOptions, HostCall, HostCalls};

    fn queue(sqpoll_idle_ms: Option<u32>) -> (tempfile::NamedTempFile, UringQueue) {
        let f = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
        f.as_file().set_len(64 * BLOCK_SIZE as u64).unwrap();
        let file = HostFile::open(f.path(), FileOptions::default()).unwrap();
        let q = UringQueue::new(file, 4, sqpoll_idle_ms, PollConfig::default()).unwrap();
        (f, q)
    }

    /// Completions the host makes up are checked, never trusted.
    #[test]
    fn hostile_completions_are_rejected() {
        let (_f, mut q) = queue(None);
        let mut out = Vec::new();
        // Tags that match nothing in flight: ignored and counted.
        for user_data in [0, 3, 8, 4096, u64::MAX] {
            assert!(!q.accept(
                RawCompletion {
                    user_data,
                    result: BLOCK_SIZE as i32
                },
                &mut out
            ));
        }
        assert_eq!(q.stats().host_protocol_errors, 5);
        assert!(out.is_empty());
        // A real request, then lies about it: short count, too long, negative errno.
        for (lie, errno) in [
            (100, crate::EIO),
            (BLOCK_SIZE as i32 * 2, crate::EIO),
            (-28, 28),
            (0, crate::EIO),
        ] {
            q.submit(Request {
                op: Op::Read { block: 1, buf: 0 },
                user: 7,
            })
            .unwrap();
            let tag = (0..q.slab.len()).find(|t| q.slab[*t].is_some()).unwrap() as u64;
            assert!(q.accept(
                RawCompletion {
                    user_data: tag,
                    result: lie
                },
                &mut out
            ));
            let c = out.pop().unwrap();
            assert_eq!(c.user, 7);
            assert_eq!(c.result.unwrap_err().errno, errno);
            // The kernel's real completion for that tag arrives later: now unknown, ignored.
            q.ring.submit().unwrap();
            q.ring.wait(1).unwrap();
            let mut raw = Vec::new();
            q.ring.reap(&mut raw);
            for r in raw {
                assert!(!q.accept(r, &mut out));
            }
        }
        assert_eq!(q.in_flight(), 0);
    }

    /// With nothing to do the kernel poller goes to sleep (burning no core) and the
    /// next submission has to wake it with a host call.
    #[test]
    fn idle_sq_poller_sleeps_and_is_woken() {
        let (_f, mut q) = queue(Some(10));
        assert!(q.is_sqpoll());
        let mut out = Vec::new();
        q.submit(Request {
            op: Op::Read { block: 0, buf: 0 },
            user: 1,
        })
        .unwrap();
        q.poll(&mut out, 1).unwrap();
        // Far past the 10 ms idle time: the poller has parked itself.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let before = HostCalls::snapshot();
        q.submit(Request {
            op: Op::Read { block: 0, buf: 0 },
            user: 2,
        })
        .unwrap();
        q.poll(&mut out, 1).unwrap();
        let d = HostCalls::snapshot().since(&before);
        assert!(
            d.get(HostCall::UringSubmit) >= 1,
            "the poller should have needed a wake-up: {d}"
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|c| c.result.is_ok()));
    }
}
