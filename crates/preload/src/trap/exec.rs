//! exec under the trap: the new program must be one librktio covers, and it gets
//! librktio and the configuration again.

use super::*;
use rktio_posix::exec::{Verdict, verdict};

/// The library and configuration an exec'd program gets.
pub(super) struct ExecEnv {
    preload: CString,
    config: CString,
    stats: bool,
    /// The loader of statically linked programs (`rktio`, which librktio turns
    /// into one), from RKTIO_LOADER.
    loader: Option<CString>,
}

pub(super) static EXEC_ENV: OnceLock<ExecEnv> = OnceLock::new();

/// What an exec'd program gets: librktio's own path and the configuration (at
/// install, while the environment is the one rktio run gave).
pub(super) fn remember_env() -> Result<(), String> {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address of ours.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    let found = unsafe { libc::dladdr(install as *const () as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot find librktio's own path".into());
    }
    // SAFETY: dladdr returned a NUL-terminated file name that lives with the library.
    let preload = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    let config = std::env::var_os("RKTIO_CONFIG")
        .and_then(|c| CString::new(c.into_encoded_bytes()).ok())
        .ok_or("RKTIO_CONFIG is not a path")?;
    let stats = std::env::var("RKTIO_STATS").is_ok_and(|v| v == "1" || v == "true");
    let loader = std::env::var_os("RKTIO_LOADER")
        .filter(|l| !l.is_empty())
        .and_then(|l| CString::new(l.into_encoded_bytes()).ok());
    let _ = EXEC_ENV.set(ExecEnv {
        preload,
        config,
        stats,
        loader,
    });
    Ok(())
}

/// The first bytes of a host file, read here.
pub(super) fn file_head(path: &CStr) -> Result<Vec<u8>, i64> {
    let fd = raw(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    );
    if fd < 0 {
        return Err(fd);
    }
    let mut buf = vec![0u8; 64 << 10];
    let n = raw(
        libc::SYS_pread64,
        [
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
            0,
        ],
    );
    raw(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
    if n < 0 {
        return Err(n);
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub(super) fn execve(dirfd: i32, path: u64, argv: u64, envp: u64, flags: i32) -> i64 {
    let nr = if dirfd == libc::AT_FDCWD && flags == 0 {
        libc::SYS_execve
    } else {
        libc::SYS_execveat
    };
    let Some(rt) = crate::runtime() else {
        return pass(nr, [dirfd as u64, path, argv, envp, flags as u64, 0]);
    };
    if path == 0 {
        return -i64::from(libc::EFAULT);
    }
    // SAFETY: execve(2)'s contract: a NUL-terminated path.
    let p = unsafe { CStr::from_ptr(path as *const libc::c_char) }.to_bytes();
    let abs = if p.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if rt.is_ours(dirfd) {
            return refuse(
                nr,
                libc::EACCES,
                "a file of a sealed mount cannot be executed",
            );
        }
        format!("/proc/self/fd/{dirfd}").into_bytes()
    } else {
        match rt.host_path_at(dirfd, p, false, "exec of") {
            rktio_posix::PathIs::Host(abs) => abs,
            rktio_posix::PathIs::Ours => {
                return refuse(
                    nr,
                    libc::EACCES,
                    "a program on a sealed mount cannot be executed (the kernel would read it from the host)",
                );
            }
            rktio_posix::PathIs::Refused(e) => return -i64::from(e),
        }
    };
    // A loaded program's /proc/self/exe is the loader's: exec of it means the
    // program (busybox runs its applets so).
    let abs = match loaded() {
        Some(l) if loaded::is_self_exe(&abs) => l.path.to_bytes().to_vec(),
        _ => abs,
    };
    let Ok(abs) = CString::new(abs) else {
        return -i64::from(libc::EINVAL);
    };
    // The new program must be one librktio can cover.
    let head = |p: &[u8]| {
        CString::new(p)
            .map_err(|_| -i64::from(libc::ENOENT))
            .and_then(|c| file_head(&c))
    };
    match verdict(abs.as_bytes(), head) {
        Err(e) => return e,
        Ok(Verdict::Covered) => {}
        Ok(Verdict::NotExecutable) => return -i64::from(libc::ENOEXEC),
        Ok(Verdict::Static(p)) if p == abs.as_bytes() => {
            // A statically linked program: the loader runs it, covered.
            let Some(loader) = EXEC_ENV.get().and_then(|e| e.loader.as_ref()) else {
                return refuse(
                    nr,
                    libc::EACCES,
                    "a statically linked program, and no loader for it (RKTIO_LOADER is not set)",
                );
            };
            return exec_loaded(loader, &abs, argv, envp);
        }
        Ok(Verdict::Static(p)) => {
            eprintln!(
                "rktio: refused exec of {}: a script whose interpreter ({}) is statically linked; the loader runs static programs only when exec'd directly",
                abs.to_string_lossy(),
                String::from_utf8_lossy(&p)
            );
            return -i64::from(libc::EACCES);
        }
        Ok(Verdict::Foreign(p)) => {
            eprintln!(
                "rktio: refused exec of {}: not an x86-64 program",
                String::from_utf8_lossy(&p)
            );
            return -i64::from(libc::EACCES);
        }
    }
    let Some(env) = EXEC_ENV.get() else {
        return -i64::from(libc::EACCES);
    };
    crate::before_exec();
    exec_with(&abs, argv, &covered_env(envp, env))
}

/// The exec itself: `path` with the program's arguments and `envp`.
fn exec_with(path: &CStr, argv: u64, envp: &[CString]) -> i64 {
    let mut ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // Spare slots are the stack's: the new program does not inherit them.
    rktio_sys::before_exec();
    let r = pass(
        libc::SYS_execveat,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            argv,
            ptrs.as_ptr() as u64,
            0,
            0,
        ],
    );
    rktio_sys::after_failed_exec();
    r
}

/// exec of a statically linked program: the loader, with the program's own
/// arguments (argv[0] included), and the program named in RKTIO_LOAD.
fn exec_loaded(loader: &CStr, program: &CStr, argv: u64, envp: u64) -> i64 {
    let Some(env) = EXEC_ENV.get() else {
        return -i64::from(libc::EACCES);
    };
    // What the loader would refuse fails here, as the kernel's exec would
    // (the process is not replaced).
    if let Err((e, why)) = crate::load::check(program) {
        if e == libc::ENOEXEC {
            eprintln!(
                "rktio: refused exec of {}: {why}",
                program.to_string_lossy()
            );
        }
        return -i64::from(e);
    }
    crate::before_exec();
    let mut envp = covered_env(envp, env);
    let mut load = b"RKTIO_LOAD=".to_vec();
    load.extend_from_slice(program.to_bytes());
    envp.extend(CString::new(load).ok());
    exec_with(loader, argv, &envp)
}

/// The program's environment, with librktio preloaded and the configuration set.
pub(super) fn covered_env(envp: u64, env: &ExecEnv) -> Vec<CString> {
    let mut out = Vec::new();
    let mut preload_rest: Option<Vec<u8>> = None;
    let mut i = 0;
    while envp != 0 && i < 1 << 16 {
        // SAFETY: execve(2)'s contract: a NULL-terminated array of C strings.
        let p = unsafe { *(envp as *const *const libc::c_char).add(i) };
        if p.is_null() {
            break;
        }
        i += 1;
        // SAFETY: as above, each entry is a NUL-terminated string.
        let e = unsafe { CStr::from_ptr(p) }.to_bytes();
        if let Some(v) = e.strip_prefix(b"LD_PRELOAD=") {
            preload_rest = Some(v.to_vec());
        } else if e.starts_with(b"RKTIO_CONFIG=")
            || e.starts_with(b"RKTIO_STATS=")
            || e.starts_with(b"RKTIO_LOAD=")
            || e.starts_with(b"RKTIO_LOADER=")
        {
        } else if let Ok(c) = CString::new(e) {
            out.push(c);
        }
    }
    let ours = env.preload.to_bytes();
    let mut pre = b"LD_PRELOAD=".to_vec();
    pre.extend_from_slice(ours);
    if let Some(rest) = preload_rest {
        for item in rest.split(|&c| c == b':' || c == b' ') {
            if !item.is_empty() && item != ours {
                pre.push(b':');
                pre.extend_from_slice(item);
            }
        }
    }
    let mut cfg = b"RKTIO_CONFIG=".to_vec();
    cfg.extend_from_slice(env.config.to_bytes());
    out.extend(CString::new(pre).ok());
    out.extend(CString::new(cfg).ok());
    if env.stats {
        out.extend(CString::new("RKTIO_STATS=1").ok());
    }
    if let Some(l) = &env.loader {
        let mut v = b"RKTIO_LOADER=".to_vec();
        v.extend_from_slice(l.to_bytes());
        out.extend(CString::new(v).ok());
    }
    out
}
