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

use rktio_posix::exec::{Verdict, verdict};
use rktio_posix::syscalls::{self, Route};

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
    /// Signals held while the stack's code ran, one bit per signal...
    static PENDING: Cell<u64> = const { Cell::new(0) };
    /// ... and the last siginfo of each.
    static INFOS: [Cell<[u64; 16]>; NSIG] = const { [const { Cell::new([0; 16]) }; NSIG] };
}

/// Dispatch is on for this process.
static ON: AtomicBool = AtomicBool::new(false);

/// The program's signal actions (the kernel holds our wrapper for each).
struct Action {
    handler: AtomicU64,
    flags: AtomicU64,
    restorer: AtomicU64,
    mask: AtomicU64,
}

static ACTIONS: [Action; NSIG] = [const {
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
struct KSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

// The gate: the one place a system call passes while the selector says BLOCK. It
// holds rt_sigreturn and nothing else; dispatch lets through calls whose return
// address is `rktio_gate_end` (the range is [start, end]).
//
// rktio_clone_raw(nr, a1, a2, a3, a4, a5): clone or clone3 with the child's stack
// set up by `clone_child`. The parent returns the result. The child starts on its
// new stack, which points at a `ChildRegs`: it calls `start` (which turns dispatch
// on), then loads the program's registers from it and resumes the program after
// its clone instruction with rax = 0. rcx and r11 are free: the syscall
// instruction clobbers both.
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
    ".pushsection .text.rktio_clone,\"ax\",@progbits",
    ".globl rktio_clone_raw",
    ".hidden rktio_clone_raw",
    ".p2align 4",
    "rktio_clone_raw:",
    "    mov rax, rdi",
    "    mov rdi, rsi",
    "    mov rsi, rdx",
    "    mov rdx, rcx",
    "    mov r10, r8",
    "    mov r8, r9",
    "    syscall",
    "    test rax, rax",
    "    jz 2f",
    "    ret",
    "2:",
    "    xor ebp, ebp",
    "    mov rdi, rsp",
    "    call [rsp]",
    "    mov rax, rsp",
    "    mov r8, [rax + 8]",
    "    mov r9, [rax + 16]",
    "    mov r10, [rax + 24]",
    "    mov r12, [rax + 32]",
    "    mov r13, [rax + 40]",
    "    mov r14, [rax + 48]",
    "    mov r15, [rax + 56]",
    "    mov rdi, [rax + 64]",
    "    mov rsi, [rax + 72]",
    "    mov rbp, [rax + 80]",
    "    mov rbx, [rax + 88]",
    "    mov rdx, [rax + 96]",
    "    mov r11, [rax + 104]",
    "    mov rcx, [rax + 112]",
    "    mov rsp, r11",
    "    xor eax, eax",
    "    jmp rcx",
    ".popsection",
);

unsafe extern "C" {
    fn rktio_gate_start();
    fn rktio_gate_end();
    fn rktio_clone_raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

/// What the child of a clone finds at the top of its stack (layout fixed by
/// `rktio_clone_raw`).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
struct ChildRegs {
    start: extern "C" fn(*mut ChildRegs),
    r8: u64,
    r9: u64,
    r10: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rsp: u64,
    rip: u64,
    flags: u64,
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
    if prev == BLOCK && ON.load(Ordering::Relaxed) {
        deliver_pending();
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

/// The library and configuration an exec'd program gets.
struct ExecEnv {
    preload: CString,
    config: CString,
    stats: bool,
}

static EXEC_ENV: OnceLock<ExecEnv> = OnceLock::new();

/// Turns dispatch on for the process (from the constructor, selector at ALLOW).
/// A kernel that cannot do it stops the program: nothing may run uncovered.
pub fn install() -> Result<(), String> {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address of ours.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    let found = unsafe { libc::dladdr(install as *const () as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot find librktio's own path".into());
    }
    // SAFETY: dladdr returned a NUL-terminated file name that lives with the library.
    let preload = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    let config = std::env::var_os("RKTIO_CONFIG")
        .and_then(|c| CString::new(c.into_encoded_bytes()).ok())
        .ok_or("RKTIO_CONFIG is not a path")?;
    let stats = std::env::var("RKTIO_STATS").is_ok_and(|v| v == "1" || v == "true");
    let _ = EXEC_ENV.set(ExecEnv {
        preload,
        config,
        stats,
    });
    // SIGSYS: ours, re-entrant (a program handler the stack runs may trap).
    let act = KSigaction {
        handler: on_sigsys as *const () as u64,
        flags: (libc::SA_SIGINFO | libc::SA_NODEFER | SA_RESTORER) as u64,
        restorer: rktio_gate_start as *const () as u64,
        mask: 0,
    };
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
        if old.handler > 1 {
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

fn rt_sigaction(sig: c_int, new: Option<&KSigaction>, old: Option<&mut KSigaction>) -> i64 {
    let n = new.map_or(0, |a| a as *const KSigaction as u64);
    let o = old.map_or(0, |a| a as *mut KSigaction as u64);
    raw(libc::SYS_rt_sigaction, [sig as u64, n, o, 8, 0, 0])
}

/// The kernel's action for a program action with a handler: our wrapper, the
/// program's flags and mask (SIGSYS never blocked), our gate to return.
fn wrapped(a: &KSigaction) -> KSigaction {
    KSigaction {
        handler: on_signal as *const () as u64,
        flags: a.flags | (libc::SA_SIGINFO | SA_RESTORER) as u64,
        restorer: rktio_gate_start as *const () as u64,
        mask: a.mask & !SIGSYS_BIT,
    }
}

// ---------------------------------------------------------------- handlers

/// Every system call of the program's code lands here.
extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = SELECTOR.replace(ALLOW);
    let was_passing = PASSING.replace(false);
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
    let ret = dispatch(nr, a, uc);
    uc.uc_mcontext.gregs[libc::REG_RAX as usize] = ret;
    PASSING.set(false);
    leave(prev);
}

/// The program's handler for `sig`, called as the kernel would.
fn call_handler(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
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
            // the kernel's action is the default now.
            let pid = raw(libc::SYS_getpid, [0; 6]) as u64;
            let tid = raw(libc::SYS_gettid, [0; 6]) as u64;
            raw(libc::SYS_tgkill, [pid, tid, sig as u64, 0, 0, 0]);
        }
        1 => {}
        _ if flags & libc::SA_SIGINFO as u64 != 0 => {
            // SAFETY: the program installed this as an SA_SIGINFO handler.
            let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { std::mem::transmute(h as usize) };
            f(sig, info, ctx);
        }
        _ => {
            // SAFETY: the program installed this as a plain handler.
            let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h as usize) };
            f(sig);
        }
    }
}

fn is_fault(sig: c_int, info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo.
    let code = unsafe { (*info).si_code };
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && code > 0
}

/// The kernel's handler for every signal the program handles.
extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    if !(1..NSIG as c_int).contains(&sig) {
        return;
    }
    let sel = SELECTOR.get();
    let passing = PASSING.get();
    if sel == ALLOW && ON.load(Ordering::Relaxed) && !passing && !is_fault(sig, info) {
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
        let dfl = KSigaction {
            handler: 0,
            flags: SA_RESTORER as u64,
            restorer: rktio_gate_start as *const () as u64,
            mask: 0,
        };
        rt_sigaction(sig, Some(&dfl), None);
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
/// (selector at ALLOW), with the mask their actions ask for.
fn deliver_pending() {
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
        call_handler(
            sig,
            info.as_mut_ptr().cast::<libc::siginfo_t>(),
            std::ptr::null_mut(),
        );
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
    match syscalls::route(nr) {
        Route::Host => pass(nr, a),
        Route::Refused(e) => refuse(nr, e, "not offered on the stack"),
        Route::Stack | Route::HostOnly => crate::served::serve(nr, a),
        Route::Trap => trapped(nr, a, uc),
    }
}

fn trapped(nr: i64, a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    match nr {
        libc::SYS_clone => clone(a, uc),
        libc::SYS_clone3 => clone3(a, uc),
        libc::SYS_fork | libc::SYS_vfork => fork(libc::SYS_fork, [0; 6]),
        libc::SYS_execve => execve(libc::AT_FDCWD, a[0], a[1], a[2], 0),
        libc::SYS_execveat => execve(a[0] as i32, a[1], a[2], a[3], a[4] as i32),
        libc::SYS_rt_sigaction => sigaction(a),
        libc::SYS_rt_sigprocmask => sigprocmask(a, uc),
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

/// rt_sigprocmask: the mask the program runs with is the one the kernel puts
/// back when this handler returns (`uc_sigmask`), so that is the one to change;
/// SIGSYS (and SIGKILL, SIGSTOP) are never blocked.
fn sigprocmask(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
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
fn with_mask(set: u64, f: impl FnOnce(u64) -> i64) -> i64 {
    match without_sigsys(set) {
        None => f(0),
        Some(m) => f(&m as *const libc::sigset_t as u64),
    }
}

fn sigaction(a: [u64; 6]) -> i64 {
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
        let kernel = if n.handler > 1 {
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

// ---------------------------------------------------------------- threads, processes

/// Where a child of ours starts: dispatch on before any of the program's code.
extern "C" fn thread_start(regs: *mut ChildRegs) {
    // SAFETY: `clone_child` wrote the ChildRegs this stack points at.
    let flags = unsafe { (*regs).flags };
    child_covered(flags & libc::CLONE_THREAD as u64 == 0);
}

/// In a new thread or process: dispatch on (or stop: it may not run uncovered),
/// the selector at BLOCK for the program's code.
fn child_covered(process: bool) {
    SELECTOR.set(ALLOW);
    PASSING.set(false);
    PENDING.set(0);
    if dispatch_on() < 0 {
        let msg = b"rktio: cannot turn system-call dispatch on in a new thread; stopping\n";
        raw(
            libc::SYS_write,
            [2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
        );
        raw(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]);
    }
    if process {
        crate::forked_child();
    }
    SELECTOR.set(BLOCK);
}

const FORK_LIKE_DROPS: u64 = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_SIGHAND) as u64;

/// A fork: made here, the child turns dispatch on before returning to the program.
fn fork(nr: i64, a: [u64; 6]) -> i64 {
    let r = raw(nr, a);
    if r == 0 {
        child_covered(true);
        // The child's selector says ALLOW until the handler returns.
        SELECTOR.set(ALLOW);
    }
    r
}

/// Writes the child's start frame below `top` (the program's stack for it) and
/// returns where the child's stack pointer starts.
fn clone_child(top: u64, flags: u64, uc: &libc::ucontext_t) -> Option<u64> {
    let size = std::mem::size_of::<ChildRegs>() as u64;
    let at = (top & !15).checked_sub(size + 64)? & !15;
    let g = &uc.uc_mcontext.gregs;
    let r = |i: c_int| g[i as usize] as u64;
    let regs = ChildRegs {
        start: thread_start,
        r8: r(libc::REG_R8),
        r9: r(libc::REG_R9),
        r10: r(libc::REG_R10),
        r12: r(libc::REG_R12),
        r13: r(libc::REG_R13),
        r14: r(libc::REG_R14),
        r15: r(libc::REG_R15),
        rdi: r(libc::REG_RDI),
        rsi: r(libc::REG_RSI),
        rbp: r(libc::REG_RBP),
        rbx: r(libc::REG_RBX),
        rdx: r(libc::REG_RDX),
        rsp: top,
        rip: r(libc::REG_RIP),
        flags,
    };
    // SAFETY: the program gave this stack to its child: the memory below its
    // top is the child's and unused until the child runs.
    unsafe { std::ptr::write(at as *mut ChildRegs, regs) };
    Some(at)
}

/// The flags a clone or clone3 is made with, and whether it makes a thread: a
/// process (not a thread) is a fork, so it drops CLONE_VM and what needs it; a
/// thread needs its own TLS and stack to be covered. Err: the refusal.
fn clone_flags(nr: i64, flags: u64, has_stack: bool) -> Result<(u64, bool), i64> {
    if flags & libc::CLONE_THREAD as u64 == 0 {
        return Ok((flags & !FORK_LIKE_DROPS, false));
    }
    if flags & libc::CLONE_SETTLS as u64 == 0 {
        return Err(refuse(
            nr,
            libc::EINVAL,
            "a thread without its own TLS (CLONE_SETTLS) cannot be covered",
        ));
    }
    if !has_stack {
        return Err(refuse(nr, libc::EINVAL, "a thread needs its own stack"));
    }
    Ok((flags, true))
}

fn clone(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    let nr = libc::SYS_clone;
    let (flags, thread) = match clone_flags(nr, a[0], a[1] != 0) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if !thread && a[1] == 0 {
        return fork(nr, [flags, 0, a[2], a[3], a[4], 0]);
    }
    let Some(sp) = clone_child(a[1], flags, uc) else {
        return -i64::from(libc::EINVAL);
    };
    // SAFETY: clone with the child's stack at our start frame; the parent returns.
    unsafe { rktio_clone_raw(nr as u64, flags, sp, a[2], a[3], a[4]) }
}

fn clone3(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    let nr = libc::SYS_clone3;
    let size = a[1] as usize;
    if !(64..=4096).contains(&size) || a[0] == 0 {
        return -i64::from(libc::EINVAL);
    }
    let mut args = vec![0u8; size];
    // SAFETY: the program passed `size` bytes of struct clone_args.
    unsafe { std::ptr::copy_nonoverlapping(a[0] as *const u8, args.as_mut_ptr(), size) };
    let word =
        |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let (stack, stack_size) = (word(&args, 5), word(&args, 6));
    let (flags, thread) = match clone_flags(nr, word(&args, 0), stack != 0) {
        Ok(f) => f,
        Err(e) => return e,
    };
    args[..8].copy_from_slice(&flags.to_le_bytes());
    if !thread && stack == 0 {
        return fork(nr, [args.as_ptr() as u64, size as u64, 0, 0, 0, 0]);
    }
    let Some(top) = stack.checked_add(stack_size) else {
        return -i64::from(libc::EINVAL);
    };
    let Some(sp) = clone_child(top, flags, uc) else {
        return -i64::from(libc::EINVAL);
    };
    args[48..56].copy_from_slice(&(sp - stack).to_le_bytes());
    // SAFETY: clone3 with our copy of the arguments, the child's stack ending at
    // our start frame; the parent returns.
    unsafe { rktio_clone_raw(nr as u64, args.as_ptr() as u64, size as u64, 0, 0, 0) }
}

// ---------------------------------------------------------------- exec

/// The first bytes of a host file, read here.
fn file_head(path: &CStr) -> Result<Vec<u8>, i64> {
    let fd = raw(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    );
    if fd < 0 {
        return Err(fd);
    }
    let mut buf = vec![0u8; 64 << 10];
    let n = raw(
        libc::SYS_pread64,
        [
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
            0,
        ],
    );
    raw(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
    if n < 0 {
        return Err(n);
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn execve(dirfd: i32, path: u64, argv: u64, envp: u64, flags: i32) -> i64 {
    let nr = if dirfd == libc::AT_FDCWD && flags == 0 {
        libc::SYS_execve
    } else {
        libc::SYS_execveat
    };
    let Some(rt) = crate::runtime() else {
        return pass(nr, [dirfd as u64, path, argv, envp, flags as u64, 0]);
    };
    if path == 0 {
        return -i64::from(libc::EFAULT);
    }
    // SAFETY: execve(2)'s contract: a NUL-terminated path.
    let p = unsafe { CStr::from_ptr(path as *const libc::c_char) }.to_bytes();
    let abs = if p.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if rt.is_ours(dirfd) {
            return refuse(
                nr,
                libc::EACCES,
                "a file of a sealed mount cannot be executed",
            );
        }
        format!("/proc/self/fd/{dirfd}").into_bytes()
    } else {
        match rt.host_path_at(dirfd, p, false, "exec of") {
            rktio_posix::PathIs::Host(abs) => abs,
            rktio_posix::PathIs::Ours => {
                return refuse(
                    nr,
                    libc::EACCES,
                    "a program on a sealed mount cannot be executed (the kernel would read it from the host)",
                );
            }
            rktio_posix::PathIs::Refused(e) => return -i64::from(e),
        }
    };
    let Ok(abs) = CString::new(abs) else {
        return -i64::from(libc::EINVAL);
    };
    // The new program must be one librktio can cover.
    let head = |p: &[u8]| {
        CString::new(p)
            .map_err(|_| -i64::from(libc::ENOENT))
            .and_then(|c| file_head(&c))
    };
    match verdict(abs.as_bytes(), head) {
        Err(e) => return e,
        Ok(Verdict::Covered) => {}
        Ok(Verdict::NotExecutable) => return -i64::from(libc::ENOEXEC),
        Ok(Verdict::Static(p)) => {
            eprintln!(
                "rktio: refused exec of {}: a statically linked program; rktio run covers a program through librktio, which only the dynamic loader brings in",
                String::from_utf8_lossy(&p)
            );
            return -i64::from(libc::EACCES);
        }
        Ok(Verdict::Foreign(p)) => {
            eprintln!(
                "rktio: refused exec of {}: not an x86-64 program",
                String::from_utf8_lossy(&p)
            );
            return -i64::from(libc::EACCES);
        }
    }
    let Some(env) = EXEC_ENV.get() else {
        return -i64::from(libc::EACCES);
    };
    let envp = covered_env(envp, env);
    let mut ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    pass(
        libc::SYS_execveat,
        [
            libc::AT_FDCWD as u64,
            abs.as_ptr() as u64,
            argv,
            ptrs.as_ptr() as u64,
            0,
            0,
        ],
    )
}

/// The program's environment, with librktio preloaded and the configuration set.
fn covered_env(envp: u64, env: &ExecEnv) -> Vec<CString> {
    let mut out = Vec::new();
    let mut preload_rest: Option<Vec<u8>> = None;
    let mut i = 0;
    while envp != 0 && i < 1 << 16 {
        // SAFETY: execve(2)'s contract: a NULL-terminated array of C strings.
        let p = unsafe { *(envp as *const *const libc::c_char).add(i) };
        if p.is_null() {
            break;
        }
        i += 1;
        // SAFETY: as above, each entry is a NUL-terminated string.
        let e = unsafe { CStr::from_ptr(p) }.to_bytes();
        if let Some(v) = e.strip_prefix(b"LD_PRELOAD=") {
            preload_rest = Some(v.to_vec());
        } else if e.starts_with(b"RKTIO_CONFIG=") || e.starts_with(b"RKTIO_STATS=") {
        } else if let Ok(c) = CString::new(e) {
            out.push(c);
        }
    }
    let ours = env.preload.to_bytes();
    let mut pre = b"LD_PRELOAD=".to_vec();
    pre.extend_from_slice(ours);
    if let Some(rest) = preload_rest {
        for item in rest.split(|&c| c == b':' || c == b' ') {
            if !item.is_empty() && item != ours {
                pre.push(b':');
                pre.extend_from_slice(item);
            }
        }
    }
    let mut cfg = b"RKTIO_CONFIG=".to_vec();
    cfg.extend_from_slice(env.config.to_bytes());
    out.extend(CString::new(pre).ok());
    out.extend(CString::new(cfg).ok());
    if env.stats {
        out.extend(CString::new("RKTIO_STATS=1").ok());
    }
    out
}
