//! Who is calling: the credentials a file-system call is checked against, as
//! Linux's VFS checks `current_cred()`: the calling thread's fsuid, fsgid and
//! supplementary groups, and the capabilities that override file permissions.
//!
//! The POSIX edge sets each thread's credentials ([`set_thread_cred`]) from the
//! host's view of that thread; a thread that never set any (the command-line
//! tools, tests, benchmarks) acts as [`Cred::owner`]: every capability.

use std::cell::RefCell;
use std::sync::Arc;

use crate::{FsError, FsResult, errno};

/// Capabilities that matter to a file system (a subset of Linux's `CAP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(u32);

impl Caps {
    /// CAP_CHOWN: change any file's owner and group.
    pub const CHOWN: Caps = Caps(1 << 0);
    /// CAP_DAC_OVERRIDE: read, write and search past permission bits.
    pub const DAC_OVERRIDE: Caps = Caps(1 << 1);
    /// CAP_DAC_READ_SEARCH: read any file, search any directory.
    pub const DAC_READ_SEARCH: Caps = Caps(1 << 2);
    /// CAP_FOWNER: act as the owner of any file.
    pub const FOWNER: Caps = Caps(1 << 3);
    /// CAP_FSETID: keep set-user-ID and set-group-ID bits.
    pub const FSETID: Caps = Caps(1 << 4);
    /// CAP_MKNOD: create device nodes.
    pub const MKNOD: Caps = Caps(1 << 27);
    /// Every one of them.
    pub const ALL: Caps = Caps(0b11111 | 1 << 27);

    /// From the kernel's effective capability bits (`capget`, low word).
    pub fn from_kernel(bits: u32) -> Self {
        Caps(bits & Self::ALL.0)
    }

    /// Holds every capability in `c`.
    pub fn has(self, c: Caps) -> bool {
        self.0 & c.0 == c.0
    }
}

/// Read permission (`MAY_READ`).
pub const MAY_READ: u32 = 4;
/// Write permission (`MAY_WRITE`).
pub const MAY_WRITE: u32 = 2;
/// Execute or search permission (`MAY_EXEC`).
pub const MAY_EXEC: u32 = 1;

/// A caller's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    /// File-system user id (fsuid).
    pub uid: u32,
    /// File-system group id (fsgid).
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities.
    pub caps: Caps,
    /// The process's umask, applied to created files.
    pub umask: u32,
}

impl Cred {
    /// The owner of a mount acting with every capability (what a thread that
    /// set no credentials is).
    pub fn owner(uid: u32, gid: u32, umask: u32) -> Self {
        Cred {
            uid,
            gid,
            groups: Vec::new(),
            caps: Caps::ALL,
            umask,
        }
    }

    /// `gid` is the caller's fsgid or one of its groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Owns a file with this uid, or may act as its owner (CAP_FOWNER).
    pub fn owns(&self, uid: u32) -> bool {
        self.uid == uid || self.caps.has(Caps::FOWNER)
    }

    /// Linux's generic_permission: may the caller do `mask` (MAY_*) on a file
    /// with this mode, owner and group?
    pub fn permits(&self, mode: u32, uid: u32, gid: u32, mask: u32) -> bool {
        let bits = if self.uid == uid {
            mode >> 6
        } else if self.in_group(gid) {
            mode >> 3
        } else {
            mode
        } & 7;
        if bits & mask == mask {
            return true;
        }
        let dir = mode & 0o170000 == 0o040000;
        if self.caps.has(Caps::DAC_OVERRIDE) {
            // Execute needs an execute bit somewhere, but for directories.
            if mask & MAY_EXEC == 0 || dir || mode & 0o111 != 0 {
                return true;
            }
        }
        if self.caps.has(Caps::DAC_READ_SEARCH)
            && mask & MAY_WRITE == 0
            && (mask & MAY_EXEC == 0 || dir)
        {
            return true;
        }
        false
    }

    /// `permits`, as an EACCES.
    pub fn check(&self, mode: u32, uid: u32, gid: u32, mask: u32) -> FsResult<()> {
        if self.permits(mode, uid, gid, mask) {
            Ok(())
        } else {
            Err(FsError::new(errno::EACCES, "permission denied"))
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Cred>>> = const { RefCell::new(None) };
}

/// Sets the calling thread's credentials for the calls it makes from now on
/// (None: the mount owner's, with every capability).
/// (As the thread ends, after its thread-local storage is gone: nothing.)
pub fn set_thread_cred(cred: Option<Arc<Cred>>) {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = cred);
}

/// The calling thread's credentials, if it set any (none as the thread ends,
/// after its thread-local storage is gone: exit handlers commit as the owner).
pub fn thread_cred() -> Option<Arc<Cred>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Makes `slot` the calling thread's credentials (or `owner`'s where it set
/// none), without touching reference counts when it already is.
pub(crate) fn current_into(slot: &mut Arc<Cred>, owner: &Arc<Cred>) {
    let set = CURRENT.try_with(|c| {
        let c = c.borrow();
        let want = c.as_ref().unwrap_or(owner);
        if !Arc::ptr_eq(slot, want) {
            *slot = want.clone();
        }
    });
    if set.is_err() && !Arc::ptr_eq(slot, owner) {
        *slot = owner.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32) -> Cred {
        Cred {
            uid,
            gid,
            groups: vec![],
            caps: Caps::default(),
            umask: 0o022,
        }
    }

    #[test]
    fn owner_group_other_bits() {
        let u = user(1000, 100);
        assert!(u.permits(0o600, 1000, 0, MAY_READ | MAY_WRITE));
        assert!(!u.permits(0o060, 1000, 100, MAY_READ), "owner bits win");
        assert!(u.permits(0o040, 1, 100, MAY_READ));
        assert!(u.permits(0o004, 1, 2, MAY_READ));
        assert!(!u.permits(0o004, 1, 2, MAY_WRITE));
    }

    #[test]
    fn capabilities_override_as_linux() {
        let root = Cred::owner(0, 0, 0);
        assert!(root.permits(0o100000, 5, 5, MAY_READ | MAY_WRITE));
        assert!(!root.permits(0o100000, 5, 5, MAY_EXEC), "no x bit anywhere");
        assert!(root.permits(0o100001, 5, 5, MAY_EXEC));
        assert!(root.permits(0o040000, 5, 5, MAY_EXEC));
        let mut rs = user(7, 7);
        rs.caps = Caps::DAC_READ_SEARCH;
        assert!(rs.permits(0o100000, 5, 5, MAY_READ));
        assert!(!rs.permits(0o100000, 5, 5, MAY_WRITE));
        assert!(rs.permits(0o040000, 5, 5, MAY_EXEC));
    }
}
