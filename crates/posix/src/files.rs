//! Calls on open files of a sealed mount: open, read and write (plain,
//! positioned, vectored), lseek, the syncs, truncate, fallocate, fstat.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use libc::{EINVAL, EROFS};
use rktio_fs::{Fallocate, OpenOptions, Whence};

use crate::descriptors::{Desc, FileDesc, FileRef, Kind};
use crate::paths::{At, Route};
use crate::stats::bump;
use crate::{FullStat, Runtime, SysResult, errno, mount_table};

pub(crate) fn seek_data_hole(f: &FileRef, off: i64, whence: i32) -> SysResult<i64> {
    // No sparse map is kept: all of the file is data, the one hole is at the end.
    let size = f.fs().fstat(f.open()).map_err(errno)?.size;
    let off_u = u64::try_from(off).map_err(|_| libc::ENXIO)?;
    if off_u >= size {
        return Err(libc::ENXIO);
    }
    let p = if whence == libc::SEEK_DATA {
        off_u
    } else {
        size
    };
    f.fs()
        .seek(
            f.open(),
            i64::try_from(p).map_err(|_| libc::EOVERFLOW)?,
            Whence::Set,
        )
        .map_err(errno)?;
    i64::try_from(p).map_err(|_| libc::EOVERFLOW)
}

impl Runtime {
    /// open(2) and openat(2) with AT_FDCWD.
    pub fn open(&self, path: &[u8], flags: i32, mode: u32) -> Option<SysResult<RawFd>> {
        match self.route(path) {
            Route::Host(abs) => {
                let acc = flags & libc::O_ACCMODE;
                // O_TMPFILE contains O_DIRECTORY's bit: test it whole.
                let writes = acc != libc::O_RDONLY
                    || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
                    || flags & libc::O_TMPFILE == libc::O_TMPFILE;
                if let Some(table) = mount_table::table_of(&abs) {
                    // The mount table lists the sealed mounts too; it is
                    // read-only, as the kernel's is.
                    return Some(if writes {
                        Err(libc::EACCES)
                    } else {
                        self.open_mount_table(table, flags)
                    });
                }
                self.host_check(&abs, writes, "open of").map(Err)
            }
            Route::Mount(m, rel) => Some(self.open_on(m, &rel, flags, mode)),
        }
    }

    /// openat(2).
    pub fn openat(
        &self,
        dirfd: RawFd,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Option<SysResult<RawFd>> {
        match self.resolve_at(dirfd, path) {
            At::Path(p) => self.open(&p, flags, mode),
            At::Mount(m, rel) => Some(self.open_on(m, &rel, flags, mode)),
            At::Host => None,
            At::Err(e) => Some(Err(e)),
        }
    }

    pub(crate) fn open_on(&self, m: usize, rel: &[u8], flags: i32, mode: u32) -> SysResult<RawFd> {
        self.alive()?;
        let mount = &self.mounts[m];
        let acc = flags & libc::O_ACCMODE;
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            // O_TMPFILE needs an unnamed inode; not offered.
            return Err(libc::EOPNOTSUPP);
        }
        let opts = OpenOptions {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            create: flags & libc::O_CREAT != 0,
            exclusive: flags & libc::O_EXCL != 0,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            directory: flags & libc::O_DIRECTORY != 0,
            nofollow: flags & libc::O_NOFOLLOW != 0,
            direct: flags & libc::O_DIRECT != 0,
            mode: mode & 0o7777,
        };
        if mount.read_only && (opts.write || opts.create || opts.truncate) {
            return Err(EROFS);
        }
        let fs = mount.fs()?;
        let file = fs.open(rel, &opts).map_err(errno)?;
        let slot = match rktio_sys::reserve_slot(flags & libc::O_CLOEXEC != 0) {
            Ok(s) => s,
            Err(e) => {
                let _ = fs.close(&file);
                return Err(rktio_sys::errno_of(&e.source));
            }
        };
        bump(&self.stats.opens, 1);
        let status =
            acc | (flags & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_SYNC));
        let d = self.new_desc(
            Kind::File(Arc::new(FileDesc {
                mount: m,
                fs: fs.clone(),
                file,
                path: rel.to_vec(),
                dev: mount.dev,
                dir: Mutex::new(None),
            })),
            status,
        );
        self.insert(slot, d);
        Ok(slot)
    }

    /// read(2).
    pub fn read(&self, fd: RawFd, buf: &mut [u8]) -> Option<SysResult<usize>> {
        let d = self.desc(fd)?;
        if matches!(d.kind, Kind::Sock(_)) {
            return self.recv(fd, &mut [buf], 0).map(|r| r.map(|(n, _)| n));
        }
        let r = self.file_of(d)?;
        Some(r.and_then(|(_, f)| {
            let n = f.fs().read(f.open(), buf).map_err(errno)?;
            self.count_read(n);
            Ok(n)
        }))
    }

    /// pread(2).
    pub fn pread(&self, fd: RawFd, buf: &mut [u8], off: i64) -> Option<SysResult<usize>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            let off = u64::try_from(off).map_err(|_| EINVAL)?;
            f.not_dir()?;
            let n = f.fs().pread(f.open(), buf, off).map_err(errno)?;
            self.count_read(n);
            Ok(n)
        }))
    }

    /// write(2).
    pub fn write(&self, fd: RawFd, buf: &[u8]) -> Option<SysResult<usize>> {
        let d = self.desc(fd)?;
        if matches!(d.kind, Kind::Sock(_)) {
            return self.send(fd, &[buf], 0, None);
        }
        let r = self.file_of(d)?;
        Some(r.and_then(|(d, f)| {
            let n = f.fs().write(f.open(), buf).map_err(errno)?;
            self.count_write(n);
            self.synced(&d, &f)?;
            Ok(n)
        }))
    }

    /// After a write on a descriptor opened with O_SYNC or O_DSYNC: what it
    /// wrote is durable when the call returns, as fsync or fdatasync makes it
    /// (a failed commit fails the write, as Linux reports it).
    fn synced(&self, d: &Desc, f: &FileRef) -> SysResult<()> {
        let status = d.status.load(Ordering::Relaxed);
        if status & libc::O_DSYNC == 0 {
            return Ok(());
        }
        bump(&self.stats.syncs, 1);
        if status & libc::O_SYNC == libc::O_SYNC {
            f.fs().fsync(f.open()).map_err(errno)
        } else {
            f.fs().fdatasync(f.open()).map_err(errno)
        }
    }

    /// pwrite(2).
    pub fn pwrite(&self, fd: RawFd, buf: &[u8], off: i64) -> Option<SysResult<usize>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(d, f)| {
            let off = u64::try_from(off).map_err(|_| EINVAL)?;
            f.not_dir()?;
            let n = f.fs().pwrite(f.open(), buf, off).map_err(errno)?;
            self.count_write(n);
            self.synced(&d, &f)?;
            Ok(n)
        }))
    }

    /// readv(2) / preadv(2) (`off` None: at the file offset). One buffer after
    /// another; stops at a short read.
    pub fn readv(
        &self,
        fd: RawFd,
        bufs: &mut [&mut [u8]],
        off: Option<i64>,
    ) -> Option<SysResult<usize>> {
        let d = self.desc(fd)?;
        if off.is_none() && matches!(d.kind, Kind::Sock(_)) {
            return self.recv(fd, bufs, 0).map(|r| r.map(|(n, _)| n));
        }
        let r = self.file_of(d)?;
        Some(r.and_then(|(_, f)| {
            let mut pos = match off {
                Some(o) => Some(u64::try_from(o).map_err(|_| EINVAL)?),
                None => None,
            };
            let mut total = 0usize;
            for b in bufs.iter_mut() {
                if b.is_empty() {
                    continue;
                }
                let n = match pos {
                    Some(p) => f.fs().pread(f.open(), b, p),
                    None => f.fs().read(f.open(), b),
                };
                let n = match n {
                    Ok(n) => n,
                    Err(e) if total == 0 => return Err(errno(e)),
                    Err(_) => break,
                };
                total += n;
                if let Some(p) = &mut pos {
                    *p += n as u64;
                }
                if n < b.len() {
                    break;
                }
            }
            self.count_read(total);
            Ok(total)
        }))
    }

    /// writev(2) / pwritev(2): gathered into one write, so it is atomic with
    /// respect to other writers as on Linux.
    pub fn writev(&self, fd: RawFd, bufs: &[&[u8]], off: Option<i64>) -> Option<SysResult<usize>> {
        let d = self.desc(fd)?;
        if off.is_none() && matches!(d.kind, Kind::Sock(_)) {
            return self.send(fd, bufs, 0, None);
        }
        let r = self.file_of(d)?;
        Some(r.and_then(|(d, f)| {
            let all: Vec<u8> = bufs.concat();
            let n = match off {
                Some(o) => {
                    let o = u64::try_from(o).map_err(|_| EINVAL)?;
                    f.fs().pwrite(f.open(), &all, o)
                }
                None => f.fs().write(f.open(), &all),
            }
            .map_err(errno)?;
            self.count_write(n);
            self.synced(&d, &f)?;
            Ok(n)
        }))
    }

    pub(crate) fn count_read(&self, n: usize) {
        bump(&self.stats.reads, 1);
        bump(&self.stats.read_bytes, n as u64);
    }

    pub(crate) fn count_write(&self, n: usize) {
        bump(&self.stats.writes, 1);
        bump(&self.stats.write_bytes, n as u64);
    }

    /// lseek(2).
    pub fn lseek(&self, fd: RawFd, off: i64, whence: i32) -> Option<SysResult<i64>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            let w = match whence {
                libc::SEEK_SET => Whence::Set,
                libc::SEEK_CUR => Whence::Current,
                libc::SEEK_END => Whence::End,
                libc::SEEK_DATA | libc::SEEK_HOLE => return seek_data_hole(&f, off, whence),
                _ => return Err(EINVAL),
            };
            let p = f.fs().seek(f.open(), off, w).map_err(errno)?;
            if p == 0 && f.open().is_dir() {
                // A directory read from the start again.
                *f.inner()
                    .dir
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            i64::try_from(p).map_err(|_| libc::EOVERFLOW)
        }))
    }

    /// fsync(2).
    pub fn fsync(&self, fd: RawFd, data_only: bool) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.syncs, 1);
            if data_only {
                f.fs().fdatasync(f.open()).map_err(errno)
            } else {
                f.fs().fsync(f.open()).map_err(errno)
            }
        }))
    }

    /// posix_fadvise(2) and readahead(2): hints, which the page cache of the
    /// stack does not take (its own policy stays); checked and answered 0.
    pub fn fadvise(&self, fd: RawFd, advice: i32) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|_| {
            if (0..=5).contains(&advice) {
                Ok(())
            } else {
                Err(EINVAL)
            }
        }))
    }

    /// sync_file_range(2): a hint; here it commits, as fdatasync.
    pub fn sync_file_range(&self, fd: RawFd) -> Option<SysResult<()>> {
        self.fsync(fd, true)
    }

    /// syncfs(2) on one of ours.
    pub fn syncfs(&self, fd: RawFd) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.syncs, 1);
            f.fs().sync().map_err(errno)
        }))
    }

    /// Commits every mount (sync(2), and at exit).
    pub fn sync_all(&self) -> SysResult<()> {
        self.alive()?;
        let mut first = Ok(());
        for m in &self.mounts {
            if m.read_only {
                continue;
            }
            let Some(Some(fs)) = m.fs.get() else {
                continue;
            };
            if let Err(e) = fs.sync() {
                eprintln!(
                    "rktio: committing {}: {}",
                    String::from_utf8_lossy(&m.at),
                    e.detail
                );
                if first.is_ok() {
                    first = Err(e.errno);
                }
            }
        }
        first
    }

    /// ftruncate(2).
    pub fn ftruncate(&self, fd: RawFd, len: i64) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            let len = u64::try_from(len).map_err(|_| EINVAL)?;
            f.fs().ftruncate(f.open(), len).map_err(errno)
        }))
    }

    /// fallocate(2) / posix_fallocate(3) (mode 0).
    pub fn fallocate(&self, fd: RawFd, mode: i32, off: i64, len: i64) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            let (off, len) = (
                u64::try_from(off).map_err(|_| EINVAL)?,
                u64::try_from(len).map_err(|_| EINVAL)?,
            );
            if len == 0 {
                return Err(EINVAL);
            }
            let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
            let m = if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
                if !keep {
                    return Err(libc::EOPNOTSUPP);
                }
                Fallocate::PunchHole
            } else if mode & libc::FALLOC_FL_ZERO_RANGE != 0 {
                Fallocate::ZeroRange { keep_size: keep }
            } else if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
                return Err(libc::EOPNOTSUPP);
            } else if keep {
                Fallocate::AllocateKeepSize
            } else {
                Fallocate::Allocate
            };
            f.fs().fallocate(f.open(), m, off, len).map_err(errno)
        }))
    }

    /// fstat(2).
    pub fn fstat(&self, fd: RawFd) -> Option<SysResult<FullStat>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            let stat = f.fs().fstat(f.open()).map_err(errno)?;
            Ok(FullStat { stat, dev: f.dev() })
        }))
    }
}
