//! AF_UNIX addresses that name a path on a sealed mount: the host socket
//! behind them uses an abstract name of the stack's (rktio_posix's `unix`).

use super::*;

use libc::socklen_t;

/// Where sun_path starts in a sockaddr_un.
const PATH_AT: usize = std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// The path an AF_UNIX address names (None: another family, an unnamed or an
/// abstract address, or one that cannot be read: the host's call says EFAULT).
///
/// # Safety
/// `a` names `len` readable bytes (the calls' contract), or is NULL.
pub(crate) unsafe fn path_of<'a>(a: *const libc::sockaddr, len: socklen_t) -> Option<&'a [u8]> {
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_un>());
    if len <= PATH_AT || !crate::trap::user::readable(a.cast(), len) {
        return None;
    }
    // SAFETY: the family field comes first, within `len` bytes.
    let fam = i32::from(unsafe { a.cast::<libc::sa_family_t>().read_unaligned() });
    if fam != libc::AF_UNIX {
        return None;
    }
    let n = (len - PATH_AT).min(108);
    // SAFETY: `len` bytes are readable at `a`, sun_path is within them.
    let p = unsafe { std::slice::from_raw_parts(a.cast::<u8>().add(PATH_AT), n) };
    if p.first() == Some(&0) {
        return None;
    }
    let end = p.iter().position(|&b| b == 0).unwrap_or(n);
    Some(&p[..end])
}

/// The abstract address `name` (no leading NUL), and its length.
pub(crate) fn abstract_addr(name: &[u8]) -> (libc::sockaddr_un, socklen_t) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sa.sun_path.len() - 1);
    for (d, s) in sa.sun_path[1..=n].iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    (sa, (PATH_AT + 1 + n) as socklen_t)
}

/// For a host socket's destination `a`: the abstract address of the socket
/// bound on that sealed path. None: not such a path (use `a` as it is).
///
/// # Safety
/// As `path_of`.
pub(crate) unsafe fn sealed_dest(
    rt: &Runtime,
    a: *const libc::sockaddr,
    len: socklen_t,
) -> Option<SysResult<(libc::sockaddr_un, socklen_t)>> {
    // SAFETY: the caller's contract.
    let p = unsafe { path_of(a, len) }?;
    Some(rt.unix_connect(p)?.map(|name| abstract_addr(&name)))
}
