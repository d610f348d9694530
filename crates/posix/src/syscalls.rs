//! The system-call table: what `rktio run` does with each Linux x86-64 system
//! call its program makes, whether through libc, a raw `syscall`, or code made at
//! run time (they all reach the trap, docs/COMPAT.md).
//!
//! Every number has one route. Nothing is passed to the host by default: a number
//! not in the table is refused with ENOSYS, and a call that takes a descriptor or
//! a path is either served here or refused on the stack's descriptors and paths.

use libc::{ENOSYS, EPERM};

/// What happens to a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Served by the stack when its descriptor or path is ours (a sealed mount,
    /// an internet socket); on a host descriptor or path, passed to the host
    /// after the host path policy.
    Stack,
    /// Passed to the host for host descriptors and paths (after the policy);
    /// refused with an errno and a line on stderr on the stack's own.
    HostOnly,
    /// Handled by the trap itself: threads and processes (clone, fork, exec),
    /// signal actions and masks (SIGSYS stays the stack's), prctl; and for a
    /// program the loader ran (statically linked), its heap (brk), its thread
    /// pointer (arch_prctl) and its exit (the stack commits first); calls
    /// that change credentials or the umask (passed, then the stack checks
    /// sealed files with the new ones).
    Trap,
    /// Passed to the host on purpose: memory, time, signals, futexes, ids,
    /// scheduling, descriptors that carry nothing of the stack (pipes, eventfd).
    Host,
    /// Refused with this errno and one line on stderr naming the call.
    Refused(i32),
}

impl Route {
    /// How docs/COMPAT.md says it.
    pub fn describe(self) -> String {
        match self {
            Route::Stack => "stack".to_owned(),
            Route::HostOnly => "host only".to_owned(),
            Route::Trap => "trap".to_owned(),
            Route::Host => "host".to_owned(),
            Route::Refused(e) => format!("refused ({})", errno_name(e)),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// The x86-64 system-call number.
    pub nr: u32,
    /// Its name (as in `asm/unistd_64.h`).
    pub name: &'static str,
    /// What happens to it.
    pub route: Route,
}

/// The row for `nr`, if the table has one.
pub fn lookup(nr: i64) -> Option<&'static Syscall> {
    let nr = u32::try_from(nr).ok()?;
    TABLE
        .binary_search_by_key(&nr, |s| s.nr)
        .ok()
        .map(|i| &TABLE[i])
}

/// What to do with `nr`: the table's route, ENOSYS for a number it lacks.
pub fn route(nr: i64) -> Route {
    lookup(nr).map_or(Route::Refused(ENOSYS), |s| s.route)
}

/// The name of `nr` for messages (`syscall 999` for an unknown one).
pub fn name(nr: i64) -> String {
    lookup(nr).map_or_else(|| format!("syscall {nr}"), |s| s.name.to_owned())
}

fn errno_name(e: i32) -> &'static str {
    match e {
        ENOSYS => "ENOSYS",
        EPERM => "EPERM",
        _ => "errno",
    }
}

use Route::{Host, HostOnly, Refused, Stack, Trap};

/// Every system call Linux x86-64 has (to 469), by number.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 0,
        name: "read",
        route: Stack,
    },
    Syscall {
        nr: 1,
        name: "write",
        route: Stack,
    },
    Syscall {
        nr: 2,
        name: "open",
        route: Stack,
    },
    Syscall {
        nr: 3,
        name: "close",
        route: Stack,
    },
    Syscall {
        nr: 4,
        name: "stat",
        route: Stack,
    },
    Syscall {
        nr: 5,
        name: "fstat",
        route: Stack,
    },
    Syscall {
        nr: 6,
        name: "lstat",
        route: Stack,
    },
    Syscall {
        nr: 7,
        name: "poll",
        route: Stack,
    },
    Syscall {
        nr: 8,
        name: "lseek",
        route: Stack,
    },
    Syscall {
        nr: 9,
        name: "mmap",
        route: Stack,
    },
    Syscall {
        nr: 10,
        name: "mprotect",
        route: Host,
    },
    Syscall {
        nr: 11,
        name: "munmap",
        route: Stack,
    },
    Syscall {
        nr: 12,
        name: "brk",
        route: Trap,
    },
    Syscall {
        nr: 13,
        name: "rt_sigaction",
        route: Trap,
    },
    Syscall {
        nr: 14,
        name: "rt_sigprocmask",
        route: Trap,
    },
    Syscall {
        nr: 15,
        name: "rt_sigreturn",
        route: Trap,
    },
    Syscall {
        nr: 16,
        name: "ioctl",
        route: Stack,
    },
    Syscall {
        nr: 17,
        name: "pread64",
        route: Stack,
    },
    Syscall {
        nr: 18,
        name: "pwrite64",
        route: Stack,
    },
    Syscall {
        nr: 19,
        name: "readv",
        route: Stack,
    },
    Syscall {
        nr: 20,
        name: "writev",
        route: Stack,
    },
    Syscall {
        nr: 21,
        name: "access",
        route: Stack,
    },
    Syscall {
        nr: 22,
        name: "pipe",
        route: Host,
    },
    Syscall {
        nr: 23,
        name: "select",
        route: Stack,
    },
    Syscall {
        nr: 24,
        name: "sched_yield",
        route: Host,
    },
    Syscall {
        nr: 25,
        name: "mremap",
        route: Stack,
    },
    Syscall {
        nr: 26,
        name: "msync",
        route: Stack,
    },
    Syscall {
        nr: 27,
        name: "mincore",
        route: Host,
    },
    Syscall {
        nr: 28,
        name: "madvise",
        route: Host,
    },
    Syscall {
        nr: 29,
        name: "shmget",
        route: Host,
    },
    Syscall {
        nr: 30,
        name: "shmat",
        route: Host,
    },
    Syscall {
        nr: 31,
        name: "shmctl",
        route: Host,
    },
    Syscall {
        nr: 32,
        name: "dup",
        route: Stack,
    },
    Syscall {
        nr: 33,
        name: "dup2",
        route: Stack,
    },
    Syscall {
        nr: 34,
        name: "pause",
        route: Host,
    },
    Syscall {
        nr: 35,
        name: "nanosleep",
        route: Host,
    },
    Syscall {
        nr: 36,
        name: "getitimer",
        route: Host,
    },
    Syscall {
        nr: 37,
        name: "alarm",
        route: Host,
    },
    Syscall {
        nr: 38,
        name: "setitimer",
        route: Host,
    },
    Syscall {
        nr: 39,
        name: "getpid",
        route: Host,
    },
    Syscall {
        nr: 40,
        name: "sendfile",
        route: Stack,
    },
    Syscall {
        nr: 41,
        name: "socket",
        route: Stack,
    },
    Syscall {
        nr: 42,
        name: "connect",
        route: Stack,
    },
    Syscall {
        nr: 43,
        name: "accept",
        route: Stack,
    },
    Syscall {
        nr: 44,
        name: "sendto",
        route: Stack,
    },
    Syscall {
        nr: 45,
        name: "recvfrom",
        route: Stack,
    },
    Syscall {
        nr: 46,
        name: "sendmsg",
        route: Stack,
    },
    Syscall {
        nr: 47,
        name: "recvmsg",
        route: Stack,
    },
    Syscall {
        nr: 48,
        name: "shutdown",
        route: Stack,
    },
    Syscall {
        nr: 49,
        name: "bind",
        route: Stack,
    },
    Syscall {
        nr: 50,
        name: "listen",
        route: Stack,
    },
    Syscall {
        nr: 51,
        name: "getsockname",
        route: Stack,
    },
    Syscall {
        nr: 52,
        name: "getpeername",
        route: Stack,
    },
    Syscall {
        nr: 53,
        name: "socketpair",
        route: Host,
    },
    Syscall {
        nr: 54,
        name: "setsockopt",
        route: Stack,
    },
    Syscall {
        nr: 55,
        name: "getsockopt",
        route: Stack,
    },
    Syscall {
        nr: 56,
        name: "clone",
        route: Trap,
    },
    Syscall {
        nr: 57,
        name: "fork",
        route: Trap,
    },
    Syscall {
        nr: 58,
        name: "vfork",
        route: Trap,
    },
    Syscall {
        nr: 59,
        name: "execve",
        route: Trap,
    },
    Syscall {
        nr: 60,
        name: "exit",
        route: Trap,
    },
    Syscall {
        nr: 61,
        name: "wait4",
        route: Host,
    },
    Syscall {
        nr: 62,
        name: "kill",
        route: Host,
    },
    Syscall {
        nr: 63,
        name: "uname",
        route: Host,
    },
    Syscall {
        nr: 64,
        name: "semget",
        route: Host,
    },
    Syscall {
        nr: 65,
        name: "semop",
        route: Host,
    },
    Syscall {
        nr: 66,
        name: "semctl",
        route: Host,
    },
    Syscall {
        nr: 67,
        name: "shmdt",
        route: Host,
    },
    Syscall {
        nr: 68,
        name: "msgget",
        route: Host,
    },
    Syscall {
        nr: 69,
        name: "msgsnd",
        route: Host,
    },
    Syscall {
        nr: 70,
        name: "msgrcv",
        route: Host,
    },
    Syscall {
        nr: 71,
        name: "msgctl",
        route: Host,
    },
    Syscall {
        nr: 72,
        name: "fcntl",
        route: Stack,
    },
    Syscall {
        nr: 73,
        name: "flock",
        route: Stack,
    },
    Syscall {
        nr: 74,
        name: "fsync",
        route: Stack,
    },
    Syscall {
        nr: 75,
        name: "fdatasync",
        route: Stack,
    },
    Syscall {
        nr: 76,
        name: "truncate",
        route: Stack,
    },
    Syscall {
        nr: 77,
        name: "ftruncate",
        route: Stack,
    },
    Syscall {
        nr: 78,
        name: "getdents",
        route: HostOnly,
    },
    Syscall {
        nr: 79,
        name: "getcwd",
        route: Stack,
    },
    Syscall {
        nr: 80,
        name: "chdir",
        route: Stack,
    },
    Syscall {
        nr: 81,
        name: "fchdir",
        route: Stack,
    },
    Syscall {
        nr: 82,
        name: "rename",
        route: Stack,
    },
    Syscall {
        nr: 83,
        name: "mkdir",
        route: Stack,
    },
    Syscall {
        nr: 84,
        name: "rmdir",
        route: Stack,
    },
    Syscall {
        nr: 85,
        name: "creat",
        route: Stack,
    },
    Syscall {
        nr: 86,
        name: "link",
        route: Stack,
    },
    Syscall {
        nr: 87,
        name: "unlink",
        route: Stack,
    },
    Syscall {
        nr: 88,
        name: "symlink",
        route: Stack,
    },
    Syscall {
        nr: 89,
        name: "readlink",
        route: Stack,
    },
    Syscall {
        nr: 90,
        name: "chmod",
        route: Stack,
    },
    Syscall {
        nr: 91,
        name: "fchmod",
        route: Stack,
    },
    Syscall {
        nr: 92,
        name: "chown",
        route: Stack,
    },
    Syscall {
        nr: 93,
        name: "fchown",
        route: Stack,
    },
    Syscall {
        nr: 94,
        name: "lchown",
        route: Stack,
    },
    Syscall {
        nr: 95,
        name: "umask",
        route: Trap,
    },
    Syscall {
        nr: 96,
        name: "gettimeofday",
        route: Host,
    },
    Syscall {
        nr: 97,
        name: "getrlimit",
        route: Host,
    },
    Syscall {
        nr: 98,
        name: "getrusage",
        route: Host,
    },
    Syscall {
        nr: 99,
        name: "sysinfo",
        route: Host,
    },
    Syscall {
        nr: 100,
        name: "times",
        route: Host,
    },
    Syscall {
        nr: 101,
        name: "ptrace",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 102,
        name: "getuid",
        route: Host,
    },
    Syscall {
        nr: 103,
        name: "syslog",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 104,
        name: "getgid",
        route: Host,
    },
    Syscall {
        nr: 105,
        name: "setuid",
        route: Trap,
    },
    Syscall {
        nr: 106,
        name: "setgid",
        route: Trap,
    },
    Syscall {
        nr: 107,
        name: "geteuid",
        route: Host,
    },
    Syscall {
        nr: 108,
        name: "getegid",
        route: Host,
    },
    Syscall {
        nr: 109,
        name: "setpgid",
        route: Host,
    },
    Syscall {
        nr: 110,
        name: "getppid",
        route: Host,
    },
    Syscall {
        nr: 111,
        name: "getpgrp",
        route: Host,
    },
    Syscall {
        nr: 112,
        name: "setsid",
        route: Host,
    },
    Syscall {
        nr: 113,
        name: "setreuid",
        route: Trap,
    },
    Syscall {
        nr: 114,
        name: "setregid",
        route: Trap,
    },
    Syscall {
        nr: 115,
        name: "getgroups",
        route: Host,
    },
    Syscall {
        nr: 116,
        name: "setgroups",
        route: Trap,
    },
    Syscall {
        nr: 117,
        name: "setresuid",
        route: Trap,
    },
    Syscall {
        nr: 118,
        name: "getresuid",
        route: Host,
    },
    Syscall {
        nr: 119,
        name: "setresgid",
        route: Trap,
    },
    Syscall {
        nr: 120,
        name: "getresgid",
        route: Host,
    },
    Syscall {
        nr: 121,
        name: "getpgid",
        route: Host,
    },
    Syscall {
        nr: 122,
        name: "setfsuid",
        route: Trap,
    },
    Syscall {
        nr: 123,
        name: "setfsgid",
        route: Trap,
    },
    Syscall {
        nr: 124,
        name: "getsid",
        route: Host,
    },
    Syscall {
        nr: 125,
        name: "capget",
        route: Host,
    },
    Syscall {
        nr: 126,
        name: "capset",
        route: Trap,
    },
    Syscall {
        nr: 127,
        name: "rt_sigpending",
        route: Host,
    },
    Syscall {
        nr: 128,
        name: "rt_sigtimedwait",
        route: Trap,
    },
    Syscall {
        nr: 129,
        name: "rt_sigqueueinfo",
        route: Host,
    },
    Syscall {
        nr: 130,
        name: "rt_sigsuspend",
        route: Trap,
    },
    Syscall {
        nr: 131,
        name: "sigaltstack",
        route: Trap,
    },
    Syscall {
        nr: 132,
        name: "utime",
        route: Stack,
    },
    Syscall {
        nr: 133,
        name: "mknod",
        route: Stack,
    },
    Syscall {
        nr: 134,
        name: "uselib",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 135,
        name: "personality",
        route: Host,
    },
    Syscall {
        nr: 136,
        name: "ustat",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 137,
        name: "statfs",
        route: Stack,
    },
    Syscall {
        nr: 138,
        name: "fstatfs",
        route: Stack,
    },
    Syscall {
        nr: 139,
        name: "sysfs",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 140,
        name: "getpriority",
        route: Host,
    },
    Syscall {
        nr: 141,
        name: "setpriority",
        route: Host,
    },
    Syscall {
        nr: 142,
        name: "sched_setparam",
        route: Host,
    },
    Syscall {
        nr: 143,
        name: "sched_getparam",
        route: Host,
    },
    Syscall {
        nr: 144,
        name: "sched_setscheduler",
        route: Host,
    },
    Syscall {
        nr: 145,
        name: "sched_getscheduler",
        route: Host,
    },
    Syscall {
        nr: 146,
        name: "sched_get_priority_max",
        route: Host,
    },
    Syscall {
        nr: 147,
        name: "sched_get_priority_min",
        route: Host,
    },
    Syscall {
        nr: 148,
        name: "sched_rr_get_interval",
        route: Host,
    },
    Syscall {
        nr: 149,
        name: "mlock",
        route: Host,
    },
    Syscall {
        nr: 150,
        name: "munlock",
        route: Host,
    },
    Syscall {
        nr: 151,
        name: "mlockall",
        route: Host,
    },
    Syscall {
        nr: 152,
        name: "munlockall",
        route: Host,
    },
    Syscall {
        nr: 153,
        name: "vhangup",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 154,
        name: "modify_ldt",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 155,
        name: "pivot_root",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 156,
        name: "_sysctl",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 157,
        name: "prctl",
        route: Trap,
    },
    Syscall {
        nr: 158,
        name: "arch_prctl",
        route: Trap,
    },
    Syscall {
        nr: 159,
        name: "adjtimex",
        route: Host,
    },
    Syscall {
        nr: 160,
        name: "setrlimit",
        route: Host,
    },
    Syscall {
        nr: 161,
        name: "chroot",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 162,
        name: "sync",
        route: Stack,
    },
    Syscall {
        nr: 163,
        name: "acct",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 164,
        name: "settimeofday",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 165,
        name: "mount",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 166,
        name: "umount2",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 167,
        name: "swapon",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 168,
        name: "swapoff",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 169,
        name: "reboot",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 170,
        name: "sethostname",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 171,
        name: "setdomainname",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 172,
        name: "iopl",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 173,
        name: "ioperm",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 174,
        name: "create_module",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 175,
        name: "init_module",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 176,
        name: "delete_module",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 177,
        name: "get_kernel_syms",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 178,
        name: "query_module",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 179,
        name: "quotactl",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 180,
        name: "nfsservctl",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 181,
        name: "getpmsg",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 182,
        name: "putpmsg",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 183,
        name: "afs_syscall",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 184,
        name: "tuxcall",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 185,
        name: "security",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 186,
        name: "gettid",
        route: Host,
    },
    Syscall {
        nr: 187,
        name: "readahead",
        route: Stack,
    },
    Syscall {
        nr: 188,
        name: "setxattr",
        route: Stack,
    },
    Syscall {
        nr: 189,
        name: "lsetxattr",
        route: Stack,
    },
    Syscall {
        nr: 190,
        name: "fsetxattr",
        route: Stack,
    },
    Syscall {
        nr: 191,
        name: "getxattr",
        route: Stack,
    },
    Syscall {
        nr: 192,
        name: "lgetxattr",
        route: Stack,
    },
    Syscall {
        nr: 193,
        name: "fgetxattr",
        route: Stack,
    },
    Syscall {
        nr: 194,
        name: "listxattr",
        route: Stack,
    },
    Syscall {
        nr: 195,
        name: "llistxattr",
        route: Stack,
    },
    Syscall {
        nr: 196,
        name: "flistxattr",
        route: Stack,
    },
    Syscall {
        nr: 197,
        name: "removexattr",
        route: Stack,
    },
    Syscall {
        nr: 198,
        name: "lremovexattr",
        route: Stack,
    },
    Syscall {
        nr: 199,
        name: "fremovexattr",
        route: Stack,
    },
    Syscall {
        nr: 200,
        name: "tkill",
        route: Host,
    },
    Syscall {
        nr: 201,
        name: "time",
        route: Host,
    },
    Syscall {
        nr: 202,
        name: "futex",
        route: Host,
    },
    Syscall {
        nr: 203,
        name: "sched_setaffinity",
        route: Host,
    },
    Syscall {
        nr: 204,
        name: "sched_getaffinity",
        route: Host,
    },
    Syscall {
        nr: 205,
        name: "set_thread_area",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 206,
        name: "io_setup",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 207,
        name: "io_destroy",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 208,
        name: "io_getevents",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 209,
        name: "io_submit",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 210,
        name: "io_cancel",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 211,
        name: "get_thread_area",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 212,
        name: "lookup_dcookie",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 213,
        name: "epoll_create",
        route: Stack,
    },
    Syscall {
        nr: 214,
        name: "epoll_ctl_old",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 215,
        name: "epoll_wait_old",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 216,
        name: "remap_file_pages",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 217,
        name: "getdents64",
        route: Stack,
    },
    Syscall {
        nr: 218,
        name: "set_tid_address",
        route: Host,
    },
    Syscall {
        nr: 219,
        name: "restart_syscall",
        route: Host,
    },
    Syscall {
        nr: 220,
        name: "semtimedop",
        route: Host,
    },
    Syscall {
        nr: 221,
        name: "fadvise64",
        route: Stack,
    },
    Syscall {
        nr: 222,
        name: "timer_create",
        route: Host,
    },
    Syscall {
        nr: 223,
        name: "timer_settime",
        route: Host,
    },
    Syscall {
        nr: 224,
        name: "timer_gettime",
        route: Host,
    },
    Syscall {
        nr: 225,
        name: "timer_getoverrun",
        route: Host,
    },
    Syscall {
        nr: 226,
        name: "timer_delete",
        route: Host,
    },
    Syscall {
        nr: 227,
        name: "clock_settime",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 228,
        name: "clock_gettime",
        route: Host,
    },
    Syscall {
        nr: 229,
        name: "clock_getres",
        route: Host,
    },
    Syscall {
        nr: 230,
        name: "clock_nanosleep",
        route: Host,
    },
    Syscall {
        nr: 231,
        name: "exit_group",
        route: Trap,
    },
    Syscall {
        nr: 232,
        name: "epoll_wait",
        route: Stack,
    },
    Syscall {
        nr: 233,
        name: "epoll_ctl",
        route: Stack,
    },
    Syscall {
        nr: 234,
        name: "tgkill",
        route: Host,
    },
    Syscall {
        nr: 235,
        name: "utimes",
        route: Stack,
    },
    Syscall {
        nr: 236,
        name: "vserver",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 237,
        name: "mbind",
        route: Host,
    },
    Syscall {
        nr: 238,
        name: "set_mempolicy",
        route: Host,
    },
    Syscall {
        nr: 239,
        name: "get_mempolicy",
        route: Host,
    },
    Syscall {
        nr: 240,
        name: "mq_open",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 241,
        name: "mq_unlink",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 242,
        name: "mq_timedsend",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 243,
        name: "mq_timedreceive",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 244,
        name: "mq_notify",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 245,
        name: "mq_getsetattr",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 246,
        name: "kexec_load",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 247,
        name: "waitid",
        route: Host,
    },
    Syscall {
        nr: 248,
        name: "add_key",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 249,
        name: "request_key",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 250,
        name: "keyctl",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 251,
        name: "ioprio_set",
        route: Host,
    },
    Syscall {
        nr: 252,
        name: "ioprio_get",
        route: Host,
    },
    Syscall {
        nr: 253,
        name: "inotify_init",
        route: Host,
    },
    Syscall {
        nr: 254,
        name: "inotify_add_watch",
        route: HostOnly,
    },
    Syscall {
        nr: 255,
        name: "inotify_rm_watch",
        route: Host,
    },
    Syscall {
        nr: 256,
        name: "migrate_pages",
        route: Host,
    },
    Syscall {
        nr: 257,
        name: "openat",
        route: Stack,
    },
    Syscall {
        nr: 258,
        name: "mkdirat",
        route: Stack,
    },
    Syscall {
        nr: 259,
        name: "mknodat",
        route: Stack,
    },
    Syscall {
        nr: 260,
        name: "fchownat",
        route: Stack,
    },
    Syscall {
        nr: 261,
        name: "futimesat",
        route: Stack,
    },
    Syscall {
        nr: 262,
        name: "newfstatat",
        route: Stack,
    },
    Syscall {
        nr: 263,
        name: "unlinkat",
        route: Stack,
    },
    Syscall {
        nr: 264,
        name: "renameat",
        route: Stack,
    },
    Syscall {
        nr: 265,
        name: "linkat",
        route: Stack,
    },
    Syscall {
        nr: 266,
        name: "symlinkat",
        route: Stack,
    },
    Syscall {
        nr: 267,
        name: "readlinkat",
        route: Stack,
    },
    Syscall {
        nr: 268,
        name: "fchmodat",
        route: Stack,
    },
    Syscall {
        nr: 269,
        name: "faccessat",
        route: Stack,
    },
    Syscall {
        nr: 270,
        name: "pselect6",
        route: Stack,
    },
    Syscall {
        nr: 271,
        name: "ppoll",
        route: Stack,
    },
    Syscall {
        nr: 272,
        name: "unshare",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 273,
        name: "set_robust_list",
        route: Host,
    },
    Syscall {
        nr: 274,
        name: "get_robust_list",
        route: Host,
    },
    Syscall {
        nr: 275,
        name: "splice",
        route: HostOnly,
    },
    Syscall {
        nr: 276,
        name: "tee",
        route: HostOnly,
    },
    Syscall {
        nr: 277,
        name: "sync_file_range",
        route: Stack,
    },
    Syscall {
        nr: 278,
        name: "vmsplice",
        route: HostOnly,
    },
    Syscall {
        nr: 279,
        name: "move_pages",
        route: Host,
    },
    Syscall {
        nr: 280,
        name: "utimensat",
        route: Stack,
    },
    Syscall {
        nr: 281,
        name: "epoll_pwait",
        route: Stack,
    },
    Syscall {
        nr: 282,
        name: "signalfd",
        route: Trap,
    },
    Syscall {
        nr: 283,
        name: "timerfd_create",
        route: Host,
    },
    Syscall {
        nr: 284,
        name: "eventfd",
        route: Host,
    },
    Syscall {
        nr: 285,
        name: "fallocate",
        route: Stack,
    },
    Syscall {
        nr: 286,
        name: "timerfd_settime",
        route: Host,
    },
    Syscall {
        nr: 287,
        name: "timerfd_gettime",
        route: Host,
    },
    Syscall {
        nr: 288,
        name: "accept4",
        route: Stack,
    },
    Syscall {
        nr: 289,
        name: "signalfd4",
        route: Trap,
    },
    Syscall {
        nr: 290,
        name: "eventfd2",
        route: Host,
    },
    Syscall {
        nr: 291,
        name: "epoll_create1",
        route: Stack,
    },
    Syscall {
        nr: 292,
        name: "dup3",
        route: Stack,
    },
    Syscall {
        nr: 293,
        name: "pipe2",
        route: Host,
    },
    Syscall {
        nr: 294,
        name: "inotify_init1",
        route: Host,
    },
    Syscall {
        nr: 295,
        name: "preadv",
        route: Stack,
    },
    Syscall {
        nr: 296,
        name: "pwritev",
        route: Stack,
    },
    Syscall {
        nr: 297,
        name: "rt_tgsigqueueinfo",
        route: Host,
    },
    Syscall {
        nr: 298,
        name: "perf_event_open",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 299,
        name: "recvmmsg",
        route: HostOnly,
    },
    Syscall {
        nr: 300,
        name: "fanotify_init",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 301,
        name: "fanotify_mark",
        route: HostOnly,
    },
    Syscall {
        nr: 302,
        name: "prlimit64",
        route: Host,
    },
    Syscall {
        nr: 303,
        name: "name_to_handle_at",
        route: HostOnly,
    },
    Syscall {
        nr: 304,
        name: "open_by_handle_at",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 305,
        name: "clock_adjtime",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 306,
        name: "syncfs",
        route: Stack,
    },
    Syscall {
        nr: 307,
        name: "sendmmsg",
        route: HostOnly,
    },
    Syscall {
        nr: 308,
        name: "setns",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 309,
        name: "getcpu",
        route: Host,
    },
    Syscall {
        nr: 310,
        name: "process_vm_readv",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 311,
        name: "process_vm_writev",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 312,
        name: "kcmp",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 313,
        name: "finit_module",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 314,
        name: "sched_setattr",
        route: Host,
    },
    Syscall {
        nr: 315,
        name: "sched_getattr",
        route: Host,
    },
    Syscall {
        nr: 316,
        name: "renameat2",
        route: Stack,
    },
    Syscall {
        nr: 317,
        name: "seccomp",
        route: Trap,
    },
    Syscall {
        nr: 318,
        name: "getrandom",
        route: Host,
    },
    Syscall {
        nr: 319,
        name: "memfd_create",
        route: Host,
    },
    Syscall {
        nr: 320,
        name: "kexec_file_load",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 321,
        name: "bpf",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 322,
        name: "execveat",
        route: Trap,
    },
    Syscall {
        nr: 323,
        name: "userfaultfd",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 324,
        name: "membarrier",
        route: Host,
    },
    Syscall {
        nr: 325,
        name: "mlock2",
        route: Host,
    },
    Syscall {
        nr: 326,
        name: "copy_file_range",
        route: HostOnly,
    },
    Syscall {
        nr: 327,
        name: "preadv2",
        route: Stack,
    },
    Syscall {
        nr: 328,
        name: "pwritev2",
        route: Stack,
    },
    Syscall {
        nr: 329,
        name: "pkey_mprotect",
        route: Host,
    },
    Syscall {
        nr: 330,
        name: "pkey_alloc",
        route: Host,
    },
    Syscall {
        nr: 331,
        name: "pkey_free",
        route: Host,
    },
    Syscall {
        nr: 332,
        name: "statx",
        route: Stack,
    },
    Syscall {
        nr: 333,
        name: "io_pgetevents",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 334,
        name: "rseq",
        route: Host,
    },
    Syscall {
        nr: 335,
        name: "uretprobe",
        // The kernel's return-probe trampoline makes it, never a program; made
        // from anywhere else (as the trap would make it) it kills the process.
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 424,
        name: "pidfd_send_signal",
        route: Host,
    },
    Syscall {
        nr: 425,
        name: "io_uring_setup",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 426,
        name: "io_uring_enter",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 427,
        name: "io_uring_register",
        route: Refused(ENOSYS),
    },
    Syscall {
        nr: 428,
        name: "open_tree",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 429,
        name: "move_mount",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 430,
        name: "fsopen",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 431,
        name: "fsconfig",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 432,
        name: "fsmount",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 433,
        name: "fspick",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 434,
        name: "pidfd_open",
        route: Host,
    },
    Syscall {
        nr: 435,
        name: "clone3",
        route: Trap,
    },
    Syscall {
        nr: 436,
        name: "close_range",
        route: Stack,
    },
    Syscall {
        nr: 437,
        name: "openat2",
        route: Stack,
    },
    Syscall {
        nr: 438,
        name: "pidfd_getfd",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 439,
        name: "faccessat2",
        route: Stack,
    },
    Syscall {
        nr: 440,
        name: "process_madvise",
        route: Host,
    },
    Syscall {
        nr: 441,
        name: "epoll_pwait2",
        route: Stack,
    },
    Syscall {
        nr: 442,
        name: "mount_setattr",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 443,
        name: "quotactl_fd",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 444,
        name: "landlock_create_ruleset",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 445,
        name: "landlock_add_rule",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 446,
        name: "landlock_restrict_self",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 447,
        name: "memfd_secret",
        route: Host,
    },
    Syscall {
        nr: 448,
        name: "process_mrelease",
        route: Host,
    },
    Syscall {
        nr: 449,
        name: "futex_waitv",
        route: Host,
    },
    Syscall {
        nr: 450,
        name: "set_mempolicy_home_node",
        route: Host,
    },
    Syscall {
        nr: 451,
        name: "cachestat",
        route: HostOnly,
    },
    Syscall {
        nr: 452,
        name: "fchmodat2",
        route: Stack,
    },
    Syscall {
        nr: 453,
        name: "map_shadow_stack",
        route: Host,
    },
    Syscall {
        nr: 454,
        name: "futex_wake",
        route: Host,
    },
    Syscall {
        nr: 455,
        name: "futex_wait",
        route: Host,
    },
    Syscall {
        nr: 456,
        name: "futex_requeue",
        route: Host,
    },
    Syscall {
        nr: 457,
        name: "statmount",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 458,
        name: "listmount",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 459,
        name: "lsm_get_self_attr",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 460,
        name: "lsm_set_self_attr",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 461,
        name: "lsm_list_modules",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 462,
        name: "mseal",
        route: Host,
    },
    Syscall {
        nr: 463,
        name: "setxattrat",
        route: Stack,
    },
    Syscall {
        nr: 464,
        name: "getxattrat",
        route: Stack,
    },
    Syscall {
        nr: 465,
        name: "listxattrat",
        route: Stack,
    },
    Syscall {
        nr: 466,
        name: "removexattrat",
        route: Stack,
    },
    Syscall {
        nr: 467,
        name: "open_tree_attr",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 468,
        name: "file_getattr",
        route: Refused(EPERM),
    },
    Syscall {
        nr: 469,
        name: "file_setattr",
        route: Refused(EPERM),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_complete() {
        assert!(TABLE.windows(2).all(|w| w[0].nr < w[1].nr));
        // 0..=335 and 424..=469, with no gap (Linux has none there).
        let nrs: Vec<u32> = TABLE.iter().map(|s| s.nr).collect();
        let want: Vec<u32> = (0..=335).chain(424..=469).collect();
        assert_eq!(nrs, want);
    }

    #[test]
    fn unknown_numbers_are_refused() {
        assert_eq!(route(-1), Route::Refused(ENOSYS));
        assert_eq!(route(400), Route::Refused(ENOSYS));
        assert_eq!(route(1 << 40), Route::Refused(ENOSYS));
        assert_eq!(route(0), Route::Stack);
        assert_eq!(name(257), "openat");
        assert_eq!(name(999), "syscall 999");
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// docs/COMPAT.md's "System calls" table is this table.
    #[test]
    fn compat_md_lists_the_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/COMPAT.md"))
                .unwrap_or_default();
        let start = doc.find("## System calls").unwrap_or(doc.len());
        let rows: Vec<String> = doc[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
            .filter(|l| l.starts_with("| ") && !l.starts_with("| nr"))
            .map(str::to_owned)
            .collect();
        let want: Vec<String> = TABLE
            .iter()
            .map(|s| format!("| {} | `{}` | {} |", s.nr, s.name, s.route.describe()))
            .collect();
        assert_eq!(rows, want, "docs/COMPAT.md's System calls table is stale");
    }
}
