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

mod load;
mod served;
mod trap;
mod unix;

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

/// Before exec replaces this process (and the stack's memory with it): what the
/// program wrote reaches the image, as the kernel's page cache outlives exec.
pub(crate) fn before_exec() {
    let _in = trap::InStack::enter();
    let was = BUSY.with(|b| b.replace(true));
    if let Some(Some(rt)) = RUNTIME.get() {
        commit(rt, "at exec");
    }
    BUSY.with(|b| b.set(was));
}

/// Writes the shared mappings back and commits every mount.
fn commit(rt: &Runtime, when: &str) {
    for (a, n) in rt.all_maps() {
        if let Err(e) = write_back(rt, a, n) {
            eprintln!("rktio: writing a shared mapping back {when}: errno {e}");
        }
    }
    let _ = rt.sync_all();
}

pub(crate) extern "C" fn at_exit() {
    let _in = trap::InStack::enter();
    BUSY.with(|b| b.set(true));
    if let Some(Some(rt)) = RUNTIME.get() {
        // As the kernel at exit: close the sockets, and let what they queued go
        // out (the driver thread dies with the process).
        rt.close_sockets(std::time::Duration::from_secs(5));
        commit(rt, "at exit");
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
extern "C" fn constructor(_argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
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
    // The loader (a statically linked program to run): it runs from here, and
    // the loader's own main never does.
    if runtime().is_some()
        && let Some(program) = load::requested(envp)
    {
        load::run(&program, argv, envp);
    }
}

#[used]
// SAFETY: `.init_array` holds pointers to functions the loader calls once, after
// libc is set up, with (argc, argv, envp) as glibc passes them; `constructor` is
// such a function.
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = constructor;

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

/// The bytes of a C string: None for NULL or an address that cannot be read
/// (the host's call answers EFAULT).
unsafe fn cpath<'a>(p: *const c_char) -> Option<&'a [u8]> {
    trap::user::c_str(p)
}

/// A value in the program's memory, at any alignment: EFAULT if it cannot be
/// read.
unsafe fn user_read<T: Copy>(p: *const T) -> SysResult<T> {
    if !trap::user::readable(p.cast(), std::mem::size_of::<T>()) {
        return Err(libc::EFAULT);
    }
    // SAFETY: the bytes are mapped (checked); a `T` of the program's.
    Ok(unsafe { p.read_unaligned() })
}

/// A buffer the program passed for the stack to fill: EFAULT if it cannot be
/// reached (NULL with a length, or an unmapped address; see `trap::user`).
unsafe fn buf_mut<'a>(p: *mut c_void, n: size_t) -> SysResult<&'a mut [u8]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if !trap::user::readable(p.cast(), n) {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller gave a buffer of `n` writable bytes (read(2)'s
    // contract), and it is mapped.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
}

/// A buffer the program passed for the stack to read: EFAULT if it cannot
/// be read.
unsafe fn buf<'a>(p: *const c_void, n: size_t) -> SysResult<&'a [u8]> {
    if n == 0 {
        return Ok(&[]);
    }
    if !trap::user::readable(p.cast(), n) {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller gave `n` readable bytes (write(2)'s contract), and
    // they are mapped.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) })
}

/// The entries of an iovec array the program passed (at most 1024, at any
/// alignment): EFAULT if the array cannot be read.
unsafe fn iov_entries(iov: *const libc::iovec, n: c_int) -> SysResult<Vec<libc::iovec>> {
    let n = usize::try_from(n).unwrap_or(0).min(1024);
    if n == 0 {
        return Ok(Vec::new());
    }
    if !trap::user::readable(iov.cast(), n * std::mem::size_of::<libc::iovec>()) {
        return Err(libc::EFAULT);
    }
    // SAFETY: `n` iovecs, mapped (checked), read unaligned.
    Ok((0..n)
        .map(|k| unsafe { iov.add(k).read_unaligned() })
        .collect())
}

/// The iovec array of readv(2): each buffer as `buf_mut` checks it.
unsafe fn iov_mut<'a>(iov: *const libc::iovec, n: c_int) -> SysResult<Vec<&'a mut [u8]>> {
    // SAFETY: readv(2)'s contract, for the array and each entry.
    unsafe { iov_entries(iov, n) }?
        .into_iter()
        .map(|e| unsafe { buf_mut(e.iov_base, e.iov_len) })
        .collect()
}

/// The iovec array of writev(2): each buffer as `buf` checks it.
unsafe fn iov<'a>(iov: *const libc::iovec, n: c_int) -> SysResult<Vec<&'a [u8]>> {
    // SAFETY: writev(2)'s contract, for the array and each entry.
    unsafe { iov_entries(iov, n) }?
        .into_iter()
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
    st.st_rdev = s.stat.rdev;
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
            if !trap::user::writable(out.cast(), std::mem::size_of::<libc::stat>()) {
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

mod dirs;
mod files;
mod memory;
mod paths;
mod poll;
mod sockets;
mod stat;
mod stdio;
mod xattr;

use dirs::*;
use files::*;
use memory::*;
use paths::*;
use poll::*;
use sockets::*;
use stat::*;
use xattr::*;

/// Is `fd` one of the stack's own host descriptors, named by the program (the
/// stack's own code, inside `enter`, reaches its descriptors through libc
/// too)?
fn internal(fd: c_int) -> bool {
    rktio_sys::is_internal(fd) && busy_free()
}

/// dup2 or dup3 of `old` onto `new`, a number the stack keeps as a spare slot
/// (closed to the program): true if `new` was a spare and is the program's
/// to replace now (`old` is open), false to answer EBADF.
fn spare_for_dup(old: c_int, new: c_int) -> bool {
    if !rktio_sys::is_spare(new) {
        return false;
    }
    let old_open = runtime().is_some_and(|rt| rt.is_ours(old)) || rktio_sys::host_fd_open(old);
    old_open && rktio_sys::claim_spare(new)
}

/// What a call on one of the stack's own host descriptors answers (see
/// `rktio_sys::is_internal`): EBADF, as if nothing were open there.
fn internal_fd<T: Failed>() -> T {
    set_errno(libc::EBADF);
    T::failed()
}

/// The failure value of an entry point's return type.
trait Failed {
    fn failed() -> Self;
}

impl Failed for c_int {
    fn failed() -> Self {
        -1
    }
}

impl Failed for i64 {
    fn failed() -> Self {
        -1
    }
}

impl Failed for isize {
    fn failed() -> Self {
        -1
    }
}

impl<T> Failed for *mut T {
    fn failed() -> Self {
        std::ptr::null_mut()
    }
}
