//! Descriptor slots: host file descriptors that only hold a number.
//!
//! The POSIX edge gives every descriptor of the stack (a file on a sealed mount, a
//! socket of our network stack) a real host descriptor number, so that numbers
//! never collide with the host's own descriptors and close-on-exec, dup2 over a
//! host descriptor and exec behave as the kernel makes them. The slot is an
//! `O_PATH` descriptor of `/dev/null`: a host call that reaches it by mistake
//! (read, write, mmap) fails with EBADF instead of touching anything.
//!
//! These functions work on raw numbers the caller owns (the POSIX edge's table),
//! with raw system calls (rustix), so they never re-enter an interposed libc.

use std::mem::ManuallyDrop;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::{DupFlags, FdFlags};

use crate::{HostCall, HostError, Result, count};

/// A new slot (the lowest free number, as open(2) gives): a spare if one is
/// kept (see `spare`), else a new host descriptor.
pub fn reserve_slot(cloexec: bool) -> Result<RawFd> {
    if let Some(fd) = crate::spare::take(cloexec, || open_slot(cloexec).ok()) {
        return Ok(fd);
    }
    let fd = open_slot(cloexec)?;
    crate::spare::note_cloexec(fd, cloexec);
    Ok(fd)
}

fn open_slot(cloexec: bool) -> Result<RawFd> {
    count(HostCall::Open);
    let mut flags = OFlags::PATH;
    if cloexec {
        flags |= OFlags::CLOEXEC;
    }
    rustix::fs::open("/dev/null", flags, Mode::empty())
        .map(IntoRawFd::into_raw_fd)
        .map_err(|e| HostError::new("open a descriptor slot", e.into()))
}

/// Closes a descriptor number the caller owns (a slot: kept as a spare while
/// there is room).
pub fn close_slot(fd: RawFd) {
    if fd < 0 || crate::spare::give(fd) {
        return;
    }
    count(HostCall::Open);
    // SAFETY: the caller owns `fd` (a slot it reserved, or a number it took over
    // with dup2) and forgets it after this call; dropping the OwnedFd closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

fn borrow<'a>(fd: RawFd) -> Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(HostError::new(
            "descriptor slot",
            std::io::Error::from_raw_os_error(libc::EBADF),
        ));
    }
    // SAFETY: `fd` is non-negative and the caller keeps it open for the duration
    // of the call that borrows it (these functions do not store the borrow).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// A second number for the slot `fd`, the lowest free one at or above `min`
/// (fcntl F_DUPFD / F_DUPFD_CLOEXEC, and dup(2) with `min` 0).
pub fn dup_slot(fd: RawFd, min: RawFd, cloexec: bool) -> Result<RawFd> {
    count(HostCall::Open);
    let b = borrow(fd)?;
    let r = if cloexec {
        rustix::io::fcntl_dupfd_cloexec(b, min)
    } else {
        rustix::io::fcntl_dupfd_cloexec(b, min).and_then(|n| {
            rustix::io::fcntl_setfd(&n, FdFlags::empty())?;
            Ok(n)
        })
    };
    let n = r
        .map(IntoRawFd::into_raw_fd)
        .map_err(|e| HostError::new("dup a descriptor slot", e.into()))?;
    crate::spare::note_cloexec(n, cloexec);
    Ok(n)
}

/// dup2/dup3 of the host descriptor `old` onto the number `new` (closing what
/// the host had there, as dup2 does).
pub fn dup_onto(old: RawFd, new: RawFd, cloexec: bool) -> Result<()> {
    count(HostCall::Open);
    let b = borrow(old)?;
    if new < 0 {
        return Err(HostError::new(
            "dup2",
            std::io::Error::from_raw_os_error(libc::EBADF),
        ));
    }
    // SAFETY: `new` is a descriptor number the caller is taking over; dup3
    // replaces whatever is there, and ManuallyDrop keeps us from closing it.
    let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(new) });
    let flags = if cloexec {
        DupFlags::CLOEXEC
    } else {
        DupFlags::empty()
    };
    rustix::io::dup3(b, &mut target, flags).map_err(|e| HostError::new("dup2", e.into()))?;
    crate::spare::note_cloexec(new, cloexec);
    Ok(())
}

/// A host descriptor that reads `bytes` from offset 0: an anonymous memory
/// file (memfd), for a table the stack writes for the program (the mount table).
/// Only what the host may see goes in: it holds the bytes as it is.
pub fn memory_file(name: &str, bytes: &[u8], cloexec: bool) -> Result<RawFd> {
    use rustix::fs::{MemfdFlags, SeekFrom};
    count(HostCall::Open);
    let flags = if cloexec {
        MemfdFlags::CLOEXEC
    } else {
        MemfdFlags::empty()
    };
    let fd = rustix::fs::memfd_create(name, flags)
        .map_err(|e| HostError::new("memfd_create", e.into()))?;
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::write(&fd, &bytes[done..]) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(HostError::new("write a memory file", e.into())),
        }
    }
    rustix::fs::seek(&fd, SeekFrom::Start(0))
        .map_err(|e| HostError::new("lseek a memory file", e.into()))?;
    Ok(fd.into_raw_fd())
}

/// Is `fd` open on the host at all (fcntl F_GETFD)?
pub fn host_fd_open(fd: RawFd) -> bool {
    borrow(fd).is_ok_and(|b| rustix::io::fcntl_getfd(b).is_ok())
}

/// The process's effective user and group ids.
pub fn ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// poll(2) on raw descriptor numbers (the program's): `(fd, events, revents)`.
/// An invalid number gets POLLNVAL, as the kernel answers. Errors (EINTR
/// included) come back as the errno, for the program to see.
pub fn poll_fds(
    fds: &mut [(RawFd, i16, i16)],
    timeout: Option<std::time::Duration>,
) -> std::result::Result<usize, i32> {
    use rustix::event::{PollFd, PollFlags};
    // Negative numbers are ignored (revents 0), as poll(2) does.
    let live: Vec<usize> = (0..fds.len()).filter(|&i| fds[i].0 >= 0).collect();
    let mut pfds: Vec<PollFd<'_>> = live
        .iter()
        .map(|&i| {
            let (fd, ev, _) = fds[i];
            // SAFETY: `fd` is non-negative; poll only reads the number, and the
            // kernel answers a closed or invalid one with POLLNVAL.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            PollFd::from_borrowed_fd(b, PollFlags::from_bits_retain(ev as u16))
        })
        .collect();
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    count(HostCall::Poll);
    let n = rustix::event::poll(&mut pfds, ts.as_ref()).map_err(|e| e.raw_os_error())?;
    for f in fds.iter_mut() {
        f.2 = 0;
    }
    for (&i, p) in live.iter().zip(&pfds) {
        fds[i].2 = p.revents().bits() as i16;
    }
    Ok(n)
}

/// Random bytes from the kernel (getrandom(2)).
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(HostError::new("getrandom", e.into())),
        }
    }
    Ok(())
}

/// Spawns one of our own threads with every signal blocked. Signals sent to the
/// process (SIGTERM, SIGINT, SIGCHLD, a program's own wake-up signals) then go
/// to the program's threads, as the program arranged: MariaDB, for one, blocks
/// SIGTERM everywhere but in a thread that waits for it with sigwait(), and a
/// SIGTERM the kernel handed to our network thread instead never shut it down.
pub fn spawn_masked<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: sigset_t is plain data; sigfillset initialises `all` fully.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pthread_sigmask writes the old mask into `old`.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `all` is a live sigset_t of this frame, which sigfillset fills.
    unsafe {
        libc::sigfillset(&mut all);
    }
    // SAFETY: both pointers are to live sigset_t values of this frame; the new
    // thread inherits the calling thread's mask, which is restored right after.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let r = std::thread::Builder::new().name(name.into()).spawn(f);
    // SAFETY: `old` holds the mask read above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    r
}
