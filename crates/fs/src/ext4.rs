//! [`Ext4Fs`]: the VFS over the rsext4 engine, the page cache and the sealed disk.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rktio_blk::BlockQueue;
use rktio_seal::SealedDisk;
use rsext4::{
    Clock, DeviceNumber, DirectoryCursor, DirectoryEntryType, EntropySource, Ext4, Ext4Error,
    Ext4ErrorKind, Ext4Result, Ext4Timestamp, FileExtentTarget, FileName, FilePermissions,
    InodeInfo, InodeMetadataUpdate, InodeNumber, MountServices, MountedServices, MutationContext,
    NoopObserver, PreallocationOptions, RangeOperation, RenameOptions, SpecialInodeKind,
    UnlinkOutcome, ZeroRangeOptions,
};

use crate::cache::{CacheDev, PageCache, lock};
use crate::cred::{Caps, Cred, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::{
    CacheStats, DirEntry, Fallocate, FileSystem, FileType, FsError, FsResult, LockKind, LockTable,
    OpenFile, OpenOptions, RecordLock, SetTime, Stat, StatFs, Timespec, Whence, errno,
};

/// Symbolic links followed in one path walk before ELOOP (Linux: 40).
const MAX_SYMLINKS: usize = 40;
/// Most hard links to one inode (Linux's EXT4_LINK_MAX).
const EXT4_LINK_MAX: u32 = 65000;
/// Longest name in a directory.
const NAME_MAX: usize = 255;
/// Longest path.
const PATH_MAX: usize = 4096;
/// ext4's largest file with 4 KiB blocks (2^32 blocks, minus one).
const MAX_FILE_SIZE: u64 = (1 << 44) - 4096;

/// How to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// Page cache bound, in 4 KiB pages (default 16384 = 64 MiB).
    pub cache_pages: usize,
    /// Refuse every change.
    pub read_only: bool,
    /// Owner of created files.
    pub uid: u32,
    /// Group of created files.
    pub gid: u32,
    /// Umask applied to created files.
    pub umask: u16,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            cache_pages: 16384,
            read_only: false,
            uid: 0,
            gid: 0,
            umask: 0o022,
        }
    }
}

#[derive(Debug)]
struct SysClock;

impl Clock for SysClock {
    fn now(&self) -> Ext4Result<Ext4Timestamp> {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Ext4Error::io())?;
        Ok(Ext4Timestamp {
            sec: i64::try_from(d.as_secs()).map_err(|_| Ext4Error::io())?,
            nsec: d.subsec_nanos(),
        })
    }
}

#[derive(Debug)]
struct Entropy;

impl EntropySource for Entropy {
    fn fill_bytes(&mut self, output: &mut [u8]) -> Ext4Result<()> {
        aws_lc_rs::rand::fill(output).map_err(|_| Ext4Error::io())
    }
}

type Engine4<Q> = Ext4<CacheDev<Q>, MountedServices<Entropy, NoopObserver>>;

struct Engine<Q: BlockQueue> {
    fs: Engine4<Q>,
    cache: Arc<Mutex<PageCache<Q>>>,
    /// Open file descriptions per inode.
    open: HashMap<u64, usize>,
    /// Inodes whose last name is gone while still open: reaped at the last close.
    orphans: HashSet<u64>,
    read_only: bool,
    /// Who a thread that set no credentials is: the mount's owner.
    owner: Arc<Cred>,
    /// The caller of the call under way (set by `Ext4Fs::with`).
    cred: Arc<Cred>,
    /// Where the program sees this file system (absolute, normalised): an
    /// absolute symbolic link target is followed when it points under it.
    at: Vec<u8>,
    /// Set when the engine panicked: the file system refuses everything after.
    broken: Option<String>,
}

/// ext4 on a sealed disk, safe to share between threads (one lock serializes the
/// engine; see docs/ARCHITECTURE.md).
pub struct Ext4Fs<Q: BlockQueue> {
    engine: Mutex<Engine<Q>>,
    cache: Arc<Mutex<PageCache<Q>>>,
    locks: LockTable,
    /// flock(2) locks (whole files, apart from the record locks).
    flocks: LockTable,
}

impl<Q: BlockQueue> std::fmt::Debug for Ext4Fs<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4Fs")
            .field("cache", &*lock(&self.cache))
            .finish()
    }
}

fn kind_errno(kind: Ext4ErrorKind) -> i32 {
    use Ext4ErrorKind as K;
    match kind {
        K::Io => errno::EIO,
        K::Corrupted | K::BadSuperblock | K::InvalidMagic => errno::EUCLEAN,
        K::ChecksumMismatch => errno::EBADMSG,
        K::UnsupportedFeature | K::UnsupportedCapability | K::Unsupported => errno::EOPNOTSUPP,
        K::ReadOnly | K::JournalAborted => errno::EROFS,
        K::NoSpace => errno::ENOSPC,
        K::NoMemory => errno::ENOMEM,
        K::QuotaExceeded => errno::EDQUOT,
        K::TooManyLinks => errno::EMLINK,
        K::PermissionDenied => errno::EPERM,
        K::NotFound => errno::ENOENT,
        K::AlreadyExists => errno::EEXIST,
        K::NotDirectory => errno::ENOTDIR,
        K::IsDirectory => errno::EISDIR,
        K::NotEmpty => errno::ENOTEMPTY,
        K::Busy => errno::EBUSY,
        K::BadFileDescriptor => errno::EBADF,
        K::InvalidInput => errno::EINVAL,
        K::Overflow => errno::EOVERFLOW,
        K::FileTooLarge => errno::EFBIG,
        K::Timeout => errno::ETIMEDOUT,
    }
}

fn file_type(t: DirectoryEntryType) -> FileType {
    match t {
        DirectoryEntryType::RegularFile => FileType::Regular,
        DirectoryEntryType::Directory => FileType::Directory,
        DirectoryEntryType::Symlink => FileType::Symlink,
        DirectoryEntryType::CharacterDevice => FileType::CharDevice,
        DirectoryEntryType::BlockDevice => FileType::BlockDevice,
        DirectoryEntryType::Fifo => FileType::Fifo,
        DirectoryEntryType::Socket => FileType::Socket,
        DirectoryEntryType::Unknown => FileType::Unknown,
    }
}

fn to_stat(i: &InodeInfo) -> Stat {
    let t = |s: Ext4Timestamp| Timespec {
        sec: s.sec,
        nsec: s.nsec,
    };
    Stat {
        ino: i.number.as_u64(),
        mode: u32::from(i.mode),
        nlink: u32::from(i.links),
        uid: i.uid,
        gid: i.gid,
        size: i.size,
        blocks: i.blocks,
        blksize: 4096,
        rdev: i
            .device_number
            .map_or(0, |d| libc::makedev(d.major(), d.minor())),
        atime: t(i.atime_ts),
        mtime: t(i.mtime_ts),
        ctime: t(i.ctime_ts),
    }
}

fn is_dir(i: &InodeInfo) -> bool {
    u32::from(i.mode) & 0o170000 == 0o040000
}

fn is_symlink(i: &InodeInfo) -> bool {
    u32::from(i.mode) & 0o170000 == 0o120000
}

fn ino_of(n: u64) -> FsResult<InodeNumber> {
    InodeNumber::from_u64(n).map_err(|_| FsError::new(errno::EBADF, "bad inode number"))
}

fn perms(mode: u32) -> FsResult<FilePermissions> {
    FilePermissions::new((mode & 0o7777) as u16)
        .map_err(|_| FsError::new(errno::EINVAL, "bad permission bits"))
}

/// Splits a path into its last component and the rest.
/// Returns (directory part, name, trailing slash).
fn split_last(path: &[u8]) -> (&[u8], &[u8], bool) {
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    let trailing = end < path.len();
    let trimmed = &path[..end];
    match trimmed.iter().rposition(|&c| c == b'/') {
        Some(p) => (&trimmed[..p + 1], &trimmed[p + 1..], trailing),
        None => (b"", trimmed, trailing),
    }
}

impl<Q: BlockQueue> Engine<Q> {
    fn err(&self, e: Ext4Error) -> FsError {
        if e.kind() == Ext4ErrorKind::Io
            && let Some((no, msg)) = lock(&self.cache).take_error()
        {
            return FsError::new(no, msg);
        }
        FsError::new(kind_errno(e.kind()), e.to_string())
    }

    /// May the caller do `mask` (MAY_*) on this inode? EACCES if not.
    fn may(&self, i: &InodeInfo, mask: u32) -> FsResult<()> {
        self.cred.check(u32::from(i.mode), i.uid, i.gid, mask)
    }

    /// The sticky-directory rule: in a directory with S_ISVTX, only the
    /// owner of an entry, of the directory, or CAP_FOWNER removes or renames it.
    fn sticky_ok(&self, dir: &InodeInfo, victim: &InodeInfo) -> FsResult<()> {
        if dir.mode & 0o1000 != 0 && !self.cred.owns(victim.uid) && self.cred.uid != dir.uid {
            return Err(FsError::new(
                errno::EPERM,
                "sticky directory: not the owner of the entry or the directory",
            ));
        }
        Ok(())
    }

    /// Ownership and umask of a new inode in `parent`: the caller's fsuid, the
    /// parent's group in a set-group-ID directory, else the caller's fsgid.
    fn new_ctx(&self, parent: &InodeInfo) -> MutationContext {
        let gid = if parent.mode & 0o2000 != 0 {
            parent.gid
        } else {
            self.cred.gid
        };
        MutationContext::new(self.cred.uid, gid, 0, (self.cred.umask & 0o777) as u16)
    }

    /// Permission bits of a new inode (Linux's inode_init_owner): a directory
    /// in a set-group-ID directory is set-group-ID too; a file made
    /// set-group-ID for a group its maker is not in, without CAP_FSETID, is not.
    fn new_mode(&self, parent: &InodeInfo, ctx: &MutationContext, mode: u32, dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        if dir {
            if parent.mode & 0o2000 != 0 {
                mode |= 0o2000;
            }
        } else if mode & 0o2000 != 0
            && !self.cred.in_group(ctx.gid)
            && !self.cred.caps.has(Caps::FSETID)
        {
            mode &= !0o2000;
        }
        mode
    }

    /// chmod(2) on a resolved inode: the owner or CAP_FOWNER (EPERM); the
    /// set-group-ID bit is dropped for a group the caller is not in, without
    /// CAP_FSETID.
    fn set_mode(&mut self, i: &InodeInfo, mode: u32) -> FsResult<()> {
        if !self.cred.owns(i.uid) {
            return Err(FsError::new(errno::EPERM, "not the owner"));
        }
        let mut mode = mode & 0o7777;
        if mode & 0o2000 != 0 && !self.cred.in_group(i.gid) && !self.cred.caps.has(Caps::FSETID) {
            mode &= !0o2000;
        }
        self.update(
            i.number,
            InodeMetadataUpdate {
                permissions: Some(perms(mode)?),
                ..Default::default()
            },
        )
    }

    /// chown(2) on a resolved inode, as Linux's chown_ok/chgrp_ok: a new
    /// owner needs CAP_CHOWN; a new group, the owner who is in it or
    /// CAP_CHOWN. A non-directory loses set-user-ID, and set-group-ID where it
    /// has group execute or the caller may not keep it.
    fn set_owner(&mut self, i: &InodeInfo, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let chown = self.cred.caps.has(Caps::CHOWN);
        if let Some(u) = uid
            && u != i.uid
            && !chown
        {
            return Err(FsError::new(
                errno::EPERM,
                "changing the owner needs CAP_CHOWN",
            ));
        }
        if let Some(g) = gid
            && !chown
            && (self.cred.uid != i.uid || (g != i.gid && !self.cred.in_group(g)))
        {
            return Err(FsError::new(
                errno::EPERM,
                "only the owner changes the group, to one of its groups",
            ));
        }
        let (nu, ng) = (uid.unwrap_or(i.uid), gid.unwrap_or(i.gid));
        let mut mode = u32::from(i.mode) & 0o7777;
        if !is_dir(i) {
            mode &= !0o4000;
            if mode & 0o2000 != 0
                && (mode & 0o010 != 0
                    || (!self.cred.in_group(ng) && !self.cred.caps.has(Caps::FSETID)))
            {
                mode &= !0o2000;
            }
        }
        let keep = mode == u32::from(i.mode) & 0o7777;
        self.update(
            i.number,
            InodeMetadataUpdate {
                owner: Some((nu, ng)),
                permissions: if keep { None } else { Some(perms(mode)?) },
                ..Default::default()
            },
        )
    }

    /// fs.protected_hardlinks (on by default in Debian and most distributions,
    /// and always here): who is not the owner (nor CAP_FOWNER) links only a
    /// regular file, not set-user-ID, not set-group-ID with group execute,
    /// that it may read and write.
    fn protected_hardlink(&self, src: &InodeInfo) -> FsResult<()> {
        if self.cred.owns(src.uid) {
            return Ok(());
        }
        let mode = u32::from(src.mode);
        let safe = mode & 0o170000 == 0o100000
            && mode & 0o4000 == 0
            && mode & 0o2010 != 0o2010
            && self
                .cred
                .permits(mode, src.uid, src.gid, MAY_READ | MAY_WRITE);
        if safe {
            Ok(())
        } else {
            Err(FsError::new(
                errno::EPERM,
                "a hard link to another's file that the caller may not read and write (protected_hardlinks)",
            ))
        }
    }

    /// An absolute symbolic link target as a path of this file system: it
    /// must point under the mount point; the stack does not follow a link out
    /// of a sealed mount (EXDEV).
    fn inside(&self, target: &[u8]) -> FsResult<Vec<u8>> {
        crate::rest_under(target, &self.at).ok_or_else(|| {
            FsError::refused(
                errno::EXDEV,
                format!(
                    "the symbolic link to {} leaves the sealed mount: not followed",
                    String::from_utf8_lossy(target)
                ),
            )
        })
    }

    /// The directory and name for a new entry at `path` (symlink, mknod,
    /// link): EEXIST where something is (or for `.`, `..`, `/`), ENOENT for a
    /// trailing slash, Linux's order.
    fn new_name(&mut self, path: &[u8]) -> FsResult<(InodeInfo, Vec<u8>)> {
        let (parent, name, trailing) = self.parent_of(path)?;
        if name.is_empty() || name == b"." || name == b".." {
            return Err(FsError::new(errno::EEXIST, "file exists"));
        }
        if self.lookup(parent.number, &name)?.is_some() {
            return Err(FsError::new(errno::EEXIST, "file exists"));
        }
        if trailing {
            return Err(FsError::new(errno::ENOENT, "no such directory"));
        }
        Ok((parent, name))
    }

    fn writable(&self) -> FsResult<()> {
        if self.read_only {
            return Err(FsError::new(errno::EROFS, "the file system is read-only"));
        }
        Ok(())
    }

    fn inode(&mut self, n: InodeNumber) -> FsResult<InodeInfo> {
        self.fs.inode(n).map_err(|e| self.err(e))
    }

    fn lookup(&mut self, dir: InodeNumber, name: &[u8]) -> FsResult<Option<InodeInfo>> {
        if name.len() > NAME_MAX {
            return Err(FsError::new(errno::ENAMETOOLONG, "name too long"));
        }
        let fname = FileName::new(name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
        self.fs.lookup_child(dir, fname).map_err(|e| self.err(e))
    }

    fn read_link(&mut self, info: &InodeInfo) -> FsResult<Vec<u8>> {
        let len = usize::try_from(info.size)
            .ok()
            .filter(|&l| l <= PATH_MAX)
            .ok_or_else(|| FsError::new(errno::EUCLEAN, "symbolic link target too long"))?;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self
                .fs
                .read_inode(info.number, done as u64, &mut buf[done..])
                .map_err(|e| self.err(e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Resolves a path to an inode. `follow_last`: follow a symlink in the last
    /// component.
    fn walk(&mut self, path: &[u8], follow_last: bool) -> FsResult<InodeInfo> {
        if path.len() > PATH_MAX {
            return Err(FsError::new(errno::ENAMETOOLONG, "path too long"));
        }
        if path.is_empty() {
            return Err(FsError::new(errno::ENOENT, "empty path"));
        }
        let root = self.fs.root_inode();
        let mut cur = self.inode(root)?;
        let mut parts: VecDeque<Vec<u8>> = path
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect();
        let must_be_dir = path.ends_with(b"/");
        let mut links = 0;
        while let Some(name) = parts.pop_front() {
            if !is_dir(&cur) {
                return Err(FsError::new(errno::ENOTDIR, "not a directory"));
            }
            self.may(&cur, MAY_EXEC)?;
            let child = self
                .lookup(cur.number, &name)?
                .ok_or_else(|| FsError::new(errno::ENOENT, "no such file or directory"))?;
            let last = parts.is_empty();
            if is_symlink(&child) && (!last || follow_last || must_be_dir) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::new(errno::ELOOP, "too many symbolic links"));
                }
                let target = self.read_link(&child)?;
                if target.is_empty() {
                    return Err(FsError::new(errno::ENOENT, "empty symbolic link"));
                }
                let target = if target.starts_with(b"/") {
                    cur = self.inode(root)?;
                    self.inside(&target)?
                } else {
                    target
                };
                for p in target
                    .split(|&c| c == b'/')
                    .filter(|c| !c.is_empty() && *c != b".")
                    .rev()
                {
                    parts.push_front(p.to_vec());
                }
                continue;
            }
            cur = child;
        }
        if must_be_dir && !is_dir(&cur) {
            return Err(FsError::new(errno::ENOTDIR, "not a directory"));
        }
        Ok(cur)
    }

    /// Resolves the directory that holds the last component of `path`.
    /// Returns (directory, last name, trailing slash); the name is empty for "/".
    fn parent_of(&mut self, path: &[u8]) -> FsResult<(InodeInfo, Vec<u8>, bool)> {
        if path.is_empty() {
            return Err(FsError::new(errno::ENOENT, "empty path"));
        }
        if path.len() > PATH_MAX {
            return Err(FsError::new(errno::ENAMETOOLONG, "path too long"));
        }
        let (dir, name, trailing) = split_last(path);
        let dir = if dir.is_empty() { b"/" as &[u8] } else { dir };
        let parent = self.walk(dir, true)?;
        if !is_dir(&parent) {
            return Err(FsError::new(errno::ENOTDIR, "not a directory"));
        }
        self.may(&parent, MAY_EXEC)?;
        if name.len() > NAME_MAX {
            return Err(FsError::new(errno::ENAMETOOLONG, "name too long"));
        }
        Ok((parent, name.to_vec(), trailing))
    }

    fn reap_or_keep(&mut self, outcome: UnlinkOutcome) -> FsResult<()> {
        if !outcome.requires_reap() {
            return Ok(());
        }
        let ino = outcome.inode.as_u64();
        if self.open.get(&ino).copied().unwrap_or(0) > 0 {
            self.orphans.insert(ino);
            return Ok(());
        }
        // The name is gone either way; if freeing the inode fails, it stays on
        // the on-disk orphan list and is retried at unmount (or by the next mount).
        if let Err(e) = self.reap(outcome.inode) {
            tracing::warn!("freeing inode {ino} failed, kept as an orphan: {e}");
            self.orphans.insert(ino);
        }
        Ok(())
    }

    /// Frees a zero-link inode and all its blocks.
    fn reap(&mut self, n: InodeNumber) -> FsResult<()> {
        self.drop_blocks_past(n, 0)?;
        self.fs.reap_unlinked_inode(n).map_err(|e| self.err(e))
    }

    /// The byte ranges of a file below `size` that have blocks (data or
    /// preallocated), in order.
    fn mapped_ranges(&mut self, n: InodeNumber, size: u64) -> FsResult<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < size {
            let map = self
                .fs
                .inode_extents(n, at, size - at, FileExtentTarget::Data, 4096)
                .map_err(|e| self.err(e))?;
            let mut next = at;
            for x in &map.extents {
                let start = x.logical_start.max(at);
                let end = x.logical_start.saturating_add(x.length).min(size);
                if end > start {
                    out.push((start, end - start));
                }
                next = next.max(end);
            }
            if map.complete || map.extents.is_empty() || next <= at {
                break;
            }
            at = next;
        }
        Ok(out)
    }

    /// True when an extent-mapped file holds more blocks than its extents below
    /// i_size plus the extent tree's own index blocks account for.
    fn blocks_past_eof(&mut self, n: InodeNumber, info: &InodeInfo) -> FsResult<bool> {
        let (mut mapped, mut count, mut at) = (0u64, 0u64, 0u64);
        let end = info.size.div_ceil(4096) * 4096;
        while at < end {
            let map = self
                .fs
                .inode_extents(n, at, end - at, FileExtentTarget::Data, 4096)
                .map_err(|e| self.err(e))?;
            let mut next = end;
            for x in &map.extents {
                mapped += x.length.div_ceil(4096);
                count += 1;
                next = x.logical_start.saturating_add(x.length);
            }
            if map.complete || map.extents.is_empty() || next <= at {
                break;
            }
            at = next;
        }
        // Index blocks of an extent tree: none while the inode holds the extents
        // (up to 4), then a leaf per 340 extents and one level above that.
        let index = if count <= 4 {
            0
        } else {
            count.div_ceil(340) + count.div_ceil(340 * 340)
        };
        Ok(info.blocks / 8 > mapped + index)
    }

    /// Frees every block of a regular file at or past byte `len` and sets its
    /// size to `len`.
    ///
    /// rsext4 0.9.2 frees only blocks mapped below i_size when it truncates or
    /// reaps, so blocks preallocated past the end (fallocate KEEP_SIZE) would
    /// leak. Grow the size over them first, then cut.
    fn drop_blocks_past(&mut self, n: InodeNumber, len: u64) -> FsResult<()> {
        let info = self.inode(n)?;
        if u32::from(info.mode) & 0o170000 != 0o100000 {
            return Ok(());
        }
        if info.blocks == 0 {
            if info.size != len {
                self.fs.truncate_inode(n, len).map_err(|e| self.err(e))?;
            }
            return Ok(());
        }
        // Blocks past the end exist only if the file holds more blocks than its
        // size explains (allowing for extent index blocks). Then, since the
        // engine's extent queries stop at i_size too and the end of the last
        // preallocated extent is unknown, grow over everything and cut. Only for
        // extent-mapped files: growing a legacy block-mapped one is a walk over
        // every block pointer.
        let extents = info.flags.bits() & 0x0008_0000 != 0;
        let grown = extents && self.blocks_past_eof(n, &info)?;
        if grown {
            self.fs
                .truncate_inode(n, MAX_FILE_SIZE)
                .map_err(|e| self.err(e))?;
        }
        if grown || info.size != len {
            self.fs.truncate_inode(n, len).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// True when directory `anc` is `dir` or one of its ancestors.
    fn is_ancestor(&mut self, anc: InodeNumber, dir: &InodeInfo) -> FsResult<bool> {
        let root = self.fs.root_inode();
        let mut cur = dir.number;
        for _ in 0..4096 {
            if cur == anc {
                return Ok(true);
            }
            if cur == root {
                return Ok(false);
            }
            cur = self
                .lookup(cur, b"..")?
                .ok_or_else(|| FsError::new(errno::EUCLEAN, "directory without '..'"))?
                .number;
        }
        Err(FsError::new(
            errno::EUCLEAN,
            "directory tree too deep or looped",
        ))
    }

    fn checkpoint(&mut self) -> FsResult<()> {
        if self.read_only {
            return Ok(());
        }
        self.fs.sync().map_err(|e| self.err(e))?;
        lock(&self.cache)
            .commit()
            .map(|_| ())
            .map_err(|e| FsError::new(e.errno(), e.to_string()))
    }

    /// A checkpoint whose commit may still be in flight when this returns: the
    /// epoch to wait for (`Ext4Fs::wait_durable`), or `None` when read-only.
    fn checkpoint_begin(&mut self) -> FsResult<Option<u64>> {
        if self.read_only {
            return Ok(None);
        }
        self.fs.sync().map_err(|e| self.err(e))?;
        lock(&self.cache)
            .commit_begin()
            .map(Some)
            .map_err(|e| FsError::new(e.errno(), e.to_string()))
    }

    fn maybe_checkpoint(&mut self) -> FsResult<()> {
        let wants = lock(&self.cache).wants_checkpoint();
        if wants {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn write_at(&mut self, ino: InodeNumber, buf: &[u8], offset: u64) -> FsResult<usize> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| FsError::new(errno::EINVAL, "offset overflow"))?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::new(errno::EFBIG, "file too large for ext4"));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let step = (lock(&self.cache).write_step_blocks() * 4096) as usize;
            let n = step.min(buf.len() - done);
            if let Err(e) = self
                .fs
                .write_inode(ino, offset + done as u64, &buf[done..done + n])
            {
                let e = self.err(e);
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            done += n;
            if done < buf.len() {
                self.maybe_checkpoint()?;
            }
        }
        Ok(done)
    }

    /// Runs a write or truncate. The engine clears set-user-ID and set-group-ID
    /// bits on every write; Linux (file_remove_privs) keeps both for a writer
    /// with CAP_FSETID, and set-group-ID without group execute for a writer in
    /// the file's group, so put back what Linux keeps.
    fn keeping_privs<T>(
        &mut self,
        ino: InodeNumber,
        f: impl FnOnce(&mut Self) -> FsResult<T>,
    ) -> FsResult<T> {
        let i = self.inode(ino)?;
        let mut before = i.mode & 0o6000;
        if !self.cred.caps.has(Caps::FSETID) {
            before &= 0o2000;
            if i.mode & 0o010 != 0 || !self.cred.in_group(i.gid) {
                before = 0;
            }
        }
        let r = f(self)?;
        if before != 0 {
            let now = self.inode(ino)?;
            if now.mode & 0o6000 != before {
                self.update(
                    ino,
                    InodeMetadataUpdate {
                        permissions: Some(perms(u32::from((now.mode & 0o1777) | before))?),
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(r)
    }

    fn read_at(&mut self, ino: InodeNumber, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .fs
                .read_inode(ino, offset + done as u64, &mut buf[done..])
                .map_err(|e| self.err(e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    fn update(&mut self, n: InodeNumber, u: InodeMetadataUpdate) -> FsResult<()> {
        self.writable()?;
        self.fs
            .update_inode_metadata(n, u)
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

impl<Q: BlockQueue> Ext4Fs<Q> {
    /// Mounts the ext4 file system on `disk`.
    pub fn mount(disk: SealedDisk<Q>, opts: MountOptions) -> FsResult<Self> {
        let cache = Arc::new(Mutex::new(PageCache::new(disk, opts.cache_pages)));
        let dev = CacheDev::new(cache.clone(), opts.read_only);
        let services = MountServices::new(SysClock, Entropy, NoopObserver);
        let mount_opts = if opts.read_only {
            rsext4::MountOptions {
                readonly: true,
                replay_journal: false,
                block_validity: true,
            }
        } else {
            rsext4::MountOptions::read_write()
        };
        let fs = Ext4::mount(dev, services, mount_opts).map_err(|e| {
            let e2 = lock(&cache).take_error();
            match e2 {
                Some((no, msg)) => FsError::new(no, msg),
                None => FsError::new(
                    kind_errno(e.kind()),
                    format!("not a usable ext4 file system: {e}"),
                ),
            }
        })?;
        let owner = Arc::new(Cred::owner(opts.uid, opts.gid, u32::from(opts.umask)));
        let engine = Engine {
            fs,
            cache: cache.clone(),
            open: HashMap::new(),
            orphans: HashSet::new(),
            read_only: opts.read_only,
            owner: owner.clone(),
            cred: owner,
            at: b"/".to_vec(),
            broken: None,
        };
        Ok(Self {
            engine: Mutex::new(engine),
            cache,
            locks: LockTable::default(),
            flocks: LockTable::default(),
        })
    }

    /// Where the program sees this file system: absolute symbolic links
    /// under it are followed inside (default `/`: the file system's root).
    pub fn set_mount_point(&self, at: &[u8]) {
        lock(&self.engine).at = at.to_vec();
    }

    /// Waits until the sealed disk's commit of `epoch` is durable, taking the
    /// cache's lock only to look (the engine's stays free meanwhile).
    fn wait_durable(&self, epoch: u64) -> FsResult<()> {
        loop {
            match lock(&self.cache).poll_durable(epoch) {
                Ok(true) => return Ok(()),
                Ok(false) => std::thread::yield_now(),
                Err(e) => return Err(FsError::new(e.errno(), e.to_string())),
            }
        }
    }

    /// Runs `f` on the engine under the lock. rsext4 can panic on some hostile
    /// metadata (it has many unchecked arithmetic and indexing sites): such a panic
    /// is contained here and turned into EIO, and the file system stops: every
    /// later call fails and nothing more is committed, so the image stays at its
    /// last checkpoint.
    fn with<T>(&self, f: impl FnOnce(&mut Engine<Q>) -> FsResult<T>) -> FsResult<T> {
        let mut e = lock(&self.engine);
        if let Some(why) = &e.broken {
            return Err(FsError::new(errno::EIO, why.clone()));
        }
        let eng = &mut *e;
        crate::cred::current_into(&mut eng.cred, &eng.owner);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut e))) {
            Ok(r) => r,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let why = format!(
                    "the ext4 engine failed on corrupt metadata ({what}); the file system is stopped at its last checkpoint: unmount and run `rktio disk check`"
                );
                tracing::error!("{why}");
                e.broken = Some(why.clone());
                Err(FsError::new(errno::EIO, why))
            }
        }
    }

    /// Page-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        lock(&self.cache).stats()
    }

    /// Drops clean cached pages (for cold-read measurements).
    pub fn drop_caches(&self) {
        lock(&self.cache).drop_clean();
    }

    /// The sealed disk's epoch and root after the last checkpoint.
    pub fn sealed_info(&self) -> rktio_seal::DiskInfo {
        lock(&self.cache).disk().info()
    }

    /// Takes a checkpoint and unseals the committed image into a plain ext4 file
    /// at `out` (for e2fsck, debugfs or the kernel) while staying mounted.
    pub fn export_snapshot(&self, out: &std::path::Path) -> FsResult<u64> {
        self.with(|e| {
            e.checkpoint()?;
            let mut c = lock(&self.cache);
            crate::image::export(c.disk_mut(), out, &mut |_, _| {})
                .map_err(|x| FsError::new(errno::EIO, x.to_string()))
        })
    }

    /// Reaps unlinked-but-open files, unmounts cleanly, commits and gives the
    /// sealed disk back.
    pub fn unmount(self) -> FsResult<SealedDisk<Q>> {
        let read_only = lock(&self.engine).read_only;
        if !read_only {
            self.with(|e| {
                let orphans: Vec<u64> = e.orphans.drain().collect();
                for o in orphans {
                    e.reap(ino_of(o)?)?;
                }
                e.fs.unmount().map_err(|x| e.err(x))?;
                lock(&e.cache)
                    .commit()
                    .map(|_| ())
                    .map_err(|x| FsError::new(x.errno(), x.to_string()))
            })?;
        }
        drop(self.engine);
        let cache = Arc::try_unwrap(self.cache)
            .map_err(|_| FsError::new(errno::EBUSY, "page cache still shared"))?;
        Ok(cache
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .into_disk())
    }

    /// Visits every file and directory below `/`, reading every byte of every
    /// file and every symlink: a file-system level check that every block the
    /// tree uses decrypts and authenticates. Calls `progress(files, bytes)`.
    pub fn walk_tree(&self, progress: &mut dyn FnMut(u64, u64)) -> FsResult<(u64, u64)> {
        self.with(|e| {
            let root = e.fs.root_inode();
            let mut stack = vec![root];
            let mut seen = HashSet::new();
            let (mut files, mut bytes) = (0u64, 0u64);
            let mut buf = vec![0u8; 1 << 20];
            while let Some(dir) = stack.pop() {
                if !seen.insert(dir.as_u64()) {
                    continue;
                }
                let mut cursor = DirectoryCursor::Start;
                loop {
                    let batch =
                        e.fs.read_directory(dir, cursor, 1024)
                            .map_err(|x| e.err(x))?;
                    let Some(last) = batch.last() else { break };
                    cursor = last.next_cursor;
                    for d in &batch {
                        if d.name == b"." || d.name == b".." {
                            continue;
                        }
                        let info = e.inode(d.inode)?;
                        files += 1;
                        if is_dir(&info) {
                            stack.push(d.inode);
                        } else if is_symlink(&info) {
                            e.read_link(&info)?;
                        } else if u32::from(info.mode) & 0o170000 == 0o100000 {
                            // Only the mapped ranges: holes read as zeros without
                            // touching the disk, and a (hostile) sparse file can
                            // claim terabytes.
                            for (start, len) in e.mapped_ranges(d.inode, info.size)? {
                                let mut off = start;
                                while off < start + len {
                                    let want = ((start + len - off) as usize).min(buf.len());
                                    let n = e.read_at(d.inode, &mut buf[..want], off)?;
                                    if n == 0 {
                                        break;
                                    }
                                    off += n as u64;
                                    bytes += n as u64;
                                }
                            }
                        }
                        progress(files, bytes);
                    }
                    if matches!(cursor, DirectoryCursor::End) {
                        break;
                    }
                }
            }
            Ok((files, bytes))
        })
    }

    fn file_ino(file: &OpenFile) -> FsResult<InodeNumber> {
        if file.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(FsError::new(errno::EBADF, "file is closed"));
        }
        ino_of(file.ino)
    }
}

impl<Q: BlockQueue + Send> FileSystem for Ext4Fs<Q>
where
    SealedDisk<Q>: Send,
{
    fn open(&self, path: &[u8], opts: &OpenOptions) -> FsResult<Arc<OpenFile>> {
        self.with(|e| {
            let mut path = path.to_vec();
            let mut hops = 0;
            let info = loop {
                let (parent, name, trailing) = e.parent_of(&path)?;
                if opts.create && trailing && !name.is_empty() {
                    // Linux refuses O_CREAT with a trailing slash before looking.
                    return Err(FsError::new(errno::EISDIR, "is a directory"));
                }
                let existing = if name.is_empty() {
                    Some(parent)
                } else {
                    e.lookup(parent.number, &name)?
                };
                break match existing {
                    Some(info) => {
                        if opts.create && opts.exclusive {
                            return Err(FsError::new(errno::EEXIST, "file exists"));
                        }
                        if is_symlink(&info) {
                            if opts.nofollow {
                                return Err(FsError::new(
                                    errno::ELOOP,
                                    "is a symbolic link (O_NOFOLLOW)",
                                ));
                            }
                            // Follow it here rather than in `walk`, so that O_CREAT on a
                            // dangling link creates its target, as Linux does.
                            hops += 1;
                            if hops > MAX_SYMLINKS {
                                return Err(FsError::new(errno::ELOOP, "too many symbolic links"));
                            }
                            let target = e.read_link(&info)?;
                            if target.is_empty() {
                                return Err(FsError::new(errno::ENOENT, "empty symbolic link"));
                            }
                            let mut next = if target.starts_with(b"/") {
                                e.inside(&target)?
                            } else {
                                [split_last(&path).0, &target[..]].concat()
                            };
                            if trailing {
                                next.push(b'/');
                            }
                            path = next;
                            continue;
                        }
                        if trailing && !is_dir(&info) {
                            return Err(FsError::new(errno::ENOTDIR, "not a directory"));
                        }
                        if is_dir(&info) {
                            if opts.write || opts.truncate || opts.create {
                                return Err(FsError::new(errno::EISDIR, "is a directory"));
                            }
                        } else if opts.directory {
                            return Err(FsError::new(errno::ENOTDIR, "not a directory"));
                        }
                        match file_type(info.file_type()) {
                            FileType::Fifo | FileType::Socket => {
                                return Err(FsError::refused(
                                    errno::ENXIO,
                                    "a FIFO or socket on a sealed mount cannot be opened",
                                ));
                            }
                            FileType::CharDevice | FileType::BlockDevice => {
                                return Err(FsError::refused(
                                    errno::EACCES,
                                    "device nodes on a sealed mount cannot be opened (nodev)",
                                ));
                            }
                            _ => {}
                        }
                        let mut mask = 0;
                        if opts.read {
                            mask |= MAY_READ;
                        }
                        if opts.write || opts.truncate {
                            mask |= MAY_WRITE;
                        }
                        e.may(&info, mask)?;
                        if opts.truncate && (info.size > 0 || info.blocks > 0) {
                            e.writable()?;
                            let n = info.number;
                            e.keeping_privs(n, |e| e.drop_blocks_past(n, 0))?;
                        }
                        info
                    }
                    None => {
                        if !opts.create {
                            return Err(FsError::new(errno::ENOENT, "no such file or directory"));
                        }
                        if trailing {
                            return Err(FsError::new(errno::EISDIR, "is a directory"));
                        }
                        e.writable()?;
                        e.may(&parent, MAY_WRITE | MAY_EXEC)?;
                        let fname = FileName::new(&name)
                            .map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
                        let ctx = e.new_ctx(&parent);
                        let mode = e.new_mode(&parent, &ctx, opts.mode, false);
                        let created =
                            e.fs.create_regular_file(ctx, parent.number, fname, perms(mode)?)
                                .map_err(|x| e.err(x))?;
                        e.maybe_checkpoint()?;
                        created
                    }
                };
            };
            let ino = info.number.as_u64();
            *e.open.entry(ino).or_insert(0) += 1;
            Ok(Arc::new(OpenFile {
                ino,
                read: opts.read,
                write: opts.write,
                append: opts.append,
                direct: opts.direct,
                is_dir: is_dir(&info),
                pos: Mutex::new(0),
                closed: std::sync::atomic::AtomicBool::new(false),
            }))
        })
    }

    fn close(&self, file: &OpenFile) -> FsResult<()> {
        if file.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(FsError::new(errno::EBADF, "file already closed"));
        }
        self.with(|e| {
            let left = match e.open.get_mut(&file.ino) {
                Some(c) => {
                    *c -= 1;
                    *c
                }
                None => 0,
            };
            if left == 0 {
                e.open.remove(&file.ino);
                if e.orphans.remove(&file.ino) && !e.read_only {
                    let n = ino_of(file.ino)?;
                    e.reap(n)?;
                    e.maybe_checkpoint()?;
                }
            }
            Ok(())
        })
    }

    fn pread(&self, file: &OpenFile, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let n = Self::file_ino(file)?;
        if file.is_dir {
            return Err(FsError::new(errno::EISDIR, "is a directory"));
        }
        if !file.read {
            return Err(FsError::new(errno::EBADF, "not open for reading"));
        }
        self.with(|e| e.read_at(n, buf, offset))
    }

    fn pwrite(&self, file: &OpenFile, buf: &[u8], offset: u64) -> FsResult<usize> {
        let n = Self::file_ino(file)?;
        if !file.write {
            return Err(FsError::new(errno::EBADF, "not open for writing"));
        }
        self.with(|e| {
            e.writable()?;
            if buf.is_empty() {
                return Ok(0);
            }
            let offset = if file.append {
                e.inode(n)?.size
            } else {
                offset
            };
            let done = e.keeping_privs(n, |e| e.write_at(n, buf, offset))?;
            if file.direct {
                lock(&self.cache)
                    .write_back()
                    .map_err(|x| FsError::new(x.errno(), x.to_string()))?;
            }
            e.maybe_checkpoint()?;
            Ok(done)
        })
    }

    fn read(&self, file: &OpenFile, buf: &mut [u8]) -> FsResult<usize> {
        let mut pos = file.pos();
        let n = self.pread(file, buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn write(&self, file: &OpenFile, buf: &[u8]) -> FsResult<usize> {
        let mut pos = file.pos();
        let n = Self::file_ino(file)?;
        let at = if file.append {
            self.with(|e| e.inode(n))?.size
        } else {
            *pos
        };
        let done = self.pwrite(file, buf, at)?;
        *pos = if file.append {
            self.with(|e| e.inode(n))?.size
        } else {
            at + done as u64
        };
        Ok(done)
    }

    fn seek(&self, file: &OpenFile, offset: i64, whence: Whence) -> FsResult<u64> {
        let n = Self::file_ino(file)?;
        let mut pos = file.pos();
        let base = match whence {
            Whence::Set => 0,
            Whence::Current => *pos,
            // Directory offsets are hash cookies: Linux ext4 puts their end at
            // the largest offset (so SEEK_END past it is EINVAL).
            Whence::End if file.is_dir => i64::MAX as u64,
            Whence::End => self.with(|e| e.inode(n))?.size,
        };
        let new = i128::from(base) + i128::from(offset);
        if new < 0 || new > i128::from(i64::MAX) {
            return Err(FsError::new(errno::EINVAL, "seek out of range"));
        }
        *pos = new as u64;
        Ok(*pos)
    }

    fn ftruncate(&self, file: &OpenFile, len: u64) -> FsResult<()> {
        let n = Self::file_ino(file)?;
        if file.is_dir || !file.write {
            return Err(FsError::new(errno::EINVAL, "not open for writing"));
        }
        if len > MAX_FILE_SIZE {
            return Err(FsError::new(errno::EFBIG, "file too large for ext4"));
        }
        self.with(|e| {
            e.writable()?;
            e.keeping_privs(n, |e| {
                if len < e.inode(n)?.size {
                    e.drop_blocks_past(n, len)
                } else {
                    e.fs.truncate_inode(n, len).map_err(|x| e.err(x))
                }
            })?;
            e.maybe_checkpoint()
        })
    }

    fn fallocate(&self, file: &OpenFile, mode: Fallocate, offset: u64, len: u64) -> FsResult<()> {
        let n = Self::file_ino(file)?;
        if !file.write {
            return Err(FsError::new(errno::EBADF, "not open for writing"));
        }
        if len == 0 {
            return Err(FsError::new(errno::EINVAL, "zero length"));
        }
        if file.is_dir {
            return Err(FsError::new(errno::EISDIR, "is a directory"));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or_else(|| FsError::new(errno::EFBIG, "file too large for ext4"))?;
        let _ = end;
        let op = match mode {
            Fallocate::Allocate => RangeOperation::Allocate(PreallocationOptions::EXTEND_SIZE),
            Fallocate::AllocateKeepSize => {
                RangeOperation::Allocate(PreallocationOptions::KEEP_SIZE)
            }
            Fallocate::PunchHole => RangeOperation::PunchHole,
            Fallocate::ZeroRange { keep_size } => RangeOperation::Zero(if keep_size {
                ZeroRangeOptions::KEEP_SIZE
            } else {
                ZeroRangeOptions::EXTEND_SIZE
            }),
        };
        self.with(|e| {
            e.writable()?;
            e.keeping_privs(n, |e| match e.fs.operate_inode_range(n, offset, len, op) {
                Ok(()) => Ok(()),
                // rsext4 0.9.2 cannot split an extent in a full extent node when it
                // punches a hole (it refuses to write the overfull node, before any
                // change). Reads of a hole and of zeros are the same: write zeros.
                Err(x) if mode == Fallocate::PunchHole && x.kind() == Ext4ErrorKind::Corrupted => {
                    tracing::debug!("punch hole fell back to writing zeros: {x}");
                    let size = e.inode(n)?.size;
                    let end = offset.saturating_add(len).min(size);
                    let zeros = vec![0u8; 1 << 20];
                    let mut at = offset;
                    while at < end {
                        let k = ((end - at) as usize).min(zeros.len());
                        e.write_at(n, &zeros[..k], at)?;
                        at += k as u64;
                    }
                    Ok(())
                }
                Err(x) => Err(e.err(x)),
            })?;
            e.maybe_checkpoint()
        })
    }

    fn fsync(&self, file: &OpenFile) -> FsResult<()> {
        Self::file_ino(file)?;
        self.sync()
    }

    fn fdatasync(&self, file: &OpenFile) -> FsResult<()> {
        self.fsync(file)
    }

    /// A checkpoint, waited for outside the engine's lock: while this thread's
    /// commit is being flushed, other threads write, and their fsyncs share the
    /// next commit (group commit).
    fn sync(&self) -> FsResult<()> {
        match self.with(|e| e.checkpoint_begin())? {
            Some(epoch) => self.wait_durable(epoch),
            None => Ok(()),
        }
    }

    fn fstat(&self, file: &OpenFile) -> FsResult<Stat> {
        let n = Self::file_ino(file)?;
        self.with(|e| e.inode(n).map(|i| to_stat(&i)))
    }

    fn stat(&self, path: &[u8]) -> FsResult<Stat> {
        self.with(|e| e.walk(path, true)).map(|i| to_stat(&i))
    }

    fn lstat(&self, path: &[u8]) -> FsResult<Stat> {
        self.with(|e| e.walk(path, false)).map(|i| to_stat(&i))
    }

    fn unlink(&self, path: &[u8]) -> FsResult<()> {
        self.with(|e| {
            let (parent, name, trailing) = e.parent_of(path)?;
            if name.is_empty() || name == b"." || name == b".." {
                return Err(FsError::new(errno::EISDIR, "is a directory"));
            }
            let info = e
                .lookup(parent.number, &name)?
                .ok_or_else(|| FsError::new(errno::ENOENT, "no such file or directory"))?;
            if is_dir(&info) {
                return Err(FsError::new(errno::EISDIR, "is a directory"));
            }
            if trailing {
                return Err(FsError::new(errno::ENOTDIR, "not a directory"));
            }
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.sticky_ok(&parent, &info)?;
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let out = e.fs.unlink(parent.number, fname).map_err(|x| e.err(x))?;
            e.reap_or_keep(out)?;
            e.maybe_checkpoint()
        })
    }

    fn mkdir(&self, path: &[u8], mode: u32) -> FsResult<()> {
        self.with(|e| {
            let (parent, name, _) = e.parent_of(path)?;
            if name.is_empty() || name == b"." || name == b".." {
                return Err(FsError::new(errno::EEXIST, "file exists"));
            }
            if e.lookup(parent.number, &name)?.is_some() {
                return Err(FsError::new(errno::EEXIST, "file exists"));
            }
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let ctx = e.new_ctx(&parent);
            let mode = e.new_mode(&parent, &ctx, mode, true);
            e.fs.create_directory(ctx, parent.number, fname, perms(mode)?)
                .map_err(|x| e.err(x))?;
            e.maybe_checkpoint()
        })
    }

    fn rmdir(&self, path: &[u8]) -> FsResult<()> {
        self.with(|e| {
            let (parent, name, _) = e.parent_of(path)?;
            if name.is_empty() {
                return Err(FsError::new(errno::EBUSY, "cannot remove the root"));
            }
            if name == b"." {
                return Err(FsError::new(errno::EINVAL, "cannot remove '.'"));
            }
            if name == b".." {
                return Err(FsError::new(errno::ENOTEMPTY, "cannot remove '..'"));
            }
            let info = e
                .lookup(parent.number, &name)?
                .ok_or_else(|| FsError::new(errno::ENOENT, "no such file or directory"))?;
            if !is_dir(&info) {
                return Err(FsError::new(errno::ENOTDIR, "not a directory"));
            }
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.sticky_ok(&parent, &info)?;
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let out =
                e.fs.remove_empty_directory(parent.number, fname)
                    .map_err(|x| e.err(x))?;
            e.reap_or_keep(out)?;
            e.maybe_checkpoint()
        })
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> FsResult<()> {
        self.with(|e| {
            let (fparent, fname, ftrail) = e.parent_of(from)?;
            let (tparent, tname, ttrail) = e.parent_of(to)?;
            for n in [&fname, &tname] {
                if n.is_empty() || n == b"." || n == b".." {
                    return Err(FsError::new(errno::EBUSY, "cannot rename '.', '..' or '/'"));
                }
            }
            let src = e
                .lookup(fparent.number, &fname)?
                .ok_or_else(|| FsError::new(errno::ENOENT, "no such file or directory"))?;
            if (ftrail || ttrail) && !is_dir(&src) {
                return Err(FsError::new(errno::ENOTDIR, "not a directory"));
            }
            let dst = e.lookup(tparent.number, &tname)?;
            // Linux order: the source may not be an ancestor of the target (EINVAL),
            // the target may not be an ancestor of the source (ENOTEMPTY), renaming a
            // file onto itself does nothing, then the type checks.
            if is_dir(&src) && e.is_ancestor(src.number, &tparent)? {
                return Err(FsError::new(
                    errno::EINVAL,
                    "cannot move a directory into itself",
                ));
            }
            if let Some(dst) = &dst {
                if is_dir(dst) && e.is_ancestor(dst.number, &fparent)? {
                    return Err(FsError::new(errno::ENOTEMPTY, "directory not empty"));
                }
                if dst.number == src.number {
                    return Ok(());
                }
                match (is_dir(&src), is_dir(dst)) {
                    (true, false) => return Err(FsError::new(errno::ENOTDIR, "not a directory")),
                    (false, true) => return Err(FsError::new(errno::EISDIR, "is a directory")),
                    _ => {}
                }
            }
            // Linux order (may_delete, may_create): each directory's write and
            // search permission, the sticky rule on what is moved and on what
            // is replaced, then a directory that changes parent needs its own
            // write permission (its "..").
            e.may(&fparent, MAY_WRITE | MAY_EXEC)?;
            e.sticky_ok(&fparent, &src)?;
            e.may(&tparent, MAY_WRITE | MAY_EXEC)?;
            if let Some(dst) = &dst {
                e.sticky_ok(&tparent, dst)?;
            }
            if is_dir(&src) && fparent.number != tparent.number {
                e.may(&src, MAY_WRITE)?;
            }
            e.writable()?;
            let f = FileName::new(&fname).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let t = FileName::new(&tname).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let out =
                e.fs.rename(fparent.number, f, tparent.number, t, RenameOptions::REPLACE)
                    .map_err(|x| e.err(x))?;
            if let Some(r) = out.replaced {
                e.reap_or_keep(r)?;
            }
            e.maybe_checkpoint()
        })
    }

    fn link(&self, existing: &[u8], new: &[u8]) -> FsResult<()> {
        self.with(|e| {
            // Linux order: resolve the source, then create the new name's slot
            // (ENOENT/EEXIST), then the directory check (EPERM).
            let src = e.walk(existing, false)?;
            let (parent, name) = e.new_name(new)?;
            if is_dir(&src) {
                return Err(FsError::new(
                    errno::EPERM,
                    "hard links to directories are not allowed",
                ));
            }
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.protected_hardlink(&src)?;
            if u32::from(src.links) >= EXT4_LINK_MAX {
                return Err(FsError::new(errno::EMLINK, "too many links"));
            }
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            e.fs.hard_link(src.number, parent.number, fname)
                .map_err(|x| e.err(x))?;
            e.maybe_checkpoint()
        })
    }

    fn symlink(&self, target: &[u8], path: &[u8]) -> FsResult<()> {
        if target.is_empty() {
            return Err(FsError::new(errno::ENOENT, "empty symbolic link target"));
        }
        if target.len() >= PATH_MAX {
            return Err(FsError::new(errno::ENAMETOOLONG, "target too long"));
        }
        self.with(|e| {
            let (parent, name) = e.new_name(path)?;
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let ctx = e.new_ctx(&parent);
            e.fs.create_symlink(ctx, parent.number, fname, target)
                .map_err(|x| e.err(x))?;
            e.maybe_checkpoint()
        })
    }

    fn readlink(&self, path: &[u8]) -> FsResult<Vec<u8>> {
        self.with(|e| {
            let info = e.walk(path, false)?;
            if !is_symlink(&info) {
                return Err(FsError::new(errno::EINVAL, "not a symbolic link"));
            }
            e.read_link(&info)
        })
    }

    fn readdir(&self, file: &OpenFile) -> FsResult<Vec<DirEntry>> {
        let n = Self::file_ino(file)?;
        if !file.is_dir {
            return Err(FsError::new(errno::ENOTDIR, "not a directory"));
        }
        self.with(|e| {
            let mut out = Vec::new();
            let mut cursor = DirectoryCursor::Start;
            loop {
                let batch = e.fs.read_directory(n, cursor, 4096).map_err(|x| e.err(x))?;
                let Some(last) = batch.last() else { break };
                cursor = last.next_cursor;
                out.extend(batch.into_iter().map(|d| DirEntry {
                    name: d.name,
                    ino: d.inode.as_u64(),
                    file_type: file_type(d.file_type),
                }));
                if matches!(cursor, DirectoryCursor::End) {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn chmod(&self, path: &[u8], mode: u32) -> FsResult<()> {
        self.with(|e| {
            let info = e.walk(path, true)?;
            e.set_mode(&info, mode)?;
            e.maybe_checkpoint()
        })
    }

    fn fchmod(&self, file: &OpenFile, mode: u32) -> FsResult<()> {
        let n = Self::file_ino(file)?;
        self.with(|e| {
            let info = e.inode(n)?;
            e.set_mode(&info, mode)?;
            e.maybe_checkpoint()
        })
    }

    fn chown(&self, path: &[u8], uid: Option<u32>, gid: Option<u32>, follow: bool) -> FsResult<()> {
        self.with(|e| {
            let info = e.walk(path, follow)?;
            e.set_owner(&info, uid, gid)?;
            e.maybe_checkpoint()
        })
    }

    fn fchown(&self, file: &OpenFile, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let n = Self::file_ino(file)?;
        self.with(|e| {
            let info = e.inode(n)?;
            e.set_owner(&info, uid, gid)?;
            e.maybe_checkpoint()
        })
    }

    fn mknod(&self, path: &[u8], mode: u32, rdev: u64) -> FsResult<()> {
        let kind = match mode & 0o170000 {
            0o010000 => SpecialInodeKind::Fifo,
            0o140000 => SpecialInodeKind::Socket,
            t @ (0o020000 | 0o060000) => {
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                let dev = DeviceNumber::new(major, minor)
                    .map_err(|_| FsError::new(errno::EINVAL, "device number out of range"))?;
                if t == 0o020000 {
                    SpecialInodeKind::CharacterDevice(dev)
                } else {
                    SpecialInodeKind::BlockDevice(dev)
                }
            }
            0o040000 => return Err(FsError::new(errno::EPERM, "mknod of a directory")),
            _ => return Err(FsError::new(errno::EINVAL, "not a FIFO, socket or device")),
        };
        self.with(|e| {
            let (parent, name) = e.new_name(path)?;
            if matches!(
                kind,
                SpecialInodeKind::CharacterDevice(_) | SpecialInodeKind::BlockDevice(_)
            ) && !e.cred.caps.has(Caps::MKNOD)
            {
                return Err(FsError::new(errno::EPERM, "device nodes need CAP_MKNOD"));
            }
            e.may(&parent, MAY_WRITE | MAY_EXEC)?;
            e.writable()?;
            let fname =
                FileName::new(&name).map_err(|_| FsError::new(errno::EINVAL, "bad name"))?;
            let ctx = e.new_ctx(&parent);
            let mode = e.new_mode(&parent, &ctx, mode, false);
            e.fs.create_special_inode(ctx, parent.number, fname, perms(mode)?, kind)
                .map_err(|x| e.err(x))?;
            e.maybe_checkpoint()
        })
    }

    fn access(&self, path: &[u8], mask: u32, cred: &Cred) -> FsResult<()> {
        self.with(|e| {
            e.cred = Arc::new(cred.clone());
            let info = e.walk(path, true)?;
            if mask & MAY_WRITE != 0 {
                e.writable()?;
            }
            e.may(&info, mask)
        })
    }

    fn utimens(&self, path: &[u8], atime: SetTime, mtime: SetTime, follow: bool) -> FsResult<()> {
        self.with(|e| {
            let info = e.walk(path, follow)?;
            let now = SysClock.now().map_err(|x| e.err(x))?;
            let conv = |t: SetTime| -> FsResult<Option<Ext4Timestamp>> {
                Ok(match t {
                    SetTime::Omit => None,
                    SetTime::Now => Some(now),
                    SetTime::At(ts) => {
                        if ts.nsec >= 1_000_000_000 {
                            return Err(FsError::new(errno::EINVAL, "nanoseconds out of range"));
                        }
                        Some(Ext4Timestamp {
                            sec: ts.sec,
                            nsec: ts.nsec,
                        })
                    }
                })
            };
            let u = InodeMetadataUpdate {
                atime: conv(atime)?,
                mtime: conv(mtime)?,
                ..Default::default()
            };
            if u.atime.is_none() && u.mtime.is_none() {
                return Ok(());
            }
            // Linux's setattr_prepare: setting both to now (or leaving one)
            // is for the owner or who may write; any other time, the owner.
            let touch = !matches!(atime, SetTime::At(_)) && !matches!(mtime, SetTime::At(_));
            if !e.cred.owns(info.uid) {
                if !touch {
                    return Err(FsError::new(errno::EPERM, "not the owner"));
                }
                e.may(&info, MAY_WRITE)?;
            }
            e.update(info.number, u)?;
            e.maybe_checkpoint()
        })
    }

    fn getlk(&self, file: &OpenFile, req: &RecordLock) -> FsResult<Option<RecordLock>> {
        Self::file_ino(file)?;
        if req.kind == LockKind::Unlock {
            return Err(FsError::new(errno::EINVAL, "F_GETLK with F_UNLCK"));
        }
        Ok(self.locks.get(file.ino, req))
    }

    fn setlk(&self, file: &OpenFile, req: &RecordLock, wait: bool) -> FsResult<()> {
        Self::file_ino(file)?;
        match req.kind {
            LockKind::Read if !file.read => {
                return Err(FsError::new(
                    errno::EBADF,
                    "read lock needs a readable file",
                ));
            }
            LockKind::Write if !file.write => {
                return Err(FsError::new(
                    errno::EBADF,
                    "write lock needs a writable file",
                ));
            }
            _ => {}
        }
        if wait {
            self.locks.set_wait(file.ino, req)
        } else {
            self.locks.set(file.ino, req)
        }
    }

    fn unlock_all(&self, file: &OpenFile, owner: u64) {
        self.locks.release(file.ino, owner);
    }

    fn flock(&self, file: &OpenFile, owner: u64, kind: LockKind, wait: bool) -> FsResult<()> {
        ino_of(file.ino)?;
        let req = RecordLock {
            kind,
            start: 0,
            end: None,
            owner,
        };
        // A conversion lets go first, as Linux's does: two owners that hold a
        // shared lock and both ask for an exclusive one do not wait on each
        // other for ever.
        self.flocks.release(file.ino, owner);
        if kind == LockKind::Unlock {
            return Ok(());
        }
        if wait {
            self.flocks.set_wait(file.ino, &req)
        } else {
            self.flocks.set(file.ino, &req).map_err(|e| {
                if e.errno == errno::EAGAIN {
                    FsError::new(errno::EAGAIN, "the file is flock'ed by another open file")
                } else {
                    e
                }
            })
        }
    }

    fn statfs(&self) -> FsResult<StatFs> {
        self.with(|e| {
            let s = e.fs.statfs();
            Ok(StatFs {
                block_size: s.block_size,
                blocks: s.total_blocks,
                free_blocks: s.free_blocks,
                files: u64::from(s.total_inodes),
                free_files: u64::from(s.free_inodes),
                name_max: NAME_MAX as u64,
            })
        })
    }
}
