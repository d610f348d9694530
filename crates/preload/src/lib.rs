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

mod served;
mod trap;

/// Held while a call runs in the stack (its system calls pass, see `trap`).
struct Busy(#[allow(dead_code)] trap::InStack);

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(false));
    }
}

/// No call of this thread is in the stack.
fn busy_free() -> bool {
    !BUSY.with(Cell::get)
}

/// The runtime (after the constructor, with a configuration).
fn runtime() -> Option<&'static Runtime> {
    RUNTIME.get()?.as_ref()
}

/// In a child process made by the trap (fork, vfork, posix_spawn's clone).
fn forked_child() {
    if let Some(rt) = runtime() {
        rt.mark_forked();
    }
}

/// The runtime, unless this is a nested call from the stack itself (or there is
/// no configuration, or the constructor has not run yet). A hook never starts
/// the runtime itself: a hook can be called from inside another library's
/// initialisation (jemalloc's, while it holds its init lock), where anything
/// that allocates would deadlock.
fn enter() -> Option<(&'static Runtime, Busy)> {
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let g = Busy(trap::InStack::enter());
    let rt = RUNTIME.get()?.as_ref()?;
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
    let _in = trap::InStack::enter();
    BUSY.with(|b| b.set(true));
    if let Some(Some(rt)) = RUNTIME.get() {
        // As the kernel at exit: close the sockets, and let what they queued go
        // out (the driver thread dies with the process).
        rt.close_sockets(std::time::Duration::from_secs(5));
        for (a, n) in rt.all_maps() {
            if let Err(e) = write_back(rt, a, n) {
                eprintln!("rktio: writing a shared mapping back at exit: errno {e}");
            }
        }
        let _ = rt.sync_all();
        if rt.print_stats {
            eprint!("{}{}", trap::report(), rt.report());
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
    if BUSY.with(|b| b.replace(true)) {
        return;
    }
    {
        let _g = Busy(trap::InStack::enter());
        if RUNTIME.get_or_init(init).is_some()
            && let Err(e) = trap::install()
        {
            eprintln!("rktio: cannot start: {e}");
            std::process::exit(126);
        }
    }
    // From here on the program's code runs: its system calls come to the trap.
    trap::block();
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
    ($name:literal, fn($($t:ty),* $(,)?) -> $r:ty, $($arg:expr),* $(,)?) => {{
        static CACHE: AtomicUsize = AtomicUsize::new(0);
        let p = real_sym($name, &CACHE);
        // SAFETY: `p` is libc's definition of this symbol, which has this C
        // signature (glibc's prototype for it on x86_64 Linux).
        let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(p) };
        // libc's own system calls pass (the policy was applied above).
        let _p = $crate::trap::Passing::enter();
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

/// mmap of one of our files: anonymous memory (private or shared as asked)
/// filled from the file; a writable shared one is written back on msync,
/// munmap and exit (see `Runtime::map_shared`).
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
fn write_back(rt: &Runtime, addr: usize, len: usize) -> SysResult<()> {
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

// ---------------------------------------------------------------- sockets

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::socklen_t;

/// Reads a sockaddr the program passed.
unsafe fn read_addr(p: *const libc::sockaddr, len: socklen_t) -> SysResult<SocketAddr> {
    if p.is_null() {
        return Err(libc::EFAULT);
    }
    let len = len as usize;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: the program gave `len` readable bytes at `p` (bind/connect's
    // contract); the family field comes first in every sockaddr.
    let fam = i32::from(unsafe { p.cast::<libc::sa_family_t>().read_unaligned() });
    match fam {
        libc::AF_INET => {
            if len < std::mem::size_of::<libc::sockaddr_in>() {
                return Err(libc::EINVAL);
            }
            // SAFETY: as above, with room for a sockaddr_in.
            let a = unsafe { p.cast::<libc::sockaddr_in>().read_unaligned() };
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            if len < std::mem::size_of::<libc::sockaddr_in6>() {
                return Err(libc::EINVAL);
            }
            // SAFETY: as above, with room for a sockaddr_in6.
            let a = unsafe { p.cast::<libc::sockaddr_in6>().read_unaligned() };
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// Writes `a` where the program asked (truncated to its room, as the kernel does),
/// and the full length into `*lenp`.
unsafe fn write_addr(a: SocketAddr, p: *mut libc::sockaddr, lenp: *mut socklen_t) {
    if p.is_null() || lenp.is_null() {
        return;
    }
    // SAFETY: the program gave `*lenp` bytes of room at `p`, and a valid `lenp`.
    let room = unsafe { lenp.read() } as usize;
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let size = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            unsafe {
                std::ptr::addr_of_mut!(st)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::addr_of_mut!(st)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: copying min(room, size) bytes into the program's buffer, then its length.
    unsafe {
        std::ptr::copy_nonoverlapping(
            std::ptr::addr_of!(st).cast::<u8>(),
            p.cast::<u8>(),
            room.min(size),
        );
        lenp.write(size as socklen_t);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.socket(domain, ty, proto)
    {
        return ret_fd(r);
    }
    real!(
        c"socket",
        fn(c_int, c_int, c_int) -> c_int,
        domain,
        ty,
        proto
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, a: *const libc::sockaddr, len: socklen_t) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: bind(2)'s contract.
        let r = unsafe { read_addr(a, len) }
            .and_then(|addr| rt.bind(fd, addr).unwrap_or(Err(libc::EBADF)));
        return ret_int(r);
    }
    real!(
        c"bind",
        fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
        fd,
        a,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.listen(fd, backlog)
    {
        return ret_int(r);
    }
    real!(c"listen", fn(c_int, c_int) -> c_int, fd, backlog)
}

fn do_accept(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
    flags: c_int,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    Some(match rt.accept(fd, flags)? {
        Ok((nfd, from)) => {
            // SAFETY: accept(2)'s contract for the address out-parameters.
            unsafe { write_addr(from, a, lenp) };
            nfd
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, a: *mut libc::sockaddr, lenp: *mut socklen_t) -> c_int {
    do_accept(fd, a, lenp, 0).unwrap_or_else(|| {
        real!(
            c"accept",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
    flags: c_int,
) -> c_int {
    do_accept(fd, a, lenp, flags).unwrap_or_else(|| {
        real!(
            c"accept4",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t, c_int) -> c_int,
            fd,
            a,
            lenp,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, a: *const libc::sockaddr, len: socklen_t) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: connect(2)'s contract.
        let r = unsafe { read_addr(a, len) }
            .and_then(|addr| rt.connect(fd, addr).unwrap_or(Err(libc::EBADF)));
        return ret_int(r);
    }
    real!(
        c"connect",
        fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
        fd,
        a,
        len
    )
}

fn do_name(fd: c_int, a: *mut libc::sockaddr, lenp: *mut socklen_t, peer: bool) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(match rt.sockname(fd, peer)? {
        Ok(addr) => {
            // SAFETY: getsockname(2)'s contract for the out-parameters.
            unsafe { write_addr(addr, a, lenp) };
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> c_int {
    do_name(fd, a, lenp, false).unwrap_or_else(|| {
        real!(
            c"getsockname",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> c_int {
    do_name(fd, a, lenp, true).unwrap_or_else(|| {
        real!(
            c"getpeername",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: setsockopt(2)'s contract: `len` readable bytes at `val`.
        let v = unsafe { buf(val, len as usize) };
        if let Some(r) = rt.setsockopt(fd, level, name, v) {
            return ret_int(r);
        }
    }
    real!(
        c"setsockopt",
        fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
        fd,
        level,
        name,
        val,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    lenp: *mut socklen_t,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
        && let Some(r) = rt.getsockopt(fd, level, name)
    {
        return match r {
            Ok(v) => {
                if lenp.is_null() || val.is_null() {
                    set_errno(libc::EFAULT);
                    return -1;
                }
                // SAFETY: getsockopt(2)'s contract: `*lenp` bytes of room at `val`.
                unsafe {
                    let room = lenp.read() as usize;
                    let k = room.min(v.len());
                    std::ptr::copy_nonoverlapping(v.as_ptr(), val.cast::<u8>(), k);
                    lenp.write(k as socklen_t);
                }
                0
            }
            Err(e) => {
                set_errno(e);
                -1
            }
        };
    }
    real!(
        c"getsockopt",
        fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int,
        fd,
        level,
        name,
        val,
        lenp
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.shutdown(fd, how)
    {
        return ret_int(r);
    }
    real!(c"shutdown", fn(c_int, c_int) -> c_int, fd, how)
}

/// EPIPE raises SIGPIPE unless MSG_NOSIGNAL, as on Linux.
fn sent(r: SysResult<usize>, flags: c_int) -> ssize_t {
    if r == Err(libc::EPIPE) && flags & libc::MSG_NOSIGNAL == 0 {
        // SAFETY: raise has no memory preconditions.
        unsafe { libc::raise(libc::SIGPIPE) };
    }
    ret_size(r)
}

fn do_send(fd: c_int, bufs: &[&[u8]], flags: c_int, to: Option<SocketAddr>) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    Some(sent(rt.send(fd, bufs, flags, to)?, flags))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, p: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: send(2)'s contract.
    let b = unsafe { buf(p, n) };
    do_send(fd, &[b], flags, None).unwrap_or_else(|| {
        real!(
            c"send",
            fn(c_int, *const c_void, size_t, c_int) -> ssize_t,
            fd,
            p,
            n,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    p: *const c_void,
    n: size_t,
    flags: c_int,
    a: *const libc::sockaddr,
    len: socklen_t,
) -> ssize_t {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        let to = if a.is_null() {
            None
        } else {
            // SAFETY: sendto(2)'s contract.
            match unsafe { read_addr(a, len) } {
                Ok(x) => Some(x),
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            }
        };
        // SAFETY: sendto(2)'s contract.
        let b = unsafe { buf(p, n) };
        if let Some(r) = do_send(fd, &[b], flags, to) {
            return r;
        }
    }
    real!(
        c"sendto",
        fn(c_int, *const c_void, size_t, c_int, *const libc::sockaddr, socklen_t) -> ssize_t,
        fd,
        p,
        n,
        flags,
        a,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, m: *const libc::msghdr, flags: c_int) -> ssize_t {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        if m.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: sendmsg(2)'s contract: a valid msghdr.
        let h = unsafe { &*m };
        let to = if h.msg_name.is_null() || h.msg_namelen == 0 {
            None
        } else {
            // SAFETY: the msghdr names `msg_namelen` bytes of address.
            match unsafe { read_addr(h.msg_name.cast(), h.msg_namelen) } {
                Ok(x) => Some(x),
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            }
        };
        // SAFETY: the msghdr's iovecs, per sendmsg(2).
        let bufs = unsafe {
            iov(
                h.msg_iov,
                c_int::try_from(h.msg_iovlen).unwrap_or(c_int::MAX),
            )
        };
        if let Some(r) = do_send(fd, &bufs, flags, to) {
            return r;
        }
    }
    real!(
        c"sendmsg",
        fn(c_int, *const libc::msghdr, c_int) -> ssize_t,
        fd,
        m,
        flags
    )
}

fn do_recv(
    fd: c_int,
    bufs: &mut [&mut [u8]],
    flags: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    Some(match rt.recv(fd, bufs, flags)? {
        Ok((n, from)) => {
            // A stream leaves the address alone, as Linux does.
            if let Some(f) = from {
                // SAFETY: recvfrom(2)'s contract for the address out-parameters.
                unsafe { write_addr(f, a, lenp) };
            }
            n as ssize_t
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, p: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: recv(2)'s contract.
    let b = unsafe { buf_mut(p, n) };
    do_recv(
        fd,
        &mut [b],
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .unwrap_or_else(|| {
        real!(
            c"recv",
            fn(c_int, *mut c_void, size_t, c_int) -> ssize_t,
            fd,
            p,
            n,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    p: *mut c_void,
    n: size_t,
    flags: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> ssize_t {
    // SAFETY: recvfrom(2)'s contract.
    let b = unsafe { buf_mut(p, n) };
    do_recv(fd, &mut [b], flags, a, lenp).unwrap_or_else(|| {
        real!(
            c"recvfrom",
            fn(c_int, *mut c_void, size_t, c_int, *mut libc::sockaddr, *mut socklen_t) -> ssize_t,
            fd,
            p,
            n,
            flags,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, m: *mut libc::msghdr, flags: c_int) -> ssize_t {
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        if m.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: recvmsg(2)'s contract: a valid, writable msghdr.
        let h = unsafe { &mut *m };
        // SAFETY: the msghdr's iovecs, per recvmsg(2).
        let mut bufs = unsafe {
            iov_mut(
                h.msg_iov,
                c_int::try_from(h.msg_iovlen).unwrap_or(c_int::MAX),
            )
        };
        let mut namelen = h.msg_namelen;
        let r = do_recv(fd, &mut bufs, flags, h.msg_name.cast(), &mut namelen);
        if let Some(r) = r {
            if r >= 0 {
                h.msg_namelen = if h.msg_name.is_null() { 0 } else { namelen };
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            return r;
        }
    }
    real!(
        c"recvmsg",
        fn(c_int, *mut libc::msghdr, c_int) -> ssize_t,
        fd,
        m,
        flags
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, req: libc::c_ulong, arg: *mut c_void) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        let p = arg.cast::<c_int>();
        return match req {
            libc::FIONREAD => match rt.fionread(fd) {
                Some(Ok(n)) if !p.is_null() => {
                    // SAFETY: FIONREAD's contract: `arg` points to an int.
                    unsafe { p.write(n) };
                    0
                }
                Some(Err(e)) => {
                    set_errno(e);
                    -1
                }
                _ => {
                    set_errno(libc::EFAULT);
                    -1
                }
            },
            libc::FIONBIO => {
                if p.is_null() {
                    set_errno(libc::EFAULT);
                    return -1;
                }
                // SAFETY: FIONBIO's contract: `arg` points to an int.
                let on = unsafe { p.read() } != 0;
                ret_int(rt.set_nonblocking(fd, on).unwrap_or(Ok(())))
            }
            _ => {
                set_errno(libc::ENOTTY);
                -1
            }
        };
    }
    real!(
        c"ioctl",
        fn(c_int, libc::c_ulong, *mut c_void) -> c_int,
        fd,
        req,
        arg
    )
}

// ---------------------------------------------------------------- poll, select

/// poll over a mix of the stack's descriptors and the host's. `timeout`: None
/// waits forever.
fn mixed_poll(
    rt: &Runtime,
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
) -> c_int {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        // Register first, then look: a change in between fires the waker.
        let watch = rt.watch_thread();
        let mut ready = 0;
        let mut host: Vec<(c_int, i16, i16)> = Vec::new();
        let mut host_idx = Vec::new();
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = 0;
            if p.fd < 0 {
                continue;
            }
            match rt.readiness(p.fd) {
                Some(bits) => {
                    let want = u32::from(p.events as u16) | (libc::POLLERR | libc::POLLHUP) as u32;
                    p.revents = (bits & want) as i16;
                    if p.revents != 0 {
                        ready += 1;
                    }
                }
                None => {
                    host.push((p.fd, p.events, 0));
                    host_idx.push(i);
                }
            }
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let zero = ready > 0 || remaining.is_some_and(|r| r.is_zero());
        let waker = watch.as_ref().map(|(fd, _, _)| *fd);
        if !zero && let Some(w) = waker {
            host.push((w, libc::POLLIN, 0));
        }
        if host.is_empty() && zero {
            return ready;
        }
        // Without a network nothing of ours changes by itself: wait on the host
        // descriptors alone.
        let t = if zero {
            Some(std::time::Duration::ZERO)
        } else {
            remaining
        };
        match rktio_sys::poll_fds(&mut host, t) {
            Ok(_) => {}
            Err(e) => {
                set_errno(e);
                return -1;
            }
        }
        let mut woke = false;
        for (k, &(fd, _, rev)) in host.iter().enumerate() {
            if k < host_idx.len() {
                fds[host_idx[k]].revents = rev;
                if rev != 0 {
                    ready += 1;
                }
            } else if Some(fd) == waker && rev != 0 {
                woke = true;
            }
        }
        if woke && let Some((_, _, n)) = &watch {
            n.drain();
        }
        if ready > 0 || zero || remaining.is_some_and(|r| r.is_zero()) {
            return ready;
        }
        if let Some(d) = deadline
            && std::time::Instant::now() >= d
        {
            return 0;
        }
    }
}

fn ms(timeout: c_int) -> Option<std::time::Duration> {
    (timeout >= 0).then(|| std::time::Duration::from_millis(timeout as u64))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && !fds.is_null()
    {
        // SAFETY: poll(2)'s contract: `n` pollfds at `fds`.
        let v = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
        if v.iter().any(|p| rt.is_ours(p.fd)) {
            return mixed_poll(rt, v, ms(timeout));
        }
    }
    real!(
        c"poll",
        fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int,
        fds,
        n,
        timeout
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: c_int,
    _len: size_t,
) -> c_int {
    // SAFETY: the same contract as poll.
    unsafe { poll(fds, n, timeout) }
}

unsafe fn fd_isset(fd: c_int, set: *const libc::fd_set) -> bool {
    // SAFETY: `set` is a valid fd_set and fd < FD_SETSIZE (checked by callers).
    !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && (0..=libc::FD_SETSIZE as c_int).contains(&nfds)
    {
        // SAFETY: select(2)'s contract: the sets (each may be NULL) hold `nfds` bits.
        let any_ours = (0..nfds).any(|fd| unsafe {
            (fd_isset(fd, r) || fd_isset(fd, w) || fd_isset(fd, e)) && rt.is_ours(fd)
        });
        if any_ours {
            let mut pf = Vec::new();
            for fd in 0..nfds {
                let mut ev = 0i16;
                // SAFETY: as above.
                unsafe {
                    if fd_isset(fd, r) {
                        ev |= libc::POLLIN;
                    }
                    if fd_isset(fd, w) {
                        ev |= libc::POLLOUT;
                    }
                    if fd_isset(fd, e) {
                        ev |= libc::POLLPRI;
                    }
                }
                if ev != 0 {
                    pf.push(libc::pollfd {
                        fd,
                        events: ev,
                        revents: 0,
                    });
                }
            }
            let timeout = if tv.is_null() {
                None
            } else {
                // SAFETY: a valid timeval, per select(2).
                let t = unsafe { tv.read() };
                Some(
                    std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
                        + std::time::Duration::from_micros(t.tv_usec.clamp(0, 999_999) as u64),
                )
            };
            let n = mixed_poll(rt, &mut pf, timeout);
            if n < 0 {
                return -1;
            }
            // SAFETY: clearing and setting bits of the program's sets, per select(2).
            unsafe {
                for set in [r, w, e] {
                    if !set.is_null() {
                        libc::FD_ZERO(set);
                    }
                }
                let mut count = 0;
                for p in &pf {
                    let bad = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
                    if !r.is_null()
                        && p.events & libc::POLLIN != 0
                        && (p.revents & libc::POLLIN != 0 || bad)
                    {
                        libc::FD_SET(p.fd, r);
                        count += 1;
                    }
                    if !w.is_null()
                        && p.events & libc::POLLOUT != 0
                        && (p.revents & libc::POLLOUT != 0 || bad)
                    {
                        libc::FD_SET(p.fd, w);
                        count += 1;
                    }
                    if !e.is_null()
                        && p.events & libc::POLLPRI != 0
                        && p.revents & libc::POLLPRI != 0
                    {
                        libc::FD_SET(p.fd, e);
                        count += 1;
                    }
                }
                return count;
            }
        }
    }
    real!(
        c"select",
        fn(
            c_int,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::timeval,
        ) -> c_int,
        nfds,
        r,
        w,
        e,
        tv
    )
}

// ---------------------------------------------------------------- epoll

fn register_epoll(fd: c_int) -> c_int {
    if fd >= 0
        && let Some((rt, _g)) = enter()
        && let Err(e) = rt.epoll_created(fd)
    {
        real!(c"close", fn(c_int) -> c_int, fd);
        set_errno(e);
        return -1;
    }
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    register_epoll(real!(c"epoll_create", fn(c_int) -> c_int, size))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    register_epoll(real!(c"epoll_create1", fn(c_int) -> c_int, flags))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        let e = if ev.is_null() {
            None
        } else {
            // SAFETY: epoll_ctl(2)'s contract: a valid epoll_event (packed).
            let x = unsafe { ev.read_unaligned() };
            Some(rktio_posix::EpollEvent {
                events: x.events,
                data: x.u64,
            })
        };
        if let Some(r) = rt.epoll_ctl(epfd, op, fd, e) {
            return ret_int(r);
        }
    }
    real!(
        c"epoll_ctl",
        fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
        epfd,
        op,
        fd,
        ev
    )
}

/// epoll_wait over the stack's descriptors (checked here) and the host's (in
/// the real epoll, with our waker in it).
fn mixed_epoll_wait(
    rt: &Runtime,
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: Option<std::time::Duration>,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let max_u = usize::try_from(max).unwrap_or(0);
    if max_u == 0 || events.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    // SAFETY: epoll_wait(2)'s contract: room for `max` events at `events`.
    let out = unsafe { std::slice::from_raw_parts_mut(events, max_u) };
    loop {
        let _watch = rt.watch_epoll(epfd);
        let ours = rt.epoll_ready(epfd, max_u).unwrap_or_default();
        for (k, e) in ours.iter().enumerate() {
            out[k] = libc::epoll_event {
                events: e.events,
                u64: e.data,
            };
        }
        let k = ours.len();
        if let Some((_, wfd, first)) = rt.epoll_waker(epfd)
            && first
        {
            let mut wev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: rktio_posix::WAKE_TAG,
            };
            real!(
                c"epoll_ctl",
                fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
                epfd,
                libc::EPOLL_CTL_ADD,
                wfd,
                &mut wev
            );
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let t_ms: c_int = if k > 0 {
            0
        } else {
            match remaining {
                None => -1,
                // Rounded up, as the kernel does: rounding down would turn the
                // last part of a millisecond into a busy loop of zero timeouts.
                Some(r) => c_int::try_from(r.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128))
                    .unwrap_or(i32::MAX),
            }
        };
        let room = max - k as c_int;
        let n = if room > 0 {
            // SAFETY: the rest of the program's buffer, after our events.
            let rest = unsafe { events.add(k) };
            real!(
                c"epoll_pwait",
                fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int,
                epfd,
                rest,
                room,
                t_ms,
                sigmask
            )
        } else {
            0
        };
        if n < 0 {
            if k > 0 {
                return k as c_int;
            }
            return -1;
        }
        // Drop our waker's event, keep the host's.
        let mut total = k;
        let mut woke = false;
        for i in k..k + n as usize {
            let ev = out[i];
            let data = ev.u64;
            if data == rktio_posix::WAKE_TAG {
                woke = true;
                continue;
            }
            out[total] = ev;
            total += 1;
        }
        if woke {
            rt.epoll_drain(epfd);
        }
        if total > 0 {
            return total as c_int;
        }
        if remaining.is_some_and(|r| r.is_zero()) {
            return 0;
        }
        if let Some(d) = deadline
            && std::time::Instant::now() >= d
        {
            return 0;
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        return mixed_epoll_wait(rt, epfd, events, max, ms(timeout), std::ptr::null());
    }
    real!(
        c"epoll_wait",
        fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int,
        epfd,
        events,
        max,
        timeout
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        return mixed_epoll_wait(rt, epfd, events, max, ms(timeout), sigmask);
    }
    real!(
        c"epoll_pwait",
        fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int,
        epfd,
        events,
        max,
        timeout,
        sigmask
    )
}

// ---------------------------------------------------------------- sendfile

/// sendfile from a sealed file: pread from the stack, then a write to `out` (a
/// socket of ours, or a host descriptor).
fn do_sendfile(out: c_int, inp: c_int, off: *mut off_t, count: size_t) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(inp) {
        if rt.is_ours(out) {
            // From a host file into a socket of ours: not offered.
            set_errno(libc::EINVAL);
            return Some(-1);
        }
        return None;
    }
    let mut pos = if off.is_null() {
        match rt.lseek(inp, 0, libc::SEEK_CUR)? {
            Ok(p) => p,
            Err(e) => {
                set_errno(e);
                return Some(-1);
            }
        }
    } else {
        // SAFETY: sendfile(2)'s contract: a valid offset pointer.
        unsafe { off.read() }
    };
    let mut buf = vec![0u8; count.min(256 << 10)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match rt.pread(inp, &mut buf[..want], pos)? {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if done == 0 => {
                set_errno(e);
                return Some(-1);
            }
            Err(_) => break,
        };
        let w = if rt.is_ours(out) {
            rt.write(out, &buf[..n]).unwrap_or(Err(libc::EBADF))
        } else {
            let r = real!(
                c"write",
                fn(c_int, *const c_void, size_t) -> ssize_t,
                out,
                buf.as_ptr().cast(),
                n
            );
            if r < 0 {
                // SAFETY: errno was just set by write.
                Err(unsafe { *libc::__errno_location() })
            } else {
                Ok(r as usize)
            }
        };
        match w {
            Ok(k) => {
                done += k;
                pos += k as off_t;
                if k < n {
                    break;
                }
            }
            Err(e) if done == 0 => {
                set_errno(e);
                return Some(-1);
            }
            Err(_) => break,
        }
    }
    if off.is_null() {
        let _ = rt.lseek(inp, pos, libc::SEEK_SET);
    } else {
        // SAFETY: as above.
        unsafe { off.write(pos) };
    }
    Some(done as ssize_t)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(
    out: c_int,
    inp: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    do_sendfile(out, inp, off, count).unwrap_or_else(|| {
        real!(
            c"sendfile",
            fn(c_int, c_int, *mut off_t, size_t) -> ssize_t,
            out,
            inp,
            off,
            count
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out: c_int,
    inp: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    do_sendfile(out, inp, off, count).unwrap_or_else(|| {
        real!(
            c"sendfile64",
            fn(c_int, c_int, *mut off_t, size_t) -> ssize_t,
            out,
            inp,
            off,
            count
        )
    })
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
fn do_mkostemp(template: *mut c_char, flags: c_int, suffix: c_int) -> Option<c_int> {
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

// ---------------------------------------------------------------- stdio

/// glibc's `cookie_io_functions_t`.
#[repr(C)]
struct CookieIo {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, size_t) -> ssize_t>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, size_t) -> ssize_t>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

unsafe extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> *mut libc::FILE;
}

/// FILE streams of ours (fopen on a sealed mount), by address, with their descriptor.
static STREAMS: std::sync::Mutex<Vec<(usize, c_int)>> = std::sync::Mutex::new(Vec::new());

fn streams() -> std::sync::MutexGuard<'static, Vec<(usize, c_int)>> {
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
fn fopen_flags(mode: &[u8]) -> Option<c_int> {
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

fn do_fopen(path: *const c_char, mode: *const c_char) -> Option<*mut libc::FILE> {
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

fn stream_fd(f: *mut libc::FILE) -> Option<c_int> {
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

// ---------------------------------------------------------------- directories

/// A directory stream of ours: what `opendir` returns for a sealed directory
/// (an opaque `DIR *` to the program; glibc's own never sees it).
struct OurDir {
    fd: c_int,
    /// The entry `readdir` returned last (valid until the next call, as POSIX says).
    ent: libc::dirent64,
    pos: i64,
}

/// Our directory streams, by address.
static DIRS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

fn dirs() -> std::sync::MutexGuard<'static, Vec<usize>> {
    DIRS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn our_dir(d: *mut libc::DIR) -> Option<*mut OurDir> {
    dirs().contains(&(d as usize)).then_some(d.cast::<OurDir>())
}

fn new_dir(fd: c_int) -> *mut libc::DIR {
    // SAFETY: all-zero is a valid dirent64.
    let ent: libc::dirent64 = unsafe { std::mem::zeroed() };
    let p = Box::into_raw(Box::new(OurDir { fd, ent, pos: 0 }));
    dirs().push(p as usize);
    p.cast()
}

fn do_opendir(path: *const c_char) -> Option<*mut libc::DIR> {
    let (rt, _g) = enter()?;
    // SAFETY: opendir(3)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    match rt.open(p, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)? {
        Ok(fd) => Some(new_dir(fd)),
        Err(e) => {
            set_errno(e);
            Some(std::ptr::null_mut())
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    do_opendir(path).unwrap_or_else(|| real!(c"opendir", fn(*const c_char) -> *mut libc::DIR, path))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut libc::DIR {
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        return match rt.fstat(fd) {
            Some(Ok(s)) if s.stat.mode & libc::S_IFMT == libc::S_IFDIR => new_dir(fd),
            Some(Err(e)) => {
                set_errno(e);
                std::ptr::null_mut()
            }
            _ => {
                set_errno(libc::ENOTDIR);
                std::ptr::null_mut()
            }
        };
    }
    real!(c"fdopendir", fn(c_int) -> *mut libc::DIR, fd)
}

fn do_readdir(d: *mut libc::DIR) -> Option<*mut libc::dirent64> {
    let od = our_dir(d)?;
    let (rt, _g) = enter()?;
    // SAFETY: `od` is one of our live directory streams (registered, not closed);
    // POSIX says a stream is not used by two threads at once.
    let od = unsafe { &mut *od };
    match rt.next_dirents(od.fd, 1)? {
        Ok(v) => {
            let Some(e) = v.into_iter().next() else {
                // End of the directory: NULL with errno unchanged.
                return Some(std::ptr::null_mut());
            };
            od.pos += 1;
            od.ent.d_ino = e.ino;
            od.ent.d_off = od.pos;
            od.ent.d_type = rktio_posix::d_type(e.file_type);
            let n = e.name.len().min(255);
            for (i, b) in e.name[..n].iter().enumerate() {
                od.ent.d_name[i] = *b as c_char;
            }
            od.ent.d_name[n] = 0;
            od.ent.d_reclen = u16::try_from((19 + n + 1).div_ceil(8) * 8).unwrap_or(u16::MAX);
            Some(&mut od.ent)
        }
        Err(e) => {
            set_errno(e);
            Some(std::ptr::null_mut())
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(d: *mut libc::DIR) -> *mut libc::dirent64 {
    do_readdir(d).unwrap_or_else(|| real!(c"readdir", fn(*mut libc::DIR) -> *mut libc::dirent64, d))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(d: *mut libc::DIR) -> *mut libc::dirent64 {
    do_readdir(d)
        .unwrap_or_else(|| real!(c"readdir64", fn(*mut libc::DIR) -> *mut libc::dirent64, d))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(d: *mut libc::DIR) -> c_int {
    if let Some(od) = our_dir(d) {
        dirs().retain(|&p| p != d as usize);
        // SAFETY: `od` came from Box::into_raw in new_dir and is now unregistered,
        // so nothing else will use it.
        let od = unsafe { Box::from_raw(od) };
        // SAFETY: closing our own descriptor.
        return unsafe { close(od.fd) };
    }
    real!(c"closedir", fn(*mut libc::DIR) -> c_int, d)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dirfd(d: *mut libc::DIR) -> c_int {
    if let Some(od) = our_dir(d) {
        // SAFETY: one of our live streams.
        return unsafe { (*od).fd };
    }
    real!(c"dirfd", fn(*mut libc::DIR) -> c_int, d)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(d: *mut libc::DIR) {
    if let Some(od) = our_dir(d) {
        if let Some((rt, _g)) = enter() {
            // SAFETY: one of our live streams.
            let od = unsafe { &mut *od };
            let _ = rt.rewind_dir(od.fd);
            od.pos = 0;
        }
        return;
    }
    real!(c"rewinddir", fn(*mut libc::DIR) -> (), d)
}

/// getdents64(2) on a directory of ours: as many records as fit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getdents64(fd: c_int, out: *mut c_void, n: size_t) -> ssize_t {
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: getdents64(2)'s contract: `n` writable bytes at `out`.
        let buf = unsafe { buf_mut(out, n) };
        let mut used = 0usize;
        loop {
            let ents = match rt.next_dirents(fd, 1) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    if used > 0 {
                        break;
                    }
                    set_errno(e);
                    return -1;
                }
                None => break,
            };
            let Some(e) = ents.into_iter().next() else {
                break;
            };
            let name = &e.name[..e.name.len().min(255)];
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            if used + reclen > buf.len() {
                // Does not fit: give it back for the next call.
                let _ = rt.unread_dirent(fd);
                if used == 0 {
                    set_errno(libc::EINVAL);
                    return -1;
                }
                break;
            }
            let r = &mut buf[used..used + reclen];
            r.fill(0);
            r[0..8].copy_from_slice(&e.ino.to_ne_bytes());
            r[8..16].copy_from_slice(&((used + reclen) as i64).to_ne_bytes());
            r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            r[18] = rktio_posix::d_type(e.file_type);
            r[19..19 + name.len()].copy_from_slice(name);
            used += reclen;
        }
        return used as ssize_t;
    }
    real!(
        c"getdents64",
        fn(c_int, *mut c_void, size_t) -> ssize_t,
        fd,
        out,
        n
    )
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
                if out.is_null() {
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

// ---------------------------------------------------------------- xattrs

/// Extended attributes are not offered on sealed files: ENOTSUP, which programs
/// (ls, cp -a, tar) take as "this file system has none".
fn xattr_path(path: *const c_char) -> bool {
    let Some((rt, _g)) = enter() else {
        return false;
    };
    // SAFETY: the xattr calls' contract: a NUL-terminated path.
    unsafe { cpath(path) }.is_some_and(|p| rt.is_sealed_path(p))
}

fn xattr_fd(fd: c_int) -> bool {
    enter().is_some_and(|(rt, _g)| rt.is_ours(fd))
}

fn notsup<T: From<i8>>() -> T {
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

// ---------------------------------------------------------------- ppoll, pselect

/// Runs `f` with the signal mask `mask` (if any) in place, as ppoll/pselect do.
/// Not atomic like the kernel's: a signal that arrives between the mask change
/// and the wait is handled at once instead of interrupting the wait.
fn with_mask<R>(mask: *const libc::sigset_t, f: impl FnOnce() -> R) -> R {
    if mask.is_null() {
        return f();
    }
    // SAFETY: all-zero is a valid sigset_t to receive the old mask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is the caller's valid sigset_t (ppoll's contract); `old` is ours.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, &mut old) };
    let r = f();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

unsafe fn ts_duration(t: *const libc::timespec) -> Option<std::time::Duration> {
    if t.is_null() {
        return None;
    }
    // SAFETY: the caller's valid timespec.
    let t = unsafe { t.read() };
    Some(
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_nanos(t.tv_nsec.clamp(0, 999_999_999) as u64),
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && !fds.is_null()
    {
        // SAFETY: ppoll(2)'s contract: `n` pollfds at `fds`.
        let v = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
        if v.iter().any(|p| rt.is_ours(p.fd)) {
            // SAFETY: the caller's timeout pointer (may be NULL).
            let t = unsafe { ts_duration(tmo) };
            return with_mask(mask, || mixed_poll(rt, v, t));
        }
    }
    real!(
        c"ppoll",
        fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int,
        fds,
        n,
        tmo,
        mask
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let ours = enter().is_some_and(|(rt, _g)| {
        (0..nfds.clamp(0, libc::FD_SETSIZE as c_int)).any(|fd| {
            // SAFETY: select(2)'s contract for the sets.
            (unsafe { fd_isset(fd, r) || fd_isset(fd, w) || fd_isset(fd, e) }) && rt.is_ours(fd)
        })
    });
    if ours {
        let mut tv = if tmo.is_null() {
            None
        } else {
            // SAFETY: the caller's valid timespec.
            let t = unsafe { tmo.read() };
            Some(libc::timeval {
                tv_sec: t.tv_sec,
                tv_usec: t.tv_nsec / 1000,
            })
        };
        let tvp = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: select with the caller's sets and our copy of the timeout.
        return with_mask(mask, || unsafe { select(nfds, r, w, e, tvp) });
    }
    real!(
        c"pselect",
        fn(
            c_int,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *const libc::timespec,
            *const libc::sigset_t,
        ) -> c_int,
        nfds,
        r,
        w,
        e,
        tmo,
        mask
    )
}
