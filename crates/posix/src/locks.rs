//! File locks on sealed files: fcntl record locks (POSIX and OFD) and flock.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use libc::{EBADF, EINVAL};
use rktio_fs::{LockKind, RecordLock, Whence};

use crate::stats::bump;
use crate::{Runtime, SysResult, errno};

/// fcntl lock commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockCmd {
    /// F_GETLK.
    Get,
    /// F_SETLK.
    Set,
    /// F_SETLKW.
    SetWait,
}

/// The fields of `struct flock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlockArgs {
    /// l_type.
    pub kind: i32,
    /// l_whence.
    pub whence: i32,
    /// l_start.
    pub start: i64,
    /// l_len.
    pub len: i64,
    /// l_pid.
    pub pid: i32,
}

impl Runtime {
    /// F_GETLK / F_SETLK / F_SETLKW, and the OFD variants (`ofd`). `lock` is
    /// (type, whence, start, len); F_GETLK's answer comes back the same way, with
    /// the holder's pid (-1 for an OFD lock).
    pub fn record_lock(
        &self,
        fd: RawFd,
        cmd: LockCmd,
        ofd: bool,
        lock: FlockArgs,
    ) -> Option<SysResult<Option<FlockArgs>>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(d, f)| {
            bump(&self.stats.meta, 1);
            let kind = match lock.kind {
                libc::F_RDLCK => LockKind::Read,
                libc::F_WRLCK => LockKind::Write,
                libc::F_UNLCK => LockKind::Unlock,
                _ => return Err(EINVAL),
            };
            let st = d.status.load(Ordering::Relaxed) & libc::O_ACCMODE;
            if cmd != LockCmd::Get
                && ((kind == LockKind::Read && st == libc::O_WRONLY)
                    || (kind == LockKind::Write && st == libc::O_RDONLY))
            {
                return Err(EBADF);
            }
            let base: i64 = match lock.whence {
                libc::SEEK_SET => 0,
                libc::SEEK_CUR => {
                    let p = f.fs().seek(f.open(), 0, Whence::Current).map_err(errno)?;
                    i64::try_from(p).map_err(|_| libc::EOVERFLOW)?
                }
                libc::SEEK_END => {
                    let s = f.fs().fstat(f.open()).map_err(errno)?;
                    i64::try_from(s.size).map_err(|_| libc::EOVERFLOW)?
                }
                _ => return Err(EINVAL),
            };
            let (mut start, mut len) = (
                base.checked_add(lock.start).ok_or(libc::EOVERFLOW)?,
                lock.len,
            );
            if len < 0 {
                start = start.checked_add(len).ok_or(EINVAL)?;
                len = -len;
            }
            let start = u64::try_from(start).map_err(|_| EINVAL)?;
            let end = if len == 0 {
                None
            } else {
                Some(start.checked_add(len as u64).ok_or(libc::EOVERFLOW)?)
            };
            let owner = if ofd { (1 << 63) | d.id } else { self.pid };
            let req = RecordLock {
                kind,
                start,
                end,
                owner,
            };
            match cmd {
                LockCmd::Get => {
                    let held = f.fs().getlk(f.open(), &req).map_err(errno)?;
                    Ok(Some(match held {
                        None => FlockArgs {
                            kind: libc::F_UNLCK,
                            ..lock
                        },
                        Some(h) => FlockArgs {
                            kind: if h.kind == LockKind::Write {
                                libc::F_WRLCK
                            } else {
                                libc::F_RDLCK
                            },
                            whence: libc::SEEK_SET,
                            start: i64::try_from(h.start).unwrap_or(i64::MAX),
                            len: h
                                .end
                                .map_or(0, |e| i64::try_from(e - h.start).unwrap_or(i64::MAX)),
                            pid: if h.owner >> 63 == 1 {
                                -1
                            } else {
                                i32::try_from(h.owner).unwrap_or(-1)
                            },
                        },
                    }))
                }
                LockCmd::Set | LockCmd::SetWait => {
                    f.fs()
                        .setlk(f.open(), &req, cmd == LockCmd::SetWait)
                        .map_err(errno)?;
                    Ok(None)
                }
            }
        }))
    }

    /// flock(2): LOCK_SH, LOCK_EX or LOCK_UN, with LOCK_NB or not. The lock
    /// belongs to the open file description (its dups share it) and goes with
    /// its last descriptor.
    pub fn flock(&self, fd: RawFd, op: i32) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            let kind = match op & !libc::LOCK_NB {
                libc::LOCK_SH => LockKind::Read,
                libc::LOCK_EX => LockKind::Write,
                libc::LOCK_UN => LockKind::Unlock,
                _ => return Err(EINVAL),
            };
            let fd = f.inner();
            fd.fs
                .flock(&fd.file, fd.flock_owner(), kind, op & libc::LOCK_NB == 0)
                .map_err(errno)
        }))
    }
}
