//! Reads of the program's memory that may fault, as the kernel's
//! copy_from_user: a bad path pointer is EFAULT, not a fault in the stack.
//!
//! `rktio_user_strnlen` and the two probes are the routines that touch such
//! memory first; a fault inside them (SIGSEGV or SIGBUS, which the trap
//! always holds) resumes at their fixup, which answers -1. They are leaves
//! that hold nothing, so the jump leaves no state behind.

// rktio_user_strnlen(p, max): the length of the C string at p if it ends
// within max bytes, max if it does not, -1 if reading it faults.
std::arch::global_asm!(
    ".pushsection .text.rktio_user,\"ax\",@progbits",
    ".globl rktio_user_strnlen",
    ".hidden rktio_user_strnlen",
    ".globl rktio_user_fixup",
    ".hidden rktio_user_fixup",
    ".p2align 4",
    "rktio_user_strnlen:",
    "    xor eax, eax",
    "2:",
    "    cmp rax, rsi",
    "    jae 3f",
    "    movzx ecx, byte ptr [rdi + rax]",
    "    test ecx, ecx",
    "    jz 3f",
    "    inc rax",
    "    jmp 2b",
    "3:",
    "    ret",
    // rktio_user_probe_read(p, len) / rktio_user_probe_write(p, len): 0 if
    // every page of [p, p+len) can be read (written: a locked OR of zero,
    // which changes nothing), -1 if not (a fault, or a range that wraps).
    ".globl rktio_user_probe_read",
    ".hidden rktio_user_probe_read",
    "rktio_user_probe_read:",
    "    test rsi, rsi",
    "    jz 6f",
    "    lea rdx, [rdi + rsi - 1]",
    "    cmp rdx, rdi",
    "    jb rktio_user_fixup",
    "4:",
    "    movzx eax, byte ptr [rdi]",
    "    and rdi, -4096",
    "    add rdi, 4096",
    "    jc 5f",
    "    cmp rdi, rdx",
    "    jbe 4b",
    "5:",
    "    movzx eax, byte ptr [rdx]",
    "6:",
    "    xor eax, eax",
    "    ret",
    ".globl rktio_user_probe_write",
    ".hidden rktio_user_probe_write",
    "rktio_user_probe_write:",
    "    test rsi, rsi",
    "    jz 9f",
    "    lea rdx, [rdi + rsi - 1]",
    "    cmp rdx, rdi",
    "    jb rktio_user_fixup",
    "7:",
    "    lock or byte ptr [rdi], 0",
    "    and rdi, -4096",
    "    add rdi, 4096",
    "    jc 8f",
    "    cmp rdi, rdx",
    "    jbe 7b",
    "8:",
    "    lock or byte ptr [rdx], 0",
    "9:",
    "    xor eax, eax",
    "    ret",
    "rktio_user_fixup:",
    "    mov rax, -1",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
    fn rktio_user_strnlen(p: *const u8, max: usize) -> isize;
    fn rktio_user_probe_read(p: *const u8, len: usize) -> isize;
    fn rktio_user_probe_write(p: *mut u8, len: usize) -> isize;
    fn rktio_user_fixup();
}

/// Ranges up to this are probed page by page; longer ones at their first and
/// last bytes (a program's large buffer may be memory it never touched: a probe
/// of every page would fault it all in).
const PROBE_ALL: usize = 1 << 20;

/// Can the `len` bytes at `p` be read? (False for NULL with a length.) A data
/// buffer the stack writes into is probed so too: reading never faults in
/// memory the program has not touched, and a read-only buffer (a program's
/// bug) still faults in the stack, which stops the program.
pub fn readable(p: *const u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    if p.is_null() {
        return false;
    }
    if len > PROBE_ALL {
        let Some(last) = (p as usize).checked_add(len - 1) else {
            return false;
        };
        // SAFETY: as below, one byte at each end.
        return unsafe {
            rktio_user_probe_read(p, 1) == 0 && rktio_user_probe_read(last as *const u8, 1) == 0
        };
    }
    // SAFETY: the routine reads one byte of each page of the range and turns
    // a fault into -1 (see `fixup`); it writes nothing.
    unsafe { rktio_user_probe_read(p, len) == 0 }
}

/// Can the `len` bytes at `p` be written? The probe ORs zero into one byte
/// of each page with a locked instruction: no value changes, not even under
/// a racing writer. (False for NULL with a length.) For the small structures
/// the stack fills in (stat, addresses, events).
pub fn writable(p: *mut u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    // SAFETY: as `readable`; the locked OR of zero leaves every byte as it is.
    !p.is_null() && unsafe { rktio_user_probe_write(p, len) } == 0
}

/// Longest path the kernel takes (PATH_MAX, with its NUL).
const PATH_MAX: usize = 4096;

/// The bytes of the C string at `p`: None for NULL, an address that cannot be
/// read, or a path of PATH_MAX bytes or more. The host's call then answers
/// EFAULT or ENAMETOOLONG, as the kernel fails to copy such a path in before
/// it looks at anything.
pub fn c_str<'a>(p: *const std::ffi::c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the routine reads at most PATH_MAX bytes from p and turns a
    // fault into -1 (see `fixup`); it writes nothing.
    let n = unsafe { rktio_user_strnlen(p.cast(), PATH_MAX) };
    let n = usize::try_from(n).ok().filter(|&n| n < PATH_MAX)?;
    // SAFETY: those n bytes were just read without a fault; the program's
    // contract keeps them mapped for the call (a program that unmaps them from
    // another thread meanwhile faults here, as it would in libc).
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) })
}

/// The bytes of the C string at `p`, or the errno the kernel answers for a
/// path it cannot copy in: EFAULT (NULL or unreadable), ENAMETOOLONG.
pub fn c_path<'a>(p: *const std::ffi::c_char) -> Result<&'a [u8], i32> {
    if p.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: as in `c_str`.
    let n = unsafe { rktio_user_strnlen(p.cast(), PATH_MAX) };
    match usize::try_from(n) {
        Err(_) => Err(libc::EFAULT),
        Ok(n) if n >= PATH_MAX => Err(libc::ENAMETOOLONG),
        // SAFETY: as in `c_str`.
        Ok(n) => Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }),
    }
}

/// For a fault taken inside `rktio_user_strnlen`: resume at its fixup.
pub(super) fn fixup(uc: &mut libc::ucontext_t) -> bool {
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
    let start = rktio_user_strnlen as *const () as u64;
    let end = rktio_user_fixup as *const () as u64;
    if (start..end).contains(&rip) {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = end as i64;
        return true;
    }
    false
}
