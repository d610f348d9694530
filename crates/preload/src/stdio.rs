//! stdio streams (fopen, fdopen, fileno) over descriptors of ours.

use super::*;

// ---------------------------------------------------------------- stdio

/// glibc's `cookie_io_functions_t`.
#[repr(C)]
pub(crate) struct CookieIo {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, size_t) -> ssize_t>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, size_t) -> ssize_t>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

unsafe extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> *mut libc::FILE;
}

/// FILE streams of ours (fopen on a sealed mount), by address, with their descriptor.
pub(crate) static STREAMS: std::sync::Mutex<Vec<(usize, c_int)>> =
    std::sync::Mutex::new(Vec::new());

pub(crate) fn streams() -> std::sync::MutexGuard<'static, Vec<(usize, c_int)>> {
    STREAMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

unsafe extern "C" fn cookie_read(c: *mut c_void, b: *mut c_char, n: size_t) -> ssize_t {
    // SAFETY: stdio passes its buffer of `n` bytes; the cookie is our descriptor.
    unsafe { read(c as usize as c_int, b.cast(), n) }
}

unsafe extern "C" fn cookie_write(c: *mut c_void, b: *const c_char, n: size_t) -> ssize_t {
    // SAFETY: as above, for writing. stdio wants all of it or an error.
    let fd = c as usize as c_int;
    let mut done = 0usize;
    while done < n {
        // SAFETY: the rest of stdio's buffer.
        let r = unsafe { write(fd, b.add(done).cast(), n - done) };
        if r <= 0 {
            return if done > 0 { done as ssize_t } else { -1 };
        }
        done += r as usize;
    }
    done as ssize_t
}

unsafe extern "C" fn cookie_seek(c: *mut c_void, off: *mut i64, whence: c_int) -> c_int {
    if off.is_null() {
        return -1;
    }
    // SAFETY: stdio passes a valid offset to read and update.
    let r = unsafe { lseek(c as usize as c_int, off.read(), whence) };
    if r < 0 {
        return -1;
    }
    // SAFETY: as above.
    unsafe { off.write(r) };
    0
}

unsafe extern "C" fn cookie_close(c: *mut c_void) -> c_int {
    let fd = c as usize as c_int;
    streams().retain(|&(_, f)| f != fd);
    // SAFETY: closing our own descriptor.
    unsafe { close(fd) }
}

/// fopen's mode as open flags.
pub(crate) fn fopen_flags(mode: &[u8]) -> Option<c_int> {
    let mut f = match mode.first()? {
        b'r' => libc::O_RDONLY,
        b'w' => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        b'a' => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    for c in &mode[1..] {
        match c {
            b'+' => f = (f & !libc::O_ACCMODE) | libc::O_RDWR,
            b'e' => f |= libc::O_CLOEXEC,
            b'x' => f |= libc::O_EXCL,
            b'b' | b't' | b'm' | b'c' => {}
            b',' => break,
            _ => {}
        }
    }
    Some(f)
}

pub(crate) fn do_fopen(path: *const c_char, mode: *const c_char) -> Option<*mut libc::FILE> {
    let (rt, _g) = enter()?;
    // SAFETY: fopen(3)'s contract: NUL-terminated path and mode.
    let (p, m) = unsafe { (cpath(path)?, cpath(mode)?) };
    let Some(flags) = fopen_flags(m) else {
        set_errno(libc::EINVAL);
        return Some(std::ptr::null_mut());
    };
    let fd = match rt.open(p, flags, 0o666)? {
        Ok(fd) => fd,
        Err(e) => {
            set_errno(e);
            return Some(std::ptr::null_mut());
        }
    };
    let io = CookieIo {
        read: Some(cookie_read),
        write: Some(cookie_write),
        seek: Some(cookie_seek),
        close: Some(cookie_close),
    };
    // SAFETY: fopencookie with our callbacks; the cookie is the descriptor number.
    let f = unsafe { fopencookie(fd as usize as *mut c_void, mode, io) };
    if f.is_null() {
        let _ = rt.close(fd);
        set_errno(libc::ENOMEM);
        return Some(f);
    }
    streams().push((f as usize, fd));
    Some(f)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    do_fopen(path, mode).unwrap_or_else(|| {
        real!(
            c"fopen",
            fn(*const c_char, *const c_char) -> *mut libc::FILE,
            path,
            mode
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    do_fopen(path, mode).unwrap_or_else(|| {
        real!(
            c"fopen64",
            fn(*const c_char, *const c_char) -> *mut libc::FILE,
            path,
            mode
        )
    })
}

pub(crate) fn stream_fd(f: *mut libc::FILE) -> Option<c_int> {
    let s = streams();
    s.iter().find(|(p, _)| *p == f as usize).map(|(_, fd)| *fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fileno(f: *mut libc::FILE) -> c_int {
    if let Some(fd) = stream_fd(f) {
        return fd;
    }
    real!(c"fileno", fn(*mut libc::FILE) -> c_int, f)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fileno_unlocked(f: *mut libc::FILE) -> c_int {
    if let Some(fd) = stream_fd(f) {
        return fd;
    }
    real!(c"fileno_unlocked", fn(*mut libc::FILE) -> c_int, f)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopen(fd: c_int, mode: *const c_char) -> *mut libc::FILE {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        let io = CookieIo {
            read: Some(cookie_read),
            write: Some(cookie_write),
            seek: Some(cookie_seek),
            close: Some(cookie_close),
        };
        drop(_g);
        // SAFETY: fopencookie with our callbacks over our own descriptor.
        let f = unsafe { fopencookie(fd as usize as *mut c_void, mode, io) };
        if !f.is_null() {
            streams().push((f as usize, fd));
        }
        return f;
    }
    real!(
        c"fdopen",
        fn(c_int, *const c_char) -> *mut libc::FILE,
        fd,
        mode
    )
}
