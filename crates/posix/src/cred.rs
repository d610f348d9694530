//! The program's credentials as the stack checks them on sealed mounts: each
//! thread's fsuid, fsgid, groups and capabilities, read from the host when a
//! call that changes them has run (the trap sees every one: set*id, setgroups,
//! capset), and the process's umask, kept as umask(2) sets it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rktio_fs::{Caps, Cred};

/// Bumped by every change of any thread's credentials or of the umask.
static GENERATION: AtomicU64 = AtomicU64::new(1);
static UMASK: AtomicU32 = AtomicU32::new(0o022);

thread_local! {
    /// The generation this thread's credentials were last read at.
    static SEEN: Cell<u64> = const { Cell::new(0) };
    /// What was read then (access(2) needs the real and effective ids too).
    static HOST: RefCell<Option<rktio_sys::ThreadCreds>> = const { RefCell::new(None) };
}

/// At start: the umask the program was started with.
pub fn init() {
    UMASK.store(rktio_sys::read_umask() & 0o777, Ordering::Relaxed);
    changed();
}

/// A call that may change credentials has run: every thread reads them again.
pub fn changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// umask(2) has set `mask`.
pub fn set_umask(mask: u32) {
    UMASK.store(mask & 0o777, Ordering::Relaxed);
    changed();
}

/// The umask now.
pub fn umask() -> u32 {
    UMASK.load(Ordering::Relaxed)
}

/// Makes the file system see this thread's current credentials (cheap when
/// nothing changed: one load).
pub fn refresh() {
    let g = GENERATION.load(Ordering::Acquire);
    if SEEN.get() == g {
        return;
    }
    let c = rktio_sys::thread_creds();
    rktio_fs::set_thread_cred(Some(Arc::new(Cred {
        uid: c.fsuid,
        gid: c.fsgid,
        groups: c.groups.clone(),
        caps: Caps::from_kernel(c.caps),
        umask: umask(),
    })));
    let _ = HOST.try_with(|h| *h.borrow_mut() = Some(c));
    SEEN.set(g);
}

/// The credentials access(2) checks with: the real ids, and every
/// capability for a real root, none otherwise (Linux's access_override_creds);
/// with AT_EACCESS (`effective`), the effective ids and capabilities.
pub fn for_access(effective: bool) -> Cred {
    refresh();
    let c = HOST
        .try_with(|h| h.borrow().clone())
        .ok()
        .flatten()
        .unwrap_or_else(rktio_sys::thread_creds);
    let (uid, gid, caps) = if effective {
        (c.euid, c.egid, Caps::from_kernel(c.caps))
    } else if c.ruid == 0 {
        (c.ruid, c.rgid, Caps::ALL)
    } else {
        (c.ruid, c.rgid, Caps::default())
    };
    Cred {
        uid,
        gid,
        groups: c.groups,
        caps,
        umask: umask(),
    }
}
