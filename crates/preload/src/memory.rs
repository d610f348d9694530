//! mmap, munmap, msync of sealed files.

use super::*;

// ---------------------------------------------------------------- mmap

/// mmap of one of our files: anonymous memory (private or shared as asked)
/// filled from the file. A shared one sees the file's later writes
/// (`mirror_write`), as the kernel's page cache makes it (bbolt, etcd's
/// database, reads through a read-only shared mapping what it wrote with
/// pwrite); a writable one is written back on msync, munmap and exit (see
/// `Runtime::map_shared`).
pub(crate) fn do_mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> Option<*mut c_void> {
    let (rt, _g) = enter()?;
    if flags & libc::MAP_FIXED != 0 && rt.mapped_in(addr as usize, len) {
        // The new mapping replaces ours there: written back and forgotten first.
        let _m = mirror_lock();
        if let Err(e) = write_back_locked(rt, addr as usize, len) {
            set_errno(e);
            return Some(libc::MAP_FAILED);
        }
        rt.unmap(addr as usize, len);
    }
    if flags & libc::MAP_ANONYMOUS != 0 || !rt.is_ours(fd) {
        return None;
    }
    let shared = flags & (libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE) != 0;
    if let Some(Err(e)) = rt.mmap_check(fd) {
        set_errno(e);
        return Some(libc::MAP_FAILED);
    }
    let kind = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // MAP_POPULATE is dropped: on a file it prefaults the pages the file
    // covers, on our anonymous copy it would allocate and zero every page of
    // the length (etcd asks for it on a 10 GiB mapping of a small database).
    let aflags = (flags
        & !(libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE | libc::MAP_PRIVATE | libc::MAP_POPULATE))
        | kind
        | libc::MAP_ANONYMOUS
        // Only the pages the file covers (and those the program writes) are
        // ever touched: the length needs no reservation (bbolt's 10 GiB would
        // be refused on a host with less memory).
        | libc::MAP_NORESERVE;
    let m = real!(
        c"mmap",
        fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
        addr,
        len,
        prot | libc::PROT_WRITE,
        aflags,
        -1,
        0
    );
    if m == libc::MAP_FAILED {
        return Some(m);
    }
    // Filled and registered before a write to the file can look for it.
    let _m = shared.then(mirror_lock);
    // SAFETY: `m` is a fresh mapping of `len` bytes, readable and writable.
    let b = unsafe { std::slice::from_raw_parts_mut(m.cast::<u8>(), len) };
    // In pieces: a read checks (and so touches) every page of its buffer, and a
    // mapping may be far larger than the file (bbolt, under etcd, maps 10 GiB
    // of a 16 KiB database): only pages the file covers are touched.
    const FILL: usize = 1 << 20;
    let mut done = 0usize;
    while done < b.len() {
        let piece = (b.len() - done).min(FILL);
        match rt.pread(fd, &mut b[done..done + piece], off + done as off_t) {
            Some(Ok(0)) => break,
            Some(Ok(n)) => done += n,
            Some(Err(e)) => {
                real!(c"munmap", fn(*mut c_void, size_t) -> c_int, m, len);
                set_errno(e);
                return Some(libc::MAP_FAILED);
            }
            None => break,
        }
    }
    if shared && let Err(e) = rt.map_shared(fd, m as usize, len, off, prot) {
        real!(c"munmap", fn(*mut c_void, size_t) -> c_int, m, len);
        set_errno(e);
        return Some(libc::MAP_FAILED);
    }
    if prot & libc::PROT_WRITE == 0 {
        real!(
            c"mprotect",
            fn(*mut c_void, size_t, c_int) -> c_int,
            m,
            len,
            prot
        );
    }
    Some(m)
}

/// Held while the stack's code touches the memory of shared mappings or changes
/// which are registered: a copy into a mapping (`mirror`) never meets its
/// munmap halfway, two copies never open and close one read-only page at once,
/// and a new mapping is filled and registered before a write can miss it.
static MIRROR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mirror_lock() -> std::sync::MutexGuard<'static, ()> {
    MIRROR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PAGE: usize = 4096;

/// After `bytes` were written at `off` to `fd`: the file's shared mappings see
/// them. A read-only mapping is opened for the copy and closed again.
pub(crate) fn mirror_write(rt: &Runtime, fd: c_int, off: u64, bytes: &[&[u8]]) {
    let total: usize = bytes.iter().map(|b| b.len()).sum();
    let _g = mirror_lock();
    mirror(rt.mapped_copies(fd, off, total), bytes);
}

/// Copies `bytes` where `copies` (from `Runtime::mapped_copies`) say; `MIRROR`
/// held since the copies were looked up.
fn mirror(copies: Vec<(usize, usize, usize, c_int)>, bytes: &[&[u8]]) {
    for (addr, from, len, prot) in copies {
        let (lo, hi) = (addr & !(PAGE - 1), (addr + len).div_ceil(PAGE) * PAGE);
        let closed = prot & libc::PROT_WRITE == 0;
        if closed {
            protect(lo, hi - lo, prot | libc::PROT_WRITE);
        }
        // SAFETY: [addr, addr+len) lies inside a live shared mapping we made
        // (registered in `map_shared`; munmap and MAP_FIXED take it out of the
        // table first, under `MIRROR`, which is held), writable now.
        let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
        let mut at = 0;
        let mut skip = from;
        for b in bytes {
            if at == len {
                break;
            }
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let k = (b.len() - skip).min(len - at);
            dst[at..at + k].copy_from_slice(&b[skip..skip + k]);
            at += k;
            skip = 0;
        }
        if closed {
            protect(lo, hi - lo, prot);
        }
    }
}

fn protect(at: usize, len: usize, prot: c_int) {
    real!(
        c"mprotect",
        fn(*mut c_void, size_t, c_int) -> c_int,
        at as *mut c_void,
        len,
        prot
    );
}

/// Writes our shared mappings inside `[addr, addr+len)` back to their files.
pub(crate) fn write_back(rt: &Runtime, addr: usize, len: usize) -> SysResult<()> {
    let _g = mirror_lock();
    write_back_locked(rt, addr, len)
}

/// `write_back`, `MIRROR` held.
fn write_back_locked(rt: &Runtime, addr: usize, len: usize) -> SysResult<()> {
    for (s, n, _) in rt.maps_in(addr, len) {
        // SAFETY: `[s, s+n)` lies inside a live mapping we made (registered in
        // `map_shared`, not yet unmapped), readable.
        let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, n) };
        rt.write_back(s, bytes)?;
        // The file's other shared mappings see what this one wrote.
        mirror(rt.mapped_copies_from(s, n), &[bytes]);
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.mapped_in(addr as usize, len)
    {
        let _m = mirror_lock();
        if let Err(e) = write_back_locked(rt, addr as usize, len) {
            // The data stays mapped: nothing is lost by failing.
            set_errno(e);
            return -1;
        }
        rt.unmap(addr as usize, len);
        return real!(c"munmap", fn(*mut c_void, size_t) -> c_int, addr, len);
    }
    real!(c"munmap", fn(*mut c_void, size_t) -> c_int, addr, len)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn msync(addr: *mut c_void, len: size_t, flags: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && !rt.maps_in(addr as usize, len).is_empty()
    {
        return ret_int(write_back(rt, addr as usize, len));
    }
    real!(
        c"msync",
        fn(*mut c_void, size_t, c_int) -> c_int,
        addr,
        len,
        flags
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    if crate::internal(fd) {
        set_errno(libc::EBADF);
        return libc::MAP_FAILED;
    }
    do_mmap(addr, len, prot, flags, fd, off).unwrap_or_else(|| {
        real!(
            c"mmap",
            fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
            addr,
            len,
            prot,
            flags,
            fd,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    if crate::internal(fd) {
        set_errno(libc::EBADF);
        return libc::MAP_FAILED;
    }
    do_mmap(addr, len, prot, flags, fd, off).unwrap_or_else(|| {
        real!(
            c"mmap64",
            fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
            addr,
            len,
            prot,
            flags,
            fd,
            off
        )
    })
}
