//! poll, select, epoll and their signal-mask forms, over any mix of host descriptors and ours.

use super::*;

// ---------------------------------------------------------------- poll, select

/// poll over a mix of the stack's descriptors and the host's. `timeout`: None
/// waits forever.
pub(crate) fn mixed_poll(
    rt: &Runtime,
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
) -> c_int {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        // Register first, then look: a change in between fires the waker.
        let watch = rt.watch_thread();
        let mut ready = 0;
        let mut host: Vec<(c_int, i16, i16)> = Vec::new();
        let mut host_idx = Vec::new();
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = 0;
            if p.fd < 0 {
                continue;
            }
            match rt.readiness(p.fd) {
                Some(bits) => {
                    let want = u32::from(p.events as u16) | (libc::POLLERR | libc::POLLHUP) as u32;
                    p.revents = (bits & want) as i16;
                    if p.revents != 0 {
                        ready += 1;
                    }
                }
                None => {
                    host.push((p.fd, p.events, 0));
                    host_idx.push(i);
                }
            }
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let zero = ready > 0 || remaining.is_some_and(|r| r.is_zero());
        let waker = watch.as_ref().map(|(fd, _, _)| *fd);
        if !zero && let Some(w) = waker {
            host.push((w, libc::POLLIN, 0));
        }
        if host.is_empty() && zero {
            return ready;
        }
        // Without a network nothing of ours changes by itself: wait on the host
        // descriptors alone.
        let t = if zero {
            Some(std::time::Duration::ZERO)
        } else {
            remaining
        };
        match rktio_sys::poll_fds(&mut host, t) {
            Ok(_) => {}
            Err(e) => {
                set_errno(e);
                return -1;
            }
        }
        let mut woke = false;
        for (k, &(fd, _, rev)) in host.iter().enumerate() {
            if k < host_idx.len() {
                fds[host_idx[k]].revents = rev;
                if rev != 0 {
                    ready += 1;
                }
            } else if Some(fd) == waker && rev != 0 {
                woke = true;
            }
        }
        if woke && let Some((_, _, n)) = &watch {
            n.drain();
        }
        if ready > 0 || zero || remaining.is_some_and(|r| r.is_zero()) {
            return ready;
        }
        if let Some(d) = deadline
            && std::time::Instant::now() >= d
        {
            return 0;
        }
    }
}

pub(crate) fn ms(timeout: c_int) -> Option<std::time::Duration> {
    (timeout >= 0).then(|| std::time::Duration::from_millis(timeout as u64))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    if let Some((rt, _g)) = enter()
        && fds.is_aligned()
        && trap::user::writable(fds.cast(), (n as usize).saturating_mul(8))
    {
        // SAFETY: poll(2)'s contract: `n` pollfds at `fds` (mapped, aligned:
        // checked; else the host's poll answers).
        let v = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
        if v.iter().any(|p| rt.is_ours(p.fd)) {
            return mixed_poll(rt, v, ms(timeout));
        }
    }
    real!(
        c"poll",
        fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int,
        fds,
        n,
        timeout
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: c_int,
    _len: size_t,
) -> c_int {
    // SAFETY: the same contract as poll.
    unsafe { poll(fds, n, timeout) }
}

/// The sets select(2) was given (each may be NULL) can be read and written
/// back; else the host's select answers (EFAULT).
fn sets_mapped(sets: [*mut libc::fd_set; 3]) -> bool {
    sets.iter()
        .all(|s| s.is_null() || trap::user::writable(s.cast(), std::mem::size_of::<libc::fd_set>()))
}

pub(crate) unsafe fn fd_isset(fd: c_int, set: *const libc::fd_set) -> bool {
    // SAFETY: `set` is a mapped fd_set (`sets_mapped`) and fd < FD_SETSIZE
    // (checked by callers).
    !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && (0..=libc::FD_SETSIZE as c_int).contains(&nfds)
        && sets_mapped([r, w, e])
    {
        // SAFETY: select(2)'s contract: the sets (each may be NULL) hold `nfds` bits.
        let any_ours = (0..nfds).any(|fd| unsafe {
            (fd_isset(fd, r) || fd_isset(fd, w) || fd_isset(fd, e)) && rt.is_ours(fd)
        });
        if any_ours {
            let mut pf = Vec::new();
            for fd in 0..nfds {
                let mut ev = 0i16;
                // SAFETY: as above.
                unsafe {
                    if fd_isset(fd, r) {
                        ev |= libc::POLLIN;
                    }
                    if fd_isset(fd, w) {
                        ev |= libc::POLLOUT;
                    }
                    if fd_isset(fd, e) {
                        ev |= libc::POLLPRI;
                    }
                }
                if ev != 0 {
                    pf.push(libc::pollfd {
                        fd,
                        events: ev,
                        revents: 0,
                    });
                }
            }
            let timeout = if tv.is_null() {
                None
            } else {
                // SAFETY: a timeval, per select(2) (checked readable).
                let t = match unsafe { user_read(tv) } {
                    Ok(t) => t,
                    Err(e) => return ret_int(Err(e)),
                };
                Some(
                    std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
                        + std::time::Duration::from_micros(t.tv_usec.clamp(0, 999_999) as u64),
                )
            };
            let n = mixed_poll(rt, &mut pf, timeout);
            if n < 0 {
                return -1;
            }
            // SAFETY: clearing and setting bits of the program's sets, per select(2).
            unsafe {
                for set in [r, w, e] {
                    if !set.is_null() {
                        libc::FD_ZERO(set);
                    }
                }
                let mut count = 0;
                for p in &pf {
                    let bad = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
                    if !r.is_null()
                        && p.events & libc::POLLIN != 0
                        && (p.revents & libc::POLLIN != 0 || bad)
                    {
                        libc::FD_SET(p.fd, r);
                        count += 1;
                    }
                    if !w.is_null()
                        && p.events & libc::POLLOUT != 0
                        && (p.revents & libc::POLLOUT != 0 || bad)
                    {
                        libc::FD_SET(p.fd, w);
                        count += 1;
                    }
                    if !e.is_null()
                        && p.events & libc::POLLPRI != 0
                        && p.revents & libc::POLLPRI != 0
                    {
                        libc::FD_SET(p.fd, e);
                        count += 1;
                    }
                }
                return count;
            }
        }
    }
    real!(
        c"select",
        fn(
            c_int,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::timeval,
        ) -> c_int,
        nfds,
        r,
        w,
        e,
        tv
    )
}

// ---------------------------------------------------------------- epoll

pub(crate) fn register_epoll(fd: c_int) -> c_int {
    if fd >= 0
        && let Some((rt, _g)) = enter()
        && let Err(e) = rt.epoll_created(fd)
    {
        real!(c"close", fn(c_int) -> c_int, fd);
        set_errno(e);
        return -1;
    }
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    register_epoll(real!(c"epoll_create", fn(c_int) -> c_int, size))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    register_epoll(real!(c"epoll_create1", fn(c_int) -> c_int, flags))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    if crate::internal(epfd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        let e = if ev.is_null() {
            None
        } else {
            // SAFETY: epoll_ctl(2)'s contract: an epoll_event (packed,
            // checked readable).
            let x = match unsafe { user_read(ev) } {
                Ok(x) => x,
                Err(e) => return ret_int(Err(e)),
            };
            Some(rktio_posix::EpollEvent {
                events: x.events,
                data: x.u64,
            })
        };
        if let Some(r) = rt.epoll_ctl(epfd, op, fd, e) {
            return ret_int(r);
        }
        let r = real!(
            c"epoll_ctl",
            fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
            epfd,
            op,
            fd,
            ev
        );
        if r == 0 {
            rt.epoll_host_changed(epfd, op);
        }
        return r;
    }
    real!(
        c"epoll_ctl",
        fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
        epfd,
        op,
        fd,
        ev
    )
}

/// epoll_wait over the stack's descriptors (checked here) and the host's (in
/// the real epoll, with our waker in it).
pub(crate) fn mixed_epoll_wait(
    rt: &Runtime,
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: Option<std::time::Duration>,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let max_u = usize::try_from(max).unwrap_or(0);
    if max_u == 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    if !trap::user::writable(
        events.cast(),
        max_u.saturating_mul(std::mem::size_of::<libc::epoll_event>()),
    ) {
        set_errno(libc::EFAULT);
        return -1;
    }
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    // SAFETY: epoll_wait(2)'s contract: room for `max` events at `events`.
    let out = unsafe { std::slice::from_raw_parts_mut(events, max_u) };
    loop {
        let _watch = rt.watch_epoll(epfd);
        let ours = rt.epoll_ready(epfd, max_u).unwrap_or_default();
        for (k, e) in ours.iter().enumerate() {
            out[k] = libc::epoll_event {
                events: e.events,
                u64: e.data,
            };
        }
        let k = ours.len();
        let waker = rt.epoll_waker(epfd);
        if let Some(w) = waker
            && w.first
        {
            let mut wev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: rktio_posix::WAKE_TAG,
            };
            real!(
                c"epoll_ctl",
                fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
                epfd,
                libc::EPOLL_CTL_ADD,
                w.fd,
                &mut wev
            );
        }
        if k > 0 && waker.is_some_and(|w| !w.watches_host) {
            // Ours are ready and the host has nothing of the program's to add:
            // no host call.
            return k as c_int;
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let t_ms: c_int = if k > 0 {
            0
        } else {
            match remaining {
                None => -1,
                // Rounded up, as the kernel does: rounding down would turn the
                // last part of a millisecond into a busy loop of zero timeouts.
                Some(r) => c_int::try_from(r.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128))
                    .unwrap_or(i32::MAX),
            }
        };
        let room = max - k as c_int;
        let n = if room > 0 {
            // SAFETY: the rest of the program's buffer, after our events.
            let rest = unsafe { events.add(k) };
            real!(
                c"epoll_pwait",
                fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int,
                epfd,
                rest,
                room,
                t_ms,
                sigmask
            )
        } else {
            0
        };
        if n < 0 {
            if k > 0 {
                return k as c_int;
            }
            return -1;
        }
        // Drop our waker's event, keep the host's.
        let mut total = k;
        let mut woke = false;
        for i in k..k + n as usize {
            let ev = out[i];
            let data = ev.u64;
            if data == rktio_posix::WAKE_TAG {
                woke = true;
                continue;
            }
            out[total] = ev;
            total += 1;
        }
        if woke {
            // The waker says ours changed. Another thread waiting on this epoll
            // (Go's runtime polls one epoll from several) may sleep on, the
            // waker drained here: what woke it is reported here, now.
            rt.epoll_drain(epfd);
            let more = rt.epoll_ready(epfd, max_u - total).unwrap_or_default();
            for e in more {
                // Not twice in one answer (a level-triggered one seen above).
                if out[..k].iter().any(|o| {
                    let d = o.u64;
                    d == e.data
                }) {
                    continue;
                }
                out[total] = libc::epoll_event {
                    events: e.events,
                    u64: e.data,
                };
                total += 1;
            }
        }
        if total > 0 {
            return total as c_int;
        }
        if remaining.is_some_and(|r| r.is_zero()) {
            return 0;
        }
        if let Some(d) = deadline
            && std::time::Instant::now() >= d
        {
            return 0;
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if crate::internal(epfd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        return mixed_epoll_wait(rt, epfd, events, max, ms(timeout), std::ptr::null());
    }
    real!(
        c"epoll_wait",
        fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int,
        epfd,
        events,
        max,
        timeout
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    if crate::internal(epfd) {
        return crate::internal_fd();
    }
    if let Some((rt, _g)) = enter()
        && rt.is_epoll(epfd)
    {
        return mixed_epoll_wait(rt, epfd, events, max, ms(timeout), sigmask);
    }
    real!(
        c"epoll_pwait",
        fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int,
        epfd,
        events,
        max,
        timeout,
        sigmask
    )
}

// ---------------------------------------------------------------- ppoll, pselect

/// Runs `f` with the signal mask `mask` (if any) in place, as ppoll/pselect do.
/// Not atomic like the kernel's: a signal that arrives between the mask change
/// and the wait is handled at once instead of interrupting the wait.
pub(crate) fn with_mask<R>(mask: *const libc::sigset_t, f: impl FnOnce() -> R) -> R {
    if mask.is_null() {
        return f();
    }
    // SAFETY: all-zero is a valid sigset_t to receive the old mask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is the caller's valid sigset_t (ppoll's contract); `old` is ours.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, &mut old) };
    let r = f();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

pub(crate) unsafe fn ts_duration(
    t: *const libc::timespec,
) -> SysResult<Option<std::time::Duration>> {
    if t.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's timespec (checked readable).
    let t = unsafe { user_read(t) }?;
    Ok(Some(
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_nanos(t.tv_nsec.clamp(0, 999_999_999) as u64),
    ))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    if let Some((rt, _g)) = enter()
        && fds.is_aligned()
        && trap::user::writable(fds.cast(), (n as usize).saturating_mul(8))
    {
        // SAFETY: ppoll(2)'s contract: `n` pollfds at `fds` (mapped, aligned:
        // checked; else the host's ppoll answers).
        let v = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
        if v.iter().any(|p| rt.is_ours(p.fd)) {
            // SAFETY: the caller's timeout pointer (may be NULL).
            let t = match unsafe { ts_duration(tmo) } {
                Ok(t) => t,
                Err(e) => return ret_int(Err(e)),
            };
            return with_mask(mask, || mixed_poll(rt, v, t));
        }
    }
    real!(
        c"ppoll",
        fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int,
        fds,
        n,
        tmo,
        mask
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let ours = enter().is_some_and(|(rt, _g)| {
        sets_mapped([r, w, e])
            && (0..nfds.clamp(0, libc::FD_SETSIZE as c_int)).any(|fd| {
                // SAFETY: select(2)'s contract for the sets.
                (unsafe { fd_isset(fd, r) || fd_isset(fd, w) || fd_isset(fd, e) }) && rt.is_ours(fd)
            })
    });
    if ours {
        let mut tv = if tmo.is_null() {
            None
        } else {
            // SAFETY: the caller's timespec (checked readable).
            let t = match unsafe { user_read(tmo) } {
                Ok(t) => t,
                Err(e) => return ret_int(Err(e)),
            };
            Some(libc::timeval {
                tv_sec: t.tv_sec,
                tv_usec: t.tv_nsec / 1000,
            })
        };
        let tvp = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: select with the caller's sets and our copy of the timeout.
        return with_mask(mask, || unsafe { select(nfds, r, w, e, tvp) });
    }
    real!(
        c"pselect",
        fn(
            c_int,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *mut libc::fd_set,
            *const libc::timespec,
            *const libc::sigset_t,
        ) -> c_int,
        nfds,
        r,
        w,
        e,
        tmo,
        mask
    )
}
