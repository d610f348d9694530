//! Extended attributes: not offered on sealed files.

use super::*;

// ---------------------------------------------------------------- xattrs

/// Extended attributes are not offered on sealed files: ENOTSUP, which programs
/// (ls, cp -a, tar) take as "this file system has none".
pub(crate) fn xattr_path(path: *const c_char) -> bool {
    let Some((rt, _g)) = enter() else {
        return false;
    };
    // SAFETY: the xattr calls' contract: a NUL-terminated path.
    unsafe { cpath(path) }.is_some_and(|p| rt.is_sealed_path(p))
}

pub(crate) fn xattr_fd(fd: c_int) -> bool {
    enter().is_some_and(|(rt, _g)| rt.is_ours(fd))
}

pub(crate) fn notsup<T: From<i8>>() -> T {
    set_errno(libc::ENOTSUP);
    T::from(-1)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getxattr(
    p: *const c_char,
    n: *const c_char,
    v: *mut c_void,
    s: size_t,
) -> ssize_t {
    if xattr_path(p) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"getxattr",
        fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t,
        p,
        n,
        v,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lgetxattr(
    p: *const c_char,
    n: *const c_char,
    v: *mut c_void,
    s: size_t,
) -> ssize_t {
    if xattr_path(p) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"lgetxattr",
        fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t,
        p,
        n,
        v,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fgetxattr(
    fd: c_int,
    n: *const c_char,
    v: *mut c_void,
    s: size_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if xattr_fd(fd) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"fgetxattr",
        fn(c_int, *const c_char, *mut c_void, size_t) -> ssize_t,
        fd,
        n,
        v,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listxattr(p: *const c_char, l: *mut c_char, s: size_t) -> ssize_t {
    if xattr_path(p) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"listxattr",
        fn(*const c_char, *mut c_char, size_t) -> ssize_t,
        p,
        l,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn llistxattr(p: *const c_char, l: *mut c_char, s: size_t) -> ssize_t {
    if xattr_path(p) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"llistxattr",
        fn(*const c_char, *mut c_char, size_t) -> ssize_t,
        p,
        l,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn flistxattr(fd: c_int, l: *mut c_char, s: size_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if xattr_fd(fd) {
        return notsup::<i64>() as ssize_t;
    }
    real!(
        c"flistxattr",
        fn(c_int, *mut c_char, size_t) -> ssize_t,
        fd,
        l,
        s
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn setxattr(
    p: *const c_char,
    n: *const c_char,
    v: *const c_void,
    s: size_t,
    f: c_int,
) -> c_int {
    if xattr_path(p) {
        return notsup::<i32>();
    }
    real!(
        c"setxattr",
        fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int,
        p,
        n,
        v,
        s,
        f
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lsetxattr(
    p: *const c_char,
    n: *const c_char,
    v: *const c_void,
    s: size_t,
    f: c_int,
) -> c_int {
    if xattr_path(p) {
        return notsup::<i32>();
    }
    real!(
        c"lsetxattr",
        fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int,
        p,
        n,
        v,
        s,
        f
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsetxattr(
    fd: c_int,
    n: *const c_char,
    v: *const c_void,
    s: size_t,
    f: c_int,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if xattr_fd(fd) {
        return notsup::<i32>();
    }
    real!(
        c"fsetxattr",
        fn(c_int, *const c_char, *const c_void, size_t, c_int) -> c_int,
        fd,
        n,
        v,
        s,
        f
    )
}
