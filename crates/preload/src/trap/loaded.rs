//! A program the stack loaded itself (a statically linked one, `crate::load`): it
//! shares this process and thread with the stack, but has a libc of its own, and
//! so a thread pointer (FS) of its own.
//!
//! Each side runs with its own FS. The thread's GS base (unused by the program's
//! libc and ours on x86-64) points at the thread's `ThreadPointers`. Every way
//! into the stack's code from the program's is a signal (SIGSYS for a system
//! call, or another signal), so the signal entry points (`entry!`) switch FS to
//! the stack's, after noting the program's, and back as they return. The stack
//! calls the program's signal handlers through `rktio_call_program`, which
//! switches the other way. The program's own FS changes (arch_prctl) are noted,
//! never made, while the stack runs.
//!
//! Its system calls differ in a few places, each here: brk (the program's heap is
//! a range of its own: our libc's malloc moves the kernel's break), arch_prctl
//! (FS is noted, GS is ours), exit (the stack commits first: the program's libc
//! does not know ours), and /proc/self/exe (the program, not the loader).

use std::sync::Mutex;

use super::*;

/// The two thread pointers of a thread of a loaded program (layout fixed by the
/// entry points below).
#[repr(C)]
#[derive(Debug)]
pub struct ThreadPointers {
    /// The stack's FS (our libc's thread block).
    pub ours: u64,
    /// The program's FS, as of its last entry into the stack.
    pub program: u64,
    /// A thread the program made: where its exit returns to on the thread's
    /// own stack (rbx, rbp, r12-r15, rsp; see `rktio_thread_switch`), and the
    /// word its exit clears (CLONE_CHILD_CLEARTID). The main thread: zeroes.
    pub saved: [u64; 7],
    pub clear_tid: u64,
}

/// The program's threads (other than the one it started on) that run.
static THREADS: AtomicU64 = AtomicU64::new(0);
/// The thread the program started on has exited (the others go on).
static MAIN_GONE: AtomicBool = AtomicBool::new(false);

/// Set (once, before the program runs) when this process runs a loaded program:
/// the entry points look at GS only then (reading it needs FSGSBASE).
pub(super) static RKTIO_LOADED: AtomicBool = AtomicBool::new(false);

/// What the stack knows of the loaded program.
#[derive(Debug)]
pub struct Loaded {
    /// Its path (what /proc/self/exe names for it).
    pub path: CString,
    brk: Mutex<Brk>,
}

/// The program's heap: [start, limit) reserved, [start, cur) usable.
#[derive(Debug)]
struct Brk {
    start: u64,
    cur: u64,
    limit: u64,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

/// The loaded program, if this process runs one.
pub fn loaded() -> Option<&'static Loaded> {
    LOADED.get()
}

const PAGE: u64 = 4096;

fn page_up(x: u64) -> u64 {
    x.saturating_add(PAGE - 1) & !(PAGE - 1)
}

// The entry points the kernel calls for a signal: on a thread of a loaded program
// whose FS is not the stack's, note the program's FS and take the stack's, call
// the handler, and put the program's back (the kernel's sigreturn does not).
// rax, rcx and r8 are free: the signal frame holds the interrupted registers.
macro_rules! entry {
    ($name:literal, $handler:path) => {
        std::arch::global_asm!(
            ".pushsection .text.rktio_entry,\"ax\",@progbits",
            concat!(".globl ", $name),
            concat!(".hidden ", $name),
            ".p2align 4",
            concat!($name, ":"),
            "    cmp byte ptr [rip + {loaded}], 0",
            "    je 2f",
            "    rdgsbase rax",
            "    test rax, rax",
            "    jz 2f",
            "    rdfsbase rcx",
            "    mov r8, [rax]",
            "    cmp rcx, r8",
            "    je 2f",
            "    mov [rax + 8], rcx",
            "    wrfsbase r8",
            "    sub rsp, 8",
            "    call {handler}",
            "    add rsp, 8",
            "    rdgsbase rax",
            "    mov rcx, [rax + 8]",
            "    wrfsbase rcx",
            "    ret",
            "2:",
            "    jmp {handler}",
            ".popsection",
            loaded = sym RKTIO_LOADED,
            handler = sym $handler,
        );
    };
}

entry!("rktio_sigsys_entry", super::on_sigsys);
entry!("rktio_signal_entry", super::signals::on_signal);

// rktio_call_program(f, sig, info, ctx, sp): calls the program's signal handler
// f with the program's FS, on the stack at `sp` (16-aligned; 0: this one), and
// takes the stack's FS and stack back when it returns (one that jumps out keeps
// the program's, as it should).
std::arch::global_asm!(
    ".pushsection .text.rktio_entry,\"ax\",@progbits",
    ".globl rktio_call_program",
    ".hidden rktio_call_program",
    ".p2align 4",
    "rktio_call_program:",
    "    push rbx",
    "    push rbp",
    "    mov rbp, rsp",
    "    sub rsp, 8",
    "    test r8, r8",
    "    jz 3f",
    "    mov rsp, r8",
    "3:",
    "    mov rax, rdi",
    "    mov edi, esi",
    "    mov rsi, rdx",
    "    mov rdx, rcx",
    "    xor ebx, ebx",
    "    cmp byte ptr [rip + {loaded}], 0",
    "    je 1f",
    "    rdgsbase rbx",
    "    test rbx, rbx",
    "    jz 1f",
    "    mov rcx, [rbx + 8]",
    "    wrfsbase rcx",
    "1:",
    "    call rax",
    "    test rbx, rbx",
    "    jz 2f",
    "    mov rcx, [rbx]",
    "    wrfsbase rcx",
    "2:",
    "    mov rsp, rbp",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    ".popsection",
    loaded = sym RKTIO_LOADED,
);

// rktio_enter_program(entry, sp, selector): the first instruction of a loaded
// program: selector at BLOCK, the program's FS (none yet: its libc sets it), its
// stack, the registers the kernel's exec leaves (rdx = 0: no rtld_fini).
std::arch::global_asm!(
    ".pushsection .text.rktio_entry,\"ax\",@progbits",
    ".globl rktio_enter_program",
    ".hidden rktio_enter_program",
    ".p2align 4",
    "rktio_enter_program:",
    "    mov byte ptr [rdx], 1",
    "    xor eax, eax",
    "    wrfsbase rax",
    "    mov rsp, rsi",
    "    xor ebx, ebx",
    "    xor ecx, ecx",
    "    xor edx, edx",
    "    xor esi, esi",
    "    xor ebp, ebp",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    "    xor r11d, r11d",
    "    xor r12d, r12d",
    "    xor r13d, r13d",
    "    xor r14d, r14d",
    "    xor r15d, r15d",
    "    jmp rdi",
    ".popsection",
);

// rktio_thread_switch(regs, saved, selector, fs): on a thread the stack made for
// the program, saves the stack's callee-saved registers and stack pointer in
// `saved`, then becomes the program's new thread: selector at BLOCK, its FS,
// its registers from the ChildRegs at `regs`, rax = 0 as clone returns.
// rktio_thread_return(saved): back from the program's exit to where
// rktio_thread_switch was called, as if it returned.
std::arch::global_asm!(
    ".pushsection .text.rktio_entry,\"ax\",@progbits",
    ".globl rktio_thread_switch",
    ".hidden rktio_thread_switch",
    ".globl rktio_thread_return",
    ".hidden rktio_thread_return",
    ".p2align 4",
    "rktio_thread_switch:",
    "    mov [rsi], rbx",
    "    mov [rsi + 8], rbp",
    "    mov [rsi + 16], r12",
    "    mov [rsi + 24], r13",
    "    mov [rsi + 32], r14",
    "    mov [rsi + 40], r15",
    "    mov [rsi + 48], rsp",
    "    mov byte ptr [rdx], 1",
    "    wrfsbase rcx",
    "    mov rax, rdi",
    "    jmp rktio_resume_child",
    "rktio_thread_return:",
    "    mov rbx, [rdi]",
    "    mov rbp, [rdi + 8]",
    "    mov r12, [rdi + 16]",
    "    mov r13, [rdi + 24]",
    "    mov r14, [rdi + 32]",
    "    mov r15, [rdi + 40]",
    "    mov rsp, [rdi + 48]",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
    fn rktio_thread_switch(
        regs: *const ChildRegs,
        saved: *mut [u64; 7],
        selector: *mut u8,
        fs: u64,
    );
    fn rktio_thread_return(saved: *const [u64; 7]) -> !;
    pub(super) fn rktio_sigsys_entry();
    pub(super) fn rktio_signal_entry();
    pub(super) fn rktio_call_program(
        f: u64,
        sig: c_int,
        info: *mut libc::siginfo_t,
        ctx: *mut c_void,
        sp: u64,
    );
    fn rktio_enter_program(entry: u64, sp: u64, selector: *mut u8) -> !;
}

/// Whether this machine lets user code switch thread pointers (FSGSBASE).
pub fn can_switch_fs() -> bool {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads the auxiliary vector; no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_FSGSBASE != 0
}

/// Notes the loaded program and this thread's two pointers (the stack's code
/// runs: FS is ours).
pub fn prepare(path: CString, brk_start: u64, brk_limit: u64) {
    let ours: u64;
    // SAFETY: rdfsbase reads this thread's FS base (FSGSBASE checked by the loader).
    unsafe { std::arch::asm!("rdfsbase {}", out(reg) ours, options(nomem, nostack)) };
    let tp = Box::leak(Box::new(ThreadPointers {
        ours,
        program: 0,
        saved: [0; 7],
        clear_tid: 0,
    }));
    // SAFETY: GS is unused by our libc and the program's on x86-64; from here on
    // it points at this thread's pointers, which live as long as the process.
    unsafe {
        std::arch::asm!("wrgsbase {}", in(reg) tp as *mut ThreadPointers as u64, options(nostack))
    };
    let _ = LOADED.set(Loaded {
        path,
        brk: Mutex::new(Brk {
            start: brk_start,
            cur: brk_start,
            limit: brk_limit,
        }),
    });
    RKTIO_LOADED.store(true, Ordering::SeqCst);
}

/// Runs the loaded program from `entry` on the stack at `sp` (after `prepare`),
/// the selector at BLOCK from its first instruction. Never returns.
pub fn enter(entry: u64, sp: u64) -> ! {
    let sel = SELECTOR.with(|s| s.as_ptr());
    // SAFETY: the loader mapped the program and built its stack at `sp` as the
    // kernel's exec would; the program runs from here on this thread, with
    // dispatch on (the selector goes to BLOCK as it starts).
    unsafe { rktio_enter_program(entry, sp, sel) }
}

// ---------------------------------------------------------------- its calls

/// brk on the program's own heap: grows and shrinks within its reserved range,
/// fresh pages zeroed; a break it cannot have leaves the break as it was.
pub(super) fn brk(a: [u64; 6]) -> i64 {
    let Some(l) = loaded() else {
        return pass(libc::SYS_brk, a);
    };
    let mut b = l
        .brk
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let want = a[0];
    if want < b.start || want > b.limit {
        return b.cur as i64;
    }
    let (old_end, new_end) = (page_up(b.cur), page_up(want));
    let r = if new_end > old_end {
        raw(
            libc::SYS_mprotect,
            [
                old_end,
                new_end - old_end,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                0,
                0,
                0,
            ],
        )
    } else if new_end < old_end {
        // Back to reserved, its contents dropped (a later brk finds zeroes).
        raw(
            libc::SYS_mmap,
            [
                new_end,
                old_end - new_end,
                libc::PROT_NONE as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE)
                    as u64,
                u64::MAX,
                0,
            ],
        )
    } else {
        0
    };
    if r >= 0 {
        b.cur = want;
    }
    b.cur as i64
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;
/// ARCH_SHSTK_ENABLE .. ARCH_SHSTK_STATUS (CET shadow stacks).
const ARCH_SHSTK: std::ops::RangeInclusive<u64> = 0x5001..=0x5005;

/// arch_prctl: the program's FS is noted (it is set as the stack returns to the
/// program); GS belongs to the stack.
pub(super) fn arch_prctl(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_arch_prctl;
    if !RKTIO_LOADED.load(Ordering::Relaxed) {
        return pass(nr, a);
    }
    let tp = this_thread();
    if tp.is_null() {
        return refuse(
            nr,
            libc::EPERM,
            "a thread of a loaded program without its pointers",
        );
    }
    match a[0] {
        ARCH_SET_FS => {
            // SAFETY: GS points at this thread's ThreadPointers (set by `enter`
            // or the thread's start), which only this thread uses.
            unsafe { (*tp).program = a[1] };
            0
        }
        ARCH_GET_FS => {
            if a[1] == 0 {
                return -i64::from(libc::EFAULT);
            }
            // SAFETY: as above; the program gave room for the value (arch_prctl(2)).
            unsafe { std::ptr::write_unaligned(a[1] as *mut u64, (*tp).program) };
            0
        }
        ARCH_SET_GS => refuse(nr, libc::EPERM, "GS is the stack's own in a loaded program"),
        ARCH_GET_GS => {
            if a[1] == 0 {
                return -i64::from(libc::EFAULT);
            }
            // SAFETY: the program gave room for the value (arch_prctl(2)).
            unsafe { std::ptr::write_unaligned(a[1] as *mut u64, 0) };
            0
        }
        x if ARCH_SHSTK.contains(&x) => refuse(
            nr,
            libc::EINVAL,
            "a shadow stack in a loaded program (the stack returns past the program's frames at a thread's exit)",
        ),
        _ => pass(nr, a),
    }
}

/// This thread's pointers (a thread of a loaded program), or null.
fn this_thread() -> *mut ThreadPointers {
    if !RKTIO_LOADED.load(Ordering::Relaxed) {
        return std::ptr::null_mut();
    }
    let tp: u64;
    // SAFETY: rdgsbase reads this thread's GS base (FSGSBASE: the program is loaded).
    unsafe { std::arch::asm!("rdgsbase {}", out(reg) tp, options(nomem, nostack)) };
    tp as *mut ThreadPointers
}

/// exit and exit_group of a loaded program. The last of its threads to go
/// commits and closes the stack's sockets first, as librktio's exit handler
/// does for a dynamic program (the program's libc runs only its own). A thread
/// the stack made for the program returns to it (`loaded_thread`).
pub(super) fn exit(nr: i64, a: [u64; 6]) -> i64 {
    if loaded().is_none() {
        if nr == libc::SYS_exit {
            altstack::exit_thread(a[0]);
        }
        return pass(nr, a);
    }
    let tp = this_thread();
    if nr == libc::SYS_exit && !tp.is_null() {
        // SAFETY: GS points at this thread's pointers, used by this thread only.
        let made = unsafe { (*tp).saved[6] } != 0;
        if made {
            // Signals go to the program's other threads from here on.
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
            // SAFETY: `saved` holds the state rktio_thread_switch left on this
            // thread's own stack, which is still there (it never returned).
            unsafe { rktio_thread_return(&(*tp).saved) }
        }
        // The first thread goes; the others go on, and the last of them
        // commits (MAIN_GONE first: a thread ending now sees it, or this sees
        // no thread left).
        MAIN_STATUS.store(a[0], Ordering::SeqCst);
        MAIN_GONE.store(true, Ordering::SeqCst);
        if THREADS.load(Ordering::SeqCst) > 0 {
            altstack::exit_thread(a[0]);
        }
    }
    last_exit(a[0])
}

/// The exit status the first thread gave (for the last thread's exit).
static MAIN_STATUS: AtomicU64 = AtomicU64::new(0);
/// Set by the one exit that commits.
static EXITING: AtomicBool = AtomicBool::new(false);

/// The process ends: the stack commits (once) and the process exits.
fn last_exit(status: u64) -> i64 {
    if !EXITING.swap(true, Ordering::SeqCst) {
        crate::at_exit();
    }
    raw(libc::SYS_exit_group, [status, 0, 0, 0, 0, 0])
}

/// In a forked child (of this thread): only this thread is left.
pub(super) fn forked_child() {
    THREADS.store(0, Ordering::SeqCst);
    MAIN_GONE.store(false, Ordering::SeqCst);
}

/// What a new thread of the loaded program starts from.
struct ThreadStart {
    regs: ChildRegs,
    tls: u64,
    flags: u64,
    ptid: u64,
    ctid: u64,
    /// The new thread's id, once it has one (0 before; a futex word).
    tid: std::sync::atomic::AtomicU32,
}

/// clone and clone3 of a thread in a loaded program: the thread is one of our
/// libc's (its own thread block for the stack's code), which becomes the
/// program's new thread (`loaded_thread`). The program's clone flags are kept
/// in what they say about the new thread's ids and TLS; CLONE_SETTLS is not
/// needed (without it the thread starts with its parent's FS, as under clone).
pub(super) fn clone_thread(
    flags: u64,
    top: u64,
    tls: u64,
    ptid: u64,
    ctid: u64,
    uc: &libc::ucontext_t,
) -> i64 {
    let tp = this_thread();
    let tls = if flags & libc::CLONE_SETTLS as u64 != 0 || tp.is_null() {
        tls
    } else {
        // SAFETY: GS points at this thread's pointers, used by this thread only.
        unsafe { (*tp).program }
    };
    let start = std::sync::Arc::new(ThreadStart {
        regs: child_regs(top, flags, uc),
        tls,
        flags,
        ptid,
        ctid,
        tid: std::sync::atomic::AtomicU32::new(0),
    });
    let arg = std::sync::Arc::into_raw(start.clone()) as *mut c_void;
    // The new thread inherits GS: none until it sets its own, so a signal that
    // reaches it first does not take this thread's pointers for its own.
    // SAFETY: the stack's code runs (FS ours); GS is put back just below.
    unsafe { std::arch::asm!("wrgsbase {}", in(reg) 0u64, options(nostack)) };
    // SAFETY: pthread attributes are plain data set up by pthread_attr_init;
    // loaded_thread takes ownership of `arg` (one reference of the Arc).
    let r = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 << 10);
        let mut t: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut t, &attr, loaded_thread, arg);
        libc::pthread_attr_destroy(&mut attr);
        r
    };
    // SAFETY: this thread's pointers again (`tp`, as read above).
    unsafe { std::arch::asm!("wrgsbase {}", in(reg) tp as u64, options(nostack)) };
    if r != 0 {
        // SAFETY: the thread was not made: the reference is still ours.
        drop(unsafe { std::sync::Arc::from_raw(arg as *const ThreadStart) });
        return -i64::from(r);
    }
    let tid = loop {
        let t = start.tid.load(Ordering::Acquire);
        if t != 0 {
            break t;
        }
        raw(
            libc::SYS_futex,
            [
                start.tid.as_ptr() as u64,
                (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u64,
                0,
                0,
                0,
                0,
            ],
        );
    };
    i64::from(tid)
}

/// A thread of the loaded program, in our libc: dispatch on, its pointers in
/// GS, its ids where the program asked for them; then the program's code until
/// the thread exits, and back here to end as one of our libc's threads.
extern "C" fn loaded_thread(arg: *mut c_void) -> *mut c_void {
    // SAFETY: clone_thread passed one reference of this Arc to this thread.
    let start = unsafe { std::sync::Arc::from_raw(arg as *const ThreadStart) };
    child_covered_thread();
    let ours: u64;
    // SAFETY: rdfsbase reads this thread's FS base (FSGSBASE: the program is loaded).
    unsafe { std::arch::asm!("rdfsbase {}", out(reg) ours, options(nomem, nostack)) };
    let ctid = start.ctid;
    let clear = start.flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 && ctid != 0;
    let tp = Box::into_raw(Box::new(ThreadPointers {
        ours,
        program: start.tls,
        saved: [0; 7],
        clear_tid: if clear { ctid } else { 0 },
    }));
    // SAFETY: GS is ours (see `prepare`); it points at this thread's pointers
    // until the thread ends below.
    unsafe { std::arch::asm!("wrgsbase {}", in(reg) tp as u64, options(nostack)) };
    let tid = raw(libc::SYS_gettid, [0; 6]) as u32;
    // Both ids before the program's code runs in either thread (its thread
    // may exit, clearing its id, before the parent's clone returns).
    if start.flags & libc::CLONE_PARENT_SETTID as u64 != 0 && start.ptid != 0 {
        // SAFETY: clone(2)'s contract: the program gave a pid_t at `ptid`.
        unsafe { std::ptr::write_unaligned(start.ptid as *mut u32, tid) };
    }
    if start.flags & libc::CLONE_CHILD_SETTID as u64 != 0 && ctid != 0 {
        // SAFETY: clone(2)'s contract: the program gave a pid_t at `ctid`.
        unsafe { std::ptr::write_unaligned(ctid as *mut u32, tid) };
    }
    THREADS.fetch_add(1, Ordering::SeqCst);
    let regs = start.regs;
    let fs = start.tls;
    start.tid.store(tid, Ordering::Release);
    raw(
        libc::SYS_futex,
        [
            start.tid.as_ptr() as u64,
            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u64,
            1,
            0,
            0,
            0,
        ],
    );
    drop(start);
    // Our libc's robust-mutex list: the program's libc sets its own.
    let (mut head, mut len) = (0u64, 0u64);
    raw(
        libc::SYS_get_robust_list,
        [
            0,
            &mut head as *mut u64 as u64,
            &mut len as *mut u64 as u64,
            0,
            0,
            0,
        ],
    );
    let sel = SELECTOR.with(|s| s.as_ptr());
    // SAFETY: the program's registers for its new thread (its stack, its code
    // after the clone instruction); `saved` is this thread's, for the way back.
    unsafe { rktio_thread_switch(&regs, &mut (*tp).saved, sel, fs) };
    // The kernel walks the list when this thread ends: ours again, not one in
    // the program's memory that its joiner may reuse.
    raw(libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0]);
    // The program's thread exited (exit): the stack's code again, on this
    // thread's own stack, FS ours. Signals go to the program's other threads.
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
    // Off our signal stack now (on this thread's own): it is free again.
    altstack::release();
    // SAFETY: GS back to none; the pointers are this thread's, freed once.
    let clear_tid = unsafe {
        std::arch::asm!("wrgsbase {}", in(reg) 0u64, options(nostack));
        Box::from_raw(tp).clear_tid
    };
    if clear_tid != 0 {
        // As the kernel does as a thread ends: clear the word, wake a joiner.
        // SAFETY: clone(2)'s contract: CLONE_CHILD_CLEARTID's pid_t at `ctid`.
        unsafe { std::ptr::write_volatile(clear_tid as *mut u32, 0) };
        raw(
            libc::SYS_futex,
            [clear_tid, libc::FUTEX_WAKE as u64, 1, 0, 0, 0],
        );
    }
    if THREADS.fetch_sub(1, Ordering::SeqCst) == 1 && MAIN_GONE.load(Ordering::SeqCst) {
        last_exit(MAIN_STATUS.load(Ordering::SeqCst));
    }
    std::ptr::null_mut()
}

/// readlink and readlinkat of /proc/self/exe in a loaded program name the
/// program, not the loader (busybox finds its applets this way). None: not that.
pub(super) fn readlink_exe(nr: i64, a: [u64; 6]) -> Option<i64> {
    let l = loaded()?;
    let (path, buf, len) = match nr {
        libc::SYS_readlink => (a[0], a[1], a[2]),
        libc::SYS_readlinkat => (a[1], a[2], a[3]),
        _ => return None,
    };
    if path == 0 {
        return None;
    }
    // SAFETY: readlink(2)'s contract: a NUL-terminated path.
    let p = unsafe { CStr::from_ptr(path as *const libc::c_char) }.to_bytes();
    if !is_self_exe(p) {
        return None;
    }
    let name = l.path.to_bytes();
    let n = name.len().min(len as usize);
    if len == 0 || len > i32::MAX as u64 {
        return Some(-i64::from(libc::EINVAL));
    }
    if buf == 0 {
        return Some(-i64::from(libc::EFAULT));
    }
    // SAFETY: the program gave `len` writable bytes at `buf` (readlink(2)).
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), buf as *mut u8, n) };
    Some(n as i64)
}

/// Whether `p` names this process's executable (/proc/self/exe, /proc/PID/exe).
pub(super) fn is_self_exe(p: &[u8]) -> bool {
    if p == b"/proc/self/exe" {
        return true;
    }
    let pid = std::process::id().to_string();
    p.strip_prefix(b"/proc/")
        .and_then(|r| r.strip_prefix(pid.as_bytes()))
        .is_some_and(|r| r == b"/exe")
}
