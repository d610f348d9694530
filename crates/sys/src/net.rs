//! Network host objects: a TAP device, an eventfd notifier and readiness waits.
//!
//! Frames read from the TAP device are host-written bytes: the length the kernel
//! returns is checked against the buffer here, and the contents are handed up as
//! plain bytes for the network layer to validate.

use crate::{HostCall, HostError, Result, count};
use rustix::event::{EventfdFlags, PollFd, PollFlags, epoll};
use rustix::fs::{Mode, OFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags (the rest of the
/// union is padding here).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP device (`/dev/net/tun` with `IFF_TAP | IFF_NO_PI`): whole Ethernet frames,
/// one per read or write.
#[derive(Debug)]
pub struct TapDevice {
    fd: crate::InternalFd,
    name: String,
}

impl TapDevice {
    /// Creates (or attaches to a persistent) TAP device named `name`, non-blocking.
    /// The device lives in the network namespace of the calling thread; it may be
    /// moved to another namespace afterwards (`ip link set NAME netns NS`) and this
    /// descriptor keeps working.
    pub fn open(name: &str) -> Result<Self> {
        let what = || format!("open TAP device {name}");
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
            return Err(HostError::new(
                what(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "interface names are 1 to 15 bytes",
                ),
            ));
        }
        count(HostCall::NetSetup);
        let fd = rustix::fs::open(
            "/dev/net/tun",
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HostError::new(what(), e.into()))?;
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        count(HostCall::NetSetup);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a live,
        // properly aligned struct with the same layout prefix (name, flags) and
        // padding up to the size of `struct ifreq` (40 bytes), and `fd` is an open
        // tun descriptor for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_ioctl,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::TUNSETIFF,
                &mut req as *mut IfReqFlags,
            )
        };
        if rc < 0 {
            return Err(HostError::new(what(), io::Error::last_os_error()));
        }
        Ok(Self {
            fd: crate::InternalFd::new(fd),
            name: name.to_string(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`. `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        count(HostCall::NetRecv);
        match rustix::io::read(&self.fd, &mut *buf) {
            // The kernel says how many bytes it wrote; never trust it past the buffer.
            Ok(n) if n <= buf.len() => Ok(Some(n)),
            Ok(n) => Err(HostError::new(
                format!("read {}", self.name),
                io::Error::other(format!("host claimed {n} bytes into {}", buf.len())),
            )),
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(HostError::new(format!("read {}", self.name), e.into())),
        }
    }

    /// Writes one frame. `Ok(false)` if the device queue is full (the frame is dropped).
    pub fn send(&self, frame: &[u8]) -> Result<bool> {
        count(HostCall::NetSend);
        match rustix::io::write(&self.fd, frame) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(e) => Err(HostError::new(format!("write {}", self.name), e.into())),
        }
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An eventfd: one thread notifies, another waits for it among other descriptors.
///
/// Notifications coalesce: while one is pending (written, not yet drained) more
/// notifies make no host call. Users drain, then check their condition, then wait:
/// a notify after the drain always writes, so nothing that happens after the check
/// is missed.
#[derive(Debug)]
pub struct Notifier {
    fd: crate::InternalFd,
    pending: std::sync::atomic::AtomicBool,
}

impl Notifier {
    /// A new, non-blocking notifier.
    pub fn new() -> Result<Self> {
        count(HostCall::NetSetup);
        let fd = rustix::event::eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
            .map_err(|e| HostError::new("eventfd", e.into()))?;
        Ok(Self {
            fd: crate::InternalFd::new(fd),
            pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Wakes whoever waits on this notifier (one host call, none if a wake-up is
    /// already pending).
    pub fn notify(&self) {
        if self.pending.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        count(HostCall::Wake);
        // A full counter (EAGAIN) means a wake-up is already pending: fine.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Clears pending notifications (no host call if none is pending).
    pub fn drain(&self) {
        if !self.pending.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut b = [0u8; 8];
        count(HostCall::Wake);
        let _ = rustix::io::read(&self.fd, &mut b);
        // After the read: a notify from now on writes again.
        self.pending
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: forever).
/// Returns whether any is readable.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<bool> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    count(HostCall::Poll);
    match rustix::event::poll(&mut pfds, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(HostError::new("poll", e.into())),
    }
}

/// A second descriptor for the same open file (for a poller that parks on a
/// device whose owner sits behind a lock).
pub fn dup_fd(fd: BorrowedFd<'_>) -> Result<crate::InternalFd> {
    count(HostCall::NetSetup);
    fd.try_clone_to_owned()
        .map(crate::InternalFd::new)
        .map_err(|e| HostError::new("dup", e))
}

/// Several descriptors behind one (an epoll instance): readable when any of them
/// is, so a poller can park on a NIC with many queues.
#[derive(Debug)]
pub struct ReadySet {
    fd: crate::InternalFd,
}

impl ReadySet {
    /// A set of these descriptors (each watched for readability).
    pub fn new(fds: &[BorrowedFd<'_>]) -> Result<Self> {
        count(HostCall::NetSetup);
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| HostError::new("epoll_create", e.into()))?;
        for (i, f) in fds.iter().enumerate() {
            count(HostCall::NetSetup);
            epoll::add(
                &fd,
                f,
                epoll::EventData::new_u64(i as u64),
                epoll::EventFlags::IN,
            )
            .map_err(|e| HostError::new("epoll_ctl", e.into()))?;
        }
        Ok(Self {
            fd: crate::InternalFd::new(fd),
        })
    }
}

impl AsFd for ReadySet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
