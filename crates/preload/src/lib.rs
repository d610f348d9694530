//! `librktio.so`: interposes the libc calls programs make on files, and gives the
//! ones on sealed mounts to rkt-io's stack (`rktio_posix`). Everything else goes
//! to libc (looked up with `dlsym(RTLD_NEXT)`), after the host path policy.
//!
//! Loaded by `rktio run` (LD_PRELOAD, with RKTIO_CONFIG naming the configuration).
//! Without RKTIO_CONFIG it passes every call through. A configuration that cannot
//! be used stops the program at start, before it can write anything to the host
//! in the clear.
//!
//! This is one of the two places unsafe code lives (the other is `rktio-sys`):
//! every entry point takes raw C pointers; each block says why it is sound.
//! Calls made by the stack itself (on the same thread) pass straight through, so
//! the stack never re-enters itself.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{mode_t, off_t, size_t, ssize_t};
use rktio_posix::{Config, FlockArgs, FullStat, LockCmd, PathOp, PathOut, Runtime, SysResult};

static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the stack's code: its own libc calls pass through.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Held while a call runs in the stack.
struct Busy;

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(false));
    }
}

/// The runtime, unless this is a nested call from the stack itself (or there is
/// no configuration).
fn enter() -> Option<(&'static Runtime, Busy)> {
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let g = Busy;
    let rt = RUNTIME.get_or_init(init).as_ref()?;
    Some((rt, g))
}

fn init() -> Option<Runtime> {
    let path = std::env::var_os("RKTIO_CONFIG")?;
    if let Ok(f) = std::env::var("RKTIO_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let fail = |e: String| -> ! {
        eprintln!("rktio: cannot start: {e}");
        std::process::exit(126)
    };
    let mut config =
        Config::load(std::path::Path::new(&path)).unwrap_or_else(|e| fail(e.to_string()));
    if std::env::var("RKTIO_STATS").is_ok_and(|v| v == "1" || v == "true") {
        config.stats = true;
    }
    if config.net.is_some() {
        // The socket calls are not interposed yet: running a program that expects
        // its sockets on the stack with host sockets would send in the clear.
        fail("[net]: the socket calls are not interposed yet (issue 5, in progress); remove [net] to run with files only".into());
    }
    let rt = Runtime::new(&config).unwrap_or_else(|e| fail(e));
    // SAFETY: atexit and pthread_atfork take plain function pointers to
    // `extern "C" fn()` that live as long as the program.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(None, None, Some(in_forked_child));
    }
    Some(rt)
}

extern "C" fn at_exit() {
    BUSY.with(|b| b.set(true));
    if let Some(Some(rt)) = RUNTIME.get() {
        let _ = rt.sync_all();
        if rt.print_stats {
            eprint!("{}", rt.report());
        }
    }
}

extern "C" fn in_forked_child() {
    if let Some(Some(rt)) = RUNTIME.get() {
        rt.mark_forked();
    }
}

/// Runs the stack's set-up before `main`, so a bad configuration stops the
/// program before it does anything.
extern "C" fn constructor() {
    let _ = enter();
}

#[used]
// SAFETY: `.init_array` holds pointers to functions the loader calls once, with
// no arguments, after libc is set up; `constructor` is such a function.
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = constructor;

fn real_sym(name: &CStr, cache: &AtomicUsize) -> usize {
    let v = cache.load(Ordering::Relaxed);
    if v != 0 {
        return v;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no preconditions.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if p == 0 {
        eprintln!("rktio: libc has no {}", name.to_string_lossy());
        std::process::abort();
    }
    cache.store(p, Ordering::Relaxed);
    p
}

/// Calls libc's own definition of a symbol we interpose.
macro_rules! real {
    ($name:literal, fn($($t:ty),*) -> $r:ty, $($arg:expr),*) => {{
        static CACHE: AtomicUsize = AtomicUsize::new(0);
        let p = real_sym($name, &CACHE);
        // SAFETY: `p` is libc's definition of this symbol, which has this C
        // signature (glibc's prototype for it on x86_64 Linux).
        let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(p) };
        // SAFETY: the arguments are the caller's, passed on unchanged.
        unsafe { f($($arg),*) }
    }};
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

fn ret_int(r: SysResult<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

fn ret_fd(r: SysResult<c_int>) -> c_int {
    match r {
        Ok(fd) => fd,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

fn ret_size(r: SysResult<usize>) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// The bytes of a C string (None for NULL).
unsafe fn cpath<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller passed a NUL-terminated string, valid for this call.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

unsafe fn buf_mut<'a>(p: *mut c_void, n: size_t) -> &'a mut [u8] {
    if n == 0 || p.is_null() {
        return &mut [];
    }
    // SAFETY: the caller gave a buffer of `n` writable bytes (read(2)'s contract).
    unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) }
}

unsafe fn buf<'a>(p: *const c_void, n: size_t) -> &'a [u8] {
    if n == 0 || p.is_null() {
        return &[];
    }
    // SAFETY: the caller gave `n` readable bytes (write(2)'s contract).
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }
}

unsafe fn iov_mut<'a>(iov: *const libc::iovec, n: c_int) -> Vec<&'a mut [u8]> {
    let n = usize::try_from(n).unwrap_or(0).min(1024);
    if iov.is_null() {
        return Vec::new();
    }
    // SAFETY: readv(2)'s contract: `n` iovecs, each naming writable memory.
    let v = unsafe { std::slice::from_raw_parts(iov, n) };
    v.iter()
        // SAFETY: as above, for each entry.
        .map(|e| unsafe { buf_mut(e.iov_base, e.iov_len) })
        .collect()
}

unsafe fn iov<'a>(iov: *const libc::iovec, n: c_int) -> Vec<&'a [u8]> {
    let n = usize::try_from(n).unwrap_or(0).min(1024);
    if iov.is_null() {
        return Vec::new();
    }
    // SAFETY: writev(2)'s contract: `n` iovecs, each naming readable memory.
    let v = unsafe { std::slice::from_raw_parts(iov, n) };
    v.iter()
        // SAFETY: as above, for each entry.
        .map(|e| unsafe { buf(e.iov_base, e.iov_len) })
        .collect()
}

fn to_stat(s: &FullStat) -> libc::stat {
    // SAFETY: `struct stat` is plain old data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = s.dev;
    st.st_ino = s.stat.ino;
    st.st_mode = s.stat.mode;
    st.st_nlink = u64::from(s.stat.nlink);
    st.st_uid = s.stat.uid;
    st.st_gid = s.stat.gid;
    st.st_size = i64::try_from(s.stat.size).unwrap_or(i64::MAX);
    st.st_blocks = i64::try_from(s.stat.blocks).unwrap_or(i64::MAX);
    st.st_blksize = i64::from(s.stat.blksize);
    st.st_atime = s.stat.atime.sec;
    st.st_atime_nsec = i64::from(s.stat.atime.nsec);
    st.st_mtime = s.stat.mtime.sec;
    st.st_mtime_nsec = i64::from(s.stat.mtime.nsec);
    st.st_ctime = s.stat.ctime.sec;
    st.st_ctime_nsec = i64::from(s.stat.ctime.nsec);
    st
}

fn put_stat(out: *mut libc::stat, r: SysResult<FullStat>) -> c_int {
    match r {
        Ok(s) => {
            if out.is_null() {
                set_errno(libc::EFAULT);
                return -1;
            }
            // SAFETY: the caller gave room for a `struct stat` (stat(2)'s contract);
            // stat64 has the same layout on x86_64.
            unsafe { out.write(to_stat(&s)) };
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// ---------------------------------------------------------------- open, close

fn do_open(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> Option<c_int> {
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
fn mode_of(flags: c_int, mode: mode_t) -> mode_t {
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
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.close(fd)
    {
        return ret_int(r);
    }
    real!(c"close", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.dup(fd, 0, false)
    {
        return ret_fd(r);
    }
    real!(c"dup", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.dup2(old, new, false)
    {
        return ret_fd(r);
    }
    real!(c"dup2", fn(c_int, c_int) -> c_int, old, new)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
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
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: read(2)'s contract.
        let b = unsafe { buf_mut(p, n) };
        if let Some(r) = rt.read(fd, b) {
            return ret_size(r);
        }
    }
    real!(c"read", fn(c_int, *mut c_void, size_t) -> ssize_t, fd, p, n)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, p: *const c_void, n: size_t) -> ssize_t {
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: write(2)'s contract.
        let b = unsafe { buf(p, n) };
        if let Some(r) = rt.write(fd, b) {
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

fn do_pread(fd: c_int, p: *mut c_void, n: size_t, off: off_t) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    // SAFETY: pread(2)'s contract.
    let b = unsafe { buf_mut(p, n) };
    Some(ret_size(rt.pread(fd, b, off)?))
}

fn do_pwrite(fd: c_int, p: *const c_void, n: size_t, off: off_t) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    // SAFETY: pwrite(2)'s contract.
    let b = unsafe { buf(p, n) };
    Some(ret_size(rt.pwrite(fd, b, off)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread(fd: c_int, p: *mut c_void, n: size_t, off: off_t) -> ssize_t {
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

fn do_readv(fd: c_int, v: *const libc::iovec, n: c_int, off: Option<off_t>) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    if !(0..=libc::UIO_MAXIOV).contains(&n) {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    // SAFETY: readv(2)'s contract.
    let mut bufs = unsafe { iov_mut(v, n) };
    Some(ret_size(rt.readv(fd, &mut bufs, off)?))
}

fn do_writev(fd: c_int, v: *const libc::iovec, n: c_int, off: Option<off_t>) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    if !(0..=libc::UIO_MAXIOV).contains(&n) {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    // SAFETY: writev(2)'s contract.
    let bufs = unsafe { iov(v, n) };
    Some(ret_size(rt.writev(fd, &bufs, off)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, v: *const libc::iovec, n: c_int) -> ssize_t {
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

fn do_lseek(fd: c_int, off: off_t, whence: c_int) -> Option<off_t> {
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
    do_lseek(fd, off, whence)
        .unwrap_or_else(|| real!(c"lseek", fn(c_int, off_t, c_int) -> off_t, fd, off, whence))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lseek64(fd: c_int, off: off_t, whence: c_int) -> off_t {
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
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fsync(fd, false)
    {
        return ret_int(r);
    }
    real!(c"fsync", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fsync(fd, true)
    {
        return ret_int(r);
    }
    real!(c"fdatasync", fn(c_int) -> c_int, fd)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sync_file_range(fd: c_int, off: off_t, n: off_t, flags: u32) -> c_int {
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

fn do_ftruncate(fd: c_int, len: off_t) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(ret_int(rt.ftruncate(fd, len)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: off_t) -> c_int {
    do_ftruncate(fd, len).unwrap_or_else(|| real!(c"ftruncate", fn(c_int, off_t) -> c_int, fd, len))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: off_t) -> c_int {
    do_ftruncate(fd, len)
        .unwrap_or_else(|| real!(c"ftruncate64", fn(c_int, off_t) -> c_int, fd, len))
}

fn do_path_op(dirfd: c_int, path: *const c_char, op: PathOp<'_>) -> Option<SysResult<PathOut>> {
    let (rt, _g) = enter()?;
    // SAFETY: the call's contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    rt.path_op(dirfd, p, op)
}

fn path_ret(r: Option<SysResult<PathOut>>) -> Option<c_int> {
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

fn do_fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> Option<SysResult<()>> {
    let (rt, _g) = enter()?;
    rt.fallocate(fd, mode, off, len)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int {
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

fn do_fcntl(fd: c_int, cmd: c_int, arg: usize) -> Option<c_int> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(fd) {
        return None;
    }
    let lock = |cmd: LockCmd, ofd: bool| -> c_int {
        let p = arg as *mut libc::flock;
        if p.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: fcntl's contract for the lock commands: `arg` points to a
        // `struct flock` (flock64 has the same layout on x86_64).
        let fl = unsafe { p.read() };
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
        // Close-on-exec lives on the host slot: the kernel's own flag.
        libc::F_GETFD | libc::F_SETFD => return None,
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
    do_fcntl(fd, cmd, arg)
        .unwrap_or_else(|| real!(c"fcntl", fn(c_int, c_int, usize) -> c_int, fd, cmd, arg))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    do_fcntl(fd, cmd, arg)
        .unwrap_or_else(|| real!(c"fcntl64", fn(c_int, c_int, usize) -> c_int, fd, cmd, arg))
}

// ---------------------------------------------------------------- stat

fn do_stat(path: *const c_char, follow: bool, out: *mut libc::stat) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: stat(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    Some(put_stat(out, rt.stat(p, follow)?))
}

fn do_fstat(fd: c_int, out: *mut libc::stat) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(put_stat(out, rt.fstat(fd)?))
}

fn do_fstatat(
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
    do_fstat(fd, out)
        .unwrap_or_else(|| real!(c"fstat", fn(c_int, *mut libc::stat) -> c_int, fd, out))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, out: *mut libc::stat) -> c_int {
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

fn do_access(dirfd: c_int, path: *const c_char, amode: c_int) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: access(2)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    Some(ret_int(rt.access(dirfd, p, amode)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, amode: c_int) -> c_int {
    do_access(libc::AT_FDCWD, path, amode)
        .unwrap_or_else(|| real!(c"access", fn(*const c_char, c_int) -> c_int, path, amode))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    amode: c_int,
    flags: c_int,
) -> c_int {
    do_access(dirfd, path, amode).unwrap_or_else(|| {
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
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fd_attr(fd, PathOp::Chmod(mode))
    {
        return ret_int(r);
    }
    real!(c"fchmod", fn(c_int, mode_t) -> c_int, fd, mode)
}

fn id(v: u32) -> Option<u32> {
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
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.fd_attr(fd, PathOp::Chown(id(uid), id(gid), true))
    {
        return ret_int(r);
    }
    real!(c"fchown", fn(c_int, u32, u32) -> c_int, fd, uid, gid)
}

fn set_time(t: &libc::timespec) -> rktio_fs::SetTime {
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
unsafe fn times2(t: *const libc::timespec) -> (rktio_fs::SetTime, rktio_fs::SetTime) {
    if t.is_null() {
        return (rktio_fs::SetTime::Now, rktio_fs::SetTime::Now);
    }
    // SAFETY: utimensat(2)'s contract: two timespecs.
    let (a, m) = unsafe { (&*t, &*t.add(1)) };
    (set_time(a), set_time(m))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    t: *const libc::timespec,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's pointer, per utimensat(2).
    let (a, m) = unsafe { times2(t) };
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
    // SAFETY: the caller's pointer, per futimens(3).
    let (a, m) = unsafe { times2(t) };
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

fn tv(t: &libc::timeval) -> rktio_fs::SetTime {
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
        // SAFETY: utimes(2)'s contract: two timevals.
        let (x, y) = unsafe { (&*t, &*t.add(1)) };
        (tv(x), tv(y))
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
        // SAFETY: utime(2)'s contract: one utimbuf.
        let u = unsafe { &*t };
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

fn do_readlink(dirfd: c_int, path: *const c_char, out: *mut c_char, n: size_t) -> Option<ssize_t> {
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

fn do_symlink(target: *const c_char, dirfd: c_int, path: *const c_char) -> Option<c_int> {
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

fn do_two(
    fd1: c_int,
    p1: *const c_char,
    fd2: c_int,
    p2: *const c_char,
    link: bool,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    // SAFETY: rename(2)/link(2)'s contract: NUL-terminated paths.
    let (a, b) = unsafe { (cpath(p1)?, cpath(p2)?) };
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

// ---------------------------------------------------------------- mmap

/// mmap of one of our files: MAP_PRIVATE gets anonymous memory filled from the
/// file (a private copy, as the kernel's would be until written); MAP_SHARED is
/// refused with ENODEV (it cannot be kept coherent with the sealed file).
fn do_mmap(
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
    if let Some(Err(e)) = rt.mmap_check(fd, shared) {
        set_errno(e);
        return Some(libc::MAP_FAILED);
    }
    let aflags = (flags & !(libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE))
        | libc::MAP_PRIVATE
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
    // SAFETY: `m` is a fresh private mapping of `len` bytes, readable and writable.
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
