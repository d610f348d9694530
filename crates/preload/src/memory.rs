//! mmap, munmap, msync of sealed files.

use super::*;

// ---------------------------------------------------------------- mmap

/// mmap of one of our files: anonymous memory (private or shared as asked)
/// filled from the file; a writable shared one is written back on msync,
/// munmap and exit (see `Runtime::map_shared`).
pub(crate) fn do_mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> Option<*mut c_void> {
    let (rt, _g) = enter()?;
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
    let aflags = (flags & !(libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE | libc::MAP_PRIVATE))
        | kind
        | libc::MAP_ANONYMOUS;
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
    // SAFETY: `m` is a fresh mapping of `len` bytes, readable and writable.
    let b = unsafe { buf_mut(m, len) };
    let mut done = 0usize;
    while done < b.len() {
        match rt.pread(fd, &mut b[done..], off + done as off_t) {
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
    if shared
        && prot & libc::PROT_WRITE != 0
        && let Err(e) = rt.map_shared(fd, m as usize, len, off)
    {
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

/// Writes our shared mappings inside `[addr, addr+len)` back to their files.
pub(crate) fn write_back(rt: &Runtime, addr: usize, len: usize) -> SysResult<()> {
    for (s, n, _) in rt.maps_in(addr, len) {
        // SAFETY: `[s, s+n)` lies inside a live mapping we made (registered in
        // `map_shared`, not yet unmapped), readable.
        let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, n) };
        rt.write_back(s, bytes)?;
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    if let Some((rt, _g)) = enter()
        && !rt.maps_in(addr as usize, len).is_empty()
    {
        if let Err(e) = write_back(rt, addr as usize, len) {
            // The data stays mapped: nothing is lost by failing.
            set_errno(e);
            return -1;
        }
        rt.unmap(addr as usize, len);
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
