//! AF_UNIX sockets named by a path on a sealed mount. The name is a socket
//! inode in the image (made as bind(2) makes it: the umask, the directory's
//! permissions, EADDRINUSE where a file is), and the host socket behind it is
//! bound to an abstract name of this run's (a random token, the inode and a
//! count), which connect(2) on that path finds again. The host socket is the
//! kernel's, as for every AF_UNIX socket: what passes through it is not
//! sealed (docs/SECURITY.md).

use std::sync::atomic::Ordering;

use libc::{EADDRINUSE, ECONNREFUSED, EROFS};
use rktio_fs::cred::MAY_WRITE;

use super::*;

impl Runtime {
    /// bind(2) of an AF_UNIX socket to `path`: for a path on a sealed mount,
    /// makes the socket inode and gives the abstract name (without its leading
    /// NUL) to bind the host socket to. None: a host path.
    pub fn unix_bind(&self, path: &[u8]) -> Option<SysResult<Vec<u8>>> {
        let Route::Mount(m, rel) = self.route(path) else {
            return None;
        };
        Some((|| {
            self.alive()?;
            let mount = &self.mounts[m];
            if mount.read_only {
                return Err(EROFS);
            }
            let fs = mount.fs()?;
            let mode = libc::S_IFSOCK | (0o777 & !cred::umask());
            fs.mknod(&rel, mode, 0).map_err(|e| {
                if e.errno == libc::EEXIST {
                    EADDRINUSE
                } else {
                    errno(e)
                }
            })?;
            let ino = fs.lstat(&rel).map_err(errno)?.ino;
            let seq = self.unix_seq.fetch_add(1, Ordering::Relaxed);
            let name = format!("rktio-{:016x}-{m}-{ino}-{seq}", self.unix_token).into_bytes();
            self.unix_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((m, ino), name.clone());
            Ok(name)
        })())
    }

    /// The host socket could not take the name `unix_bind` gave: the inode
    /// goes again.
    pub fn unix_unbind(&self, path: &[u8]) {
        if let Route::Mount(m, rel) = self.route(path)
            && let Ok(fs) = self.mounts[m].fs()
        {
            let _ = fs.unlink(&rel);
        }
    }

    /// connect(2) (or a datagram's destination) on `path`: for a path on a
    /// sealed mount, the abstract name of the socket bound there in this run
    /// (ECONNREFUSED for a socket inode nothing of this run is bound to, as
    /// for a stale socket file). None: a host path.
    pub fn unix_connect(&self, path: &[u8]) -> Option<SysResult<Vec<u8>>> {
        let Route::Mount(m, rel) = self.route(path) else {
            return None;
        };
        Some((|| {
            self.alive()?;
            let fs = self.mounts[m].fs()?;
            let st = fs.stat(&rel).map_err(errno)?;
            if st.mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(ECONNREFUSED);
            }
            // Connecting needs write permission on the socket (Linux's
            // unix_find_bsd: MAY_WRITE).
            let who = rktio_fs::cred::thread_cred()
                .map(|c| (*c).clone())
                .unwrap_or_else(|| cred::for_access(true));
            fs.access(&rel, MAY_WRITE, &who).map_err(errno)?;
            self.unix_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&(m, st.ino))
                .cloned()
                .ok_or(ECONNREFUSED)
        })())
    }
}
