//! Memory mappings of sealed files: the shared mappings the stack keeps in
//! step with the file (writes copied into them, written-back pages taken from
//! them) and the checks before a mapping is made.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libc::{EBADF, EINVAL, EIO};

use crate::descriptors::{FileDesc, Kind};
use crate::{Runtime, SysResult, errno};

/// A shared mapping of one of our files (see `Runtime::map_shared`).
pub(crate) struct SharedMap {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    pub(crate) off: u64,
    pub(crate) file: Arc<FileDesc>,
    /// The protection it was made with (a writable one is written back).
    pub(crate) prot: i32,
}

impl SharedMap {
    fn writable(&self) -> bool {
        self.prot & libc::PROT_WRITE != 0
    }
}

/// Where `len` bytes at file offset `off` of `f`'s file land in the shared
/// mappings of that file (but the one at `except`): (address, offset into the
/// bytes, length, protection).
pub(crate) fn copies(
    maps: &[SharedMap],
    f: &FileDesc,
    off: u64,
    len: usize,
    except: Option<usize>,
) -> Vec<(usize, usize, usize, i32)> {
    let end = off.saturating_add(len as u64);
    maps.iter()
        .filter(|m| m.file.mount == f.mount && m.file.file.ino() == f.file.ino())
        .filter(|m| Some(m.addr) != except)
        .filter_map(|m| {
            let m_end = m.off.saturating_add(m.len as u64);
            let (s, e) = (off.max(m.off), end.min(m_end));
            (s < e).then(|| {
                (
                    m.addr + (s - m.off) as usize,
                    (s - off) as usize,
                    (e - s) as usize,
                    m.prot,
                )
            })
        })
        .collect()
}

impl Runtime {
    /// The shared mappings of sealed files.
    pub(crate) fn maps(&self) -> std::sync::MutexGuard<'_, Vec<SharedMap>> {
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// mmap(2) of one of our files: the caller maps anonymous memory (private or
    /// shared, as asked) and fills it with pread. A writable MAP_SHARED mapping is
    /// registered here and written back to the file on msync, munmap and exit;
    /// in between, read(2) of the file does not see stores to the mapping (one
    /// process, one copy: enough for a buffer file or SQLite's -shm).
    pub fn mmap_check(&self, fd: RawFd) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.map(|_| ()))
    }

    /// Records a shared mapping of `fd` at `addr` (`len` bytes from `off`, made
    /// with `prot`): writes to the file reach it (`mapped_copies`), and a
    /// writable one is written back (`maps_in`, `write_back`).
    pub fn map_shared(
        &self,
        fd: RawFd,
        addr: usize,
        len: usize,
        off: i64,
        prot: i32,
    ) -> SysResult<()> {
        let d = self.desc(fd).ok_or(EBADF)?;
        let Kind::File(f) = &d.kind else {
            return Err(libc::ENODEV);
        };
        let off = u64::try_from(off).map_err(|_| EINVAL)?;
        self.maps().push(SharedMap {
            addr,
            len,
            off,
            file: f.clone(),
            prot,
        });
        self.map_count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Where `len` bytes just written at `off` to `fd` land in the shared
    /// mappings of the same file: (address, offset into the bytes written,
    /// length, the mapping's protection) of each overlap. A read-only mapping
    /// sees the file's writes, as the kernel's shared page cache makes it see.
    pub fn mapped_copies(
        &self,
        fd: RawFd,
        off: u64,
        len: usize,
    ) -> Vec<(usize, usize, usize, i32)> {
        if self.map_count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let Some(d) = self.desc(fd) else {
            return Vec::new();
        };
        let Kind::File(f) = &d.kind else {
            return Vec::new();
        };
        let maps = self.maps();
        copies(&maps, f, off, len, None)
    }

    /// As `mapped_copies`, for `len` bytes of the mapping at `addr` just
    /// written back to its file (msync, munmap): where they land in the other
    /// shared mappings of that file.
    pub fn mapped_copies_from(&self, addr: usize, len: usize) -> Vec<(usize, usize, usize, i32)> {
        let maps = self.maps();
        let Some(src) = maps
            .iter()
            .find(|m| m.addr <= addr && addr < m.addr + m.len)
        else {
            return Vec::new();
        };
        let off = src.off + (addr - src.addr) as u64;
        copies(&maps, &src.file, off, len, Some(src.addr))
    }

    /// Whether any mapping of ours (shared, of a sealed file) overlaps
    /// `[addr, addr+len)`.
    pub fn mapped_in(&self, addr: usize, len: usize) -> bool {
        let end = addr.saturating_add(len);
        self.maps()
            .iter()
            .any(|m| m.addr < end && addr < m.addr + m.len)
    }

    /// Writable shared mappings of ours overlapping `[addr, addr+len)`: (start,
    /// len, file offset) of each overlap, for the caller to hand back to
    /// `write_back`.
    pub fn maps_in(&self, addr: usize, len: usize) -> Vec<(usize, usize, u64)> {
        let end = addr.saturating_add(len);
        self.maps()
            .iter()
            .filter(|m| m.writable() && m.addr < end && addr < m.addr + m.len)
            .map(|m| {
                let s = m.addr.max(addr);
                let e = (m.addr + m.len).min(end);
                (s, e - s, m.off + (s - m.addr) as u64)
            })
            .collect()
    }

    /// Writes `bytes` (the mapping's memory at `addr`) back to its file.
    pub fn write_back(&self, addr: usize, bytes: &[u8]) -> SysResult<()> {
        let maps = self.maps();
        let Some(m) = maps
            .iter()
            .find(|m| m.writable() && m.addr <= addr && addr < m.addr + m.len)
        else {
            return Ok(());
        };
        let off = m.off + (addr - m.addr) as u64;
        let file = m.file.clone();
        drop(maps);
        // Only up to the file's end: a mapping may run past it.
        let size = file.fs.fstat(&file.file).map_err(errno)?.size;
        if off >= size {
            return Ok(());
        }
        let n = bytes.len().min((size - off) as usize);
        let mut done = 0;
        while done < n {
            let k = file
                .fs
                .pwrite(&file.file, &bytes[done..n], off + done as u64)
                .map_err(errno)?;
            if k == 0 {
                return Err(EIO);
            }
            done += k;
        }
        Ok(())
    }

    /// Forgets the mappings inside `[addr, addr+len)` (after munmap wrote them back).
    pub fn unmap(&self, addr: usize, len: usize) {
        let end = addr.saturating_add(len);
        let mut maps = self.maps();
        let mut keep = Vec::new();
        for m in maps.drain(..) {
            let (ms, me) = (m.addr, m.addr + m.len);
            if me <= addr || end <= ms {
                keep.push(m);
                continue;
            }
            // Parts left on either side stay mapped.
            if ms < addr {
                keep.push(SharedMap {
                    addr: ms,
                    len: addr - ms,
                    off: m.off,
                    file: m.file.clone(),
                    prot: m.prot,
                });
            }
            if end < me {
                keep.push(SharedMap {
                    addr: end,
                    len: me - end,
                    off: m.off + (end - ms) as u64,
                    file: m.file.clone(),
                    prot: m.prot,
                });
            }
        }
        self.map_count.store(keep.len(), Ordering::Relaxed);
        *maps = keep;
    }

    /// Every writable shared mapping (start, len), for the write-back at exit.
    pub fn all_maps(&self) -> Vec<(usize, usize)> {
        self.maps()
            .iter()
            .filter(|m| m.writable())
            .map(|m| (m.addr, m.len))
            .collect()
    }
}
