//! The program's signals under the trap: its actions kept in a table while the
//! kernel holds a wrapper, signals held while the stack's code runs, masks that
//! never take SIGSYS.

use super::*;

thread_local! {
    /// Signals held while the stack's code ran, one bit per signal...
    pub(super) static PENDING: Cell<u64> = const { Cell::new(0) };
    /// ... and the last siginfo of each.
    pub(super) static INFOS: [Cell<[u64; 16]>; NSIG] = const { [const { Cell::new([0; 16]) }; NSIG] };
}

/// The program's signal actions (the kernel holds our wrapper for each).
pub(super) struct Action {
    pub(super) handler: AtomicU64,
    pub(super) flags: AtomicU64,
    pub(super) restorer: AtomicU64,
    pub(super) mask: AtomicU64,
}

pub(super) static ACTIONS: [Action; NSIG] = [const {
    Action {
        handler: AtomicU64::new(0),
        flags: AtomicU64::new(0),
        restorer: AtomicU64::new(0),
        mask: AtomicU64::new(0),
    }
}; NSIG];

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KSigaction {
    pub(super) handler: u64,
    pub(super) flags: u64,
    pub(super) restorer: u64,
    pub(super) mask: u64,
}

pub(super) fn rt_sigaction(
    sig: c_int,
    new: Option<&KSigaction>,
    old: Option<&mut KSigaction>,
) -> i64 {
    let n = new.map_or(0, |a| a as *const KSigaction as u64);
    let o = old.map_or(0, |a| a as *mut KSigaction as u64);
    raw(libc::SYS_rt_sigaction, [sig as u64, n, o, 8, 0, 0])
}

/// The kernel's action for a program action with a handler: our wrapper, the
/// program's flags and mask (SIGSYS never blocked), our gate to return.
pub(super) fn wrapped(a: &KSigaction) -> KSigaction {
    KSigaction {
        handler: rktio_signal_entry as *const () as u64,
        flags: a.flags | (libc::SA_SIGINFO | libc::SA_ONSTACK | SA_RESTORER) as u64,
        restorer: rktio_gate_start as *const () as u64,
        mask: a.mask & !SIGSYS_BIT,
    }
}

/// Signals whose kernel action is always ours, whatever the program's: a
/// fault in `user::c_str` must reach `user::fixup`.
pub(super) fn always_ours(sig: c_int) -> bool {
    matches!(sig, libc::SIGSEGV | libc::SIGBUS)
}

/// The kernel's action for `sig` back to the default.
fn to_default(sig: c_int) {
    let dfl = KSigaction {
        handler: 0,
        flags: SA_RESTORER as u64,
        restorer: rktio_gate_start as *const () as u64,
        mask: 0,
    };
    rt_sigaction(sig, Some(&dfl), None);
}

/// Sends `sig` to this thread again (it arrives once its handler returns).
fn raise_again(sig: c_int) {
    let pid = raw(libc::SYS_getpid, [0; 6]) as u64;
    let tid = raw(libc::SYS_gettid, [0; 6]) as u64;
    raw(libc::SYS_tgkill, [pid, tid, sig as u64, 0, 0, 0]);
}

/// The program's handler for `sig`, called as the kernel would.
pub(super) fn call_handler(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let a = &ACTIONS[sig as usize];
    let h = a.handler.load(Ordering::Acquire);
    let flags = a.flags.load(Ordering::Relaxed);
    if h > 1 && flags & libc::SA_RESETHAND as u64 != 0 {
        // SA_RESETHAND: the kernel set its action back to the default as it
        // delivered the signal; so does the program's table.
        a.handler.store(0, Ordering::Release);
    }
    match h {
        0 => {
            // Changed to the default while the signal was held: raise it again,
            // the kernel's action is the default now (or made so).
            if always_ours(sig) {
                to_default(sig);
            }
            raise_again(sig);
        }
        1 => {}
        _ => {
            // Where the kernel would run it: a handler without SA_ONSTACK on
            // the stack the program was interrupted on (below its red zone);
            // one with SA_ONSTACK on a signal stack, ours. (Interrupted in
            // the stack's own code, or with no context: here.)
            let sp = if flags & libc::SA_ONSTACK as u64 == 0 && !ctx.is_null() {
                // SAFETY: ctx is a ucontext_t (the kernel's, or ours).
                let mut rsp = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs }
                    [libc::REG_RSP as usize] as u64;
                if altstack::on_mine(rsp) {
                    // Interrupted in the stack's code serving a call: the
                    // program's stack is where it made the call.
                    rsp = PROGRAM_SP.get();
                }
                if rsp > 4096 && !altstack::on_mine(rsp) {
                    (rsp - 128) & !15
                } else {
                    0
                }
            } else {
                0
            };
            if sp != 0 {
                FOREIGN.set(FOREIGN.get() + 1);
            }
            // SAFETY: the program installed this handler (a plain one ignores
            // the other two arguments, as under the kernel); it runs with the
            // program's thread pointer where that differs from ours, on the
            // program's own stack below where it was (or on ours).
            unsafe { rktio_call_program(h, sig, info, ctx, sp) };
            if sp != 0 {
                FOREIGN.set(FOREIGN.get() - 1);
            }
        }
    }
}

thread_local! {
    /// Program handlers running on the program's stack, called from a frame
    /// of ours (our signal stack is disarmed while they run: see `rearm`).
    static FOREIGN: Cell<u32> = const { Cell::new(0) };
    /// While the stack serves a system call on its own signal stack: the
    /// program's stack pointer at the call (0: none, or not free below).
    pub(super) static PROGRAM_SP: Cell<u64> = const { Cell::new(0) };
}

/// Notes where the program's stack was as a SIGSYS frame of ours starts (see
/// `PROGRAM_SP`); gives what to put back as it ends.
pub(super) fn note_program_sp(uc: &libc::ucontext_t) -> u64 {
    let here = 0u8;
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
    let free_below = altstack::on_mine(&here as *const u8 as u64) && !altstack::on_mine(sp);
    PROGRAM_SP.replace(if free_below { sp } else { 0 })
}

/// For a signal frame of ours whose interrupted code was the program's own
/// (not nested in one of our frames): its return arms our signal stack again.
/// The kernel disarms it while our handlers run (SS_AUTODISARM: a program
/// handler running on the program's stack may trap, and that frame must not
/// land on our live ones) and puts back what it found; after a handler that
/// jumped out of us it found it disarmed, and this repairs it.
pub(super) fn rearm(uc: &mut libc::ucontext_t) {
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
    if FOREIGN.get() != 0 || altstack::on_mine(sp) {
        return;
    }
    if let Some(ours) = altstack::mine() {
        uc.uc_stack = libc::stack_t {
            ss_sp: ours.sp as *mut c_void,
            ss_flags: altstack::SS_AUTODISARM,
            ss_size: ours.size as usize,
        };
    }
}

pub(super) fn is_fault(sig: c_int, info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo.
    let code = unsafe { (*info).si_code };
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && code > 0
}

/// The kernel's handler for every signal the program handles.
pub(super) extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    if !(1..NSIG as c_int).contains(&sig) {
        return;
    }
    let fault = is_fault(sig, info);
    if !ctx.is_null() {
        // SAFETY: the kernel's saved context of this thread, ours alone here.
        let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
        if fault && user::fixup(uc) {
            return;
        }
        rearm(uc);
    }
    if always_ours(sig) && ACTIONS[sig as usize].handler.load(Ordering::Acquire) <= 1 {
        // The program left it at the default or ignored: act as the kernel
        // would. A fault kills (it is taken again once this returns), even
        // ignored; a SIGSEGV sent by kill(2) kills if at the default.
        let ignored = ACTIONS[sig as usize].handler.load(Ordering::Acquire) == 1;
        if fault || !ignored {
            to_default(sig);
        }
        if !fault && !ignored {
            raise_again(sig);
        }
        return;
    }
    let sel = SELECTOR.get();
    let passing = PASSING.get();
    if sel == ALLOW && ON.load(Ordering::Relaxed) && !passing && !fault {
        // In the stack's code: hold it until the stack returns to the program.
        // SAFETY: siginfo_t is 128 bytes of plain data.
        let raw_info: [u64; 16] = unsafe { std::ptr::read_unaligned(info.cast()) };
        INFOS.with(|i| i[sig as usize].set(raw_info));
        PENDING.set(PENDING.get() | 1 << (sig - 1));
        return;
    }
    if sel == ALLOW && ON.load(Ordering::Relaxed) && !passing {
        // A fault in the stack's own code while it served the program (a bad
        // address passed to a call, where Linux would answer EFAULT). The
        // program's handler may not run here: were it to jump out, the stack's
        // locks and state would stay as they are mid-call. Stop, as an
        // unhandled fault would: the default action, once this returns and the
        // instruction faults again.
        let msg = b"rktio: a fault in the stack's code while it served a system call of the program (a bad address passed to it?); stopping\n";
        raw(
            libc::SYS_write,
            [2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
        );
        to_default(sig);
        return;
    }
    if sel == ALLOW {
        SELECTOR.set(BLOCK);
        PASSING.set(false);
    }
    call_handler(sig, info, ctx);
    SELECTOR.set(sel);
    PASSING.set(passing);
}

/// Runs the program's handlers for the signals held while the stack's code ran
/// (selector at ALLOW), with the mask their actions ask for. They see `ctx`, the
/// program's context as the stack returns to it (null: none, where the program
/// called an entry point of ours: they see an empty one).
pub(super) fn deliver_pending(ctx: *mut c_void) {
    // SAFETY: a ucontext_t is plain data; all zeroes is a valid (empty) one.
    let mut blank: libc::ucontext_t = unsafe { std::mem::zeroed() };
    let ctx = if ctx.is_null() {
        (&mut blank as *mut libc::ucontext_t).cast::<c_void>()
    } else {
        ctx
    };
    loop {
        let p = PENDING.get();
        if p == 0 {
            return;
        }
        let sig = p.trailing_zeros() as c_int + 1;
        PENDING.set(p & !(1 << (sig - 1)));
        let a = &ACTIONS[sig as usize];
        let mut mask = a.mask.load(Ordering::Relaxed);
        if a.flags.load(Ordering::Relaxed) & libc::SA_NODEFER as u64 == 0 {
            mask |= 1 << (sig - 1);
        }
        mask &= !SIGSYS_BIT;
        let mut old: u64 = 0;
        raw(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_BLOCK as u64,
                &mask as *const u64 as u64,
                &mut old as *mut u64 as u64,
                8,
                0,
                0,
            ],
        );
        let mut info = INFOS.with(|i| i[sig as usize].get());
        SELECTOR.set(BLOCK);
        call_handler(sig, info.as_mut_ptr().cast::<libc::siginfo_t>(), ctx);
        SELECTOR.set(ALLOW);
        raw(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as u64,
                &old as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        );
    }
}

thread_local! {
    /// The program's own signal stack (sigaltstack): the kernel holds ours.
    static PROGRAM_STACK: Cell<altstack::StackT> = const {
        Cell::new(altstack::StackT { sp: 0, flags: altstack::SS_DISABLE, size: 0 })
    };
}

/// sigaltstack: the program's signal stack is kept aside (its handlers run on
/// ours, `altstack`); while one of them runs it is told ours, as the kernel
/// tells a handler on the signal stack it runs on.
pub(super) fn sigaltstack(a: [u64; 6], uc: &libc::ucontext_t) -> i64 {
    use altstack::{SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, StackT};
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
    let in_handler = altstack::on_mine(sp);
    let cur = match altstack::mine() {
        Some(ours) if in_handler => ours,
        _ => {
            let mut p = PROGRAM_STACK.get();
            if p.flags & SS_DISABLE == 0 && sp > p.sp && sp - p.sp <= p.size {
                p.flags |= SS_ONSTACK;
            }
            p
        }
    };
    if a[0] != 0 {
        // SAFETY: the program passed a stack_t (kernel layout), read unaligned.
        let n: StackT = unsafe { std::ptr::read_unaligned(a[0] as *const StackT) };
        if in_handler || cur.flags & SS_ONSTACK != 0 {
            return -i64::from(libc::EPERM);
        }
        let mode = n.flags & !SS_AUTODISARM;
        let new = match mode {
            SS_DISABLE => StackT {
                sp: 0,
                flags: SS_DISABLE,
                size: 0,
            },
            0 | SS_ONSTACK if n.size < libc::MINSIGSTKSZ as u64 => {
                return -i64::from(libc::ENOMEM);
            }
            0 | SS_ONSTACK => StackT {
                sp: n.sp,
                flags: n.flags & SS_AUTODISARM,
                size: n.size,
            },
            _ => return -i64::from(libc::EINVAL),
        };
        PROGRAM_STACK.set(new);
    }
    if a[1] != 0 {
        // SAFETY: the program gave room for a stack_t.
        unsafe { std::ptr::write_unaligned(a[1] as *mut StackT, cur) };
    }
    0
}

/// rt_sigprocmask: the mask the program runs with is the one the kernel puts
/// back when this handler returns (`uc_sigmask`), so that is the one to change;
/// SIGSYS (and SIGKILL, SIGSTOP) are never blocked.
pub(super) fn sigprocmask(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    if a[3] != 8 {
        return -i64::from(libc::EINVAL);
    }
    let mask_at = (&mut uc.uc_sigmask as *mut libc::sigset_t).cast::<u64>();
    // SAFETY: the first 8 bytes of the saved sigset_t are signals 1 to 64.
    let cur = unsafe { std::ptr::read_unaligned(mask_at) };
    let new = if a[1] == 0 {
        None
    } else {
        // SAFETY: the program passed a sigset_t of 8 bytes (checked above).
        let set = unsafe { std::ptr::read_unaligned(a[1] as *const u64) };
        match a[0] as c_int {
            libc::SIG_BLOCK => Some(cur | set),
            libc::SIG_UNBLOCK => Some(cur & !set),
            libc::SIG_SETMASK => Some(set),
            _ => return -i64::from(libc::EINVAL),
        }
    };
    if a[2] != 0 {
        // SAFETY: the program gave room for the old set (8 bytes, as the kernel writes).
        unsafe { std::ptr::write_unaligned(a[2] as *mut u64, cur) };
    }
    if let Some(m) = new {
        let never = SIGSYS_BIT | 1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1);
        // SAFETY: as above, our own saved context.
        unsafe { std::ptr::write_unaligned(mask_at, m & !never) };
    }
    0
}

/// A copy of the program's signal set at `set` without SIGSYS (None for no
/// set): a whole sigset_t, for libc calls that read all of it.
pub fn without_sigsys(set: u64) -> Option<libc::sigset_t> {
    if set == 0 {
        return None;
    }
    // SAFETY: a sigset_t is plain data; all zeroes is the empty set.
    let mut m: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the program passed a sigset_t: its first 8 bytes are the 64
    // signals (the kernel reads no more on x86-64); read unaligned, as given.
    let bits = unsafe { std::ptr::read_unaligned(set as *const u64) } & !SIGSYS_BIT;
    // SAFETY: writing the first 8 bytes of our own sigset_t.
    unsafe { std::ptr::write_unaligned((&mut m as *mut libc::sigset_t).cast::<u64>(), bits) };
    Some(m)
}

/// Runs `f` with a copy of the signal set at `set` that leaves SIGSYS out (0
/// for no set).
pub(super) fn with_mask(set: u64, f: impl FnOnce(u64) -> i64) -> i64 {
    match without_sigsys(set) {
        None => f(0),
        Some(m) => f(&m as *const libc::sigset_t as u64),
    }
}

pub(super) fn sigaction(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_rt_sigaction;
    let (sig, new, old, size) = (a[0] as i64, a[1], a[2], a[3]);
    if size != 8 || !(1..NSIG as i64).contains(&sig) {
        return -i64::from(libc::EINVAL);
    }
    let sig = sig as c_int;
    if matches!(sig, libc::SIGKILL | libc::SIGSTOP) {
        return pass(nr, a);
    }
    let slot = &ACTIONS[sig as usize];
    let prev = KSigaction {
        handler: slot.handler.load(Ordering::Relaxed),
        flags: slot.flags.load(Ordering::Relaxed),
        restorer: slot.restorer.load(Ordering::Relaxed),
        mask: slot.mask.load(Ordering::Relaxed),
    };
    if new != 0 && sig == libc::SIGSYS {
        // The kernel keeps ours (it is how the stack sees the program's calls);
        // the program's action serves SIGSYS that others send (on_sigsys).
        // SAFETY: the program passed a struct sigaction (kernel layout).
        let n: KSigaction = unsafe { std::ptr::read_unaligned(new as *const KSigaction) };
        slot.flags.store(n.flags, Ordering::Relaxed);
        slot.restorer.store(n.restorer, Ordering::Relaxed);
        slot.mask.store(n.mask, Ordering::Relaxed);
        slot.handler.store(n.handler, Ordering::Release);
    } else if new != 0 {
        // SAFETY: the program passed a struct sigaction (kernel layout).
        let n: KSigaction = unsafe { std::ptr::read_unaligned(new as *const KSigaction) };
        let kernel = if n.handler > 1 || always_ours(sig) {
            wrapped(&n)
        } else {
            KSigaction {
                handler: n.handler,
                flags: n.flags | SA_RESTORER as u64,
                restorer: rktio_gate_start as *const () as u64,
                mask: n.mask & !SIGSYS_BIT,
            }
        };
        slot.flags.store(n.flags, Ordering::Relaxed);
        slot.restorer.store(n.restorer, Ordering::Relaxed);
        slot.mask.store(n.mask, Ordering::Relaxed);
        slot.handler.store(n.handler, Ordering::Release);
        let r = rt_sigaction(sig, Some(&kernel), None);
        if r < 0 {
            slot.flags.store(prev.flags, Ordering::Relaxed);
            slot.restorer.store(prev.restorer, Ordering::Relaxed);
            slot.mask.store(prev.mask, Ordering::Relaxed);
            slot.handler.store(prev.handler, Ordering::Release);
            return r;
        }
    }
    if old != 0 {
        // SAFETY: the program gave room for a struct sigaction.
        unsafe { std::ptr::write_unaligned(old as *mut KSigaction, prev) };
    }
    0
}
