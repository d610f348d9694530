//! Random system calls through the stack's table. `fuzz/run` starts this
//! target under `rktio run` (`fuzz/syscalls.sh`): every call it makes is the
//! trap's, and the input picks calls from the table with arguments of every
//! kind (descriptors of ours and the host's, sealed, host and refused paths,
//! bad and NULL addresses, small numbers). Checked: the process lives on (no
//! panic, no fault in the stack), and the host directory outside the policy
//! (`RKTIO_FUZZ_FORBIDDEN`) stays empty.
//!
//! Left out, as they would end or wedge the harness rather than test the
//! stack: calls that end or signal the process (timers too), change its
//! memory map or placement, its scheduling or the machine's clock (this runs
//! as root),
//! signals, credentials or thread state, wait or sleep, make pipes or sockets
//! that a later read would wait on, and close or replace descriptors (the
//! stack's own host descriptors are not protected from those yet).
#![no_main]
use std::ffi::CString;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rktio_posix::syscalls::TABLE;

const LEFT_OUT: &[&str] = &[
    "exit",
    "exit_group",
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_send_signal",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "pkey_mprotect",
    "madvise",
    "brk",
    "arch_prctl",
    "prctl",
    "seccomp",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "rt_sigreturn",
    "rt_sigaction",
    "sigaltstack",
    "rt_sigprocmask",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "pause",
    "nanosleep",
    "clock_nanosleep",
    "futex",
    "futex_waitv",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "wait4",
    "waitid",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
    "umask",
    "pipe",
    "pipe2",
    "socket",
    "socketpair",
    "eventfd",
    "eventfd2",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "userfaultfd",
    "inotify_init",
    "inotify_init1",
    "fanotify_init",
    "close",
    "close_range",
    "dup2",
    "dup3",
    "chdir",
    "fchdir",
    "chroot",
    "pivot_root",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "reboot",
    "sync",
    "io_uring_setup",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "sched_setaffinity",
    "setrlimit",
    "prlimit64",
    "ptrace",
    "vhangup",
    "setsid",
    "setpgid",
    "iopl",
    "ioperm",
    "personality",
    "shmat",
    "shmdt",
    "mlockall",
    "munlockall",
    "membarrier",
    "flock",
    "fcntl",
    "ioctl",
    "read",
    "readv",
    "preadv",
    "preadv2",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "accept",
    "accept4",
    "msgrcv",
    "semop",
    "semtimedop",
    "mq_timedreceive",
    "request_key",
    "getrandom",
    "alarm",
    "setitimer",
    "timer_create",
    "timer_settime",
    "pidfd_open",
    "process_madvise",
    "process_mrelease",
    "move_pages",
    "migrate_pages",
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "mseal",
    "map_shadow_stack",
    "memfd_secret",
    "pkey_alloc",
    "adjtimex",
    "clock_adjtime",
    "settimeofday",
    "clock_settime",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "setpriority",
    "ioprio_set",
    "restart_syscall",
    "mlock",
    "mlock2",
    "shmget",
    "shmctl",
];

struct World {
    calls: Vec<i64>,
    fds: Vec<u64>,
    paths: Vec<CString>,
    forbidden: String,
}

/// Each input's memory: a scratch area, then the paths, each in a slot of its
/// own, in one buffer large enough that no call writing at most 1 MiB from a
/// pointer into it writes past it (a path pointer is a buffer to a call too).
const SCRATCH: usize = 2 << 20;
const SLOT: usize = 256;

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let forbidden = std::env::var("RKTIO_FUZZ_FORBIDDEN")
            .expect("run under rktio run by fuzz/syscalls.sh (RKTIO_FUZZ_FORBIDDEN)");
        let allowed = std::env::var("RKTIO_FUZZ_ALLOWED").expect("RKTIO_FUZZ_ALLOWED");
        let _ = std::fs::create_dir("/fz/d");
        std::fs::write("/fz/f", b"sealed").expect("the sealed mount at /fz");
        let open = |p: &str, dir: bool| {
            let c = CString::new(p).unwrap();
            let flags = if dir {
                libc::O_RDONLY | libc::O_DIRECTORY
            } else {
                libc::O_RDWR
            };
            // SAFETY: a NUL-terminated path.
            let fd = unsafe { libc::open(c.as_ptr(), flags) };
            assert!(fd >= 0, "open {p}");
            fd as u64
        };
        std::fs::write(format!("{allowed}/h"), b"host").unwrap();
        let fds = vec![
            open("/fz/f", false),
            open("/fz/d", true),
            open(&format!("{allowed}/h"), false),
            libc::AT_FDCWD as u64,
            u64::MAX,
            4000,
        ];
        let paths = [
            "/fz/f",
            "/fz/d",
            "/fz/d/n",
            "/fz/../fz/f",
            "/fz/d/../f",
            "/fz/l",
            "/fz",
            "f",
            "d/n",
            "/nonexistent/x",
            "",
        ]
        .iter()
        .map(|p| p.to_string())
        .chain([
            format!("{forbidden}/x"),
            format!("{forbidden}/d/"),
            format!("{allowed}/y"),
            format!("/fz/../{}", forbidden.trim_start_matches('/')),
        ])
        .map(|p| CString::new(p).unwrap())
        .collect();
        let calls = TABLE
            .iter()
            .filter(|s| !LEFT_OUT.contains(&s.name))
            .map(|s| i64::from(s.nr))
            .collect();
        World {
            calls,
            fds,
            paths,
            forbidden,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut mem = vec![0u8; SCRATCH + w.paths.len() * SLOT + (1 << 20)];
    for (k, pth) in w.paths.iter().enumerate() {
        let b = pth.as_bytes_with_nul();
        mem[SCRATCH + k * SLOT..][..b.len()].copy_from_slice(b);
    }
    let base = mem.as_mut_ptr() as u64;
    let mut it = data.iter().copied();
    let mut next = || it.next();
    for _ in 0..8 {
        let Some(c) = next() else { break };
        let nr = w.calls[usize::from(c) * w.calls.len() / 256];
        let mut args = [0u64; 6];
        for a in &mut args {
            let (Some(kind), Some(v)) = (next(), next()) else {
                break;
            };
            *a = match kind % 6 {
                0 => w.fds[usize::from(v) % w.fds.len()],
                1 => base + (SCRATCH + usize::from(v) % w.paths.len() * SLOT) as u64,
                2 => base + u64::from(v) * 16,
                3 => [0, u64::MAX - 4095, 8][usize::from(v) % 3],
                4 => u64::from(v) * 16,
                _ => [0o644, 0x241, 0x100, 0x200, 4096, 1 << 20][usize::from(v) % 6],
            };
        }
        if std::env::var_os("RKTIO_FUZZ_TRACE").is_some() {
            eprintln!("syscall {nr} {args:x?}");
        }
        // SAFETY: a system call the table routes, with arguments that point
        // into this input's memory (offsets and lengths at most 1 MiB, 1 MiB
        // of room past the last path) or at nothing; calls that would end or
        // wedge this process are left out.
        unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    }
    drop(mem);
    // Nothing reached the host outside the policy.
    let left = std::fs::read_dir(&w.forbidden)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "a call made something in {}", w.forbidden);
});
