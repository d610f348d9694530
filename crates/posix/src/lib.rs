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
//!
//! One file per family of calls: `descriptors` (the table, close, dup, fcntl
//! flags), `files` (open, read, write, seek, sync, truncate), `paths` (routing,
//! the host policy, the working directory, stat, access, name and inode
//! changes), `dirs` (directory streams), `locks` (record locks, flock),
//! `memory` (shared mappings), `sock` (sockets), `epoll` (readiness, epoll), `unix` (AF_UNIX names
//! on sealed paths), `cred` (credentials), `mount_table` (/proc/self/mounts),
//! `stats` (`--stats`); `syscalls` is the table over the system-call numbers.
//! This file holds the runtime itself and the lazy mounts.

#![forbid(unsafe_code)]

pub mod config;
pub mod cred;
mod descriptors;
mod dirs;
mod epoll;
pub mod exec;
mod files;
mod locks;
mod memory;
mod mount_table;
pub mod path;
mod paths;
mod sock;
mod stats;
pub mod syscalls;
mod unix;

pub use descriptors::Desc;
pub use dirs::d_type;
pub use epoll::{EpollEvent, EpollWaker, WAKE_TAG};
pub use locks::{FlockArgs, LockCmd};
pub use paths::{PathIs, PathOp, PathOut};
pub use sock::SockAddr;
pub use stats::Stats;

use descriptors::Kind;
use memory::SharedMap;
use paths::Route;
use stats::bump;

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rktio_blk::{Backend, OpenOptions as QueueOptions};
use rktio_fs::{FileSystem, FsError, MountOptions, Stat};
use rktio_seal::KeySource;

pub use config::Config;

use libc::EIO;

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

/// A listener and the family of the socket that opened it (see `listen`).
type SharedListener = (i32, std::sync::Weak<Mutex<rktio_net::TcpListener>>);

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

    /// True the first time `key` is reported (one message per cause).
    fn report_once(&self, key: &[u8]) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_vec())
    }
}
