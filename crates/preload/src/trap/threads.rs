//! Threads and processes under the trap: clone and clone3 made here, the child
//! covered before it runs the program; forks (vfork and posix_spawn among them).

use super::*;

// rktio_clone_raw(nr, a1, a2, a3, a4, a5): clone or clone3 with the child's stack
// set up by `clone_child`. The parent returns the result. The child starts on its
// new stack, which points at a `ChildRegs`: it calls `start` (which turns dispatch
// on), then loads the program's registers from it and resumes the program after
// its clone instruction with rax = 0. rcx and r11 are free: the syscall
// instruction clobbers both.
std::arch::global_asm!(
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
    // A loaded program's child process: the program's FS (see loaded.rs).
    "    cmp byte ptr [rip + {loaded}], 0",
    "    je 3f",
    "    rdgsbase rax",
    "    test rax, rax",
    "    jz 3f",
    "    mov rcx, [rax + 8]",
    "    wrfsbase rcx",
    "3:",
    "    mov rax, rsp",
    // rktio_resume_child (rax = a ChildRegs): the program's registers from it,
    // its stack, and on at its code after the clone with rax = 0 (also the way
    // into the program for a loaded program's thread, loaded.rs).
    ".globl rktio_resume_child",
    ".hidden rktio_resume_child",
    "rktio_resume_child:",
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
    loaded = sym loaded::RKTIO_LOADED,
);

unsafe extern "C" {
    fn rktio_clone_raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

/// What the child of a clone finds at the top of its stack (layout fixed by
/// `rktio_clone_raw`).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
pub(super) struct ChildRegs {
    pub(super) start: extern "C" fn(*mut ChildRegs),
    pub(super) r8: u64,
    pub(super) r9: u64,
    pub(super) r10: u64,
    pub(super) r12: u64,
    pub(super) r13: u64,
    pub(super) r14: u64,
    pub(super) r15: u64,
    pub(super) rdi: u64,
    pub(super) rsi: u64,
    pub(super) rbp: u64,
    pub(super) rbx: u64,
    pub(super) rdx: u64,
    pub(super) rsp: u64,
    pub(super) rip: u64,
    pub(super) flags: u64,
}

/// Where a child of ours starts: dispatch on before any of the program's code.
pub(super) extern "C" fn thread_start(regs: *mut ChildRegs) {
    // SAFETY: `clone_child` wrote the ChildRegs this stack points at.
    let flags = unsafe { (*regs).flags };
    child_covered(flags & libc::CLONE_THREAD as u64 == 0);
}

/// In a new thread or process: dispatch on (or stop: it may not run uncovered),
/// the selector at BLOCK for the program's code.
/// In a thread the stack made for a loaded program (selector at ALLOW: the
/// switch to the program's code sets BLOCK).
pub(super) fn child_covered_thread() {
    child_covered(false);
    SELECTOR.set(ALLOW);
}

pub(super) fn child_covered(process: bool) {
    SELECTOR.set(ALLOW);
    PASSING.set(false);
    PENDING.set(0);
    if process {
        // A forked child keeps its signal stack (the kernel's and the memory);
        // a new thread has none: ours before any of the program's code.
        altstack::forked_child();
    } else if altstack::take().is_err() {
        let msg = b"rktio: cannot give a new thread a signal stack; stopping\n";
        raw(
            libc::SYS_write,
            [2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
        );
        raw(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]);
    }
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

pub(super) const FORK_LIKE_DROPS: u64 =
    (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_SIGHAND) as u64;

/// A fork: made here, the child turns dispatch on before returning to the program.
pub(super) fn fork(nr: i64, a: [u64; 6]) -> i64 {
    let r = if loaded().is_some() {
        // A loaded program's libc does not hold our libc's locks (malloc's)
        // across its fork as a dynamic program's does (they are one libc):
        // our libc's fork takes them, and runs our fork handlers.
        // SAFETY: fork from the stack's code (selector at ALLOW).
        sys(i64::from(unsafe { libc::fork() }))
    } else {
        raw(nr, a)
    };
    if r == 0 {
        loaded::forked_child();
        child_covered(true);
        // The child's selector says ALLOW until the handler returns.
        SELECTOR.set(ALLOW);
    }
    r
}

/// Writes the child's start frame below `top` (the program's stack for it) and
/// returns where the child's stack pointer starts.
pub(super) fn clone_child(top: u64, flags: u64, uc: &libc::ucontext_t) -> Option<u64> {
    let size = std::mem::size_of::<ChildRegs>() as u64;
    let at = (top & !15).checked_sub(size + 64)? & !15;
    let regs = child_regs(top, flags, uc);
    // SAFETY: the program gave this stack to its child: the memory below its
    // top is the child's and unused until the child runs.
    unsafe { std::ptr::write(at as *mut ChildRegs, regs) };
    Some(at)
}

/// The registers a clone's child starts with: the parent's at its clone, its
/// own stack (`top`).
pub(super) fn child_regs(top: u64, flags: u64, uc: &libc::ucontext_t) -> ChildRegs {
    let g = &uc.uc_mcontext.gregs;
    let r = |i: c_int| g[i as usize] as u64;
    ChildRegs {
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
    }
}

/// The flags a clone or clone3 is made with, and whether it makes a thread: a
/// process (not a thread) is a fork, so it drops CLONE_VM and what needs it; a
/// thread needs its own TLS and stack to be covered. Err: the refusal.
pub(super) fn clone_flags(nr: i64, flags: u64, has_stack: bool) -> Result<(u64, bool), i64> {
    if flags & libc::CLONE_THREAD as u64 == 0 {
        return Ok((flags & !FORK_LIKE_DROPS, false));
    }
    if flags & libc::CLONE_SETTLS as u64 == 0 && loaded().is_none() {
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

pub(super) fn clone(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
    let nr = libc::SYS_clone;
    let (flags, thread) = match clone_flags(nr, a[0], a[1] != 0) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if !thread && a[1] == 0 {
        return fork(nr, [flags, 0, a[2], a[3], a[4], 0]);
    }
    if thread && loaded().is_some() {
        // clone(flags, stack, parent_tid, child_tid, tls) on x86-64.
        return loaded::clone_thread(flags, a[1], a[4], a[2], a[3], uc);
    }
    let Some(sp) = clone_child(a[1], flags, uc) else {
        return -i64::from(libc::EINVAL);
    };
    // SAFETY: clone with the child's stack at our start frame; the parent returns.
    unsafe { rktio_clone_raw(nr as u64, flags, sp, a[2], a[3], a[4]) }
}

pub(super) fn clone3(a: [u64; 6], uc: &mut libc::ucontext_t) -> i64 {
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
    if thread && loaded().is_some() {
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
        // stack, stack_size, tls.
        if flags & libc::CLONE_PIDFD as u64 != 0 {
            return refuse(
                nr,
                libc::EINVAL,
                "CLONE_PIDFD for a thread of a loaded program",
            );
        }
        return loaded::clone_thread(
            flags,
            top,
            word(&args, 7),
            word(&args, 3),
            word(&args, 2),
            uc,
        );
    }
    let Some(sp) = clone_child(top, flags, uc) else {
        return -i64::from(libc::EINVAL);
    };
    args[48..56].copy_from_slice(&(sp - stack).to_le_bytes());
    // SAFETY: clone3 with our copy of the arguments, the child's stack ending at
    // our start frame; the parent returns.
    unsafe { rktio_clone_raw(nr as u64, args.as_ptr() as u64, size as u64, 0, 0, 0) }
}
