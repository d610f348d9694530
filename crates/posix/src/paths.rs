//! Calls on paths: where a path goes (a sealed mount or the host, under the
//! host policy), the working directory, stat, access, the calls that change a
//! name or an inode (`PathOp`), the two-path calls, statfs. The lexical
//! helpers (normalising, prefix tests) are in `path`.

use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use libc::{EINVAL, ENOTDIR, EROFS};
use rktio_fs::{FileType, OpenOptions, SetTime, StatFs};

use crate::descriptors::Kind;
use crate::stats::bump;
use crate::{FullStat, Runtime, SysResult, cred, errno, path};

/// What a path refers to.
pub(crate) enum Route {
    /// On mount `usize`, this path inside it.
    Mount(usize, Vec<u8>),
    /// On the host: this absolute path.
    Host(Vec<u8>),
}

pub(crate) enum At {
    Path(Vec<u8>),
    Mount(usize, Vec<u8>),
    Host,
    Err(i32),
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

impl Runtime {
    pub(crate) fn route(&self, path: &[u8]) -> Route {
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

    pub(crate) fn virtual_cwd(&self) -> Option<Vec<u8>> {
        self.cwd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
    pub(crate) fn host_check(&self, abs: &[u8], write: bool, what: &str) -> Option<i32> {
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

    /// stat(2) (`follow`) or lstat(2).
    pub fn stat(&self, path: &[u8], follow: bool) -> Option<SysResult<FullStat>> {
        match self.route(path) {
            // Metadata of host paths is not the program's data, and programs
            // search PATH and their own directories with it: not policed.
            Route::Host(_) => None,
            Route::Mount(m, rel) => Some(self.stat_on(m, &rel, follow)),
        }
    }

    pub(crate) fn stat_on(&self, m: usize, rel: &[u8], follow: bool) -> SysResult<FullStat> {
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

    pub(crate) fn path_op_on(&self, m: usize, rel: &[u8], op: PathOp<'_>) -> SysResult<PathOut> {
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

    /// What `resolve_at` gives: a path to route, a place on a mount, a host call,
    /// or an error.
    pub(crate) fn resolve_at(&self, dirfd: RawFd, path: &[u8]) -> At {
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
}
