//! The stack's own signal stack, one per thread of the program.
//!
//! The kernel writes a signal's frame (some 3 KiB with the AVX-512 state) where
//! the thread's stack pointer is, and the handler then runs below it. For a
//! SIGSYS that is wherever the program made its system call: a Go goroutine's
//! stack starts at 8 KiB and is grown by checks that the stack's code does not
//! make, so the frame and the stack's code would write past its end. Every
//! action the kernel holds for us (SIGSYS, and the wrapper of each program
//! handler) is installed with SA_ONSTACK, and every thread has a signal stack of
//! ours, set before it runs a single instruction of the program. The program's
//! own `sigaltstack` is kept aside per thread (signals.rs); its handlers run on
//! ours, which is what it is told while they do.
//!
//! The stacks are kept in a fixed table and reused: a thread that ends gives its
//! stack back in its last instruction before the kernel's exit
//! (`rktio_release_exit`), so no other thread can take it while it still runs on
//! it. The table is lock-free, so a forked child (one thread, other threads'
//! locks held for ever) can give back what its parent's other threads held.

use super::*;

/// Usable bytes of each stack (a guard page below). Touched pages only cost memory.
const SIZE: u64 = 512 << 10;
const GUARD: u64 = 4096;
/// Threads that can run at once with a stack of ours.
const SLOTS: usize = 4096;

struct Slot {
    /// The lowest usable address (0: not mapped yet).
    base: AtomicU64,
    /// 1 while a thread holds it (a futex-sized word: cleared by its last store).
    busy: std::sync::atomic::AtomicU32,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        base: AtomicU64::new(0),
        busy: std::sync::atomic::AtomicU32::new(0),
    }
}; SLOTS];

thread_local! {
    /// This thread's slot (+1; 0: none).
    static MINE: Cell<usize> = const { Cell::new(0) };
}

/// The kernel's `stack_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct StackT {
    pub(super) sp: u64,
    pub(super) flags: i32,
    pub(super) size: u64,
}

pub(super) const SS_ONSTACK: i32 = 1;
pub(super) const SS_DISABLE: i32 = 2;
pub(super) const SS_AUTODISARM: i32 = 1 << 31;

// rktio_release_exit(busy, status): gives the slot back and ends the thread, with
// no memory touched in between (its stack may be another thread's at once).
std::arch::global_asm!(
    ".pushsection .text.rktio_entry,\"ax\",@progbits",
    ".globl rktio_release_exit",
    ".hidden rktio_release_exit",
    ".p2align 4",
    "rktio_release_exit:",
    "    mov dword ptr [rdi], 0",
    "    mov rdi, rsi",
    "    mov eax, 60",
    "    syscall",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    fn rktio_release_exit(busy: *const std::sync::atomic::AtomicU32, status: u64) -> !;
}

/// Gives the calling thread a signal stack of ours. Err: -errno.
pub(super) fn take() -> Result<(), i64> {
    let slot = TABLE
        .iter()
        .position(|s| {
            s.base.load(Ordering::Acquire) != 0
                && s.busy
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
        .or_else(|| {
            TABLE.iter().position(|s| {
                s.busy
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
        })
        .ok_or(-i64::from(libc::EAGAIN))?;
    let s = &TABLE[slot];
    let mut base = s.base.load(Ordering::Acquire);
    if base == 0 {
        let m = raw(
            libc::SYS_mmap,
            [
                0,
                SIZE + GUARD,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64,
                u64::MAX,
                0,
            ],
        );
        if m < 0 {
            s.busy.store(0, Ordering::Release);
            return Err(m);
        }
        raw(
            libc::SYS_mprotect,
            [m as u64, GUARD, libc::PROT_NONE as u64, 0, 0, 0],
        );
        base = m as u64 + GUARD;
        s.base.store(base, Ordering::Release);
    }
    // SS_AUTODISARM: off while our handlers run on it (see `signals::rearm`).
    let st = StackT {
        sp: base,
        flags: SS_AUTODISARM,
        size: SIZE,
    };
    let r = raw(
        libc::SYS_sigaltstack,
        [&st as *const StackT as u64, 0, 0, 0, 0, 0],
    );
    if r < 0 {
        s.busy.store(0, Ordering::Release);
        return Err(r);
    }
    MINE.set(slot + 1);
    Ok(())
}

/// This thread's signal stack of ours: [base, base + SIZE).
pub(super) fn mine() -> Option<StackT> {
    let i = MINE.get().checked_sub(1)?;
    Some(StackT {
        sp: TABLE[i].base.load(Ordering::Relaxed),
        flags: SS_ONSTACK,
        size: SIZE,
    })
}

/// Whether `sp` is on this thread's signal stack of ours.
pub(super) fn on_mine(sp: u64) -> bool {
    mine().is_some_and(|s| sp > s.sp && sp <= s.sp + s.size)
}

/// Ends the calling thread (the exit system call), giving its stack back as it
/// goes. Signals are blocked first: none may be delivered onto a stack that is
/// no longer this thread's.
pub(super) fn exit_thread(status: u64) -> ! {
    let all: u64 = !0;
    raw(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_BLOCK as u64,
            &all as *const u64 as u64,
            0,
            8,
            0,
            0,
        ],
    );
    match MINE.replace(0).checked_sub(1) {
        // SAFETY: the slot's busy word is static; the routine stores 0 into it
        // and makes the exit call without touching memory again.
        Some(i) => unsafe { rktio_release_exit(&TABLE[i].busy, status) },
        None => {
            raw(libc::SYS_exit, [status, 0, 0, 0, 0, 0]);
            unreachable!("exit returned")
        }
    }
}

/// Gives the calling thread's stack back while the thread goes on elsewhere
/// (a thread the stack made for a loaded program, back on its own stack with
/// signals blocked, about to end as one of our libc's threads).
pub(super) fn release() {
    let off = StackT {
        sp: 0,
        flags: SS_DISABLE,
        size: 0,
    };
    raw(
        libc::SYS_sigaltstack,
        [&off as *const StackT as u64, 0, 0, 0, 0, 0],
    );
    if let Some(i) = MINE.replace(0).checked_sub(1) {
        TABLE[i].busy.store(0, Ordering::Release);
    }
}

/// In a forked child: only this thread is left; the others' stacks are free.
pub(super) fn forked_child() {
    let me = MINE.get();
    for (i, s) in TABLE.iter().enumerate() {
        if i + 1 != me {
            s.busy.store(0, Ordering::Release);
        }
    }
}
