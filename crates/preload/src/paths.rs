//! Calls on paths (unlink, mkdir, chmod, chown, times, links, rename), the working directory, mkstemp.

use super::*;

// ---------------------------------------------------------------- paths

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Unlink))
        .unwrap_or_else(|| real!(c"unlink", fn(*const c_char) -> c_int, path))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let op = if flags & libc::AT_REMOVEDIR != 0 {
        PathOp::Rmdir
    } else {
        PathOp::Unlink
    };
    path_ret(do_path_op(dirfd, path, op)).unwrap_or_else(|| {
        real!(
            c"unlinkat",
            fn(c_int, *const c_char, c_int) -> c_int,
            dirfd,
            path,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Rmdir))
        .unwrap_or_else(|| real!(c"rmdir", fn(*const c_char) -> c_int, path))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Mkdir(mode)))
        .unwrap_or_else(|| real!(c"mkdir", fn(*const c_char, mode_t) -> c_int, path, mode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    path_ret(do_path_op(dirfd, path, PathOp::Mkdir(mode))).unwrap_or_else(|| {
        real!(
            c"mkdirat",
            fn(c_int, *const c_char, mode_t) -> c_int,
            dirfd,
            path,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn chmod(path: *const c_char, mode: mode_t) -> c_int {
    path_ret(do_path_op(libc::AT_FDCWD, path, PathOp::Chmod(mode)))
        .unwrap_or_else(|| real!(c"chmod", fn(*const c_char, mode_t) -> c_int, path, mode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchmod(fd: c_int, mode: mode_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fd_attr(fd, PathOp::Chmod(mode))
    {
        return ret_int(r);
    }
    real!(c"fchmod", fn(c_int, mode_t) -> c_int, fd, mode)
}

pub(crate) fn id(v: u32) -> Option<u32> {
    (v != u32::MAX).then_some(v)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn chown(path: *const c_char, uid: u32, gid: u32) -> c_int {
    path_ret(do_path_op(
        libc::AT_FDCWD,
        path,
        PathOp::Chown(id(uid), id(gid), true),
    ))
    .unwrap_or_else(|| {
        real!(
            c"chown",
            fn(*const c_char, u32, u32) -> c_int,
            path,
            uid,
            gid
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lchown(path: *const c_char, uid: u32, gid: u32) -> c_int {
    path_ret(do_path_op(
        libc::AT_FDCWD,
        path,
        PathOp::Chown(id(uid), id(gid), false),
    ))
    .unwrap_or_else(|| {
        real!(
            c"lchown",
            fn(*const c_char, u32, u32) -> c_int,
            path,
            uid,
            gid
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchown(fd: c_int, uid: u32, gid: u32) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fd_attr(fd, PathOp::Chown(id(uid), id(gid), true))
    {
        return ret_int(r);
    }
    real!(c"fchown", fn(c_int, u32, u32) -> c_int, fd, uid, gid)
}

pub(crate) fn set_time(t: &libc::timespec) -> rktio_fs::SetTime {
    match t.tv_nsec {
        libc::UTIME_NOW => rktio_fs::SetTime::Now,
        libc::UTIME_OMIT => rktio_fs::SetTime::Omit,
        n => rktio_fs::SetTime::At(rktio_fs::Timespec {
            sec: t.tv_sec,
            nsec: u32::try_from(n).unwrap_or(0).min(999_999_999),
        }),
    }
}

/// The two times of utimensat (NULL: now, now).
pub(crate) unsafe fn times2(
    t: *const libc::timespec,
) -> SysResult<(rktio_fs::SetTime, rktio_fs::SetTime)> {
    if t.is_null() {
        return Ok((rktio_fs::SetTime::Now, rktio_fs::SetTime::Now));
    }
    // SAFETY: utimensat(2)'s contract: two timespecs (checked readable).
    let [a, m] = unsafe { user_read(t.cast::<[libc::timespec; 2]>()) }?;
    Ok((set_time(&a), set_time(&m)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    t: *const libc::timespec,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's pointer, per utimensat(2).
    let (a, m) = match unsafe { times2(t) } {
        Ok(x) => x,
        Err(e) => return ret_int(Err(e)),
    };
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    if path.is_null() {
        // futimens
        if let Some((rt, _g)) = enter()
            && let Some(r) = rt.fd_attr(dirfd, PathOp::Utimens(a, m, true))
        {
            return ret_int(r);
        }
    } else if let Some(r) = path_ret(do_path_op(dirfd, path, PathOp::Utimens(a, m, follow))) {
        return r;
    }
    real!(
        c"utimensat",
        fn(c_int, *const c_char, *const libc::timespec, c_int) -> c_int,
        dirfd,
        path,
        t,
        flags
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimens(fd: c_int, t: *const libc::timespec) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    // SAFETY: the caller's pointer, per futimens(3).
    let (a, m) = match unsafe { times2(t) } {
        Ok(x) => x,
        Err(e) => return ret_int(Err(e)),
    };
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fd_attr(fd, PathOp::Utimens(a, m, true))
    {
        return ret_int(r);
    }
    real!(
        c"futimens",
        fn(c_int, *const libc::timespec) -> c_int,
        fd,
        t
    )
}

pub(crate) fn tv(t: &libc::timeval) -> rktio_fs::SetTime {
    rktio_fs::SetTime::At(rktio_fs::Timespec {
        sec: t.tv_sec,
        nsec: u32::try_from(t.tv_usec.clamp(0, 999_999) * 1000).unwrap_or(0),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimes(path: *const c_char, t: *const libc::timeval) -> c_int {
    let (a, m) = if t.is_null() {
        (rktio_fs::SetTime::Now, rktio_fs::SetTime::Now)
    } else {
        // SAFETY: utimes(2)'s contract: two timevals (checked readable).
        match unsafe { user_read(t.cast::<[libc::timeval; 2]>()) } {
            Ok([x, y]) => (tv(&x), tv(&y)),
            Err(e) => return ret_int(Err(e)),
        }
    };
    path_ret(do_path_op(
        libc::AT_FDCWD,
        path,
        PathOp::Utimens(a, m, true),
    ))
    .unwrap_or_else(|| {
        real!(
            c"utimes",
            fn(*const c_char, *const libc::timeval) -> c_int,
            path,
            t
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn utime(path: *const c_char, t: *const libc::utimbuf) -> c_int {
    let (a, m) = if t.is_null() {
        (rktio_fs::SetTime::Now, rktio_fs::SetTime::Now)
    } else {
        // SAFETY: utime(2)'s contract: one utimbuf (checked readable).
        let u = match unsafe { user_read(t) } {
            Ok(u) => u,
            Err(e) => return ret_int(Err(e)),
        };
        let at = |s: i64| rktio_fs::SetTime::At(rktio_fs::Timespec { sec: s, nsec: 0 });
        (at(u.actime), at(u.modtime))
    };
    path_ret(do_path_op(
        libc::AT_FDCWD,
        path,
        PathOp::Utimens(a, m, true),
    ))
    .unwrap_or_else(|| {
        real!(
            c"utime",
            fn(*const c_char, *const libc::utimbuf) -> c_int,
            path,
            t
        )
    })
}

pub(crate) fn do_readlink(
    dirfd: c_int,
    path: *const c_char,
    out: *mut c_char,
    n: size_t,
) -> Option<ssize_t> {
    let r = do_path_op(dirfd, path, PathOp::Readlink)?;
    Some(match r {
        Ok(PathOut::Link(t)) => {
            let k = t.len().min(n);
            if k > 0 && !out.is_null() {
                // SAFETY: readlink(2)'s contract: `n` writable bytes at `out`.
                unsafe { std::ptr::copy_nonoverlapping(t.as_ptr(), out.cast::<u8>(), k) };
            }
            k as ssize_t
        }
        Ok(PathOut::Done) => {
            set_errno(libc::EINVAL);
            -1
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, out: *mut c_char, n: size_t) -> ssize_t {
    do_readlink(libc::AT_FDCWD, path, out, n).unwrap_or_else(|| {
        real!(
            c"readlink",
            fn(*const c_char, *mut c_char, size_t) -> ssize_t,
            path,
            out,
            n
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    out: *mut c_char,
    n: size_t,
) -> ssize_t {
    do_readlink(dirfd, path, out, n).unwrap_or_else(|| {
        real!(
            c"readlinkat",
            fn(c_int, *const c_char, *mut c_char, size_t) -> ssize_t,
            dirfd,
            path,
            out,
            n
        )
    })
}

pub(crate) fn do_symlink(
    target: *const c_char,
    dirfd: c_int,
    path: *const c_char,
) -> Option<c_int> {
    // SAFETY: symlink(2)'s contract: NUL-terminated strings.
    let t = unsafe { cpath(target) }?;
    path_ret(do_path_op(dirfd, path, PathOp::Symlink(t)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    do_symlink(target, libc::AT_FDCWD, path).unwrap_or_else(|| {
        real!(
            c"symlink",
            fn(*const c_char, *const c_char) -> c_int,
            target,
            path
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    path: *const c_char,
) -> c_int {
    do_symlink(target, dirfd, path).unwrap_or_else(|| {
        real!(
            c"symlinkat",
            fn(*const c_char, c_int, *const c_char) -> c_int,
            target,
            dirfd,
            path
        )
    })
}

pub(crate) fn do_two(
    fd1: c_int,
    p1: *const c_char,
    fd2: c_int,
    p2: *const c_char,
    link: bool,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // Both paths are copied in before either is looked at, as the kernel
    // does: a bad one is EFAULT (or ENAMETOOLONG) whatever the other names.
    let (a, b) = match (trap::user::c_path(p1), trap::user::c_path(p2)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(ret_int(Err(e))),
    };
    Some(ret_int(rt.two_paths((fd1, a), (fd2, b), link)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(from: *const c_char, to: *const c_char) -> c_int {
    do_two(libc::AT_FDCWD, from, libc::AT_FDCWD, to, false).unwrap_or_else(|| {
        real!(
            c"rename",
            fn(*const c_char, *const c_char) -> c_int,
            from,
            to
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(
    fd1: c_int,
    from: *const c_char,
    fd2: c_int,
    to: *const c_char,
) -> c_int {
    do_two(fd1, from, fd2, to, false).unwrap_or_else(|| {
        real!(
            c"renameat",
            fn(c_int, *const c_char, c_int, *const c_char) -> c_int,
            fd1,
            from,
            fd2,
            to
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn link(from: *const c_char, to: *const c_char) -> c_int {
    do_two(libc::AT_FDCWD, from, libc::AT_FDCWD, to, true)
        .unwrap_or_else(|| real!(c"link", fn(*const c_char, *const c_char) -> c_int, from, to))
}

// ---------------------------------------------------------------- cwd

#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    if let Some((rt, _g)) = enter() {
        // SAFETY: chdir(2)'s contract: a NUL-terminated path.
        if let Some(p) = unsafe { cpath(path) }
            && let Some(r) = rt.chdir(p)
        {
            return ret_int(r);
        }
    }
    real!(c"chdir", fn(*const c_char) -> c_int, path)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fchdir(fd)
    {
        return ret_int(r);
    }
    real!(c"fchdir", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(out: *mut c_char, size: size_t) -> *mut c_char {
    if let Some((rt, _g)) = enter()
        && let Some(cwd) = rt.getcwd()
    {
        if out.is_null() {
            // glibc's extension: allocate (at least `size`) with malloc.
            let n = (cwd.len() + 1).max(size);
            // SAFETY: malloc of n bytes; the caller frees it.
            let p = unsafe { libc::malloc(n) }.cast::<c_char>();
            if p.is_null() {
                set_errno(libc::ENOMEM);
                return p;
            }
            // SAFETY: `p` has n >= len + 1 bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(cwd.as_ptr(), p.cast::<u8>(), cwd.len());
                *p.add(cwd.len()) = 0;
            }
            return p;
        }
        if size < cwd.len() + 1 {
            set_errno(libc::ERANGE);
            return std::ptr::null_mut();
        }
        // SAFETY: getcwd(3)'s contract: `size` writable bytes at `out`.
        unsafe {
            std::ptr::copy_nonoverlapping(cwd.as_ptr(), out.cast::<u8>(), cwd.len());
            *out.add(cwd.len()) = 0;
        }
        return out;
    }
    real!(c"getcwd", fn(*mut c_char, size_t) -> *mut c_char, out, size)
}

// ---------------------------------------------------------------- mkstemp

/// mkstemp and friends open inside libc, out of our reach: done here with our
/// open, so a template on a sealed mount (TMPDIR=/data) lands there and a host
/// one goes through the policy.
pub(crate) fn do_mkostemp(template: *mut c_char, flags: c_int, suffix: c_int) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: mkstemp(3)'s contract: a writable NUL-terminated template.
    let t = unsafe { cpath(template) }?.to_vec();
    let suffix = usize::try_from(suffix).unwrap_or(0);
    if t.len() < 6 + suffix || &t[t.len() - 6 - suffix..t.len() - suffix] != b"XXXXXX" {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    // A host directory the policy lets the program write: libc's own.
    if rt.is_host_writable(&t) {
        return None;
    }
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let start = t.len() - 6 - suffix;
    for _ in 0..100 {
        let mut rnd = [0u8; 6];
        if rktio_sys::random_bytes(&mut rnd).is_err() {
            set_errno(libc::EIO);
            return Some(-1);
        }
        let mut name = t.clone();
        for (i, r) in rnd.iter().enumerate() {
            name[start + i] = CHARS[*r as usize % CHARS.len()];
        }
        let fl = libc::O_RDWR
            | libc::O_CREAT
            | libc::O_EXCL
            | (flags & (libc::O_CLOEXEC | libc::O_APPEND | libc::O_SYNC));
        match rt.open(&name, fl, 0o600) {
            Some(Ok(fd)) => {
                // SAFETY: writing the chosen name back over the template's X's.
                unsafe {
                    std::ptr::copy_nonoverlapping(name.as_ptr(), template.cast::<u8>(), name.len());
                }
                return Some(fd);
            }
            Some(Err(libc::EEXIST)) => continue,
            Some(Err(e)) => {
                set_errno(e);
                return Some(-1);
            }
            None => return None,
        }
    }
    set_errno(libc::EEXIST);
    Some(-1)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp(template: *mut c_char) -> c_int {
    do_mkostemp(template, 0, 0)
        .unwrap_or_else(|| real!(c"mkstemp", fn(*mut c_char) -> c_int, template))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp64(template: *mut c_char) -> c_int {
    do_mkostemp(template, 0, 0)
        .unwrap_or_else(|| real!(c"mkstemp64", fn(*mut c_char) -> c_int, template))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp(template: *mut c_char, flags: c_int) -> c_int {
    do_mkostemp(template, flags, 0).unwrap_or_else(|| {
        real!(
            c"mkostemp",
            fn(*mut c_char, c_int) -> c_int,
            template,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int {
    do_mkostemp(template, flags, 0).unwrap_or_else(|| {
        real!(
            c"mkostemp64",
            fn(*mut c_char, c_int) -> c_int,
            template,
            flags
        )
    })
}
