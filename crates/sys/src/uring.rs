//! io_uring over one host file and one region of host buffers.
//!
//! With SQPOLL a kernel thread picks submissions off the shared ring, so in steady
//! state neither submitting nor reaping makes a system call; we enter the kernel only
//! to wake a poller that went idle or to sleep when there is nothing to do. Both are
//! counted ([`HostCall::UringSubmit`], [`HostCall::UringWait`]).

use crate::{BLOCK_SIZE, HostBuffers, HostCall, HostError, HostFile, Result, count};
use io_uring::{IoUring, opcode, types};

/// io_uring settings.
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries (the queue depth).
    pub entries: u32,
    /// Use a kernel SQ polling thread that sleeps after this many idle milliseconds.
    /// `None`: no SQPOLL (one io_uring_enter per submitted batch).
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 128,
            sqpoll_idle_ms: Some(200),
        }
    }
}

/// One request for the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UringOp {
    /// Read `block` into buffer slot `slot`.
    Read {
        /// Buffer slot.
        slot: usize,
        /// Block number in the file.
        block: u64,
    },
    /// Write buffer slot `slot` to `block`.
    Write {
        /// Buffer slot.
        slot: usize,
        /// Block number in the file.
        block: u64,
    },
    /// fdatasync the file.
    Flush,
}

/// A completion exactly as the host wrote it: nothing in it is checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCompletion {
    /// The user data the host claims this completion is for.
    pub user_data: u64,
    /// The result the host reports (bytes moved, or a negative errno).
    pub result: i32,
}

/// An io_uring bound to one file (registered) and one buffer region (registered).
pub struct Uring {
    // Field order matters: the ring (and its registrations) must go before the
    // buffers it points into are unmapped.
    ring: IoUring,
    bufs: HostBuffers,
    file: HostFile,
    sqpoll: bool,
    unsubmitted: u32,
}

impl Drop for Uring {
    fn drop(&mut self) {
        crate::internal::unmark(std::os::fd::AsRawFd::as_raw_fd(&self.ring));
    }
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("file", &self.file)
            .field("sqpoll", &self.sqpoll)
            .finish_non_exhaustive()
    }
}

impl Uring {
    /// Sets up a ring over `file`, registering the file and `bufs`.
    pub fn new(file: HostFile, bufs: HostBuffers, cfg: UringConfig) -> Result<Self> {
        let entries = cfg.entries.clamp(1, 4096);
        let mut sqpoll = false;
        let ring = match cfg.sqpoll_idle_ms {
            Some(idle) => {
                count(HostCall::UringSetup);
                match IoUring::builder().setup_sqpoll(idle).build(entries) {
                    Ok(r) => {
                        sqpoll = true;
                        r
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "io_uring SQPOLL refused by the host; falling back to plain io_uring");
                        count(HostCall::UringSetup);
                        IoUring::new(entries).map_err(|e| HostError::new("io_uring_setup", e))?
                    }
                }
            }
            None => {
                count(HostCall::UringSetup);
                IoUring::new(entries).map_err(|e| HostError::new("io_uring_setup", e))?
            }
        };
        count(HostCall::UringSetup);
        ring.submitter()
            .register_files(&[file.raw_fd()])
            .map_err(|e| HostError::new("io_uring register file", e))?;
        let iov = libc::iovec {
            iov_base: bufs.base_ptr().cast(),
            iov_len: bufs.len_bytes(),
        };
        count(HostCall::UringSetup);
        // SAFETY: the iovec covers exactly the mapping owned by `bufs`, which this
        // struct owns and which outlives the ring (field order above).
        unsafe { ring.submitter().register_buffers(&[iov]) }
            .map_err(|e| HostError::new("io_uring register buffers", e))?;
        // The ring's descriptor is the stack's own (see `internal`); the
        // io-uring crate owns it, `Drop for Uring` unmarks it.
        crate::internal::mark(std::os::fd::AsRawFd::as_raw_fd(&ring));
        Ok(Self {
            ring,
            bufs,
            file,
            sqpoll,
            unsubmitted: 0,
        })
    }

    /// Is a kernel SQ poller running for this ring?
    pub fn is_sqpoll(&self) -> bool {
        self.sqpoll
    }

    /// The registered buffers.
    pub fn buffers(&self) -> &HostBuffers {
        &self.bufs
    }

    /// The registered buffers, for copying data in.
    pub fn buffers_mut(&mut self) -> &mut HostBuffers {
        &mut self.bufs
    }

    /// The file.
    pub fn file(&self) -> &HostFile {
        &self.file
    }

    /// Entries in the submission queue.
    pub fn sq_capacity(&mut self) -> usize {
        self.ring.submission().capacity()
    }

    /// Queues one request; `Ok(false)` if the submission queue is full.
    /// Nothing reaches the host until [`Uring::submit`].
    pub fn push(&mut self, op: UringOp, user_data: u64) -> Result<bool> {
        let fixed = types::Fixed(0);
        let entry = match op {
            UringOp::Read { slot, block } | UringOp::Write { slot, block } => {
                let ptr = self.bufs.slot_ptr(slot).ok_or_else(|| {
                    HostError::new(
                        "io_uring push",
                        std::io::Error::other(format!("no buffer slot {slot}")),
                    )
                })?;
                let off = block.checked_mul(BLOCK_SIZE as u64).ok_or_else(|| {
                    HostError::new(
                        "io_uring push",
                        std::io::Error::other(format!("block {block} out of range")),
                    )
                })?;
                if matches!(op, UringOp::Read { .. }) {
                    opcode::ReadFixed::new(fixed, ptr, BLOCK_SIZE as u32, 0)
                        .offset(off)
                        .build()
                } else {
                    opcode::WriteFixed::new(fixed, ptr.cast_const(), BLOCK_SIZE as u32, 0)
                        .offset(off)
                        .build()
                }
            }
            UringOp::Flush => opcode::Fsync::new(fixed)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(user_data);
        let mut sq = self.ring.submission();
        // SAFETY: the entry names registered file 0 and a slot of the registered buffer
        // region, both owned by `self` and alive until the ring is dropped; the caller
        // (the block queue) does not touch a slot while its request is in flight.
        let pushed = unsafe { sq.push(&entry) }.is_ok();
        if pushed {
            self.unsubmitted += 1;
        }
        Ok(pushed)
    }

    /// Makes queued requests visible to the host. With SQPOLL and a poller that is
    /// awake this is a store to shared memory and no system call.
    pub fn submit(&mut self) -> Result<()> {
        if self.unsubmitted == 0 {
            return Ok(());
        }
        let n = self.unsubmitted;
        let mut sq = self.ring.submission();
        sq.sync();
        let mut flags = 0;
        if self.sqpoll {
            // Pairs with the kernel's store of IORING_SQ_NEED_WAKEUP (see io_uring_enter(2)).
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if sq.need_wakeup() {
                flags |= io_uring::EnterFlags::SQ_WAKEUP.bits();
            } else if sq.cq_overflow() || sq.taskrun() {
                flags |= io_uring::EnterFlags::GETEVENTS.bits();
            } else {
                drop(sq);
                self.unsubmitted = 0;
                return Ok(());
            }
        }
        drop(sq);
        count(HostCall::UringSubmit);
        // SAFETY: a plain io_uring_enter on our own ring with no argument struct.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(n, 0, flags, None)
        }
        .map_err(|e| HostError::new("io_uring_enter (submit)", e))?;
        self.unsubmitted = 0;
        Ok(())
    }

    /// Takes the completions the host has posted, at most one ring's worth, without
    /// a system call. Nothing in them is checked here.
    pub fn reap(&mut self, out: &mut Vec<RawCompletion>) -> usize {
        let mut cq = self.ring.completion();
        let cap = cq.capacity();
        let mut n = 0;
        for cqe in cq.by_ref().take(cap) {
            out.push(RawCompletion {
                user_data: cqe.user_data(),
                result: cqe.result(),
            });
            n += 1;
        }
        cq.sync();
        n
    }

    /// Sleeps in the kernel until at least `min` completions are posted (also wakes
    /// the SQ poller if it went idle).
    pub fn wait(&mut self, min: u32) -> Result<()> {
        let mut flags = io_uring::EnterFlags::GETEVENTS.bits();
        let mut to_submit = 0;
        if self.sqpoll {
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if self.ring.submission().need_wakeup() {
                flags |= io_uring::EnterFlags::SQ_WAKEUP.bits();
            }
        } else {
            to_submit = self.unsubmitted;
        }
        count(HostCall::UringWait);
        // SAFETY: a plain io_uring_enter on our own ring with no argument struct.
        let r = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, min, flags, None)
        };
        match r {
            Ok(_) => {
                if !self.sqpoll {
                    self.unsubmitted = 0;
                }
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) => Err(HostError::new("io_uring_enter (wait)", e)),
        }
    }
}
