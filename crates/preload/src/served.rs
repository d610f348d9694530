//! The trapped system calls the table routes to the stack (`Route::Stack`) or to
//! the host for host descriptors and paths only (`Route::HostOnly`). A call that
//! has a libc entry point goes to the same code as that entry point (so the
//! fast path and the trap behave alike, host path policy included); the others
//! are served here. Results are the kernel's: the value, or -errno.

use std::ffi::{CStr, CString, c_char, c_int};

use libc::{off_t, size_t};
use rktio_posix::{PathIs, PathOp, Runtime};

use crate::trap::{pass, refuse, sys};

fn i(v: u64) -> c_int {
    v as c_int
}

fn p<T>(v: u64) -> *mut T {
    v as *mut T
}

/// A libc int result as the kernel's.
fn ci(r: c_int) -> i64 {
    sys(i64::from(r))
}

fn cs(r: isize) -> i64 {
    sys(r as i64)
}

/// The path argument, or -errno as the kernel answers for one it cannot copy
/// in (EFAULT, ENAMETOOLONG).
fn path_arg<'a>(v: u64) -> Result<&'a [u8], i64> {
    crate::trap::user::c_path(v as *const c_char).map_err(|e| -i64::from(e))
}

/// The path argument: None for NULL or an address that cannot be read.
fn path<'a>(v: u64) -> Option<&'a [u8]> {
    crate::trap::user::c_str(v as *const c_char)
}

/// Is `fd` one of the stack's descriptors?
fn ours(rt: Option<&Runtime>, fd: u64) -> bool {
    rt.is_some_and(|rt| rt.is_ours(fd as c_int))
}

/// A call the stack does not serve, on a path: passed for a host path the
/// policy allows (made absolute where the program's working directory is ours),
/// refused on a sealed one. `path_arg` is the index of the path, after `dirfd`
/// (None: no dirfd, the path is relative to the working directory).
fn host_path_call(
    nr: i64,
    mut a: [u64; 6],
    dirfd_arg: Option<usize>,
    path_arg: usize,
    write: bool,
    errno_ours: c_int,
    why: &str,
) -> i64 {
    let Some(rt) = crate::runtime() else {
        return pass(nr, a);
    };
    let Some(pth) = path(a[path_arg]) else {
        return pass(nr, a);
    };
    let dirfd = dirfd_arg.map_or(libc::AT_FDCWD, |d| i(a[d]));
    let what = format!("{} of", rktio_posix::syscalls::name(nr));
    match rt.host_path_at(dirfd, pth, write, &what) {
        PathIs::Ours => refuse(nr, errno_ours, why),
        PathIs::Refused(e) => -i64::from(e),
        PathIs::Host(abs) => {
            let Ok(c) = CString::new(abs) else {
                return -i64::from(libc::EINVAL);
            };
            if dirfd == libc::AT_FDCWD || pth.first() == Some(&b'/') {
                a[path_arg] = c.as_ptr() as u64;
            }
            pass(nr, a)
        }
    }
}

/// A call the stack does not serve, on descriptors: refused on ours.
fn host_fd_call(nr: i64, a: [u64; 6], fds: &[usize], errno_ours: c_int, why: &str) -> i64 {
    let rt = crate::runtime();
    if fds.iter().any(|&f| ours(rt, a[f])) {
        return refuse(nr, errno_ours, why);
    }
    if fds.iter().any(|&f| rktio_sys::is_internal(a[f] as c_int)) {
        return -i64::from(libc::EBADF);
    }
    pass(nr, a)
}

/// mremap(2): refused for a shared mapping of a sealed file (the stack keeps
/// where it is, to bring the file's writes to it); the rest is the host's.
fn mremap_call(nr: i64, a: [u64; 6]) -> i64 {
    if let Some((rt, _g)) = crate::enter()
        && rt.mapped_in(a[0] as usize, a[1] as usize)
    {
        return refuse(
            nr,
            libc::ENOMEM,
            "a shared mapping of a sealed file cannot be moved or resized (munmap and mmap again)",
        );
    }
    pass(nr, a)
}

/// Every Stack and HostOnly call of the table.
#[allow(non_upper_case_globals)]
pub fn serve(nr: i64, a: [u64; 6]) -> i64 {
    use libc::*;
    // SAFETY: the program made this system call with these arguments; each goes
    // to our libc entry point of the same contract, which reads and writes the
    // program's memory exactly as the kernel would.
    unsafe {
        match nr {
            SYS_read => cs(crate::read(i(a[0]), p(a[1]), a[2] as size_t)),
            SYS_write => cs(crate::write(i(a[0]), p(a[1]), a[2] as size_t)),
            SYS_open => ci(crate::open(p(a[0]), i(a[1]), a[2] as mode_t)),
            SYS_creat => ci(crate::creat(p(a[0]), a[1] as mode_t)),
            SYS_openat => ci(crate::openat(i(a[0]), p(a[1]), i(a[2]), a[3] as mode_t)),
            SYS_openat2 => open_how(a),
            SYS_close => ci(crate::close(i(a[0]))),
            SYS_close_range => close_range_ours(a),
            SYS_stat => ci(crate::stat(p(a[0]), p(a[1]))),
            SYS_lstat => ci(crate::lstat(p(a[0]), p(a[1]))),
            SYS_fstat => ci(crate::fstat(i(a[0]), p(a[1]))),
            SYS_newfstatat => ci(crate::fstatat(i(a[0]), p(a[1]), p(a[2]), i(a[3]))),
            SYS_statx => ci(crate::statx(
                i(a[0]),
                p(a[1]),
                i(a[2]),
                a[3] as c_uint,
                p(a[4]),
            )),
            SYS_poll => ci(crate::poll(p(a[0]), a[1] as nfds_t, i(a[2]))),
            SYS_ppoll => with_sigmask(a[3], |m| crate::ppoll(p(a[0]), a[1] as nfds_t, p(a[2]), m)),
            SYS_select => ci(crate::select(i(a[0]), p(a[1]), p(a[2]), p(a[3]), p(a[4]))),
            SYS_pselect6 => {
                // The sixth argument: { const sigset_t *ss; size_t ss_len }.
                let mask = if a[5] == 0 {
                    0
                } else {
                    match crate::user_read(a[5] as *const u64) {
                        Ok(m) => m,
                        Err(e) => return -i64::from(e),
                    }
                };
                with_sigmask(mask, |m| {
                    crate::pselect(i(a[0]), p(a[1]), p(a[2]), p(a[3]), p(a[4]), m)
                })
            }
            SYS_lseek => sys(crate::lseek(i(a[0]), a[1] as off_t, i(a[2]))),
            SYS_mmap => sys(crate::mmap(
                p(a[0]),
                a[1] as size_t,
                i(a[2]),
                i(a[3]),
                i(a[4]),
                a[5] as off_t,
            ) as i64),
            SYS_munmap => ci(crate::munmap(p(a[0]), a[1] as size_t)),
            SYS_msync => ci(crate::msync(p(a[0]), a[1] as size_t, i(a[2]))),
            SYS_mremap => mremap_call(nr, a),
            SYS_ioctl => ci(crate::ioctl(i(a[0]), a[1] as c_ulong, p(a[2]))),
            SYS_pread64 => cs(crate::pread(
                i(a[0]),
                p(a[1]),
                a[2] as size_t,
                a[3] as off_t,
            )),
            SYS_pwrite64 => cs(crate::pwrite(
                i(a[0]),
                p(a[1]),
                a[2] as size_t,
                a[3] as off_t,
            )),
            SYS_readv => cs(crate::readv(i(a[0]), p(a[1]), i(a[2]))),
            SYS_writev => cs(crate::writev(i(a[0]), p(a[1]), i(a[2]))),
            SYS_preadv => cs(crate::preadv(i(a[0]), p(a[1]), i(a[2]), a[3] as off_t)),
            SYS_pwritev => cs(crate::pwritev(i(a[0]), p(a[1]), i(a[2]), a[3] as off_t)),
            SYS_preadv2 | SYS_pwritev2 => rw2(nr, a),
            SYS_access => ci(crate::access(p(a[0]), i(a[1]))),
            SYS_faccessat => ci(crate::faccessat(i(a[0]), p(a[1]), i(a[2]), 0)),
            SYS_faccessat2 => ci(crate::faccessat(i(a[0]), p(a[1]), i(a[2]), i(a[3]))),
            SYS_dup => ci(crate::dup(i(a[0]))),
            SYS_dup2 => ci(crate::dup2(i(a[0]), i(a[1]))),
            SYS_dup3 => ci(crate::dup3(i(a[0]), i(a[1]), i(a[2]))),
            SYS_sendfile => cs(crate::sendfile(i(a[0]), i(a[1]), p(a[2]), a[3] as size_t)),
            SYS_socket => ci(crate::socket(i(a[0]), i(a[1]), i(a[2]))),
            SYS_connect => ci(crate::connect(i(a[0]), p(a[1]), a[2] as socklen_t)),
            SYS_accept => ci(crate::accept(i(a[0]), p(a[1]), p(a[2]))),
            SYS_accept4 => ci(crate::accept4(i(a[0]), p(a[1]), p(a[2]), i(a[3]))),
            SYS_sendto => cs(crate::sendto(
                i(a[0]),
                p(a[1]),
                a[2] as size_t,
                i(a[3]),
                p(a[4]),
                a[5] as socklen_t,
            )),
            SYS_recvfrom => cs(crate::recvfrom(
                i(a[0]),
                p(a[1]),
                a[2] as size_t,
                i(a[3]),
                p(a[4]),
                p(a[5]),
            )),
            SYS_sendmsg => cs(crate::sendmsg(i(a[0]), p(a[1]), i(a[2]))),
            SYS_recvmsg => cs(crate::recvmsg(i(a[0]), p(a[1]), i(a[2]))),
            SYS_sendmmsg => mmsg(a, true),
            SYS_recvmmsg => mmsg(a, false),
            SYS_shutdown => ci(crate::shutdown(i(a[0]), i(a[1]))),
            SYS_bind => ci(crate::bind(i(a[0]), p(a[1]), a[2] as socklen_t)),
            SYS_listen => ci(crate::listen(i(a[0]), i(a[1]))),
            SYS_getsockname => ci(crate::getsockname(i(a[0]), p(a[1]), p(a[2]))),
            SYS_getpeername => ci(crate::getpeername(i(a[0]), p(a[1]), p(a[2]))),
            SYS_setsockopt => ci(crate::setsockopt(
                i(a[0]),
                i(a[1]),
                i(a[2]),
                p(a[3]),
                a[4] as socklen_t,
            )),
            SYS_getsockopt => ci(crate::getsockopt(
                i(a[0]),
                i(a[1]),
                i(a[2]),
                p(a[3]),
                p(a[4]),
            )),
            SYS_fcntl => ci(crate::fcntl(i(a[0]), i(a[1]), a[2] as usize)),
            SYS_fsync => ci(crate::fsync(i(a[0]))),
            SYS_fdatasync => ci(crate::fdatasync(i(a[0]))),
            SYS_syncfs => ci(crate::syncfs(i(a[0]))),
            SYS_sync => {
                crate::sync();
                0
            }
            SYS_sync_file_range => ci(crate::sync_file_range(
                i(a[0]),
                a[1] as off_t,
                a[2] as off_t,
                a[3] as u32,
            )),
            SYS_fadvise64 => -i64::from(crate::posix_fadvise(
                i(a[0]),
                a[1] as off_t,
                a[2] as off_t,
                i(a[3]),
            )),
            SYS_readahead => cs(crate::readahead(i(a[0]), a[1] as off_t, a[2] as size_t)),
            SYS_truncate => ci(crate::truncate(p(a[0]), a[1] as off_t)),
            SYS_ftruncate => ci(crate::ftruncate(i(a[0]), a[1] as off_t)),
            SYS_fallocate => ci(crate::fallocate(
                i(a[0]),
                i(a[1]),
                a[2] as off_t,
                a[3] as off_t,
            )),
            SYS_getcwd => cwd_len(a),
            SYS_chdir => ci(crate::chdir(p(a[0]))),
            SYS_fchdir => ci(crate::fchdir(i(a[0]))),
            SYS_rename => ci(crate::rename(p(a[0]), p(a[1]))),
            SYS_renameat => ci(crate::renameat(i(a[0]), p(a[1]), i(a[2]), p(a[3]))),
            SYS_renameat2 => rename2(a),
            SYS_link => ci(crate::link(p(a[0]), p(a[1]))),
            SYS_linkat => link_at(a),
            SYS_unlink => ci(crate::unlink(p(a[0]))),
            SYS_unlinkat => ci(crate::unlinkat(i(a[0]), p(a[1]), i(a[2]))),
            SYS_mkdir => ci(crate::mkdir(p(a[0]), a[1] as mode_t)),
            SYS_mkdirat => ci(crate::mkdirat(i(a[0]), p(a[1]), a[2] as mode_t)),
            SYS_rmdir => ci(crate::rmdir(p(a[0]))),
            SYS_symlink => ci(crate::symlink(p(a[0]), p(a[1]))),
            SYS_symlinkat => ci(crate::symlinkat(p(a[0]), i(a[1]), p(a[2]))),
            SYS_readlink => cs(crate::readlink(p(a[0]), p(a[1]), a[2] as size_t)),
            SYS_readlinkat => cs(crate::readlinkat(i(a[0]), p(a[1]), p(a[2]), a[3] as size_t)),
            SYS_chmod => ci(crate::chmod(p(a[0]), a[1] as mode_t)),
            SYS_fchmod => ci(crate::fchmod(i(a[0]), a[1] as mode_t)),
            SYS_fchmodat => chmodat(a[0], a[1], a[2], 0),
            SYS_fchmodat2 => chmodat(a[0], a[1], a[2], a[3]),
            SYS_chown => ci(crate::chown(p(a[0]), a[1] as u32, a[2] as u32)),
            SYS_lchown => ci(crate::lchown(p(a[0]), a[1] as u32, a[2] as u32)),
            SYS_fchown => ci(crate::fchown(i(a[0]), a[1] as u32, a[2] as u32)),
            SYS_fchownat => chown_at(a),
            SYS_utime => ci(crate::utime(p(a[0]), p(a[1]))),
            SYS_utimes => ci(crate::utimes(p(a[0]), p(a[1]))),
            SYS_futimesat => futimes_at(a),
            SYS_utimensat => ci(crate::utimensat(i(a[0]), p(a[1]), p(a[2]), i(a[3]))),
            SYS_statfs => stat_fs(nr, a, None),
            SYS_fstatfs => stat_fs(nr, a, Some(i(a[0]))),
            SYS_getdents64 => cs(crate::getdents64(i(a[0]), p(a[1]), a[2] as size_t)),
            SYS_epoll_create => ci(crate::epoll_create(i(a[0]))),
            SYS_epoll_create1 => ci(crate::epoll_create1(i(a[0]))),
            SYS_epoll_ctl => ci(crate::epoll_ctl(i(a[0]), i(a[1]), i(a[2]), p(a[3]))),
            SYS_epoll_wait => ci(crate::epoll_wait(i(a[0]), p(a[1]), i(a[2]), i(a[3]))),
            SYS_epoll_pwait => with_sigmask(a[4], |m| {
                crate::epoll_pwait(i(a[0]), p(a[1]), i(a[2]), i(a[3]), m)
            }),
            SYS_epoll_pwait2 => {
                let ms = if a[3] == 0 {
                    -1
                } else {
                    let t = match crate::user_read(a[3] as *const timespec) {
                        Ok(t) => t,
                        Err(e) => return -i64::from(e),
                    };
                    let ms = t.tv_sec.saturating_mul(1000) + (t.tv_nsec + 999_999) / 1_000_000;
                    ms.clamp(0, i64::from(c_int::MAX)) as c_int
                };
                with_sigmask(a[4], |m| {
                    crate::epoll_pwait(i(a[0]), p(a[1]), i(a[2]), ms, m)
                })
            }
            SYS_setxattr => ci(crate::setxattr(
                p(a[0]),
                p(a[1]),
                p(a[2]),
                a[3] as size_t,
                i(a[4]),
            )),
            SYS_lsetxattr => ci(crate::lsetxattr(
                p(a[0]),
                p(a[1]),
                p(a[2]),
                a[3] as size_t,
                i(a[4]),
            )),
            SYS_fsetxattr => ci(crate::fsetxattr(
                i(a[0]),
                p(a[1]),
                p(a[2]),
                a[3] as size_t,
                i(a[4]),
            )),
            SYS_getxattr => cs(crate::getxattr(p(a[0]), p(a[1]), p(a[2]), a[3] as size_t)),
            SYS_lgetxattr => cs(crate::lgetxattr(p(a[0]), p(a[1]), p(a[2]), a[3] as size_t)),
            SYS_fgetxattr => cs(crate::fgetxattr(i(a[0]), p(a[1]), p(a[2]), a[3] as size_t)),
            SYS_listxattr => cs(crate::listxattr(p(a[0]), p(a[1]), a[2] as size_t)),
            SYS_llistxattr => cs(crate::llistxattr(p(a[0]), p(a[1]), a[2] as size_t)),
            SYS_flistxattr => cs(crate::flistxattr(i(a[0]), p(a[1]), a[2] as size_t)),
            SYS_removexattr | SYS_lremovexattr => host_path_call(
                nr,
                a,
                None,
                0,
                true,
                ENOTSUP,
                "sealed files have no extended attributes",
            ),
            SYS_fremovexattr => host_fd_call(
                nr,
                a,
                &[0],
                ENOTSUP,
                "sealed files have no extended attributes",
            ),
            // setxattrat, getxattrat, listxattrat, removexattrat (Linux 6.13).
            463..=466 => host_path_call(
                nr,
                a,
                Some(0),
                1,
                nr == 463 || nr == 466,
                ENOTSUP,
                "sealed files have no extended attributes",
            ),
            SYS_mknod => mknod_at(nr, a, libc::AT_FDCWD, a[0], a[1], a[2]),
            SYS_mknodat => mknod_at(nr, a, i(a[0]), a[1], a[2], a[3]),
            // HostOnly: descriptors and paths of the host only.
            SYS_flock => ci(crate::flock(i(a[0]), i(a[1]))),
            SYS_copy_file_range => host_fd_call(
                nr,
                a,
                &[0, 2],
                EXDEV,
                "copy_file_range does not reach sealed files (read and write do)",
            ),
            SYS_splice | SYS_tee => host_fd_call(
                nr,
                a,
                &[0, 2],
                EINVAL,
                "splice and tee do not reach the stack's descriptors",
            ),
            SYS_vmsplice => host_fd_call(
                nr,
                a,
                &[0],
                EINVAL,
                "vmsplice does not reach the stack's descriptors",
            ),
            SYS_getdents => {
                host_fd_call(nr, a, &[0], ENOSYS, "use getdents64 on sealed directories")
            }
            // cachestat (Linux 6.5).
            451 => host_fd_call(
                nr,
                a,
                &[0],
                EOPNOTSUPP,
                "the stack's page cache is not the host's",
            ),
            SYS_inotify_add_watch => host_path_call(
                nr,
                a,
                None,
                1,
                false,
                ENOSYS,
                "inotify does not watch sealed files",
            ),
            SYS_name_to_handle_at => host_path_call(
                nr,
                a,
                Some(0),
                1,
                false,
                EOPNOTSUPP,
                "sealed files have no host file handles",
            ),
            _ => refuse(nr, ENOSYS, "not offered on the stack"),
        }
    }
}

/// Runs `f` with a copy of the mask at `set` that leaves SIGSYS out.
fn with_sigmask(set: u64, f: impl FnOnce(*const libc::sigset_t) -> c_int) -> i64 {
    match crate::trap::without_sigsys(set) {
        None => ci(f(std::ptr::null())),
        Some(m) => ci(f(&m)),
    }
}

fn cwd_len(a: [u64; 6]) -> i64 {
    if a[0] == 0 {
        return -i64::from(libc::EFAULT);
    }
    // SAFETY: getcwd(2)'s contract: a buffer of `size` bytes.
    let r = unsafe { crate::getcwd(p(a[0]), a[1] as size_t) };
    if r.is_null() {
        return sys(-1);
    }
    // The kernel returns the length with the NUL.
    // SAFETY: getcwd wrote a NUL-terminated path into the buffer.
    (unsafe { CStr::from_ptr(r) }.to_bytes().len() + 1) as i64
}

fn rw2(nr: i64, a: [u64; 6]) -> i64 {
    let fd = i(a[0]);
    let flags = i(a[5]);
    if !ours(crate::runtime(), a[0]) {
        return pass(nr, a);
    }
    // RWF_HIPRI is a hint; RWF_DSYNC and RWF_SYNC make one write durable, as
    // O_DSYNC and O_SYNC do.
    let write = nr == libc::SYS_pwritev2;
    let sync = libc::RWF_DSYNC | libc::RWF_SYNC;
    let offered = if write {
        libc::RWF_HIPRI | sync
    } else {
        libc::RWF_HIPRI
    };
    if flags & !offered != 0 {
        return refuse(
            nr,
            libc::EOPNOTSUPP,
            "RWF_* flags other than RWF_HIPRI, RWF_DSYNC and RWF_SYNC are not offered on the stack's descriptors",
        );
    }
    let off = a[3] as off_t;
    // SAFETY: preadv2(2)'s contract, as preadv/readv.
    let r = unsafe {
        match (write, off == -1) {
            (false, true) => cs(crate::readv(fd, p(a[1]), i(a[2]))),
            (false, false) => cs(crate::preadv(fd, p(a[1]), i(a[2]), off)),
            (true, true) => cs(crate::writev(fd, p(a[1]), i(a[2]))),
            (true, false) => cs(crate::pwritev(fd, p(a[1]), i(a[2]), off)),
        }
    };
    if r >= 0
        && flags & sync != 0
        && let Some(rt) = crate::runtime()
        && let Some(Err(e)) = rt.fsync(fd, flags & libc::RWF_SYNC == 0)
    {
        return -i64::from(e);
    }
    r
}

/// sendmmsg / recvmmsg: one sendmsg or recvmsg per message, as far as they go.
fn mmsg(a: [u64; 6], send: bool) -> i64 {
    let nr = if send {
        libc::SYS_sendmmsg
    } else {
        libc::SYS_recvmmsg
    };
    if !ours(crate::runtime(), a[0]) {
        return pass(nr, a);
    }
    if !send && a[4] != 0 {
        return refuse(
            nr,
            libc::EINVAL,
            "recvmmsg with a timeout is not offered on the stack's sockets",
        );
    }
    let fd = i(a[0]);
    let v = a[1] as *mut libc::mmsghdr;
    let n = (a[2] as usize).min(1024);
    if !crate::trap::user::writable(v.cast(), n * std::mem::size_of::<libc::mmsghdr>()) {
        return -i64::from(libc::EFAULT);
    }
    let mut flags = i(a[3]);
    let mut done = 0;
    while done < n {
        // SAFETY: the program passed `n` mmsghdrs, mapped and writable
        // (checked), at any alignment: each is copied in and back.
        let mut m = unsafe { v.add(done).read_unaligned() };
        // SAFETY: each msghdr, per sendmsg(2)/recvmsg(2).
        let r = unsafe {
            if send {
                crate::sendmsg(fd, &m.msg_hdr, flags)
            } else {
                crate::recvmsg(fd, &mut m.msg_hdr, flags)
            }
        };
        if r < 0 {
            if done == 0 {
                return sys(-1);
            }
            break;
        }
        m.msg_len = r as u32;
        // SAFETY: as above.
        unsafe { v.add(done).write_unaligned(m) };
        done += 1;
        if !send && flags & libc::MSG_WAITFORONE != 0 {
            flags |= libc::MSG_DONTWAIT;
        }
    }
    done as i64
}

fn open_how(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_openat2;
    if a[2] == 0 || a[3] < 24 {
        return -i64::from(libc::EINVAL);
    }
    if !crate::trap::user::readable(a[2] as *const u8, 24) {
        return -i64::from(libc::EFAULT);
    }
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    // SAFETY: the program passed `size` (at least 24) bytes of open_how.
    let how: [u64; 3] = match unsafe { crate::user_read(a[2] as *const [u64; 3]) } {
        Ok(h) => h,
        Err(e) => return -i64::from(e),
    };
    let rt = crate::runtime();
    let sealed = rt.is_some_and(|rt| {
        rt.is_ours(i(a[0]))
            || path(a[1]).is_some_and(|pth| pth.first() == Some(&b'/') && rt.is_sealed_path(pth))
    });
    if how[2] != 0 && sealed {
        return refuse(
            nr,
            libc::EOPNOTSUPP,
            "RESOLVE_* flags are not offered on sealed paths",
        );
    }
    if how[2] != 0 {
        return host_path_call(nr, a, Some(0), 1, how[0] & 3 != 0, libc::EOPNOTSUPP, "");
    }
    // SAFETY: openat(2)'s contract, from the same arguments.
    ci(unsafe { crate::openat(i(a[0]), p(a[1]), how[0] as c_int, how[1] as libc::mode_t) })
}

/// close_range(2): ours closed as close(2) closes them; the host's in the
/// pieces between the stack's own host descriptors, which stay open.
fn close_range_ours(a: [u64; 6]) -> i64 {
    let (first, last, flags) = (a[0] as u32, a[1] as u32, a[2]);
    if first > last {
        return -i64::from(libc::EINVAL);
    }
    if let Some(rt) = crate::runtime()
        && flags & u64::from(libc::CLOSE_RANGE_CLOEXEC) == 0
    {
        for fd in rt.our_fds() {
            if (first..=last).contains(&(fd as u32)) {
                // SAFETY: closing a descriptor of ours.
                unsafe { crate::close(fd) };
            }
        }
    }
    if let Ok(fd) = c_int::try_from(first) {
        rktio_sys::host_closed(fd);
    }
    let mut from = first;
    loop {
        let stop = c_int::try_from(from)
            .ok()
            .and_then(rktio_sys::next_internal)
            .map(|i| i as u32)
            .filter(|&i| i <= last);
        let to = stop.map_or(last, |i| i.saturating_sub(1));
        if stop != Some(from) {
            let r = pass(
                libc::SYS_close_range,
                [u64::from(from), u64::from(to), flags, 0, 0, 0],
            );
            if r < 0 {
                return r;
            }
        }
        match stop {
            Some(i) if i < last => from = i + 1,
            _ => return 0,
        }
    }
}

/// mknod(2)/mknodat(2): a FIFO, socket or device node on a sealed mount is
/// kept in the image (and never opened there); on the host, under the policy.
fn mknod_at(nr: i64, a: [u64; 6], dirfd: c_int, pth: u64, mode: u64, dev: u64) -> i64 {
    let mode = mode as u32;
    // mknod of a regular file is open(O_CREAT|O_EXCL) and close.
    let op = if mode & libc::S_IFMT == 0 || mode & libc::S_IFMT == libc::S_IFREG {
        // SAFETY: openat(2)'s contract, as mknod's.
        let fd = ci(unsafe {
            crate::openat(
                dirfd,
                p(pth),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                (mode & 0o7777) as libc::mode_t,
            )
        });
        if fd < 0 {
            return fd;
        }
        // SAFETY: the descriptor just opened.
        unsafe { crate::close(fd as c_int) };
        return 0;
    } else {
        PathOp::Mknod(mode, dev)
    };
    match crate::files::do_path_op(dirfd, p(pth), op) {
        Some(Ok(_)) => 0,
        Some(Err(e)) => -i64::from(e),
        None => pass(nr, a),
    }
}

fn rename2(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_renameat2;
    let flags = a[4] as u32;
    // SAFETY: renameat(2)'s contract.
    let plain = || ci(unsafe { crate::renameat(i(a[0]), p(a[1]), i(a[2]), p(a[3])) });
    if flags == 0 {
        return plain();
    }
    let Some(rt) = crate::runtime() else {
        return pass(nr, a);
    };
    let (from, to) = match (path_arg(a[1]), path_arg(a[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let sealed =
        |fd: u64, pth: &[u8]| !matches!(rt.host_path_at(i(fd), pth, false, ""), PathIs::Host(_));
    if !sealed(a[0], from) && !sealed(a[2], to) {
        return host_path_call(nr, a, Some(2), 3, true, libc::EINVAL, "");
    }
    if flags == libc::RENAME_NOREPLACE {
        // The target must not exist (checked, then renamed: a rename by another
        // thread in between is not excluded).
        let mut st: libc::stat = unsafe_zeroed_stat();
        // SAFETY: fstatat(2) into our own struct.
        let r = unsafe { crate::fstatat(i(a[2]), p(a[3]), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if r == 0 {
            return -i64::from(libc::EEXIST);
        }
        return plain();
    }
    refuse(
        nr,
        libc::EINVAL,
        "RENAME_EXCHANGE and RENAME_WHITEOUT are not offered on sealed mounts",
    )
}

fn unsafe_zeroed_stat() -> libc::stat {
    // SAFETY: struct stat is plain data; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn link_at(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_linkat;
    let Some(rt) = crate::runtime() else {
        return pass(nr, a);
    };
    let (from, to) = match (path_arg(a[1]), path_arg(a[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if a[4] as c_int & libc::AT_EMPTY_PATH != 0 && rt.is_ours(i(a[0])) {
        return refuse(
            nr,
            libc::EOPNOTSUPP,
            "AT_EMPTY_PATH is not offered on sealed files",
        );
    }
    match rt.two_paths((i(a[0]), from), (i(a[2]), to), true) {
        Some(Ok(())) => 0,
        Some(Err(e)) => -i64::from(e),
        None => pass(nr, a),
    }
}

fn chmodat(dirfd: u64, pth: u64, mode: u64, flags: u64) -> i64 {
    let nr = libc::SYS_fchmodat2;
    let Some(rt) = crate::runtime() else {
        return pass(nr, [dirfd, pth, mode, flags, 0, 0]);
    };
    let pp = match path_arg(pth) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if pp.is_empty() && flags as c_int & libc::AT_EMPTY_PATH != 0 {
        // SAFETY: fchmod(2) on the descriptor.
        return ci(unsafe { crate::fchmod(i(dirfd), mode as libc::mode_t) });
    }
    match rt.path_op(i(dirfd), pp, PathOp::Chmod(mode as u32)) {
        Some(Ok(_)) => 0,
        Some(Err(e)) => -i64::from(e),
        None if flags == 0 => pass(libc::SYS_fchmodat, [dirfd, pth, mode, 0, 0, 0]),
        None => pass(nr, [dirfd, pth, mode, flags, 0, 0]),
    }
}

fn chown_at(a: [u64; 6]) -> i64 {
    let nr = libc::SYS_fchownat;
    let Some(rt) = crate::runtime() else {
        return pass(nr, a);
    };
    let pp = match path_arg(a[1]) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let flags = a[4] as c_int;
    let id = |v: u64| (v as u32 != u32::MAX).then_some(v as u32);
    if pp.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        // SAFETY: fchown(2) on the descriptor.
        return ci(unsafe { crate::fchown(i(a[0]), a[2] as u32, a[3] as u32) });
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    match rt.path_op(i(a[0]), pp, PathOp::Chown(id(a[2]), id(a[3]), follow)) {
        Some(Ok(_)) => 0,
        Some(Err(e)) => -i64::from(e),
        None => pass(nr, a),
    }
}

fn futimes_at(a: [u64; 6]) -> i64 {
    let mut ts = [libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_NOW,
    }; 2];
    let tp = if a[2] == 0 {
        std::ptr::null()
    } else {
        // SAFETY: futimesat(2)'s contract: two timevals (checked readable).
        let tv: [libc::timeval; 2] =
            match unsafe { crate::user_read(a[2] as *const [libc::timeval; 2]) } {
                Ok(t) => t,
                Err(e) => return -i64::from(e),
            };
        for (t, v) in ts.iter_mut().zip(tv) {
            if !(0..1_000_000).contains(&v.tv_usec) {
                return -i64::from(libc::EINVAL);
            }
            t.tv_sec = v.tv_sec;
            t.tv_nsec = v.tv_usec * 1000;
        }
        ts.as_ptr()
    };
    // SAFETY: utimensat(2) with our own times.
    ci(unsafe { crate::utimensat(i(a[0]), p(a[1]), tp, 0) })
}

fn stat_fs(nr: i64, a: [u64; 6], fd: Option<c_int>) -> i64 {
    let Some(rt) = crate::runtime() else {
        return pass(nr, a);
    };
    let r = match fd {
        Some(fd) => rt.statfs(Some(fd), None),
        None => match path(a[0]) {
            Some(pp) => rt.statfs(None, Some(pp)),
            None => return -i64::from(libc::EFAULT),
        },
    };
    let s = match r {
        None => return pass(nr, a),
        Some(Err(e)) => return -i64::from(e),
        Some(Ok(s)) => s,
    };
    // SAFETY: struct statfs is plain data; all zeroes is a valid value.
    let mut out: libc::statfs = unsafe { std::mem::zeroed() };
    out.f_type = 0xEF53; // EXT4_SUPER_MAGIC
    out.f_bsize = s.block_size as i64;
    out.f_frsize = s.block_size as i64;
    out.f_blocks = s.blocks;
    out.f_bfree = s.free_blocks;
    out.f_bavail = s.free_blocks;
    out.f_files = s.files;
    out.f_ffree = s.free_files;
    out.f_namelen = s.name_max as i64;
    if !crate::trap::user::writable(a[1] as *mut u8, std::mem::size_of::<libc::statfs>()) {
        return -i64::from(libc::EFAULT);
    }
    // SAFETY: statfs(2)'s contract: room for a struct statfs.
    unsafe { std::ptr::write_unaligned(a[1] as *mut libc::statfs, out) };
    0
}
