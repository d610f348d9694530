//! Files on the host: the disk image lives in one.

use crate::{BLOCK_SIZE, HostBuffers, HostCall, HostError, Result, count};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// How to open a host file.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// Create it if missing (with mode 0600).
    pub create: bool,
    /// Fail if it exists (with `create`).
    pub create_new: bool,
    /// Open for writing too.
    pub write: bool,
    /// Ask for O_DIRECT (bypass the host page cache). If the host file system
    /// refuses it (tmpfs does), the file is opened buffered and [`HostFile::is_direct`]
    /// says so.
    pub direct: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            create: false,
            create_new: false,
            write: true,
            direct: true,
        }
    }
}

/// An open host file.
#[derive(Debug)]
pub struct HostFile {
    fd: crate::InternalFd,
    path: PathBuf,
    direct: bool,
}

impl HostFile {
    /// Opens (or creates) a file.
    pub fn open(path: &Path, opts: FileOptions) -> Result<Self> {
        let mut flags = OFlags::CLOEXEC;
        flags |= if opts.write {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        if opts.create {
            flags |= OFlags::CREATE;
        }
        if opts.create_new {
            flags |= OFlags::CREATE | OFlags::EXCL;
        }
        let what = || format!("open {}", path.display());
        if opts.direct {
            count(HostCall::Open);
            match rustix::fs::open(path, flags | OFlags::DIRECT, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(Self {
                        fd: crate::InternalFd::new(fd),
                        path: path.to_owned(),
                        direct: true,
                    });
                }
                Err(rustix::io::Errno::INVAL) => {
                    tracing::warn!(path = %path.display(), "O_DIRECT refused by the host file system; using buffered I/O");
                }
                Err(e) => return Err(HostError::new(what(), e.into())),
            }
        }
        count(HostCall::Open);
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| HostError::new(what(), e.into()))?;
        Ok(Self {
            fd: crate::InternalFd::new(fd),
            path: path.to_owned(),
            direct: false,
        })
    }

    /// Takes an advisory lock on the whole file (flock), without waiting: exclusive
    /// for a writer, shared for a reader. Another process (or another open) that
    /// holds a conflicting lock makes this fail with `WouldBlock`. The lock goes
    /// with the descriptor: it is released when the file is closed.
    pub fn try_lock(&self, exclusive: bool) -> Result<()> {
        use rustix::fs::FlockOperation;
        // Counted with the open it belongs to.
        count(HostCall::Open);
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        rustix::fs::flock(&self.fd, op)
            .map_err(|e| HostError::new(format!("lock {}", self.path.display()), e.into()))
    }

    /// The path it was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Was O_DIRECT granted?
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Size in bytes, as the host reports it.
    pub fn len(&self) -> Result<u64> {
        count(HostCall::Stat);
        let st = rustix::fs::fstat(&self.fd).map_err(|e| HostError::new("fstat", e.into()))?;
        u64::try_from(st.st_size)
            .map_err(|_| HostError::new("fstat", std::io::Error::other("negative file size")))
    }

    /// Is it empty?
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Sets the size (sparse growth).
    pub fn set_len(&self, bytes: u64) -> Result<()> {
        count(HostCall::Resize);
        rustix::fs::ftruncate(&self.fd, bytes).map_err(|e| HostError::new("ftruncate", e.into()))
    }

    /// Reserves the space for `bytes` so later writes cannot fail for lack of room.
    pub fn allocate(&self, bytes: u64) -> Result<()> {
        count(HostCall::Resize);
        rustix::fs::fallocate(&self.fd, rustix::fs::FallocateFlags::empty(), 0, bytes)
            .map_err(|e| HostError::new("fallocate", e.into()))
    }

    /// Reads block `block` into a host buffer slot. A short read is an error.
    pub fn read_block(&self, bufs: &mut HostBuffers, slot: usize, block: u64) -> Result<()> {
        let ptr = slot_ptr(bufs, slot)?;
        let off = block_offset(block)?;
        count(HostCall::Pread);
        // SAFETY: `ptr` is a 4096-byte slot of a live mapping we hold `&mut` to, so no
        // Rust reference aliases it; the kernel writes at most 4096 bytes there.
        let n = unsafe { libc::pread64(self.raw_fd(), ptr.cast(), BLOCK_SIZE, off) };
        check_full(n, "pread", block)
    }

    /// Writes a host buffer slot to block `block`. A short write is an error.
    pub fn write_block(&self, bufs: &HostBuffers, slot: usize, block: u64) -> Result<()> {
        let ptr = slot_ptr(bufs, slot)?;
        let off = block_offset(block)?;
        count(HostCall::Pwrite);
        // SAFETY: `ptr` is a 4096-byte slot of a live mapping; the kernel only reads it.
        let n = unsafe { libc::pwrite64(self.raw_fd(), ptr.cast_const().cast(), BLOCK_SIZE, off) };
        check_full(n, "pwrite", block)
    }

    /// Makes written data durable (fdatasync).
    pub fn sync_data(&self) -> Result<()> {
        count(HostCall::Fsync);
        rustix::fs::fdatasync(&self.fd).map_err(|e| HostError::new("fdatasync", e.into()))
    }

    /// Reads a whole small file (a key file); refuses files over `max` bytes.
    pub fn read_small(path: &Path, max: usize) -> Result<Vec<u8>> {
        let what = || format!("read {}", path.display());
        count(HostCall::Open);
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| HostError::new(what(), e.into()))?;
        let mut out = vec![0u8; max + 1];
        let mut len = 0;
        loop {
            count(HostCall::Pread);
            let n = rustix::io::read(fd.as_fd(), &mut out[len..])
                .map_err(|e| HostError::new(what(), e.into()))?;
            if n == 0 {
                break;
            }
            len += n;
            if len > max {
                return Err(HostError::new(
                    what(),
                    std::io::Error::other(format!("larger than {max} bytes")),
                ));
            }
        }
        out.truncate(len);
        Ok(out)
    }
}

fn slot_ptr(bufs: &HostBuffers, slot: usize) -> Result<*mut u8> {
    bufs.slot_ptr(slot).ok_or_else(|| {
        HostError::new(
            "host file I/O",
            std::io::Error::other(format!("no buffer slot {slot}")),
        )
    })
}

fn block_offset(block: u64) -> Result<i64> {
    block
        .checked_mul(BLOCK_SIZE as u64)
        .and_then(|o| i64::try_from(o).ok())
        .ok_or_else(|| {
            HostError::new(
                "host file I/O",
                std::io::Error::other(format!("block {block} out of range")),
            )
        })
}

fn check_full(n: isize, what: &str, block: u64) -> Result<()> {
    if n < 0 {
        return Err(HostError::new(
            format!("{what} block {block}"),
            std::io::Error::last_os_error(),
        ));
    }
    if n as usize != BLOCK_SIZE {
        return Err(HostError::new(
            format!("{what} block {block}"),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("host moved {n} of {BLOCK_SIZE} bytes"),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_sync() {
        let dir = std::env::temp_dir().join(format!("rktio-sys-file-{}", std::process::id()));
        let f = HostFile::open(
            &dir,
            FileOptions {
                create: true,
                ..Default::default()
            },
        )
        .unwrap();
        f.set_len(4 * BLOCK_SIZE as u64).unwrap();
        let mut b = HostBuffers::new(2).unwrap();
        b.copy_in(0, &[0xabu8; BLOCK_SIZE]).unwrap();
        f.write_block(&b, 0, 3).unwrap();
        f.sync_data().unwrap();
        f.read_block(&mut b, 1, 3).unwrap();
        let mut out = [0u8; BLOCK_SIZE];
        b.copy_out(1, &mut out).unwrap();
        assert_eq!(out, [0xabu8; BLOCK_SIZE]);
        // Past the end: a short read is an error, not data.
        assert!(f.read_block(&mut b, 1, 4).is_err());
        assert_eq!(f.len().unwrap(), 4 * BLOCK_SIZE as u64);
        std::fs::remove_file(&dir).unwrap();
    }
}
