//! The catch-all: every system call the program's code makes reaches the stack.
//!
//! Linux's Syscall User Dispatch (`prctl(PR_SET_SYSCALL_USER_DISPATCH)`) turns
//! each system call a thread makes into a SIGSYS while the thread's selector
//! byte says BLOCK. The selector says BLOCK whenever the program's code runs and
//! ALLOW while the stack's code runs (an interposed libc entry point, this
//! handler, a call passed on to the host), so the stack's own calls go straight
//! to the kernel and the program's never do. The handler (`on_sigsys`) gives the
//! call to the table (`rktio_posix::syscalls`): served by the stack, passed to the
//! host, handled here (threads, processes, signals), or refused.
//!
//! The hard parts, each handled here:
//! - Returning from a signal handler is itself a system call (rt_sigreturn): the
//!   only code that may make it with the selector at BLOCK is the gate below, the
//!   one range dispatch lets through. Every handler is installed with the gate as
//!   its restorer, the program's own handlers (wrapped) included.
//! - Dispatch is off in a new thread and in a forked child: `clone` and `clone3`
//!   are made here, and the child turns dispatch on (`thread_start`, reached
//!   through `rktio_clone_raw`) before it runs a single instruction of the
//!   program. `vfork` and `CLONE_VM` children that are not threads (posix_spawn)
//!   become forks: a child sharing the parent's memory and thread state would
//!   also share its stack.
//! - SIGSYS stays ours: the program's action for it is kept aside (it serves a
//!   SIGSYS another process sends), and it is never blocked.
//! - A signal that arrives while the stack's code runs (it may hold a lock the
//!   program's handler would need) is held and delivered as the stack returns to
//!   the program; one that arrives while a host call is passed on (no lock held)
//!   reaches the program's handler at once, as it would natively.
//! - exec: the new program must be covered again: a static one cannot be and is
//!   refused; a dynamic one gets librktio (LD_PRELOAD) and the configuration.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rktio_posix::syscalls::{self, Route};

mod altstack;
mod exec;
mod loaded;
mod signals;
mod threads;
pub mod user;

use exec::execve;
pub use loaded::{can_switch_fs, enter, loaded, prepare};
use loaded::{rktio_call_program, rktio_signal_entry, rktio_sigsys_entry};
pub use signals::without_sigsys;
use signals::*;
use threads::*;

/// The selector's values (`SYSCALL_DISPATCH_FILTER_*`).
const ALLOW: u8 = 0;
const BLOCK: u8 = 1;
const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const PR_SYS_DISPATCH_ON: u64 = 1;
/// si_code of a SIGSYS raised by dispatch.
const SYS_USER_DISPATCH: c_int = 2;
const SIGSYS_BIT: u64 = 1 << (libc::SIGSYS - 1);
const NSIG: usize = 65;
/// sa_flags: the action names its own restorer (glibc keeps this one private).
const SA_RESTORER: c_int = 0x0400_0000;

thread_local! {
    /// This thread's selector (the kernel reads it at every system call).
    static SELECTOR: Cell<u8> = const { Cell::new(ALLOW) };
    /// Set while a host call is passed on: a signal may run the program's handler.
    static PASSING: Cell<bool> = const { Cell::new(false) };
}

/// Dispatch is on for this process.
static ON: AtomicBool = AtomicBool::new(false);

// The gate: the one place a system call passes while the selector says BLOCK. It
// holds rt_sigreturn and nothing else; dispatch lets through calls whose return
// address is `rktio_gate_end` (the range is [start, end]).

std::arch::global_asm!(
    ".pushsection .text.rktio_gate,\"ax\",@progbits",
    ".globl rktio_gate_start",
    ".hidden rktio_gate_start",
    ".globl rktio_gate_end",
    ".hidden rktio_gate_end",
    ".p2align 4",
    "rktio_gate_start:",
    "    mov eax, 15",
    "    syscall",
    "rktio_gate_end:",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    fn rktio_gate_start();
    fn rktio_gate_end();
}

/// A raw system call (never trapped: callers run with the selector at ALLOW).
pub fn raw(nr: i64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the syscall instruction with the x86-64 Linux convention. The
    // callers pass the program's own arguments for a call the table routes to
    // the host, or arguments they built; the kernel checks every pointer.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn errno() -> i64 {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    i64::from(unsafe { *libc::__errno_location() })
}

/// A libc-style result (-1 and errno) as a system call's (-errno).
pub fn sys(r: i64) -> i64 {
    if r == -1 { -errno() } else { r }
}

// ---------------------------------------------------------------- the selector

/// Turns dispatch on for the calling thread, with its own selector.
fn dispatch_on() -> i64 {
    let sel = SELECTOR.with(|s| s.as_ptr()) as u64;
    let start = rktio_gate_start as *const () as u64;
    let end = rktio_gate_end as *const () as u64;
    raw(
        libc::SYS_prctl,
        [
            PR_SET_SYSCALL_USER_DISPATCH,
            PR_SYS_DISPATCH_ON,
            start,
            end - start + 1,
            sel,
            0,
        ],
    )
}

/// Held while the stack's code runs on a program thread: its calls pass.
#[derive(Debug)]
pub struct InStack(u8);

impl InStack {
    pub fn enter() -> InStack {
        InStack(SELECTOR.replace(ALLOW))
    }
}

impl Drop for InStack {
    fn drop(&mut self) {
        leave(self.0);
    }
}

/// Held while a host call is passed on for the program (after the policy):
/// signals reach the program's handlers at once, as natively.
#[derive(Debug)]
pub struct Passing(u8, bool);

impl Passing {
    pub fn enter() -> Passing {
        let sel = SELECTOR.replace(ALLOW);
        let p = PASSING.replace(crate::busy_free());
        Passing(sel, p)
    }
}

impl Drop for Passing {
    fn drop(&mut self) {
        PASSING.set(self.1);
        leave(self.0);
    }
}

/// Back to `prev`; back to the program delivers the signals held meanwhile.
fn leave(prev: u8) {
    leave_to(prev, std::ptr::null_mut());
}

/// Back to `prev`, to the program's context `ctx` (a signal frame's; null: none),
/// which the held signals' handlers see (and may change) as they would natively.
fn leave_to(prev: u8, ctx: *mut c_void) {
    if prev == BLOCK && ON.load(Ordering::Relaxed) {
        deliver_pending(ctx);
        SELECTOR.set(BLOCK);
    } else {
        SELECTOR.set(prev);
    }
}

/// Once the constructor is done: the program's code runs from here on.
pub fn block() {
    if ON.load(Ordering::Relaxed) {
        SELECTOR.set(BLOCK);
    }
}

// ---------------------------------------------------------------- start

/// Turns dispatch on for the process (from the constructor, selector at ALLOW).
/// A kernel that cannot do it stops the program: nothing may run uncovered.
pub fn install() -> Result<(), String> {
    exec::remember_env()?;
    // SIGSYS: ours, re-entrant (a program handler the stack runs may trap).
    let act = KSigaction {
        handler: rktio_sigsys_entry as *const () as u64,
        flags: (libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK | SA_RESTORER) as u64,
        restorer: rktio_gate_start as *const () as u64,
        mask: 0,
    };
    // Our signal stack first: every action of ours runs on it.
    altstack::take().map_err(|e| format!("cannot map a signal stack (errno {})", -e))?;
    let r = rt_sigaction(libc::SIGSYS, Some(&act), None);
    if r < 0 {
        return Err(format!("cannot take SIGSYS (errno {})", -r));
    }
    // Handlers installed before us (libc's own) return through our gate too.
    for sig in 1..NSIG as c_int {
        if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGSYS) {
            continue;
        }
        let mut old = KSigaction::default();
        if rt_sigaction(sig, None, Some(&mut old)) < 0 {
            continue;
        }
        let a = &ACTIONS[sig as usize];
        a.handler.store(old.handler, Ordering::Relaxed);
        a.flags.store(old.flags, Ordering::Relaxed);
        a.restorer.store(old.restorer, Ordering::Relaxed);
        a.mask.store(old.mask, Ordering::Relaxed);
        if old.handler > 1 || always_ours(sig) {
            let r = rt_sigaction(sig, Some(&wrapped(&old)), None);
            if r < 0 {
                return Err(format!(
                    "cannot wrap the handler of signal {sig} (errno {})",
                    -r
                ));
            }
        }
    }
    // SIGSYS must never be blocked while the program runs.
    let unblock = SIGSYS_BIT;
    raw(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_UNBLOCK as u64,
            &unblock as *const u64 as u64,
            0,
            8,
            0,
            0,
        ],
    );
    // Dispatch is per thread and reaches only the threads that turn it on: a
    // thread some library started before this constructor would run uncovered.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("cannot list this process's threads: {e}"))?
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect();
    if threads.len() > 1 {
        return Err(format!(
            "{} threads run already (started before librktio's constructor: {}); their system calls could not be covered",
            threads.len(),
            threads.join(", ")
        ));
    }
    let r = dispatch_on();
    if r < 0 {
        return Err(format!(
            "Syscall User Dispatch is not available here (prctl: errno {}): the program's system calls could not all be covered",
            -r
        ));
    }
    ON.store(true, Ordering::SeqCst);
    Ok(())
}

// ---------------------------------------------------------------- handlers

/// Every system call of the program's code lands here.
extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = SELECTOR.replace(ALLOW);
    let was_passing = PASSING.replace(false);
    if !ctx.is_null() {
        // SAFETY: the kernel's saved context of this thread, ours alone here.
        rearm(unsafe { &mut *ctx.cast::<libc::ucontext_t>() });
    }
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    if code != SYS_USER_DISPATCH || ctx.is_null() {
        // A SIGSYS somebody sent (kill, raise): the program's, if it handles it.
        // (While the stack's own code runs it is dropped.)
        if ACTIONS[libc::SIGSYS as usize]
            .handler
            .load(Ordering::Acquire)
            > 1
            && (prev == BLOCK || was_passing)
        {
            SELECTOR.set(BLOCK);
            call_handler(libc::SIGSYS, info, ctx);
        }
        PASSING.set(was_passing);
        SELECTOR.set(prev);
        return;
    }
    // SAFETY: the kernel passes this thread's saved context; nothing else
    // refers to it while the handler runs.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    let g = uc.uc_mcontext.gregs;
    let nr = g[libc::REG_RAX as usize];
    let a = [
        g[libc::REG_RDI as usize] as u64,
        g[libc::REG_RSI as usize] as u64,
        g[libc::REG_RDX as usize] as u64,
        g[libc::REG_R10 as usize] as u64,
        g[libc::REG_R8 as usize] as u64,
        g[libc::REG_R9 as usize] as u64,
    ];
    let outer_sp = note_program_sp(uc);
    let ret = dispatch(nr, a, uc);
    uc.uc_mcontext.gregs[libc::REG_RAX as usize] = ret;
    PASSING.set(false);
    leave_to(prev, ctx);
    PROGRAM_SP.set(outer_sp);
}

// ---------------------------------------------------------------- dispatch

static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Trapped calls by number (0..512; the rest in the last slot).
static TRAPPED: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];

/// The stats line: how many calls came through the trap, the most frequent first.
pub fn report() -> String {
    let mut by: Vec<(u64, usize)> = TRAPPED
        .iter()
        .enumerate()
        .map(|(nr, c)| (c.load(Ordering::Relaxed), nr))
        .filter(|&(c, _)| c > 0)
        .collect();
    by.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = by.iter().map(|&(c, _)| c).sum();
    let top: Vec<String> = by
        .iter()
        .take(8)
        .map(|&(c, nr)| format!("{} {c}", syscalls::name(nr as i64)))
        .collect();
    format!(
        "rktio stats: system calls through the trap: {total} ({})\n",
        if top.is_empty() {
            "none".to_owned()
        } else {
            top.join(", ")
        }
    )
}

/// A refused call: -errno, and one line on stderr (once per call and process).
pub fn refuse(nr: i64, errno: i32, why: &str) -> i64 {
    let i = usize::try_from(nr).unwrap_or(usize::MAX);
    let fresh = if i < 512 {
        let bit = 1u64 << (i % 64);
        REPORTED[i / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
    } else {
        true
    };
    if fresh {
        eprintln!(
            "rktio: refused {} (system call {nr}): {why}",
            syscalls::name(nr)
        );
    }
    -i64::from(errno)
}

/// A call passed on to the host for the program.
pub fn pass(nr: i64, a: [u64; 6]) -> i64 {
    let _p = Passing::enter();
    raw(nr, a)
}

fn dispatch(nr: i64, a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    TRAPPED[usize::try_from(nr).unwrap_or(511).min(511)].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = loaded::readlink_exe(nr, a) {
        return r;
    }
    match syscalls::route(nr) {
        Route::Host => pass(nr, a),
        Route::Refused(e) => refuse(nr, e, "not offered on the stack"),
        Route::Stack | Route::HostOnly => crate::served::serve(nr, a),
        Route::Trap => trapped(nr, a, uc),
    }
}

fn trapped(nr: i64, a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    match nr {
        libc::SYS_umask => {
            let r = pass(nr, a);
            rktio_posix::cred::set_umask(a[0] as u32);
            r
        }
        libc::SYS_setuid
        | libc::SYS_setgid
        | libc::SYS_setreuid
        | libc::SYS_setregid
        | libc::SYS_setgroups
        | libc::SYS_setresuid
        | libc::SYS_setresgid
        | libc::SYS_setfsuid
        | libc::SYS_setfsgid
        | libc::SYS_capset => {
            let r = pass(nr, a);
            rktio_posix::cred::changed();
            r
        }
        libc::SYS_clone => clone(a, uc),
        libc::SYS_clone3 => clone3(a, uc),
        libc::SYS_fork | libc::SYS_vfork => fork(libc::SYS_fork, [0; 6]),
        libc::SYS_execve => execve(libc::AT_FDCWD, a[0], a[1], a[2], 0),
        libc::SYS_execveat => execve(a[0] as i32, a[1], a[2], a[3], a[4] as i32),
        libc::SYS_brk => loaded::brk(a),
        libc::SYS_arch_prctl => loaded::arch_prctl(a),
        libc::SYS_exit | libc::SYS_exit_group => loaded::exit(nr, a),
        libc::SYS_rt_sigaction => sigaction(a),
        libc::SYS_rt_sigprocmask => sigprocmask(a, uc),
        libc::SYS_sigaltstack => sigaltstack(a, uc),
        libc::SYS_rt_sigsuspend => with_mask(a[0], |m| pass(nr, [m, a[1], 0, 0, 0, 0])),
        libc::SYS_rt_sigtimedwait => with_mask(a[0], |m| pass(nr, [m, a[1], a[2], a[3], 0, 0])),
        libc::SYS_signalfd | libc::SYS_signalfd4 => {
            with_mask(a[1], |m| pass(nr, [a[0], m, a[2], a[3], 0, 0]))
        }
        libc::SYS_rt_sigreturn => {
            eprintln!(
                "rktio: a signal handler returned through code that is not the stack's; stopping"
            );
            raw(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0])
        }
        libc::SYS_prctl => match a[0] {
            PR_SET_SYSCALL_USER_DISPATCH => refuse(
                nr,
                libc::EPERM,
                "Syscall User Dispatch is the stack's own: the program may not change it",
            ),
            x if x == libc::PR_SET_SECCOMP as u64 => refuse(
                nr,
                libc::EPERM,
                "a seccomp filter would judge the stack's own calls too",
            ),
            _ => pass(nr, a),
        },
        libc::SYS_seccomp => refuse(
            nr,
            libc::EPERM,
            "a seccomp filter would judge the stack's own calls too",
        ),
        _ => refuse(nr, libc::ENOSYS, "not offered on the stack"),
    }
}
