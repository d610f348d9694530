//! open, close, dup, read and write, sync and size, fcntl: the calls on descriptors of files and sockets.

use super::*;

// ---------------------------------------------------------------- open, close

pub(crate) fn do_open(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: open(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    let r = if dirfd == libc::AT_FDCWD {
        rt.open(p, flags, mode)
    } else {
        rt.openat(dirfd, p, flags, mode)
    }?;
    Some(ret_fd(r))
}

/// `mode` is read only with O_CREAT or O_TMPFILE, as the C variadic would be.
pub(crate) fn mode_of(flags: c_int, mode: mode_t) -> mode_t {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        mode
    } else {
        0
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let mode = mode_of(flags, mode);
    do_open(libc::AT_FDCWD, path, flags, mode).unwrap_or_else(|| {
        real!(
            c"open",
            fn(*const c_char, c_int, mode_t) -> c_int,
            path,
            flags,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let mode = mode_of(flags, mode);
    do_open(libc::AT_FDCWD, path, flags, mode).unwrap_or_else(|| {
        real!(
            c"open64",
            fn(*const c_char, c_int, mode_t) -> c_int,
            path,
            flags,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    do_open(libc::AT_FDCWD, path, flags, 0)
        .unwrap_or_else(|| real!(c"__open_2", fn(*const c_char, c_int) -> c_int, path, flags))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    do_open(libc::AT_FDCWD, path, flags, 0).unwrap_or_else(|| {
        real!(
            c"__open64_2",
            fn(*const c_char, c_int) -> c_int,
            path,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    let mode = mode_of(flags, mode);
    do_open(dirfd, path, flags, mode).unwrap_or_else(|| {
        real!(
            c"openat",
            fn(c_int, *const c_char, c_int, mode_t) -> c_int,
            dirfd,
            path,
            flags,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    let mode = mode_of(flags, mode);
    do_open(dirfd, path, flags, mode).unwrap_or_else(|| {
        real!(
            c"openat64",
            fn(c_int, *const c_char, c_int, mode_t) -> c_int,
            dirfd,
            path,
            flags,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    do_open(dirfd, path, flags, 0).unwrap_or_else(|| {
        real!(
            c"__openat_2",
            fn(c_int, *const c_char, c_int) -> c_int,
            dirfd,
            path,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    do_open(dirfd, path, flags, 0).unwrap_or_else(|| {
        real!(
            c"__openat64_2",
            fn(c_int, *const c_char, c_int) -> c_int,
            dirfd,
            path,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
    do_open(libc::AT_FDCWD, path, flags, mode)
        .unwrap_or_else(|| real!(c"creat", fn(*const c_char, mode_t) -> c_int, path, mode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
    do_open(libc::AT_FDCWD, path, flags, mode)
        .unwrap_or_else(|| real!(c"creat64", fn(*const c_char, mode_t) -> c_int, path, mode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.close(fd)
    {
        return ret_int(r);
    }
    rktio_sys::host_closed(fd);
    real!(c"close", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.dup(fd, 0, false)
    {
        return ret_fd(r);
    }
    real!(c"dup", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if crate::internal(old) || (crate::internal(new) && !crate::spare_for_dup(old, new)) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.dup2(old, new, false)
    {
        return ret_fd(r);
    }
    real!(c"dup2", fn(c_int, c_int) -> c_int, old, new)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if crate::internal(old) || (crate::internal(new) && !crate::spare_for_dup(old, new)) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter() {
        if old == new && (rt.is_ours(old) || rt.is_ours(new)) {
            set_errno(libc::EINVAL);
            return -1;
        }
        if let Some(r) = rt.dup2(old, new, flags & libc::O_CLOEXEC != 0) {
            return ret_fd(r);
        }
    }
    real!(c"dup3", fn(c_int, c_int, c_int) -> c_int, old, new, flags)
}

// ---------------------------------------------------------------- data

#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, p: *mut c_void, n: size_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: read(2)'s contract.
        let b = match unsafe { buf_mut(p, n) } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        if let Some(r) = rt.read(fd, b) {
            return ret_size(r);
        }
    }
    real!(c"read", fn(c_int, *mut c_void, size_t) -> ssize_t, fd, p, n)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, p: *const c_void, n: size_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: write(2)'s contract.
        let b = match unsafe { buf(p, n) } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        if let Some(r) = rt.write(fd, b) {
            if let Ok(k) = r {
                mirror_at_position(rt, fd, &[&b[..k]]);
            }
            return ret_size(r);
        }
    }
    real!(
        c"write",
        fn(c_int, *const c_void, size_t) -> ssize_t,
        fd,
        p,
        n
    )
}

pub(crate) fn do_pread(fd: c_int, p: *mut c_void, n: size_t, off: off_t) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    // SAFETY: pread(2)'s contract.
    let b = match unsafe { buf_mut(p, n) } {
        Ok(b) => b,
        Err(e) => return Some(ret_size(Err(e))),
    };
    Some(ret_size(rt.pread(fd, b, off)?))
}

pub(crate) fn do_pwrite(fd: c_int, p: *const c_void, n: size_t, off: off_t) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    // SAFETY: pwrite(2)'s contract.
    let b = match unsafe { buf(p, n) } {
        Ok(b) => b,
        Err(e) => return Some(ret_size(Err(e))),
    };
    let r = rt.pwrite(fd, b, off)?;
    if let (Ok(k), Ok(at)) = (&r, u64::try_from(off)) {
        crate::memory::mirror_write(rt, fd, at, &[&b[..*k]]);
    }
    Some(ret_size(r))
}

/// After a write at the file position of `fd` (which it moved past what it
/// wrote): the file's shared mappings see it.
fn mirror_at_position(rt: &Runtime, fd: c_int, bytes: &[&[u8]]) {
    let n: usize = bytes.iter().map(|b| b.len()).sum();
    if n == 0 || rt.mapped_copies(fd, 0, usize::MAX).is_empty() {
        return;
    }
    if let Some(Ok(end)) = rt.lseek(fd, 0, libc::SEEK_CUR)
        && let Some(at) = u64::try_from(end)
            .ok()
            .and_then(|e| e.checked_sub(n as u64))
    {
        crate::memory::mirror_write(rt, fd, at, bytes);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread(fd: c_int, p: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_pread(fd, p, n, off).unwrap_or_else(|| {
        real!(
            c"pread",
            fn(c_int, *mut c_void, size_t, off_t) -> ssize_t,
            fd,
            p,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread64(fd: c_int, p: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_pread(fd, p, n, off).unwrap_or_else(|| {
        real!(
            c"pread64",
            fn(c_int, *mut c_void, size_t, off_t) -> ssize_t,
            fd,
            p,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite(fd: c_int, p: *const c_void, n: size_t, off: off_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_pwrite(fd, p, n, off).unwrap_or_else(|| {
        real!(
            c"pwrite",
            fn(c_int, *const c_void, size_t, off_t) -> ssize_t,
            fd,
            p,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(fd: c_int, p: *const c_void, n: size_t, off: off_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_pwrite(fd, p, n, off).unwrap_or_else(|| {
        real!(
            c"pwrite64",
            fn(c_int, *const c_void, size_t, off_t) -> ssize_t,
            fd,
            p,
            n,
            off
        )
    })
}

pub(crate) fn do_readv(
    fd: c_int,
    v: *const libc::iovec,
    n: c_int,
    off: Option<off_t>,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    if !(0..=libc::UIO_MAXIOV).contains(&n) {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    // SAFETY: readv(2)'s contract.
    let mut bufs = match unsafe { iov_mut(v, n) } {
        Ok(b) => b,
        Err(e) => return Some(ret_size(Err(e))),
    };
    Some(ret_size(rt.readv(fd, &mut bufs, off)?))
}

pub(crate) fn do_writev(
    fd: c_int,
    v: *const libc::iovec,
    n: c_int,
    off: Option<off_t>,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    if !(0..=libc::UIO_MAXIOV).contains(&n) {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    // SAFETY: writev(2)'s contract.
    let bufs = match unsafe { iov(v, n) } {
        Ok(b) => b,
        Err(e) => return Some(ret_size(Err(e))),
    };
    let r = rt.writev(fd, &bufs, off)?;
    if let Ok(k) = r {
        // What was written: the first `k` bytes of the buffers.
        let mut left = k;
        let mut done: Vec<&[u8]> = Vec::new();
        for b in &bufs {
            let t = left.min(b.len());
            done.push(&b[..t]);
            left -= t;
        }
        match off.map(u64::try_from) {
            Some(Ok(at)) => crate::memory::mirror_write(rt, fd, at, &done),
            Some(Err(_)) => {}
            None => mirror_at_position(rt, fd, &done),
        }
    }
    Some(ret_size(r))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, v: *const libc::iovec, n: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_readv(fd, v, n, None).unwrap_or_else(|| {
        real!(
            c"readv",
            fn(c_int, *const libc::iovec, c_int) -> ssize_t,
            fd,
            v,
            n
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, v: *const libc::iovec, n: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_writev(fd, v, n, None).unwrap_or_else(|| {
        real!(
            c"writev",
            fn(c_int, *const libc::iovec, c_int) -> ssize_t,
            fd,
            v,
            n
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv(fd: c_int, v: *const libc::iovec, n: c_int, off: off_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_readv(fd, v, n, Some(off)).unwrap_or_else(|| {
        real!(
            c"preadv",
            fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t,
            fd,
            v,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv64(
    fd: c_int,
    v: *const libc::iovec,
    n: c_int,
    off: off_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_readv(fd, v, n, Some(off)).unwrap_or_else(|| {
        real!(
            c"preadv64",
            fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t,
            fd,
            v,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev(
    fd: c_int,
    v: *const libc::iovec,
    n: c_int,
    off: off_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_writev(fd, v, n, Some(off)).unwrap_or_else(|| {
        real!(
            c"pwritev",
            fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t,
            fd,
            v,
            n,
            off
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev64(
    fd: c_int,
    v: *const libc::iovec,
    n: c_int,
    off: off_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_writev(fd, v, n, Some(off)).unwrap_or_else(|| {
        real!(
            c"pwritev64",
            fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t,
            fd,
            v,
            n,
            off
        )
    })
}

pub(crate) fn do_lseek(fd: c_int, off: off_t, whence: c_int) -> Option<off_t> {
    let (rt, _g) = enter()?;
    Some(match rt.lseek(fd, off, whence)? {
        Ok(p) => p,
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lseek(fd: c_int, off: off_t, whence: c_int) -> off_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_lseek(fd, off, whence)
        .unwrap_or_else(|| real!(c"lseek", fn(c_int, off_t, c_int) -> off_t, fd, off, whence))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lseek64(fd: c_int, off: off_t, whence: c_int) -> off_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_lseek(fd, off, whence).unwrap_or_else(|| {
        real!(
            c"lseek64",
            fn(c_int, off_t, c_int) -> off_t,
            fd,
            off,
            whence
        )
    })
}

// ---------------------------------------------------------------- sync, size

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fsync(fd, false)
    {
        return ret_int(r);
    }
    real!(c"fsync", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fsync(fd, true)
    {
        return ret_int(r);
    }
    real!(c"fdatasync", fn(c_int) -> c_int, fd)
}

/// flock(2): ours in the stack's lock table (see `Runtime::flock`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flock(fd: c_int, op: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.flock(fd, op)
    {
        return ret_int(r);
    }
    real!(c"flock", fn(c_int, c_int) -> c_int, fd, op)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sync_file_range(fd: c_int, off: off_t, n: off_t, flags: u32) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.sync_file_range(fd)
    {
        return ret_int(r);
    }
    real!(
        c"sync_file_range",
        fn(c_int, off_t, off_t, u32) -> c_int,
        fd,
        off,
        n,
        flags
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn syncfs(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.syncfs(fd)
    {
        return ret_int(r);
    }
    real!(c"syncfs", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sync() {
    if let Some((rt, _g)) = enter() {
        let _ = rt.sync_all();
    }
    real!(c"sync", fn() -> (),)
}

/// posix_fadvise returns the error number instead of setting errno.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_fadvise(fd: c_int, off: off_t, len: off_t, advice: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fadvise(fd, advice)
    {
        return r.err().unwrap_or(0);
    }
    real!(
        c"posix_fadvise",
        fn(c_int, off_t, off_t, c_int) -> c_int,
        fd,
        off,
        len,
        advice
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_fadvise64(
    fd: c_int,
    off: off_t,
    len: off_t,
    advice: c_int,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fadvise(fd, advice)
    {
        return r.err().unwrap_or(0);
    }
    real!(
        c"posix_fadvise64",
        fn(c_int, off_t, off_t, c_int) -> c_int,
        fd,
        off,
        len,
        advice
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readahead(fd: c_int, off: off_t, n: size_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fadvise(fd, libc::POSIX_FADV_WILLNEED)
    {
        return ret_size(r.map(|()| 0));
    }
    real!(
        c"readahead",
        fn(c_int, off_t, size_t) -> ssize_t,
        fd,
        off,
        n
    )
}

pub(crate) fn do_ftruncate(fd: c_int, len: off_t) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(ret_int(rt.ftruncate(fd, len)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_ftruncate(fd, len).unwrap_or_else(|| real!(c"ftruncate", fn(c_int, off_t) -> c_int, fd, len))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_ftruncate(fd, len)
        .unwrap_or_else(|| real!(c"ftruncate64", fn(c_int, off_t) -> c_int, fd, len))
}

pub(crate) fn do_path_op(
    dirfd: c_int,
    path: *const c_char,
    op: PathOp<'_>,
) -> Option<SysResult<PathOut>> {
    let (rt, _g) = enter()?;
    // SAFETY: the call's contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    rt.path_op(dirfd, p, op)
}

pub(crate) fn path_ret(r: Option<SysResult<PathOut>>) -> Option<c_int> {
    r.map(|r| ret_int(r.map(|_| ())))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn truncate(path: *const c_char, len: off_t) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Truncate(len)))
        .unwrap_or_else(|| real!(c"truncate", fn(*const c_char, off_t) -> c_int, path, len))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn truncate64(path: *const c_char, len: off_t) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Truncate(len)))
        .unwrap_or_else(|| real!(c"truncate64", fn(*const c_char, off_t) -> c_int, path, len))
}

pub(crate) fn do_fallocate(
    fd: c_int,
    mode: c_int,
    off: off_t,
    len: off_t,
) -> Option<SysResult<()>> {
    let (rt, _g) = enter()?;
    rt.fallocate(fd, mode, off, len)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fallocate(fd, mode, off, len)
        .map(ret_int)
        .unwrap_or_else(|| {
            real!(
                c"fallocate",
                fn(c_int, c_int, off_t, off_t) -> c_int,
                fd,
                mode,
                off,
                len
            )
        })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate64(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fallocate(fd, mode, off, len)
        .map(ret_int)
        .unwrap_or_else(|| {
            real!(
                c"fallocate64",
                fn(c_int, c_int, off_t, off_t) -> c_int,
                fd,
                mode,
                off,
                len
            )
        })
}

/// posix_fallocate returns the error number instead of setting errno.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    match do_fallocate(fd, 0, off, len) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e,
        None => real!(
            c"posix_fallocate",
            fn(c_int, off_t, off_t) -> c_int,
            fd,
            off,
            len
        ),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_fallocate64(fd: c_int, off: off_t, len: off_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    match do_fallocate(fd, 0, off, len) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e,
        None => real!(
            c"posix_fallocate64",
            fn(c_int, off_t, off_t) -> c_int,
            fd,
            off,
            len
        ),
    }
}

// ---------------------------------------------------------------- fcntl

pub(crate) fn do_fcntl(fd: c_int, cmd: c_int, arg: usize) -> Option<c_int> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    let lock = |cmd: LockCmd, ofd: bool| -> c_int {
        let p = arg as *mut libc::flock;
        if !trap::user::writable(p.cast(), std::mem::size_of::<libc::flock>()) {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: fcntl's contract for the lock commands: `arg` points to a
        // `struct flock` (flock64 has the same layout on x86_64), mapped.
        let fl = unsafe { p.read_unaligned() };
        if ofd && fl.l_pid != 0 {
            set_errno(libc::EINVAL);
            return -1;
        }
        let a = FlockArgs {
            kind: i32::from(fl.l_type),
            whence: i32::from(fl.l_whence),
            start: fl.l_start,
            len: fl.l_len,
            pid: fl.l_pid,
        };
        match rt.record_lock(fd, cmd, ofd, a) {
            None => -1,
            Some(Err(e)) => {
                set_errno(e);
                -1
            }
            Some(Ok(None)) => 0,
            Some(Ok(Some(h))) => {
                let mut out = fl;
                out.l_type = i16::try_from(h.kind).unwrap_or(libc::F_UNLCK as i16);
                out.l_whence = i16::try_from(h.whence).unwrap_or(0);
                out.l_start = h.start;
                out.l_len = h.len;
                out.l_pid = h.pid;
                // SAFETY: as above: F_GETLK writes the answer back into it.
                unsafe { p.write(out) };
                0
            }
        }
    };
    Some(match cmd {
        libc::F_GETFL => ret_fd(rt.getfl(fd)?),
        libc::F_SETFL => ret_int(rt.setfl(fd, arg as c_int)?),
        libc::F_DUPFD => ret_fd(rt.dup(fd, arg as c_int, false)?),
        libc::F_DUPFD_CLOEXEC => ret_fd(rt.dup(fd, arg as c_int, true)?),
        // Close-on-exec lives on the host slot: the kernel's own flag (the
        // slot keeps a note of it for when it becomes a spare).
        libc::F_GETFD => return None,
        libc::F_SETFD => ret_int(rt.set_cloexec(fd, arg as c_int & libc::FD_CLOEXEC != 0)?),
        libc::F_GETLK => lock(LockCmd::Get, false),
        libc::F_SETLK => lock(LockCmd::Set, false),
        libc::F_SETLKW => lock(LockCmd::SetWait, false),
        libc::F_OFD_GETLK => lock(LockCmd::Get, true),
        libc::F_OFD_SETLK => lock(LockCmd::Set, true),
        libc::F_OFD_SETLKW => lock(LockCmd::SetWait, true),
        _ => {
            set_errno(libc::EINVAL);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fcntl(fd, cmd, arg)
        .unwrap_or_else(|| real!(c"fcntl", fn(c_int, c_int, usize) -> c_int, fd, cmd, arg))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fcntl(fd, cmd, arg)
        .unwrap_or_else(|| real!(c"fcntl64", fn(c_int, c_int, usize) -> c_int, fd, cmd, arg))
}
