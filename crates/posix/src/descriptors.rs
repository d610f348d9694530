//! The descriptor table: open file descriptions of ours (`Desc`), what each
//! one is (`Kind`: a file or directory on a mount, a socket, an epoll set),
//! and the calls on descriptors as such (close, dup, dup2, F_GETFL, F_SETFL).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use libc::{EBADF, EINVAL};
use rktio_fs::{DirEntry, FileSystem, LockKind, OpenFile};

use crate::{Runtime, SysResult, cred, sock};

/// An open file description of ours (shared by dup'ed descriptors).
#[derive(Debug)]
pub struct Desc {
    pub(crate) id: u64,
    /// O_APPEND, O_NONBLOCK and the access mode, as F_GETFL reports.
    pub(crate) status: AtomicI32,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    File(Arc<FileDesc>),
    Sock(sock::SockDesc),
    Epoll(crate::epoll::EpollDesc),
}

pub(crate) struct FileDesc {
    pub(crate) mount: usize,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) file: Arc<OpenFile>,
    /// Path inside the mount, as opened (for openat relative to a directory).
    pub(crate) path: Vec<u8>,
    pub(crate) dev: u64,
    /// A directory's entries, read at the first getdents, and the next index.
    pub(crate) dir: Mutex<Option<(Vec<DirEntry>, usize)>>,
}

impl std::fmt::Debug for FileDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDesc")
            .field("mount", &self.mount)
            .field("ino", &self.file.ino())
            .finish_non_exhaustive()
    }
}

impl FileDesc {
    /// The owner of this open file description's flock locks.
    pub(crate) fn flock_owner(&self) -> u64 {
        (1 << 62) | (Arc::as_ptr(&self.file) as u64 & ((1 << 62) - 1))
    }
}

impl Drop for FileDesc {
    fn drop(&mut self) {
        // The last descriptor of the open file description is gone: so are its
        // flock locks.
        let _ = self
            .fs
            .flock(&self.file, self.flock_owner(), LockKind::Unlock, false);
        if let Err(e) = self.fs.close(&self.file) {
            tracing::warn!("close: {}", e.detail);
        }
    }
}

/// A file descriptor of ours, for the calls on it.
pub(crate) struct FileRef(pub(crate) Arc<FileDesc>);

impl FileRef {
    pub(crate) fn inner(&self) -> &FileDesc {
        &self.0
    }
    pub(crate) fn fs(&self) -> &dyn FileSystem {
        cred::refresh();
        &*self.inner().fs
    }
    pub(crate) fn open(&self) -> &OpenFile {
        &self.inner().file
    }
    pub(crate) fn dev(&self) -> u64 {
        self.inner().dev
    }
    pub(crate) fn not_dir(&self) -> SysResult<()> {
        if self.open().is_dir() {
            Err(libc::EISDIR)
        } else {
            Ok(())
        }
    }
}

impl Runtime {
    pub(crate) fn fds(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RawFd, Arc<Desc>>> {
        self.fds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn fds_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RawFd, Arc<Desc>>> {
        self.fds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The description behind `fd`, if it is ours.
    pub fn desc(&self, fd: RawFd) -> Option<Arc<Desc>> {
        self.fds().get(&fd).cloned()
    }

    /// Is `fd` one of ours?
    pub fn is_ours(&self, fd: RawFd) -> bool {
        self.fds().contains_key(&fd)
    }

    /// The descriptors of ours, in no order.
    pub fn our_fds(&self) -> Vec<RawFd> {
        self.fds().keys().copied().collect()
    }

    pub(crate) fn insert(&self, fd: RawFd, d: Arc<Desc>) {
        self.fds_mut().insert(fd, d);
    }

    pub(crate) fn new_desc(&self, kind: Kind, status: i32) -> Arc<Desc> {
        Arc::new(Desc {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            status: AtomicI32::new(status),
            kind,
        })
    }

    pub(crate) fn file(&self, fd: RawFd) -> Option<SysResult<(Arc<Desc>, FileRef)>> {
        self.file_of(self.desc(fd)?)
    }

    /// `file` for a description already looked up (one table lookup per call).
    pub(crate) fn file_of(&self, d: Arc<Desc>) -> Option<SysResult<(Arc<Desc>, FileRef)>> {
        if let Err(e) = self.alive() {
            return Some(Err(e));
        }
        match &d.kind {
            Kind::File(f) => Some(Ok((d.clone(), FileRef(f.clone())))),
            // Seek-like calls on a socket or an epoll instance.
            Kind::Sock(_) => Some(Err(libc::ESPIPE)),
            Kind::Epoll(_) => Some(Err(EINVAL)),
        }
    }

    /// close(2).
    pub fn close(&self, fd: RawFd) -> Option<SysResult<()>> {
        let d = self.fds_mut().remove(&fd)?;
        if let Kind::File(f) = &d.kind {
            // POSIX: closing any descriptor of a file drops the process's locks on it.
            f.fs.unlock_all(&f.file, self.pid);
        }
        self.forget_in_epolls(fd);
        rktio_sys::close_slot(fd);
        Some(Ok(()))
    }

    /// fcntl F_SETFD and ioctl FIOCLEX/FIONCLEX: close-on-exec is the host
    /// slot's flag, noted for when the slot becomes a spare.
    pub fn set_cloexec(&self, fd: RawFd, on: bool) -> Option<SysResult<()>> {
        if !self.is_ours(fd) {
            return None;
        }
        Some(rktio_sys::set_cloexec(fd, on))
    }

    /// dup(2) and fcntl F_DUPFD/F_DUPFD_CLOEXEC.
    pub fn dup(&self, fd: RawFd, min: RawFd, cloexec: bool) -> Option<SysResult<RawFd>> {
        let d = self.desc(fd)?;
        Some(match rktio_sys::dup_slot(fd, min.max(0), cloexec) {
            Ok(n) => {
                self.insert(n, d);
                Ok(n)
            }
            Err(e) => Err(rktio_sys::errno_of(&e.source)),
        })
    }

    /// dup2(2)/dup3(2). Either side may be ours.
    pub fn dup2(&self, old: RawFd, new: RawFd, cloexec: bool) -> Option<SysResult<RawFd>> {
        let od = self.desc(old);
        let new_ours = self.is_ours(new);
        if od.is_none() && !new_ours {
            return None;
        }
        if old == new {
            return Some(Ok(new));
        }
        if od.is_none() && !rktio_sys::host_fd_open(old) {
            return Some(Err(EBADF));
        }
        // The host descriptor (ours: the slot) goes onto `new`, closing what was
        // there; our table follows.
        if let Err(e) = rktio_sys::dup_onto(old, new, cloexec) {
            return Some(Err(rktio_sys::errno_of(&e.source)));
        }
        let mut t = self.fds_mut();
        if let Some(prev) = t.remove(&new)
            && let Kind::File(f) = &prev.kind
        {
            f.fs.unlock_all(&f.file, self.pid);
        }
        if let Some(d) = od {
            t.insert(new, d);
        }
        Some(Ok(new))
    }

    /// F_GETFL.
    pub fn getfl(&self, fd: RawFd) -> Option<SysResult<i32>> {
        let d = self.desc(fd)?;
        Some(Ok(d.status.load(Ordering::Relaxed)))
    }

    /// F_SETFL: O_APPEND and O_NONBLOCK may change (O_APPEND on a file opened
    /// without it is refused: the file system fixed it at open).
    pub fn setfl(&self, fd: RawFd, flags: i32) -> Option<SysResult<()>> {
        let d = self.desc(fd)?;
        let old = d.status.load(Ordering::Relaxed);
        if (old ^ flags) & libc::O_APPEND != 0 {
            return Some(Err(EINVAL));
        }
        let keep = old & !(libc::O_NONBLOCK | libc::O_DIRECT);
        d.status.store(
            keep | (flags & (libc::O_NONBLOCK | libc::O_DIRECT)),
            Ordering::Relaxed,
        );
        Some(Ok(()))
    }
}
