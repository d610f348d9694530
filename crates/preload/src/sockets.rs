//! Internet sockets on the stack, and sendfile.

use super::*;

// ---------------------------------------------------------------- sockets

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::socklen_t;

/// Reads a sockaddr the program passed.
pub(crate) unsafe fn read_addr(p: *const libc::sockaddr, len: socklen_t) -> SysResult<SocketAddr> {
    if !trap::user::readable(
        p.cast(),
        (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
    ) {
        return Err(libc::EFAULT);
    }
    let len = len as usize;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: the program gave `len` readable bytes at `p` (bind/connect's
    // contract); the family field comes first in every sockaddr.
    let fam = i32::from(unsafe { p.cast::<libc::sa_family_t>().read_unaligned() });
    match fam {
        libc::AF_INET => {
            if len < std::mem::size_of::<libc::sockaddr_in>() {
                return Err(libc::EINVAL);
            }
            // SAFETY: as above, with room for a sockaddr_in.
            let a = unsafe { p.cast::<libc::sockaddr_in>().read_unaligned() };
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            if len < std::mem::size_of::<libc::sockaddr_in6>() {
                return Err(libc::EINVAL);
            }
            // SAFETY: as above, with room for a sockaddr_in6.
            let a = unsafe { p.cast::<libc::sockaddr_in6>().read_unaligned() };
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// Writes `a` where the program asked (truncated to its room, as the kernel does),
/// and the full length into `*lenp`.
pub(crate) unsafe fn write_addr(a: SocketAddr, p: *mut libc::sockaddr, lenp: *mut socklen_t) {
    if p.is_null() || !trap::user::writable(lenp.cast(), std::mem::size_of::<socklen_t>()) {
        return;
    }
    // SAFETY: the program gave `*lenp` bytes of room at `p`, and a valid `lenp`.
    let room = unsafe { lenp.read() } as usize;
    if !trap::user::writable(
        p.cast(),
        room.min(std::mem::size_of::<libc::sockaddr_storage>()),
    ) {
        return;
    }
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let size = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            unsafe {
                std::ptr::addr_of_mut!(st)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::addr_of_mut!(st)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: copying min(room, size) bytes into the program's buffer, then its length.
    unsafe {
        std::ptr::copy_nonoverlapping(
            std::ptr::addr_of!(st).cast::<u8>(),
            p.cast::<u8>(),
            room.min(size),
        );
        lenp.write(size as socklen_t);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.socket(domain, ty, proto)
    {
        return ret_fd(r);
    }
    real!(
        c"socket",
        fn(c_int, c_int, c_int) -> c_int,
        domain,
        ty,
        proto
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, a: *const libc::sockaddr, len: socklen_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: bind(2)'s contract.
        let r = unsafe { read_addr(a, len) }
            .and_then(|addr| rt.bind(fd, addr).unwrap_or(Err(libc::EBADF)));
        return ret_int(r);
    }
    if let Some((rt, _g)) = enter()
        // SAFETY: bind(2)'s contract.
        && let Some(path) = unsafe { unix::path_of(a, len) }
        && let Some(r) = rt.unix_bind(path)
    {
        let name = match r {
            Ok(n) => n,
            Err(e) => return ret_int(Err(e)),
        };
        let (sa, l) = unix::abstract_addr(&name);
        let r = real!(
            c"bind",
            fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
            fd,
            (&sa as *const libc::sockaddr_un).cast(),
            l
        );
        if r != 0 {
            let e = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            rt.unix_unbind(path);
            set_errno(e);
        }
        return r;
    }
    real!(
        c"bind",
        fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
        fd,
        a,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.listen(fd, backlog)
    {
        return ret_int(r);
    }
    real!(c"listen", fn(c_int, c_int) -> c_int, fd, backlog)
}

pub(crate) fn do_accept(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
    flags: c_int,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        set_errno(libc::EINVAL);
        return Some(-1);
    }
    Some(match rt.accept(fd, flags)? {
        Ok((nfd, from)) => {
            // SAFETY: accept(2)'s contract for the address out-parameters.
            unsafe { write_addr(from, a, lenp) };
            nfd
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, a: *mut libc::sockaddr, lenp: *mut socklen_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_accept(fd, a, lenp, 0).unwrap_or_else(|| {
        real!(
            c"accept",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_accept(fd, a, lenp, flags).unwrap_or_else(|| {
        real!(
            c"accept4",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t, c_int) -> c_int,
            fd,
            a,
            lenp,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, a: *const libc::sockaddr, len: socklen_t) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: connect(2)'s contract.
        let r = unsafe { read_addr(a, len) }
            .and_then(|addr| rt.connect(fd, addr).unwrap_or(Err(libc::EBADF)));
        return ret_int(r);
    }
    if let Some((rt, _g)) = enter()
        // SAFETY: connect(2)'s contract.
        && let Some(r) = unsafe { unix::sealed_dest(rt, a, len) }
    {
        let (sa, l) = match r {
            Ok(x) => x,
            Err(e) => return ret_int(Err(e)),
        };
        return real!(
            c"connect",
            fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
            fd,
            (&sa as *const libc::sockaddr_un).cast(),
            l
        );
    }
    real!(
        c"connect",
        fn(c_int, *const libc::sockaddr, socklen_t) -> c_int,
        fd,
        a,
        len
    )
}

pub(crate) fn do_name(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
    peer: bool,
) -> Option<c_int> {
    let (rt, _g) = enter()?;
    Some(match rt.sockname(fd, peer)? {
        Ok(addr) => {
            // SAFETY: getsockname(2)'s contract for the out-parameters.
            unsafe { write_addr(addr, a, lenp) };
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_name(fd, a, lenp, false).unwrap_or_else(|| {
        real!(
            c"getsockname",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(
    fd: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    do_name(fd, a, lenp, true).unwrap_or_else(|| {
        real!(
            c"getpeername",
            fn(c_int, *mut libc::sockaddr, *mut socklen_t) -> c_int,
            fd,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        // SAFETY: setsockopt(2)'s contract: `len` readable bytes at `val`.
        let v = match unsafe { buf(val, len as usize) } {
            Ok(v) => v,
            Err(e) => return ret_int(Err(e)),
        };
        if let Some(r) = rt.setsockopt(fd, level, name, v) {
            return ret_int(r);
        }
    }
    real!(
        c"setsockopt",
        fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
        fd,
        level,
        name,
        val,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    lenp: *mut socklen_t,
) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
        && let Some(r) = rt.getsockopt(fd, level, name)
    {
        return match r {
            Ok(v) => {
                // SAFETY: getsockopt(2)'s contract: a socklen_t (checked readable).
                let room = match unsafe { user_read(lenp) } {
                    Ok(r) => r as usize,
                    Err(e) => return ret_int(Err(e)),
                };
                if !trap::user::writable(val.cast(), room.min(v.len())) {
                    set_errno(libc::EFAULT);
                    return -1;
                }
                // SAFETY: getsockopt(2)'s contract: `*lenp` bytes of room at `val`.
                unsafe {
                    let room = lenp.read() as usize;
                    let k = room.min(v.len());
                    std::ptr::copy_nonoverlapping(v.as_ptr(), val.cast::<u8>(), k);
                    lenp.write(k as socklen_t);
                }
                0
            }
            Err(e) => {
                set_errno(e);
                -1
            }
        };
    }
    real!(
        c"getsockopt",
        fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int,
        fd,
        level,
        name,
        val,
        lenp
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && let Some(r) = rt.shutdown(fd, how)
    {
        return ret_int(r);
    }
    real!(c"shutdown", fn(c_int, c_int) -> c_int, fd, how)
}

/// EPIPE raises SIGPIPE unless MSG_NOSIGNAL, as on Linux.
pub(crate) fn sent(r: SysResult<usize>, flags: c_int) -> ssize_t {
    if r == Err(libc::EPIPE) && flags & libc::MSG_NOSIGNAL == 0 {
        // SAFETY: raise has no memory preconditions.
        unsafe { libc::raise(libc::SIGPIPE) };
    }
    ret_size(r)
}

pub(crate) fn do_send(
    fd: c_int,
    bufs: &[&[u8]],
    flags: c_int,
    to: Option<SocketAddr>,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    Some(sent(rt.send(fd, bufs, flags, to)?, flags))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, p: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    // SAFETY: send(2)'s contract.
    let b = match unsafe { buf(p, n) } {
        Ok(b) => b,
        Err(e) => return ret_size(Err(e)),
    };
    do_send(fd, &[b], flags, None).unwrap_or_else(|| {
        real!(
            c"send",
            fn(c_int, *const c_void, size_t, c_int) -> ssize_t,
            fd,
            p,
            n,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    p: *const c_void,
    n: size_t,
    flags: c_int,
    a: *const libc::sockaddr,
    len: socklen_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        let to = if a.is_null() {
            None
        } else {
            // SAFETY: sendto(2)'s contract.
            match unsafe { read_addr(a, len) } {
                Ok(x) => Some(x),
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            }
        };
        // SAFETY: sendto(2)'s contract.
        let b = match unsafe { buf(p, n) } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        if let Some(r) = do_send(fd, &[b], flags, to) {
            return r;
        }
    }
    if let Some((rt, _g)) = enter()
        // SAFETY: sendto(2)'s contract.
        && let Some(r) = unsafe { unix::sealed_dest(rt, a, len) }
    {
        let (sa, l) = match r {
            Ok(x) => x,
            Err(e) => return ret_size(Err(e)),
        };
        return real!(
            c"sendto",
            fn(c_int, *const c_void, size_t, c_int, *const libc::sockaddr, socklen_t) -> ssize_t,
            fd,
            p,
            n,
            flags,
            (&sa as *const libc::sockaddr_un).cast(),
            l
        );
    }
    real!(
        c"sendto",
        fn(c_int, *const c_void, size_t, c_int, *const libc::sockaddr, socklen_t) -> ssize_t,
        fd,
        p,
        n,
        flags,
        a,
        len
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, m: *const libc::msghdr, flags: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        if !trap::user::readable(m.cast(), std::mem::size_of::<libc::msghdr>()) {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: sendmsg(2)'s contract: a msghdr, mapped (checked); it may
        // sit at any alignment.
        let h = unsafe { m.read_unaligned() };
        let to = if h.msg_name.is_null() || h.msg_namelen == 0 {
            None
        } else {
            // SAFETY: the msghdr names `msg_namelen` bytes of address.
            match unsafe { read_addr(h.msg_name.cast(), h.msg_namelen) } {
                Ok(x) => Some(x),
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            }
        };
        // SAFETY: the msghdr's iovecs, per sendmsg(2).
        let bufs = match unsafe {
            iov(
                h.msg_iov,
                c_int::try_from(h.msg_iovlen).unwrap_or(c_int::MAX),
            )
        } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        if let Some(r) = do_send(fd, &bufs, flags, to) {
            return r;
        }
    }
    if trap::user::readable(m.cast(), std::mem::size_of::<libc::msghdr>())
        && let Some((rt, _g)) = enter()
        // SAFETY: sendmsg(2)'s contract: a msghdr (mapped: checked) naming
        // its address.
        && let h = unsafe { m.read_unaligned() }
        // SAFETY: as above.
        && let Some(r) = unsafe { unix::sealed_dest(rt, h.msg_name.cast(), h.msg_namelen) }
    {
        let (mut sa, l) = match r {
            Ok(x) => x,
            Err(e) => return ret_size(Err(e)),
        };
        // A copy whose name is ours.
        let mut h = h;
        h.msg_name = (&mut sa as *mut libc::sockaddr_un).cast();
        h.msg_namelen = l;
        return real!(
            c"sendmsg",
            fn(c_int, *const libc::msghdr, c_int) -> ssize_t,
            fd,
            &h,
            flags
        );
    }
    real!(
        c"sendmsg",
        fn(c_int, *const libc::msghdr, c_int) -> ssize_t,
        fd,
        m,
        flags
    )
}

pub(crate) fn do_recv(
    fd: c_int,
    bufs: &mut [&mut [u8]],
    flags: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_socket(fd) {
        return None;
    }
    Some(match rt.recv(fd, bufs, flags)? {
        Ok((n, from)) => {
            // A stream leaves the address alone, as Linux does.
            if let Some(f) = from {
                // SAFETY: recvfrom(2)'s contract for the address out-parameters.
                unsafe { write_addr(f, a, lenp) };
            }
            n as ssize_t
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, p: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    // SAFETY: recv(2)'s contract.
    let b = match unsafe { buf_mut(p, n) } {
        Ok(b) => b,
        Err(e) => return ret_size(Err(e)),
    };
    do_recv(
        fd,
        &mut [b],
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .unwrap_or_else(|| {
        real!(
            c"recv",
            fn(c_int, *mut c_void, size_t, c_int) -> ssize_t,
            fd,
            p,
            n,
            flags
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    p: *mut c_void,
    n: size_t,
    flags: c_int,
    a: *mut libc::sockaddr,
    lenp: *mut socklen_t,
) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    // SAFETY: recvfrom(2)'s contract.
    let b = match unsafe { buf_mut(p, n) } {
        Ok(b) => b,
        Err(e) => return ret_size(Err(e)),
    };
    do_recv(fd, &mut [b], flags, a, lenp).unwrap_or_else(|| {
        real!(
            c"recvfrom",
            fn(c_int, *mut c_void, size_t, c_int, *mut libc::sockaddr, *mut socklen_t) -> ssize_t,
            fd,
            p,
            n,
            flags,
            a,
            lenp
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, m: *mut libc::msghdr, flags: c_int) -> ssize_t {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_socket(fd)
    {
        drop(_g);
        if !trap::user::writable(m.cast(), std::mem::size_of::<libc::msghdr>()) {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: recvmsg(2)'s contract: a msghdr, mapped and writable
        // (checked), at any alignment: read here, written back below.
        let mut h = unsafe { m.read_unaligned() };
        // SAFETY: the msghdr's iovecs, per recvmsg(2).
        let mut bufs = match unsafe {
            iov_mut(
                h.msg_iov,
                c_int::try_from(h.msg_iovlen).unwrap_or(c_int::MAX),
            )
        } {
            Ok(b) => b,
            Err(e) => return ret_size(Err(e)),
        };
        let mut namelen = h.msg_namelen;
        let r = do_recv(fd, &mut bufs, flags, h.msg_name.cast(), &mut namelen);
        if let Some(r) = r {
            if r >= 0 {
                h.msg_namelen = if h.msg_name.is_null() { 0 } else { namelen };
                h.msg_controllen = 0;
                h.msg_flags = 0;
                // SAFETY: as above.
                unsafe { m.write_unaligned(h) };
            }
            return r;
        }
    }
    real!(
        c"recvmsg",
        fn(c_int, *mut libc::msghdr, c_int) -> ssize_t,
        fd,
        m,
        flags
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, req: libc::c_ulong, arg: *mut c_void) -> c_int {
    if crate::internal(fd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_ours(fd)
    {
        let p = arg.cast::<c_int>();
        return match req {
            libc::FIONREAD => match rt.fionread(fd) {
                Some(Ok(n)) if !p.is_null() => {
                    // SAFETY: FIONREAD's contract: `arg` points to an int.
                    unsafe { p.write(n) };
                    0
                }
                Some(Err(e)) => {
                    set_errno(e);
                    -1
                }
                _ => {
                    set_errno(libc::EFAULT);
                    -1
                }
            },
            libc::FIONBIO => {
                // SAFETY: FIONBIO's contract: `arg` points to an int.
                let on = match unsafe { user_read(p) } {
                    Ok(v) => v != 0,
                    Err(e) => return ret_int(Err(e)),
                };
                ret_int(rt.set_nonblocking(fd, on).unwrap_or(Ok(())))
            }
            libc::FIOCLEX | libc::FIONCLEX => {
                ret_int(rt.set_cloexec(fd, req == libc::FIOCLEX).unwrap_or(Ok(())))
            }
            _ => {
                set_errno(libc::ENOTTY);
                -1
            }
        };
    }
    real!(
        c"ioctl",
        fn(c_int, libc::c_ulong, *mut c_void) -> c_int,
        fd,
        req,
        arg
    )
}

// ---------------------------------------------------------------- sendfile

/// sendfile from a sealed file: pread from the stack, then a write to `out` (a
/// socket of ours, or a host descriptor).
pub(crate) fn do_sendfile(
    out: c_int,
    inp: c_int,
    off: *mut off_t,
    count: size_t,
) -> Option<ssize_t> {
    let (rt, _g) = enter()?;
    if !rt.is_ours(inp) {
        if rt.is_ours(out) {
            // From a host file into a socket of ours: not offered.
            set_errno(libc::EINVAL);
            return Some(-1);
        }
        return None;
    }
    let mut pos = if off.is_null() {
        match rt.lseek(inp, 0, libc::SEEK_CUR)? {
            Ok(p) => p,
            Err(e) => {
                set_errno(e);
                return Some(-1);
            }
        }
    } else if trap::user::writable(off.cast(), std::mem::size_of::<off_t>()) {
        // SAFETY: sendfile(2)'s contract: an offset (mapped, writable: checked).
        unsafe { off.read_unaligned() }
    } else {
        set_errno(libc::EFAULT);
        return Some(-1);
    };
    let mut buf = vec![0u8; count.min(256 << 10)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match rt.pread(inp, &mut buf[..want], pos)? {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if done == 0 => {
                set_errno(e);
                return Some(-1);
            }
            Err(_) => break,
        };
        let w = if rt.is_ours(out) {
            rt.write(out, &buf[..n]).unwrap_or(Err(libc::EBADF))
        } else {
            let r = real!(
                c"write",
                fn(c_int, *const c_void, size_t) -> ssize_t,
                out,
                buf.as_ptr().cast(),
                n
            );
            if r < 0 {
                // SAFETY: errno was just set by write.
                Err(unsafe { *libc::__errno_location() })
            } else {
                Ok(r as usize)
            }
        };
        match w {
            Ok(k) => {
                done += k;
                pos += k as off_t;
                if k < n {
                    break;
                }
            }
            Err(e) if done == 0 => {
                set_errno(e);
                return Some(-1);
            }
            Err(_) => break,
        }
    }
    if off.is_null() {
        let _ = rt.lseek(inp, pos, libc::SEEK_SET);
    } else {
        // SAFETY: as above.
        unsafe { off.write_unaligned(pos) };
    }
    Some(done as ssize_t)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(
    out: c_int,
    inp: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    if crate::internal(out) || crate::internal(inp) {
        return crate::internal_fd();
    }
    do_sendfile(out, inp, off, count).unwrap_or_else(|| {
        real!(
            c"sendfile",
            fn(c_int, c_int, *mut off_t, size_t) -> ssize_t,
            out,
            inp,
            off,
            count
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out: c_int,
    inp: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    if crate::internal(out) || crate::internal(inp) {
        return crate::internal_fd();
    }
    do_sendfile(out, inp, off, count).unwrap_or_else(|| {
        real!(
            c"sendfile64",
            fn(c_int, c_int, *mut off_t, size_t) -> ssize_t,
            out,
            inp,
            off,
            count
        )
    })
}
