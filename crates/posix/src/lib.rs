//! rkt-io's POSIX edge, the safe half of `librktio`: the descriptor table, the
//! routing of paths to sealed mounts, the host path policy, and the file calls as
//! a program makes them (errno values, offsets, flags, record locks).
//!
//! Every call returns `None` when the call is not ours (a host descriptor, a
//! host path the policy allows): the LD_PRELOAD library then passes it to libc.
//! `Some(Err(errno))` is an answer, refusals of host paths included.
//!
//! Descriptor numbers are real host descriptors (slots, see `rktio_sys::slot`), so
//! they never collide with the host's and close-on-exec is the kernel's.

#![forbid(unsafe_code)]

pub mod config;
pub mod cred;
pub mod exec;
mod mounts;
pub mod path;
mod sock;
pub mod syscalls;
mod unix;

pub use sock::{EpollEvent, SockAddr, WAKE_TAG};

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rktio_blk::{Backend, OpenOptions as QueueOptions};
use rktio_fs::{
    DirEntry, Fallocate, FileSystem, FileType, FsError, LockKind, MountOptions, OpenFile,
    OpenOptions, RecordLock, SetTime, Stat, StatFs, Whence,
};
use rktio_seal::KeySource;

pub use config::Config;

use libc::{EBADF, EINVAL, EIO, ENOTDIR, EROFS};

/// Result of a call that is ours: the value, or an errno.
pub type SysResult<T> = Result<T, i32>;

fn errno(e: FsError) -> i32 {
    tracing::debug!(errno = e.errno, "{}", e.detail);
    if e.refusal {
        eprintln!("rktio: refused: {}", e.detail);
    }
    e.errno
}

/// One sealed mount, opened at its first use (so that a shell that only
/// starts the program never holds the image).
struct Mount {
    /// Where the program sees it (absolute, normalised).
    at: Vec<u8>,
    cfg: config::MountConfig,
    fs: OnceLock<Option<Arc<dyn FileSystem>>>,
    /// st_dev reported for its files.
    dev: u64,
    read_only: bool,
}

impl Mount {
    /// The mount's file system, with the calling thread's credentials made
    /// current for what it does next (see `cred`).
    fn fs(&self) -> SysResult<&Arc<dyn FileSystem>> {
        cred::refresh();
        self.fs
            .get_or_init(|| match open_mount(&self.cfg, false) {
                Ok(fs) => Some(fs),
                Err(e) => {
                    eprintln!("rktio: {e}");
                    None
                }
            })
            .as_ref()
            .ok_or(EIO)
    }
}

/// Unlocks and mounts one sealed image. `check_only`: read-only, with the
/// pread backend (what `rktio run` does before it starts the program).
pub fn open_mount(
    m: &config::MountConfig,
    check_only: bool,
) -> Result<Arc<dyn FileSystem>, String> {
    let read_only = m.read_only || check_only;
    let (uid, gid) = rktio_sys::ids();
    let spec = rktio_fs::mount::MountSpec {
        queue: QueueOptions {
            backend: match m.backend {
                _ if check_only => Backend::File,
                config::BackendName::Uring => Backend::Uring,
                config::BackendName::File => Backend::File,
            },
            write: !read_only,
            ..Default::default()
        },
        seal: rktio_seal::OpenOptions {
            read_only,
            expect_epoch: m.expect_epoch,
            expect_root: None,
        },
        fs: MountOptions {
            cache_pages: m.cache_mib.unwrap_or(64).max(1) * 256,
            read_only,
            uid,
            gid,
            ..Default::default()
        },
        at: Some(path::absolute(m.path.as_bytes(), b"/")),
    };
    let fs = rktio_fs::mount::mount(&m.image, &key_source(m)?, &spec).map_err(|e| match e {
        rktio_fs::mount::MountError::Fs(_) => format!("mount {}: {e}", m.path),
        _ => format!("mount {}: {}: {e}", m.path, m.image.display()),
    })?;
    Ok(Arc::new(fs))
}

/// What a path refers to.
enum Route {
    /// On mount `usize`, this path inside it.
    Mount(usize, Vec<u8>),
    /// On the host: this absolute path.
    Host(Vec<u8>),
}

/// An open file description of ours (shared by dup'ed descriptors).
#[derive(Debug)]
pub struct Desc {
    id: u64,
    /// O_APPEND, O_NONBLOCK and the access mode, as F_GETFL reports.
    status: AtomicI32,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    File(Arc<FileDesc>),
    Sock(sock::SockDesc),
    Epoll(sock::EpollDesc),
}

struct FileDesc {
    mount: usize,
    fs: Arc<dyn FileSystem>,
    file: Arc<OpenFile>,
    /// Path inside the mount, as opened (for openat relative to a directory).
    path: Vec<u8>,
    dev: u64,
    /// A directory's entries, read at the first getdents, and the next index.
    dir: Mutex<Option<(Vec<DirEntry>, usize)>>,
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
    fn flock_owner(&self) -> u64 {
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

/// A listener and the family of the socket that opened it (see `listen`).
type SharedListener = (i32, std::sync::Weak<Mutex<rktio_net::TcpListener>>);

/// A shared mapping of one of our files (see `Runtime::map_shared`).
struct SharedMap {
    addr: usize,
    len: usize,
    off: u64,
    file: Arc<FileDesc>,
    /// The protection it was made with (a writable one is written back).
    prot: i32,
}

impl SharedMap {
    fn writable(&self) -> bool {
        self.prot & libc::PROT_WRITE != 0
    }
}

/// Where `len` bytes at file offset `off` of `f`'s file land in the shared
/// mappings of that file (but the one at `except`): (address, offset into the
/// bytes, length, protection).
fn copies(
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

/// Counts of what the program did through the stack.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files opened on sealed mounts.
    pub opens: AtomicU64,
    /// Reads (read, pread, readv, preadv).
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Writes.
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// fsync, fdatasync, sync.
    pub syncs: AtomicU64,
    /// Other calls on sealed files (stat, lock, truncate, directory calls).
    pub meta: AtomicU64,
    /// Host paths refused by the policy.
    pub refused: AtomicU64,
    /// Connections accepted.
    pub accepts: AtomicU64,
    /// Connections started.
    pub connects: AtomicU64,
    /// Socket sends.
    pub sends: AtomicU64,
    /// Bytes sent.
    pub sent_bytes: AtomicU64,
    /// Socket receives.
    pub recvs: AtomicU64,
    /// Bytes received.
    pub received_bytes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A stat result with the device number of its mount.
#[derive(Debug, Clone, Copy)]
pub struct FullStat {
    /// What the file system reports.
    pub stat: Stat,
    /// st_dev.
    pub dev: u64,
}

/// The runtime: mounts, descriptors, policy, stats.
pub struct Runtime {
    mounts: Vec<Mount>,
    read_ok: Vec<String>,
    write_ok: Vec<String>,
    fds: RwLock<HashMap<RawFd, Arc<Desc>>>,
    next_id: AtomicU64,
    pid: u64,
    forked: AtomicBool,
    reported: Mutex<HashSet<Vec<u8>>>,
    net_cfg: Option<config::NetConfig>,
    net: OnceLock<Option<rktio_net::Net>>,
    /// The working directory while it is inside a mount (the host's cannot be
    /// there); `None`: the host's.
    cwd: Mutex<Option<Vec<u8>>>,
    maps: Mutex<Vec<SharedMap>>,
    /// How many (a write checks it before taking the lock).
    map_count: std::sync::atomic::AtomicUsize,
    /// Listeners by port, with the family that opened them (see `listen`).
    listeners: Mutex<HashMap<u16, SharedListener>>,
    /// AF_UNIX sockets bound on sealed paths: (mount, inode) -> the host
    /// socket's abstract name (see `unix`).
    unix_names: Mutex<HashMap<(usize, u64), Vec<u8>>>,
    /// This run's part of those names, and their count.
    unix_token: u64,
    unix_seq: AtomicU64,
    spin_us: u64,
    /// What the program did.
    pub stats: Stats,
    /// Print stats at exit.
    pub print_stats: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("mounts", &self.mounts.len())
            .finish_non_exhaustive()
    }
}

fn key_source(m: &config::MountConfig) -> Result<KeySource, String> {
    if let Some(f) = &m.key_file {
        return Ok(KeySource::File(f.clone()));
    }
    if let Some(v) = &m.key_env {
        return Ok(KeySource::Env(v.clone()));
    }
    if let Some(v) = &m.passphrase_env {
        let p = std::env::var(v)
            .map_err(|_| format!("mount {}: passphrase_env {v} is not set", m.path))?;
        return Ok(KeySource::Passphrase(zeroize::Zeroizing::new(p)));
    }
    if std::env::var_os("RKTIO_KEY").is_some() {
        return Ok(KeySource::Env("RKTIO_KEY".into()));
    }
    Err(format!(
        "mount {}: no key: give key_file, key_env or passphrase_env, or set RKTIO_KEY",
        m.path
    ))
}

impl Runtime {
    /// The runtime for `config`; each mount is opened at its first use.
    pub fn new(config: &Config) -> Result<Runtime, String> {
        cred::init();
        let mut mounts = Vec::new();
        for (i, m) in config.mount.iter().enumerate() {
            mounts.push(Mount {
                at: path::absolute(m.path.as_bytes(), b"/"),
                cfg: m.clone(),
                fs: OnceLock::new(),
                dev: 0x726b_0000 + i as u64,
                read_only: m.read_only,
            });
        }
        // Longest mount point first, so a nested mount wins.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
        let mut read_ok: Vec<String> = if config.host.defaults {
            config::DEFAULT_READ.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        };
        read_ok.extend(config.host.read.iter().cloned());
        let mut write_ok: Vec<String> = if config.host.defaults {
            config::DEFAULT_WRITE
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        write_ok.extend(config.host.write.iter().cloned());
        // What may be written may be read.
        read_ok.extend(write_ok.iter().cloned());
        Ok(Runtime {
            mounts,
            read_ok,
            write_ok,
            fds: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            pid: u64::from(std::process::id()),
            forked: AtomicBool::new(false),
            reported: Mutex::new(HashSet::new()),
            net_cfg: config.net.clone(),
            cwd: Mutex::new(None),
            listeners: Mutex::new(HashMap::new()),
            unix_names: Mutex::new(HashMap::new()),
            unix_token: {
                let mut b = [0u8; 8];
                rktio_sys::random_bytes(&mut b)
                    .map_err(|e| format!("no randomness for socket names: {e}"))?;
                u64::from_le_bytes(b)
            },
            unix_seq: AtomicU64::new(0),
            maps: Mutex::new(Vec::new()),
            map_count: std::sync::atomic::AtomicUsize::new(0),
            net: OnceLock::new(),
            spin_us: config.poll.spin_us,
            stats: Stats::default(),
            print_stats: config.stats,
        })
    }

    /// Called in a forked child (pthread_atfork): the child must not drive the
    /// parent's queues or commit over its sealed disk, so from now on every call
    /// on a stack descriptor or a sealed path fails with EIO. A child that execs
    /// starts afresh (and finds the image locked by its parent).
    pub fn mark_forked(&self) {
        self.forked.store(true, Ordering::SeqCst);
    }

    fn alive(&self) -> SysResult<()> {
        if self.forked.load(Ordering::Relaxed) {
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "rktio: refused a call on a sealed file or a socket of the stack in a forked child (EIO): one process per stack (docs/COMPAT.md)"
                );
            }
            Err(EIO)
        } else {
            Ok(())
        }
    }

    /// The shared mappings of sealed files.
    fn maps(&self) -> std::sync::MutexGuard<'_, Vec<SharedMap>> {
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fds(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RawFd, Arc<Desc>>> {
        self.fds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fds_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RawFd, Arc<Desc>>> {
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

    fn route(&self, path: &[u8]) -> Route {
        let joined: Vec<u8>;
        let raw: &[u8] = if path.first() == Some(&b'/') {
            path
        } else {
            let cwd = self.virtual_cwd().unwrap_or_else(|| {
                std::env::current_dir()
                    .map(|p| p.into_os_string().into_encoded_bytes())
                    .unwrap_or_else(|_| b"/".to_vec())
            });
            joined = [&cwd[..], b"/", path].concat();
            &joined
        };
        // Which mount (and the host policy) by the lexical form; inside a
        // mount, the file system walks the rest as written (where that
        // differs: a `.` or `..` component, a trailing slash).
        let abs = path::absolute(raw, b"/");
        let as_written = raw.windows(2).any(|w| w == b"/.") || raw.ends_with(b"/");
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(rest) = path::strip_under(&abs, &m.at) {
                let rest = as_written
                    .then(|| path::raw_rest(raw, &m.at))
                    .flatten()
                    .unwrap_or_else(|| rest.to_vec());
                return Route::Mount(i, rest);
            }
        }
        Route::Host(abs)
    }

    fn virtual_cwd(&self) -> Option<Vec<u8>> {
        self.cwd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The descriptors of ours, in no order.
    pub fn our_fds(&self) -> Vec<RawFd> {
        self.fds().keys().copied().collect()
    }

    /// For a call the stack does not serve on paths (mknod, inotify, exec, ...):
    /// is `path` (relative to `dirfd`) ours, or a host path, and may the program
    /// change it (`write`) under the host policy? A refusal is reported on
    /// stderr as the policy does (`what`: "mknod of").
    pub fn host_path_at(&self, dirfd: RawFd, path: &[u8], write: bool, what: &str) -> PathIs {
        let abs = match self.resolve_at(dirfd, path) {
            At::Path(p) => match self.route(&p) {
                Route::Host(abs) => abs,
                Route::Mount(..) => return PathIs::Ours,
            },
            At::Mount(..) => return PathIs::Ours,
            At::Err(e) => return PathIs::Refused(e),
            At::Host => {
                // Relative to a host directory: where that directory is now.
                let Ok(dir) = std::fs::read_link(format!("/proc/self/fd/{dirfd}")) else {
                    return PathIs::Refused(libc::EBADF);
                };
                let mut d = dir.into_os_string().into_encoded_bytes();
                d.push(b'/');
                path::absolute(path, &d)
            }
        };
        if write && let Some(e) = self.host_check(&abs, true, what) {
            return PathIs::Refused(e);
        }
        PathIs::Host(abs)
    }

    /// Is `path` on a sealed mount?
    pub fn is_sealed_path(&self, path: &[u8]) -> bool {
        matches!(self.route(path), Route::Mount(..))
    }

    /// A host path (not on a mount) the policy lets the program write.
    pub fn is_host_writable(&self, path: &[u8]) -> bool {
        match self.route(path) {
            Route::Host(abs) => path::under_any(&abs, &self.write_ok),
            Route::Mount(..) => false,
        }
    }

    /// getcwd(3) while the working directory is inside a mount.
    pub fn getcwd(&self) -> Option<Vec<u8>> {
        self.virtual_cwd()
    }

    /// chdir(2): into a mount, the working directory becomes ours (the host's
    /// stays where it was); anywhere else, the host's again (`None`: for the host).
    pub fn chdir(&self, path: &[u8]) -> Option<SysResult<()>> {
        let abs = match self.route(path) {
            Route::Host(abs) => {
                // The host resolves a relative path against its own directory:
                // give it the absolute one.
                *self
                    .cwd
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                let _ = abs;
                return None;
            }
            Route::Mount(m, rel) => match self.stat_on(m, &rel, true) {
                Err(e) => return Some(Err(e)),
                Ok(st) if st.stat.file_type() != FileType::Directory => {
                    return Some(Err(ENOTDIR));
                }
                Ok(_) => {
                    let mut a = self.mounts[m].at.clone();
                    if rel != b"/" {
                        a.extend_from_slice(&rel);
                    }
                    a
                }
            },
        };
        *self
            .cwd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(abs);
        Some(Ok(()))
    }

    /// fchdir(2) to a directory of ours.
    pub fn fchdir(&self, fd: RawFd) -> Option<SysResult<()>> {
        let Some(d) = self.desc(fd) else {
            *self
                .cwd
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return None;
        };
        let Kind::File(f) = &d.kind else {
            return Some(Err(ENOTDIR));
        };
        if !f.file.is_dir() {
            return Some(Err(ENOTDIR));
        }
        let mut a = self.mounts[f.mount].at.clone();
        if f.path != b"/" {
            a.extend_from_slice(&path::absolute(&f.path, b"/"));
        }
        *self
            .cwd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(a);
        Some(Ok(()))
    }

    /// The host policy: `None` if the host call may go ahead, else EACCES (and
    /// one line on stderr per refused path, so the user sees why).
    fn host_check(&self, abs: &[u8], write: bool, what: &str) -> Option<i32> {
        let ok = if write {
            path::under_any(abs, &self.write_ok)
        } else {
            path::under_any(abs, &self.read_ok)
        };
        if ok {
            return None;
        }
        // Opening a file that is not there is answered as the host would: the
        // program learns nothing stat(2) would not tell it, and its "optional
        // file" logic (a missing config, a first start without a dump) works.
        if !write {
            let p = std::path::Path::new(std::ffi::OsStr::from_bytes(abs));
            if std::fs::symlink_metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                return Some(libc::ENOENT);
            }
        }
        bump(&self.stats.refused, 1);
        let fresh = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(abs.to_vec());
        if fresh {
            eprintln!(
                "rktio: refused {what} {}{}: not under a sealed mount, and the host policy does not allow it (add it to [host] {} in rktio.toml)",
                String::from_utf8_lossy(abs),
                if write { " for writing" } else { "" },
                if write { "write" } else { "read" },
            );
        }
        Some(libc::EACCES)
    }

    /// True the first time `key` is reported (one message per cause).
    fn report_once(&self, key: &[u8]) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_vec())
    }

    fn insert(&self, fd: RawFd, d: Arc<Desc>) {
        self.fds_mut().insert(fd, d);
    }

    fn new_desc(&self, kind: Kind, status: i32) -> Arc<Desc> {
        Arc::new(Desc {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            status: AtomicI32::new(status),
            kind,
        })
    }

    fn file(&self, fd: RawFd) -> Option<SysResult<(Arc<Desc>, FileRef)>> {
        self.file_of(self.desc(fd)?)
    }

    /// `file` for a description already looked up (one table lookup per call).
    fn file_of(&self, d: Arc<Desc>) -> Option<SysResult<(Arc<Desc>, FileRef)>> {
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

    // ---- open, close, dup ----

    /// open(2) and openat(2) with AT_FDCWD.
    pub fn open(&self, path: &[u8], flags: i32, mode: u32) -> Option<SysResult<RawFd>> {
        match self.route(path) {
            Route::Host(abs) => {
                let acc = flags & libc::O_ACCMODE;
                // O_TMPFILE contains O_DIRECTORY's bit: test it whole.
                let writes = acc != libc::O_RDONLY
                    || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
                    || flags & libc::O_TMPFILE == libc::O_TMPFILE;
                if let Some(table) = mounts::table_of(&abs) {
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

    fn open_on(&self, m: usize, rel: &[u8], flags: i32, mode: u32) -> SysResult<RawFd> {
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
        let status = acc | (flags & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT));
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

    // ---- data ----

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
        Some(r.and_then(|(_, f)| {
            let n = f.fs().write(f.open(), buf).map_err(errno)?;
            self.count_write(n);
            Ok(n)
        }))
    }

    /// pwrite(2).
    pub fn pwrite(&self, fd: RawFd, buf: &[u8], off: i64) -> Option<SysResult<usize>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            let off = u64::try_from(off).map_err(|_| EINVAL)?;
            f.not_dir()?;
            let n = f.fs().pwrite(f.open(), buf, off).map_err(errno)?;
            self.count_write(n);
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
        Some(r.and_then(|(_, f)| {
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
            Ok(n)
        }))
    }

    fn count_read(&self, n: usize) {
        bump(&self.stats.reads, 1);
        bump(&self.stats.read_bytes, n as u64);
    }

    fn count_write(&self, n: usize) {
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

    // ---- fcntl ----

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

    // ---- metadata ----

    /// fstat(2).
    pub fn fstat(&self, fd: RawFd) -> Option<SysResult<FullStat>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            let stat = f.fs().fstat(f.open()).map_err(errno)?;
            Ok(FullStat { stat, dev: f.dev() })
        }))
    }

    /// stat(2) (`follow`) or lstat(2).
    pub fn stat(&self, path: &[u8], follow: bool) -> Option<SysResult<FullStat>> {
        match self.route(path) {
            // Metadata of host paths is not the program's data, and programs
            // search PATH and their own directories with it: not policed.
            Route::Host(_) => None,
            Route::Mount(m, rel) => Some(self.stat_on(m, &rel, follow)),
        }
    }

    fn stat_on(&self, m: usize, rel: &[u8], follow: bool) -> SysResult<FullStat> {
        self.alive()?;
        bump(&self.stats.meta, 1);
        let mount = &self.mounts[m];
        let fs = mount.fs()?;
        let stat = if follow { fs.stat(rel) } else { fs.lstat(rel) }.map_err(errno)?;
        Ok(FullStat {
            stat,
            dev: mount.dev,
        })
    }

    /// fstatat(2) (AT_SYMLINK_NOFOLLOW in `flags`; AT_EMPTY_PATH is fstat).
    pub fn fstatat(&self, dirfd: RawFd, path: &[u8], flags: i32) -> Option<SysResult<FullStat>> {
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            return self.fstat(dirfd);
        }
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        match self.resolve_at(dirfd, path) {
            At::Path(p) => self.stat(&p, follow),
            At::Mount(m, rel) => Some(self.stat_on(m, &rel, follow)),
            At::Host => None,
            At::Err(e) => Some(Err(e)),
        }
    }

    /// access(2)/faccessat(2): checked as the file system checks a call, with
    /// the real ids (`effective`: AT_EACCESS, the effective ones); W_OK on a
    /// read-only mount is EROFS.
    pub fn access(
        &self,
        dirfd: RawFd,
        path: &[u8],
        amode: i32,
        effective: bool,
    ) -> Option<SysResult<()>> {
        if amode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
            return Some(Err(EINVAL));
        }
        let (m, rel) = match self.resolve_at(dirfd, path) {
            At::Path(p) => match self.route(&p) {
                // As stat: the policy applies to opening and changing.
                Route::Host(_) => return None,
                Route::Mount(m, rel) => (m, rel),
            },
            At::Mount(m, rel) => (m, rel),
            At::Host => return None,
            At::Err(e) => return Some(Err(e)),
        };
        if amode & libc::W_OK != 0 && self.mounts[m].read_only {
            return Some(self.stat_on(m, &rel, true).and(Err(EROFS)));
        }
        let mask = (amode & (libc::R_OK | libc::W_OK | libc::X_OK)) as u32;
        let who = cred::for_access(effective);
        Some(
            self.alive()
                .and_then(|()| self.mounts[m].fs()?.access(&rel, mask, &who).map_err(errno)),
        )
    }

    /// Calls that change a path: unlink, rmdir, mkdir, chmod, chown, utimes,
    /// truncate, readlink (read), symlink. Host paths go through the policy.
    pub fn path_op(&self, dirfd: RawFd, path: &[u8], op: PathOp<'_>) -> Option<SysResult<PathOut>> {
        let write = !matches!(op, PathOp::Readlink);
        let (m, rel) = match self.resolve_at(dirfd, path) {
            At::Path(p) => match self.route(&p) {
                Route::Host(abs) => {
                    if !write {
                        return None;
                    }
                    // mkdir of what exists fails with EEXIST before any
                    // permission is looked at (mkdir -p walks up from /).
                    if matches!(op, PathOp::Mkdir(_))
                        && std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&abs)).is_ok()
                    {
                        return Some(Err(libc::EEXIST));
                    }
                    return self.host_check(&abs, true, op.name()).map(Err);
                }
                Route::Mount(m, rel) => (m, rel),
            },
            At::Mount(m, rel) => (m, rel),
            At::Host => return None,
            At::Err(e) => return Some(Err(e)),
        };
        Some(self.path_op_on(m, &rel, op))
    }

    fn path_op_on(&self, m: usize, rel: &[u8], op: PathOp<'_>) -> SysResult<PathOut> {
        self.alive()?;
        bump(&self.stats.meta, 1);
        let mount = &self.mounts[m];
        if mount.read_only && !matches!(op, PathOp::Readlink) {
            return Err(EROFS);
        }
        let fs = mount.fs()?;
        match op {
            PathOp::Unlink => fs.unlink(rel),
            PathOp::Rmdir => fs.rmdir(rel),
            PathOp::Mkdir(mode) => fs.mkdir(rel, mode & 0o7777),
            PathOp::Chmod(mode) => fs.chmod(rel, mode & 0o7777),
            PathOp::Chown(u, g, follow) => fs.chown(rel, u, g, follow),
            PathOp::Utimens(a, b, follow) => fs.utimens(rel, a, b, follow),
            PathOp::Truncate(len) => {
                let len = u64::try_from(len).map_err(|_| EINVAL)?;
                let f = fs
                    .open(
                        rel,
                        &OpenOptions {
                            read: false,
                            write: true,
                            ..OpenOptions::default()
                        },
                    )
                    .map_err(errno)?;
                let r = fs.ftruncate(&f, len);
                let _ = fs.close(&f);
                r
            }
            PathOp::Symlink(target) => fs.symlink(target, rel),
            PathOp::Mknod(mode, dev) => fs.mknod(rel, mode, dev),
            PathOp::Readlink => return fs.readlink(rel).map(PathOut::Link).map_err(errno),
        }
        .map(|()| PathOut::Done)
        .map_err(errno)
    }

    /// rename(2)/renameat(2) and link(2)/linkat(2): both paths on one mount, or
    /// both on the host (EXDEV across).
    pub fn two_paths(
        &self,
        (fd1, p1): (RawFd, &[u8]),
        (fd2, p2): (RawFd, &[u8]),
        link: bool,
    ) -> Option<SysResult<()>> {
        let a = self.resolve_at(fd1, p1);
        let b = self.resolve_at(fd2, p2);
        let side = |x: At| -> Result<Option<(usize, Vec<u8>)>, i32> {
            match x {
                At::Path(p) => match self.route(&p) {
                    Route::Host(abs) => match self.host_check(
                        &abs,
                        true,
                        if link { "link of" } else { "rename of" },
                    ) {
                        Some(e) => Err(e),
                        None => Ok(None),
                    },
                    Route::Mount(m, rel) => Ok(Some((m, rel))),
                },
                At::Mount(m, rel) => Ok(Some((m, rel))),
                At::Host => Ok(None),
                At::Err(e) => Err(e),
            }
        };
        let (a, b) = match (side(a), side(b)) {
            (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            (Ok(a), Ok(b)) => (a, b),
        };
        match (a, b) {
            (None, None) => None,
            (Some((m1, r1)), Some((m2, r2))) if m1 == m2 => Some((|| {
                self.alive()?;
                bump(&self.stats.meta, 1);
                let mount = &self.mounts[m1];
                if mount.read_only {
                    return Err(EROFS);
                }
                if link {
                    mount.fs()?.link(&r1, &r2).map_err(errno)
                } else {
                    mount.fs()?.rename(&r1, &r2).map_err(errno)
                }
            })()),
            _ => Some(Err(libc::EXDEV)),
        }
    }

    /// fchmod(2), fchown(2), futimens(2).
    pub fn fd_attr(&self, fd: RawFd, op: PathOp<'_>) -> Option<SysResult<()>> {
        let r = self.file(fd)?;
        Some(r.and_then(|(_, f)| {
            bump(&self.stats.meta, 1);
            match op {
                PathOp::Chmod(mode) => f.fs().fchmod(f.open(), mode & 0o7777).map_err(errno),
                PathOp::Chown(u, g, _) => f.fs().fchown(f.open(), u, g).map_err(errno),
                _ => {
                    // By path inside the mount: the file system has these by path.
                    let fd = f.inner();
                    match self.path_op_on(fd.mount, &fd.path, op) {
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            }
        }))
    }

    /// fstatfs(2) / statfs(2) on a mount.
    pub fn statfs(&self, fd: Option<RawFd>, path: Option<&[u8]>) -> Option<SysResult<StatFs>> {
        let m = if let Some(fd) = fd {
            let d = self.desc(fd)?;
            let Kind::File(f) = &d.kind else {
                return Some(Err(libc::ENOSYS));
            };
            f.mount
        } else {
            match self.route(path.unwrap_or(b"")) {
                Route::Host(_) => return None,
                Route::Mount(m, _) => m,
            }
        };
        Some(
            self.alive()
                .and_then(|()| self.mounts[m].fs()?.statfs().map_err(errno)),
        )
    }

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

    /// What `resolve_at` gives: a path to route, a place on a mount, a host call,
    /// or an error.
    fn resolve_at(&self, dirfd: RawFd, path: &[u8]) -> At {
        if path.first() == Some(&b'/') || dirfd == libc::AT_FDCWD {
            return At::Path(path.to_vec());
        }
        let Some(d) = self.desc(dirfd) else {
            return At::Host;
        };
        let Kind::File(f) = &d.kind else {
            return At::Err(ENOTDIR);
        };
        if !f.file.is_dir() {
            return At::Err(ENOTDIR);
        }
        let mut p = f.path.clone();
        if path.is_empty() {
            return At::Mount(f.mount, p);
        }
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(path);
        At::Mount(f.mount, p)
    }

    /// The stats report printed at exit.
    pub fn report(&self) -> String {
        let s = &self.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ios = g(&s.reads) + g(&s.writes) + g(&s.syncs) + g(&s.sends) + g(&s.recvs);
        let hc = rktio_sys::HostCalls::snapshot();
        let total = hc.total();
        let mut out = format!(
            "rktio stats: files: {} opened, {} reads ({} bytes), {} writes ({} bytes), {} syncs, {} other calls; {} host paths refused\n",
            g(&s.opens),
            g(&s.reads),
            g(&s.read_bytes),
            g(&s.writes),
            g(&s.write_bytes),
            g(&s.syncs),
            g(&s.meta),
            g(&s.refused)
        );
        if g(&s.sends) + g(&s.recvs) + g(&s.accepts) + g(&s.connects) > 0 {
            out.push_str(&format!(
                "rktio stats: sockets: {} accepted, {} connects, {} sends ({} bytes), {} receives ({} bytes)\n",
                g(&s.accepts),
                g(&s.connects),
                g(&s.sends),
                g(&s.sent_bytes),
                g(&s.recvs),
                g(&s.received_bytes)
            ));
            if let Some(Some(net)) = self.net.get() {
                let st = net.stats();
                out.push_str(&format!(
                    "rktio stats: network: {}; frames in {} out {}, WireGuard packets in {} out {}\n",
                    sock::NIC.get().map(String::as_str).unwrap_or("?"),
                    st.nic.rx_frames,
                    st.nic.tx_frames,
                    st.wg.rx_packets,
                    st.wg.tx_packets
                ));
            }
        }
        out.push_str(&format!("rktio stats: host calls by the stack: {hc}\n"));
        if ios > 0 {
            out.push_str(&format!(
                "rktio stats: {:.3} host calls per I/O ({total} for {ios} I/Os)\n",
                total as f64 / ios as f64
            ));
        }
        out
    }
}

fn seek_data_hole(f: &FileRef, off: i64, whence: i32) -> SysResult<i64> {
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

enum At {
    Path(Vec<u8>),
    Mount(usize, Vec<u8>),
    Host,
    Err(i32),
}

/// A file descriptor of ours, for the calls on it.
struct FileRef(Arc<FileDesc>);

impl FileRef {
    fn inner(&self) -> &FileDesc {
        &self.0
    }
    fn fs(&self) -> &dyn FileSystem {
        cred::refresh();
        &*self.inner().fs
    }
    fn open(&self) -> &OpenFile {
        &self.inner().file
    }
    fn dev(&self) -> u64 {
        self.inner().dev
    }
    fn not_dir(&self) -> SysResult<()> {
        if self.open().is_dir() {
            Err(libc::EISDIR)
        } else {
            Ok(())
        }
    }
}

/// Where a path of a call the stack does not serve lies (see
/// [`Runtime::host_path_at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathIs {
    /// On a sealed mount (or relative to a directory of ours).
    Ours,
    /// On the host, at this absolute path, and the policy allows the call.
    Host(Vec<u8>),
    /// Refused with this errno (the policy said why on stderr).
    Refused(i32),
}

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

/// A call on a path (see [`Runtime::path_op`]).
#[derive(Debug, Clone, Copy)]
pub enum PathOp<'a> {
    /// unlink.
    Unlink,
    /// rmdir.
    Rmdir,
    /// mkdir with a mode.
    Mkdir(u32),
    /// chmod.
    Chmod(u32),
    /// chown (uid, gid, follow symlinks).
    Chown(Option<u32>, Option<u32>, bool),
    /// utimensat (atime, mtime, follow).
    Utimens(SetTime, SetTime, bool),
    /// truncate.
    Truncate(i64),
    /// symlink with this target.
    Symlink(&'a [u8]),
    /// mknod (type and permission bits, device number).
    Mknod(u32, u64),
    /// readlink.
    Readlink,
}

impl PathOp<'_> {
    fn name(&self) -> &'static str {
        match self {
            PathOp::Unlink => "unlink of",
            PathOp::Rmdir => "rmdir of",
            PathOp::Mkdir(_) => "mkdir of",
            PathOp::Chmod(_) => "chmod of",
            PathOp::Chown(..) => "chown of",
            PathOp::Utimens(..) => "utimes of",
            PathOp::Truncate(_) => "truncate of",
            PathOp::Symlink(_) => "symlink at",
            PathOp::Mknod(..) => "mknod of",
            PathOp::Readlink => "readlink of",
        }
    }
}

/// What a path call gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOut {
    /// Done.
    Done,
    /// readlink's target.
    Link(Vec<u8>),
}

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
