//! Reads of the program's memory that may fault, as the kernel's
//! copy_from_user: a bad path pointer is EFAULT, not a fault in the stack.
//!
//! Two probes are the routines that touch such memory first (a path is
//! probed a page at a time, then searched inside the page); a fault inside them (SIGSEGV or SIGBUS, which the trap
//! always holds) resumes at their fixup, which answers -1. They are leaves
//! that hold nothing, so the jump leaves no state behind.

std::arch::global_asm!(
    ".pushsection .text.rktio_user,\"ax\",@progbits",
    ".globl rktio_user_fixup",
    ".hidden rktio_user_fixup",
    ".p2align 4",
    // rktio_user_probe_read(p, len) / rktio_user_probe_write(p, len): 0 if
    // every page of [p, p+len) can be read (written: a byte read and written
    // back), -1 if not (a fault, or a range that wraps).
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
    "    mov al, byte ptr [rdi]",
    "    mov byte ptr [rdi], al",
    "    and rdi, -4096",
    "    add rdi, 4096",
    "    jc 8f",
    "    cmp rdi, rdx",
    "    jbe 7b",
    "8:",
    "    mov al, byte ptr [rdx]",
    "    mov byte ptr [rdx], al",
    "9:",
    "    xor eax, eax",
    "    ret",
    "rktio_user_fixup:",
    "    mov rax, -1",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
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

/// Can the `len` bytes at `p` be written? The probe reads one byte of each
/// page and writes it back. (False for NULL with a length.) Only for what the
/// stack is about to fill in whole (stat, addresses, events, headers it
/// writes back): a store the program races into those bytes meanwhile is
/// overwritten by the call anyway.
pub fn writable(p: *mut u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    // SAFETY: as `readable`; each byte is written with what was read from it.
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
    let n = usize::try_from(strnlen(p.cast()))
        .ok()
        .filter(|&n| n < PATH_MAX)?;
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
    match usize::try_from(strnlen(p.cast())) {
        Err(_) => Err(libc::EFAULT),
        Ok(n) if n >= PATH_MAX => Err(libc::ENAMETOOLONG),
        // SAFETY: as in `c_str`.
        Ok(n) => Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }),
    }
}

/// The length of the C string at `p` if it ends within PATH_MAX bytes,
/// PATH_MAX if not, -1 if a page of it cannot be read. Each page is probed
/// (its first byte, with the fixup), then searched with memchr inside it (which
/// reads no further than the page).
fn strnlen(p: *const u8) -> isize {
    let mut done = 0usize;
    while done < PATH_MAX {
        let at = (p as usize).wrapping_add(done);
        let in_page = (4096 - at % 4096).min(PATH_MAX - done);
        if !readable(at as *const u8, 1) {
            return -1;
        }
        // SAFETY: the page holding `at` is mapped (just probed); memchr reads
        // at most `in_page` bytes, all of them on that page.
        let hit = unsafe { libc::memchr(at as *const libc::c_void, 0, in_page) };
        if !hit.is_null() {
            return (done + (hit as usize - at)) as isize;
        }
        done += in_page;
    }
    PATH_MAX as isize
}

/// For a fault taken inside a probe: resume at the fixup.
pub(super) fn fixup(uc: &mut libc::ucontext_t) -> bool {
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
    let start = rktio_user_probe_read as *const () as u64;
    let end = rktio_user_fixup as *const () as u64;
    if (start..end).contains(&rip) {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = end as i64;
        return true;
    }
    false
}
