//! stat, lstat, fstat, fstatat, statx.

use super::*;

// ---------------------------------------------------------------- stat

pub(crate) fn do_stat(path: *const c_char, follow: bool, out: *mut libc::stat) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: stat(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    Some(put_stat(out, rt.stat(p, follow)?))
}

pub(crate) fn do_fstat(fd: c_int, out: *mut libc::stat) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(put_stat(out, rt.fstat(fd)?))
}

pub(crate) fn do_fstatat(
    dirfd: c_int,
    path: *const c_char,
    out: *mut libc::stat,
    flags: c_int,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: fstatat(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    Some(put_stat(out, rt.fstatat(dirfd, p, flags)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat(path: *const c_char, out: *mut libc::stat) -> c_int {
    do_stat(path, true, out).unwrap_or_else(|| {
        real!(
            c"stat",
            fn(*const c_char, *mut libc::stat) -> c_int,
            path,
            out
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat64(path: *const c_char, out: *mut libc::stat) -> c_int {
    do_stat(path, true, out).unwrap_or_else(|| {
        real!(
            c"stat64",
            fn(*const c_char, *mut libc::stat) -> c_int,
            path,
            out
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat(path: *const c_char, out: *mut libc::stat) -> c_int {
    do_stat(path, false, out).unwrap_or_else(|| {
        real!(
            c"lstat",
            fn(*const c_char, *mut libc::stat) -> c_int,
            path,
            out
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat64(path: *const c_char, out: *mut libc::stat) -> c_int {
    do_stat(path, false, out).unwrap_or_else(|| {
        real!(
            c"lstat64",
            fn(*const c_char, *mut libc::stat) -> c_int,
            path,
            out
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat(fd: c_int, out: *mut libc::stat) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fstat(fd, out)
        .unwrap_or_else(|| real!(c"fstat", fn(c_int, *mut libc::stat) -> c_int, fd, out))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, out: *mut libc::stat) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_fstat(fd, out)
        .unwrap_or_else(|| real!(c"fstat64", fn(c_int, *mut libc::stat) -> c_int, fd, out))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat(
    dirfd: c_int,
    path: *const c_char,
    out: *mut libc::stat,
    flags: c_int,
) -> c_int {
    do_fstatat(dirfd, path, out, flags).unwrap_or_else(|| {
        real!(
            c"fstatat",
            fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int,
            dirfd,
            path,
            out,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat64(
    dirfd: c_int,
    path: *const c_char,
    out: *mut libc::stat,
    flags: c_int,
) -> c_int {
    do_fstatat(dirfd, path, out, flags).unwrap_or_else(|| {
        real!(
            c"fstatat64",
            fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int,
            dirfd,
            path,
            out,
            flags
        )
    })
}

pub(crate) fn do_access(
    dirfd: c_int,
    path: *const c_char,
    amode: c_int,
    flags: c_int,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: access(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    Some(ret_int(rt.access(
        dirfd,
        p,
        amode,
        flags & libc::AT_EACCESS != 0,
    )?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, amode: c_int) -> c_int {
    do_access(libc::AT_FDCWD, path, amode, 0)
        .unwrap_or_else(|| real!(c"access", fn(*const c_char, c_int) -> c_int, path, amode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    amode: c_int,
    flags: c_int,
) -> c_int {
    do_access(dirfd, path, amode, flags).unwrap_or_else(|| {
        real!(
            c"faccessat",
            fn(c_int, *const c_char, c_int, c_int) -> c_int,
            dirfd,
            path,
            amode,
            flags
        )
    })
}

// ---------------------------------------------------------------- statx

#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: libc::c_uint,
    out: *mut libc::statx,
) -> c_int {
    if let Some((rt, _g)) = enter()
        // SAFETY: statx(2)'s contract: a NUL-terminated path.
        && let Some(p) = unsafe { cpath(path) }
        && let Some(r) = rt.fstatat(
            dirfd,
            p,
            flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH),
        )
    {
        return match r {
            Ok(s) => {
                if !crate::trap::user::writable(out.cast(), std::mem::size_of::<libc::statx>()) {
                    set_errno(libc::EFAULT);
                    return -1;
                }
                // SAFETY: all-zero is a valid struct statx.
                let mut x: libc::statx = unsafe { std::mem::zeroed() };
                let ts = |t: rktio_fs::Timespec| {
                    // SAFETY: all-zero is a valid statx_timestamp.
                    let mut v: libc::statx_timestamp = unsafe { std::mem::zeroed() };
                    v.tv_sec = t.sec;
                    v.tv_nsec = t.nsec;
                    v
                };
                x.stx_mask = libc::STATX_BASIC_STATS;
                x.stx_blksize = s.stat.blksize;
                x.stx_rdev_major = libc::major(s.stat.rdev);
                x.stx_rdev_minor = libc::minor(s.stat.rdev);
                x.stx_nlink = s.stat.nlink;
                x.stx_uid = s.stat.uid;
                x.stx_gid = s.stat.gid;
                x.stx_mode = (s.stat.mode & 0xffff) as u16;
                x.stx_ino = s.stat.ino;
                x.stx_size = s.stat.size;
                x.stx_blocks = s.stat.blocks;
                x.stx_atime = ts(s.stat.atime);
                x.stx_mtime = ts(s.stat.mtime);
                x.stx_ctime = ts(s.stat.ctime);
                x.stx_dev_major = libc::major(s.dev);
                x.stx_dev_minor = libc::minor(s.dev);
                // SAFETY: the caller gave room for a struct statx.
                unsafe { out.write(x) };
                0
            }
            Err(e) => {
                set_errno(e);
                -1
            }
        };
    }
    real!(
        c"statx",
        fn(c_int, *const c_char, c_int, libc::c_uint, *mut libc::statx) -> c_int,
        dirfd,
        path,
        flags,
        mask,
        out
    )
}
