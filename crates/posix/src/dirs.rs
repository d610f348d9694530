//! Directory streams on sealed mounts: the entries getdents(2) and readdir(3)
//! hand out, and the position in them.

use std::os::fd::RawFd;

use libc::{EIO, ENOTDIR};
use rktio_fs::{DirEntry, FileType};

use crate::descriptors::Kind;
use crate::stats::bump;
use crate::{Runtime, SysResult, errno};

/// The type byte of a directory entry (d_type).
pub fn d_type(t: FileType) -> u8 {
    match t {
        FileType::Regular => libc::DT_REG,
        FileType::Directory => libc::DT_DIR,
        FileType::Symlink => libc::DT_LNK,
        FileType::CharDevice => libc::DT_CHR,
        FileType::BlockDevice => libc::DT_BLK,
        FileType::Fifo => libc::DT_FIFO,
        FileType::Socket => libc::DT_SOCK,
        FileType::Unknown => libc::DT_UNKNOWN,
    }
}

impl Runtime {
    /// getdents64(2): up to `max` entries from a directory descriptor, from where
    /// the last call stopped. `None` inside: the end.
    pub fn next_dirents(&self, fd: RawFd, max: usize) -> Option<SysResult<Vec<DirEntry>>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(d, f)| {
            bump(&self.stats.meta, 1);
            let _ = d;
            let fdesc = f.inner();
            if !f.open().is_dir() {
                return Err(ENOTDIR);
            }
            let mut g = fdesc
                .dir
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if g.is_none() {
                *g = Some((f.fs().readdir(f.open()).map_err(errno)?, 0));
            }
            let Some((all, next)) = g.as_mut() else {
                return Err(EIO);
            };
            let end = (*next + max).min(all.len());
            let out = all[*next..end].to_vec();
            *next = end;
            Ok(out)
        }))
    }

    /// Steps a directory descriptor back by one entry (getdents64 had no room).
    pub fn unread_dirent(&self, fd: RawFd) -> Option<SysResult<()>> {
        let d = self.desc(fd)?;
        if let Kind::File(f) = &d.kind
            && let Some((_, next)) = f
                .dir
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
        {
            *next = next.saturating_sub(1);
        }
        Some(Ok(()))
    }

    /// Rewinds a directory descriptor (lseek 0 on it, rewinddir).
    pub fn rewind_dir(&self, fd: RawFd) -> Option<SysResult<()>> {
        let d = self.desc(fd)?;
        if let Kind::File(f) = &d.kind {
            *f.dir
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        Some(Ok(()))
    }
}
