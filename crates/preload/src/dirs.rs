//! Directory streams (opendir, readdir, getdents64) over directories of ours.

use super::*;

// ---------------------------------------------------------------- directories

/// A directory stream of ours: what `opendir` returns for a sealed directory
/// (an opaque `DIR *` to the program; glibc's own never sees it).
pub(crate) struct OurDir {
    fd: c_int,
    /// The entry `readdir` returned last (valid until the next call, as POSIX says).
    ent: libc::dirent64,
    pos: i64,
}

/// Our directory streams, by address.
pub(crate) static DIRS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn dirs() -> std::sync::MutexGuard<'static, Vec<usize>> {
    DIRS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn our_dir(d: *mut libc::DIR) -> Option<*mut OurDir> {
    dirs().contains(&(d as usize)).then_some(d.cast::<OurDir>())
}

pub(crate) fn new_dir(fd: c_int) -> *mut libc::DIR {
    // SAFETY: all-zero is a valid dirent64.
    let ent: libc::dirent64 = unsafe { std::mem::zeroed() };
    let p = Box::into_raw(Box::new(OurDir { fd, ent, pos: 0 }));
    dirs().push(p as usize);
    p.cast()
}

pub(crate) fn do_opendir(path: *const c_char) -> Option<*mut libc::DIR> {
    let (rt, _g) = enter()?;
    // SAFETY: opendir(3)'s contract: a NUL-terminated path.
    let p = unsafe { cpath(path) }?;
    match rt.open(p, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)? {
        Ok(fd) => Some(new_dir(fd)),
        Err(e) => {
            set_errno(e);
            Some(std::ptr::null_mut())
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    do_opendir(path).unwrap_or_else(|| real!(c"opendir", fn(*const c_char) -> *mut libc::DIR, path))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut libc::DIR {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        return match rt.fstat(fd) {
            Some(Ok(s)) if s.stat.mode & libc::S_IFMT == libc::S_IFDIR => new_dir(fd),
            Some(Err(e)) => {
                set_errno(e);
                std::ptr::null_mut()
            }
            _ => {
                set_errno(libc::ENOTDIR);
                std::ptr::null_mut()
            }
        };
    }
    real!(c"fdopendir", fn(c_int) -> *mut libc::DIR, fd)
}

pub(crate) fn do_readdir(d: *mut libc::DIR) -> Option<*mut libc::dirent64> {
    let od = our_dir(d)?;
    let (rt, _g) = enter()?;
    // SAFETY: `od` is one of our live directory streams (registered, not closed);
    // POSIX says a stream is not used by two threads at once.
    let od = unsafe { &mut *od };
    match rt.next_dirents(od.fd, 1)? {
        Ok(v) => {
            let Some(e) = v.into_iter().next() else {
                // End of the directory: NULL with errno unchanged.
                return Some(std::ptr::null_mut());
            };
            od.pos += 1;
            od.ent.d_ino = e.ino;
            od.ent.d_off = od.pos;
            od.ent.d_type = rktio_posix::d_type(e.file_type);
            let n = e.name.len().min(255);
            for (i, b) in e.name[..n].iter().enumerate() {
                od.ent.d_name[i] = *b as c_char;
            }
            od.ent.d_name[n] = 0;
            od.ent.d_reclen = u16::try_from((19 + n + 1).div_ceil(8) * 8).unwrap_or(u16::MAX);
            Some(&mut od.ent)
        }
        Err(e) => {
            set_errno(e);
            Some(std::ptr::null_mut())
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(d: *mut libc::DIR) -> *mut libc::dirent64 {
    do_readdir(d).unwrap_or_else(|| real!(c"readdir", fn(*mut libc::DIR) -> *mut libc::dirent64, d))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(d: *mut libc::DIR) -> *mut libc::dirent64 {
    do_readdir(d)
        .unwrap_or_else(|| real!(c"readdir64", fn(*mut libc::DIR) -> *mut libc::dirent64, d))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(d: *mut libc::DIR) -> c_int {
    if let Some(od) = our_dir(d) {
        dirs().retain(|&p| p != d as usize);
        // SAFETY: `od` came from Box::into_raw in new_dir and is now unregistered,
        // so nothing else will use it.
        let od = unsafe { Box::from_raw(od) };
        // SAFETY: closing our own descriptor.
        return unsafe { close(od.fd) };
    }
    real!(c"closedir", fn(*mut libc::DIR) -> c_int, d)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dirfd(d: *mut libc::DIR) -> c_int {
    if let Some(od) = our_dir(d) {
        // SAFETY: one of our live streams.
        return unsafe { (*od).fd };
    }
    real!(c"dirfd", fn(*mut libc::DIR) -> c_int, d)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(d: *mut libc::DIR) {
    if let Some(od) = our_dir(d) {
        if let Some((rt, _g)) = enter() {
            // SAFETY: one of our live streams.
            let od = unsafe { &mut *od };
            let _ = rt.rewind_dir(od.fd);
            od.pos = 0;
        }
        return;
    }
    real!(c"rewinddir", fn(*mut libc::DIR) -> (), d)
}

/// getdents64(2) on a directory of ours: as many records as fit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getdents64(fd: c_int, out: *mut c_void, n: size_t) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        // SAFETY: getdents64(2)'s contract: `n` writable bytes at `out`.
        let buf = match unsafe { buf_mut(out, n) } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        let mut used = 0usize;
        loop {
            let ents = match rt.next_dirents(fd, 1) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    if used > 0 {
                        break;
                    }
                    set_errno(e);
                    return -1;
                }
                None => break,
            };
            let Some(e) = ents.into_iter().next() else {
                break;
            };
            let name = &e.name[..e.name.len().min(255)];
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            if used + reclen > buf.len() {
                // Does not fit: give it back for the next call.
                let _ = rt.unread_dirent(fd);
                if used == 0 {
                    set_errno(libc::EINVAL);
                    return -1;
                }
                break;
            }
            let r = &mut buf[used..used + reclen];
            r.fill(0);
            r[0..8].copy_from_slice(&e.ino.to_ne_bytes());
            r[8..16].copy_from_slice(&((used + reclen) as i64).to_ne_bytes());
            r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            r[18] = rktio_posix::d_type(e.file_type);
            r[19..19 + name.len()].copy_from_slice(name);
            used += reclen;
        }
        return used as ssize_t;
    }
    real!(
        c"getdents64",
        fn(c_int, *mut c_void, size_t) -> ssize_t,
        fd,
        out,
        n
    )
}
