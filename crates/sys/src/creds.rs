//! The calling thread's credentials, as the host kernel holds them: what the
//! stack checks file permissions against on sealed mounts.

/// A thread's ids, groups and capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCreds {
    /// File-system user id.
    pub fsuid: u32,
    /// File-system group id.
    pub fsgid: u32,
    /// Real user id (access(2) checks with it).
    pub ruid: u32,
    /// Real group id.
    pub rgid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities (the low 32 bits: every file capability is there).
    pub caps: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's credentials (a handful of system calls).
pub fn thread_creds() -> ThreadCreds {
    // SAFETY: setfsuid with an id that is not valid (-1) changes nothing and
    // answers the current one; it touches no memory.
    let fsuid = unsafe { libc::setfsuid(u32::MAX) };
    // SAFETY: as setfsuid.
    let fsgid = unsafe { libc::setfsgid(u32::MAX) };
    let mut caps = [CapData::default(); 2];
    let mut head = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capget with version 3 writes two CapData records, which `caps` has.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut head as *mut CapHeader,
            caps.as_mut_ptr(),
        )
    };
    let groups = rustix::process::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    ThreadCreds {
        fsuid: fsuid as u32,
        fsgid: fsgid as u32,
        ruid: rustix::process::getuid().as_raw(),
        rgid: rustix::process::getgid().as_raw(),
        euid: rustix::process::geteuid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        groups,
        caps: if r == 0 { caps[0].effective } else { 0 },
    }
}

/// The process's umask, read by setting it and putting it back: call it only
/// where no other thread may change it meanwhile (at start).
pub fn read_umask() -> u32 {
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(old);
    old.bits()
}
