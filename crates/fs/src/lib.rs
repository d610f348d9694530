//! rkt-io's file system: ext4 (4 KiB blocks) in trusted memory over the sealed disk.
//!
//! Layers, top down:
//! - [`FileSystem`]: the VFS trait the POSIX edge uses (paths, open files, errno).
//! - [`Ext4Fs`]: the implementation: path resolution, open-file table (unlinked
//!   files live until their last close), record locks, checkpoints; the ext4
//!   on-disk work is done by the `rsext4` engine.
//! - [`PageCache`]: a bounded cache of plaintext blocks in trusted memory with
//!   batched write-back, under the engine.
//! - `rktio_seal::SealedDisk`: encryption, integrity, atomic commit.
//!
//! Crash consistency: the sealed disk's commit is atomic, so the file system
//! commits only at consistent points (fsync, fdatasync, sync, unmount, and
//! between operations when dirty data must go out). A crash returns the image to
//! the last such point; ext4's own journal is not needed and images are made
//! without one (an image with a journal still works, at the cost of writing
//! metadata twice).

#![forbid(unsafe_code)]

mod cache;
pub mod cred;
mod ext4;
pub mod image;
mod lock;
pub mod mount;

pub use cache::{CacheStats, PageCache};
pub use cred::{Caps, Cred, set_thread_cred};
pub use ext4::{Ext4Fs, MountOptions};
pub use lock::{LockKind, LockTable, RecordLock};

use std::sync::Arc;

/// Errno values used by the file system (Linux numbering).
pub mod errno {
    pub use libc::{
        EACCES, EAGAIN, EBADF, EBADMSG, EBUSY, EDQUOT, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ELOOP,
        EMLINK, ENAMETOOLONG, ENOENT, ENOMEM, ENOSPC, ENOTDIR, ENOTEMPTY, ENXIO, EOPNOTSUPP,
        EOVERFLOW, EPERM, EROFS, ETIMEDOUT, EUCLEAN, EXDEV,
    };
}

/// A file-system error: the errno the POSIX edge returns, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (errno {errno})")]
pub struct FsError {
    /// Linux errno.
    pub errno: i32,
    /// Human-readable detail.
    pub detail: String,
    /// A refusal of something the stack does not offer (not an answer Linux
    /// would give for the same state): the POSIX edge says it on stderr.
    pub refusal: bool,
}

impl FsError {
    /// An error with an errno and a message.
    pub fn new(errno: i32, detail: impl Into<String>) -> Self {
        Self {
            errno,
            detail: detail.into(),
            refusal: false,
        }
    }

    /// A refusal (see `refusal`).
    pub fn refused(errno: i32, detail: impl Into<String>) -> Self {
        Self {
            refusal: true,
            ..Self::new(errno, detail)
        }
    }
}

/// Result of file-system calls.
pub type FsResult<T> = Result<T, FsError>;

/// How to open a file (the POSIX `O_*` flags that matter to a file system).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Readable (O_RDONLY or O_RDWR).
    pub read: bool,
    /// Writable (O_WRONLY or O_RDWR).
    pub write: bool,
    /// O_CREAT.
    pub create: bool,
    /// O_EXCL (with O_CREAT).
    pub exclusive: bool,
    /// O_TRUNC.
    pub truncate: bool,
    /// O_APPEND.
    pub append: bool,
    /// O_DIRECTORY.
    pub directory: bool,
    /// O_NOFOLLOW.
    pub nofollow: bool,
    /// O_DIRECT: writes go to the sealed disk at once instead of waiting in the cache.
    pub direct: bool,
    /// Permission bits for a created file (before the umask).
    pub mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            read: true,
            write: false,
            create: false,
            exclusive: false,
            truncate: false,
            append: false,
            directory: false,
            nofollow: false,
            direct: false,
            mode: 0o644,
        }
    }
}

impl OpenOptions {
    /// Read-write, created if missing.
    pub fn read_write_create(mode: u32) -> Self {
        Self {
            write: true,
            create: true,
            mode,
            ..Self::default()
        }
    }
}

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
    /// Not known.
    Unknown,
}

impl FileType {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }
}

/// A point in time (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// A time argument of `utimens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// UTIME_NOW.
    Now,
    /// UTIME_OMIT.
    Omit,
    /// This time.
    At(Timespec),
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte units.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// The device a device node names (0 for other files).
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Stat {
    /// The file's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name (bytes, no slash).
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u64,
    /// Type as the directory records it.
    pub file_type: FileType,
}

/// What `statfs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub block_size: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub free_files: u64,
    /// Longest name.
    pub name_max: u64,
}

/// `fallocate` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallocate {
    /// Mode 0: allocate, extending the size.
    Allocate,
    /// FALLOC_FL_KEEP_SIZE.
    AllocateKeepSize,
    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE.
    PunchHole,
    /// FALLOC_FL_ZERO_RANGE (optionally with KEEP_SIZE).
    ZeroRange {
        /// Keep the size.
        keep_size: bool,
    },
}

/// Where `seek` counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// SEEK_SET.
    Set,
    /// SEEK_CUR.
    Current,
    /// SEEK_END.
    End,
}

/// An open file description: the inode, the access mode and the file offset.
/// Shared by every descriptor dup'ed from the same open.
#[derive(Debug)]
pub struct OpenFile {
    ino: u64,
    read: bool,
    write: bool,
    append: bool,
    direct: bool,
    is_dir: bool,
    pos: std::sync::Mutex<u64>,
    closed: std::sync::atomic::AtomicBool,
}

impl OpenFile {
    /// The inode this description refers to.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Opened for reading.
    pub fn readable(&self) -> bool {
        self.read
    }

    /// Opened for writing.
    pub fn writable(&self) -> bool {
        self.write
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn pos(&self) -> std::sync::MutexGuard<'_, u64> {
        self.pos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// For `raw` (absolute, not normalised) whose normalised form is under the
/// mount point `at` (absolute, normalised): the rest of `raw` past it, as written (`.`, `..`
/// and a trailing slash kept, for the file system to walk as Linux does:
/// `..` after a symbolic link is the link target's parent, `dir/.` is not
/// `dir` to rmdir). None where `raw` reaches the mount through `..`.
pub fn rest_under(raw: &[u8], at: &[u8]) -> Option<Vec<u8>> {
    if at == b"/" {
        return Some(raw.to_vec());
    }
    let mut norm: Vec<u8> = Vec::with_capacity(at.len());
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(raw.len(), |p| i + p);
        let c = &raw[i..end];
        i = end + 1;
        match c {
            b"" | b"." => continue,
            b".." => return None,
            c => {
                norm.push(b'/');
                norm.extend_from_slice(c);
            }
        }
        if norm == at {
            let rest = raw.get(end..).unwrap_or(b"");
            return Some(if rest.is_empty() {
                b"/".to_vec()
            } else {
                rest.to_vec()
            });
        }
        if !at.starts_with(&norm) || at.get(norm.len()) != Some(&b'/') {
            return None;
        }
    }
    None
}

/// A file system as the POSIX edge sees it. Paths are byte strings relative to the
/// file system's root (a leading `/` is allowed); symbolic links resolve inside it.
pub trait FileSystem: Send + Sync {
    /// open(2).
    fn open(&self, path: &[u8], opts: &OpenOptions) -> FsResult<Arc<OpenFile>>;
    /// The last close of an open file description.
    fn close(&self, file: &OpenFile) -> FsResult<()>;
    /// pread(2).
    fn pread(&self, file: &OpenFile, buf: &mut [u8], offset: u64) -> FsResult<usize>;
    /// pwrite(2) (with O_APPEND, writes at the end, as Linux does).
    fn pwrite(&self, file: &OpenFile, buf: &[u8], offset: u64) -> FsResult<usize>;
    /// read(2) at the description's offset.
    fn read(&self, file: &OpenFile, buf: &mut [u8]) -> FsResult<usize>;
    /// write(2) at the description's offset (or the end, with O_APPEND).
    fn write(&self, file: &OpenFile, buf: &[u8]) -> FsResult<usize>;
    /// lseek(2).
    fn seek(&self, file: &OpenFile, offset: i64, whence: Whence) -> FsResult<u64>;
    /// ftruncate(2).
    fn ftruncate(&self, file: &OpenFile, len: u64) -> FsResult<()>;
    /// fallocate(2).
    fn fallocate(&self, file: &OpenFile, mode: Fallocate, offset: u64, len: u64) -> FsResult<()>;
    /// fsync(2): everything written so far is durable when this returns.
    fn fsync(&self, file: &OpenFile) -> FsResult<()>;
    /// fdatasync(2) (the same as fsync here: one atomic commit).
    fn fdatasync(&self, file: &OpenFile) -> FsResult<()>;
    /// sync(2)/syncfs(2).
    fn sync(&self) -> FsResult<()>;
    /// fstat(2).
    fn fstat(&self, file: &OpenFile) -> FsResult<Stat>;
    /// stat(2).
    fn stat(&self, path: &[u8]) -> FsResult<Stat>;
    /// lstat(2).
    fn lstat(&self, path: &[u8]) -> FsResult<Stat>;
    /// unlink(2).
    fn unlink(&self, path: &[u8]) -> FsResult<()>;
    /// mkdir(2).
    fn mkdir(&self, path: &[u8], mode: u32) -> FsResult<()>;
    /// rmdir(2).
    fn rmdir(&self, path: &[u8]) -> FsResult<()>;
    /// rename(2).
    fn rename(&self, from: &[u8], to: &[u8]) -> FsResult<()>;
    /// link(2).
    fn link(&self, existing: &[u8], new: &[u8]) -> FsResult<()>;
    /// symlink(2).
    fn symlink(&self, target: &[u8], path: &[u8]) -> FsResult<()>;
    /// readlink(2).
    fn readlink(&self, path: &[u8]) -> FsResult<Vec<u8>>;
    /// Every entry of a directory, `.` and `..` included.
    fn readdir(&self, file: &OpenFile) -> FsResult<Vec<DirEntry>>;
    /// chmod(2) (permission bits only).
    fn chmod(&self, path: &[u8], mode: u32) -> FsResult<()>;
    /// fchmod(2).
    fn fchmod(&self, file: &OpenFile, mode: u32) -> FsResult<()>;
    /// chown(2)/lchown(2); `None` leaves that id alone.
    fn chown(&self, path: &[u8], uid: Option<u32>, gid: Option<u32>, follow: bool) -> FsResult<()>;
    /// fchown(2).
    fn fchown(&self, file: &OpenFile, uid: Option<u32>, gid: Option<u32>) -> FsResult<()>;
    /// mknod(2) of a FIFO, a socket or a device node (`mode` has the type).
    /// Such inodes are kept, never opened: see `open`.
    fn mknod(&self, path: &[u8], mode: u32, rdev: u64) -> FsResult<()>;
    /// access(2): may `cred` (the real ids, for access) do `mask` (the
    /// `cred::MAY_*` bits; 0 for existence) on `path`?
    fn access(&self, path: &[u8], mask: u32, cred: &Cred) -> FsResult<()>;
    /// utimensat(2).
    fn utimens(&self, path: &[u8], atime: SetTime, mtime: SetTime, follow: bool) -> FsResult<()>;
    /// fcntl(F_GETLK).
    fn getlk(&self, file: &OpenFile, req: &RecordLock) -> FsResult<Option<RecordLock>>;
    /// fcntl(F_SETLK) or, with `wait`, F_SETLKW.
    fn setlk(&self, file: &OpenFile, req: &RecordLock, wait: bool) -> FsResult<()>;
    /// Releases every record lock `owner` holds on the file (close(2) does this).
    fn unlock_all(&self, file: &OpenFile, owner: u64);
    /// flock(2): a whole-file lock of `owner` (an open file description),
    /// shared (Read), exclusive (Write) or released (Unlock); with `wait`, it
    /// waits while another owner holds a conflicting one. flock locks and
    /// record locks do not see each other, as on Linux.
    fn flock(&self, file: &OpenFile, owner: u64, kind: LockKind, wait: bool) -> FsResult<()>;
    /// statfs(2).
    fn statfs(&self) -> FsResult<StatFs>;
}
