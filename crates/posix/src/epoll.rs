//! Readiness over the stack's descriptors: poll and select ask `readiness`,
//! and an epoll instance of ours is a host epoll (for the program's host
//! descriptors and a waker the network driver fires) plus the interest list of
//! the stack's descriptors kept here.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use libc::EINVAL;
use rktio_net::Notifier;

use crate::sock::{SockKind, lock, lock_l, thread_waker};
use crate::{Kind, Runtime, SysResult};

/// One event of epoll_wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollEvent {
    /// EPOLLIN, EPOLLOUT, ...
    pub events: u32,
    /// The caller's data.
    pub data: u64,
}

/// What epoll_wait needs to know of an epoll of ours (see
/// [`Runtime::epoll_waker`]).
#[derive(Debug, Clone, Copy)]
pub struct EpollWaker {
    /// The waker's descriptor, registered in the host epoll under [`WAKE_TAG`].
    pub fd: RawFd,
    /// The waker still has to be added to the host epoll (done once).
    pub first: bool,
    /// The host epoll holds descriptors of the program's: an epoll_wait that
    /// found ours ready still asks the host for theirs.
    pub watches_host: bool,
}

/// An epoll instance: a real host epoll descriptor (for the host's descriptors)
/// and the interest list of the stack's descriptors.
#[derive(Debug)]
pub struct EpollDesc {
    pub(crate) interest: Mutex<HashMap<RawFd, Interest>>,
    /// Fired by the network driver while a thread waits; registered in the host
    /// epoll under [`WAKE_TAG`].
    pub(crate) waker: Arc<Notifier>,
    pub(crate) in_host: AtomicBool,
    /// Host descriptors the program added to the host epoll (added less
    /// deleted; one the host closed without a delete still counts).
    pub(crate) host_watched: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Interest {
    pub(crate) events: u32,
    pub(crate) data: u64,
    /// EPOLLONESHOT fired: nothing more until EPOLL_CTL_MOD.
    pub(crate) spent: bool,
    /// EPOLLET: last readiness reported (EPOLLOUT is edge-triggered from it;
    /// EPOLLIN stays level-triggered, which an edge-triggered program copes with).
    pub(crate) last: u32,
    /// The socket's `send_blocked` count when `last` was taken.
    pub(crate) blocked_seen: u64,
}

impl Interest {
    /// A fresh interest (ADD, or MOD, which starts the edge tracking over).
    fn new(ev: EpollEvent) -> Self {
        Interest {
            events: ev.events,
            data: ev.data,
            spent: false,
            last: 0,
            blocked_seen: 0,
        }
    }
}

/// epoll data of the waker inside the host epoll.
pub const WAKE_TAG: u64 = u64::MAX - 0x726b;

pub(crate) const IN: u32 = libc::EPOLLIN as u32;

pub(crate) const OUT: u32 = libc::EPOLLOUT as u32;

pub(crate) const ERR: u32 = libc::EPOLLERR as u32;

pub(crate) const HUP: u32 = libc::EPOLLHUP as u32;

pub(crate) const RDHUP: u32 = libc::EPOLLRDHUP as u32;

pub(crate) const ET: u32 = libc::EPOLLET as u32;

pub(crate) const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

impl Runtime {
    /// Readiness of one of our descriptors, as epoll bits (poll's POLLIN etc.
    /// have the same values).
    pub fn readiness(&self, fd: RawFd) -> Option<u32> {
        let d = self.desc(fd)?;
        if self.alive().is_err() {
            return Some(ERR);
        }
        Some(match &d.kind {
            Kind::File(_) => IN | OUT,
            Kind::Epoll(e) => {
                if self.epoll_collect(e, 1, false).is_empty() {
                    0
                } else {
                    IN
                }
            }
            Kind::Sock(s) => match &lock(s).kind {
                SockKind::Fresh => {
                    if s.dgram {
                        OUT
                    } else {
                        OUT | HUP
                    }
                }
                SockKind::Listening(l) => {
                    if lock_l(l).acceptable() {
                        IN
                    } else {
                        0
                    }
                }
                SockKind::Stream(t) => match t.connect_result() {
                    None => 0,
                    Some(Err(_)) => ERR | HUP | OUT,
                    Some(Ok(())) => {
                        let (r, w) = t.readiness();
                        (if r { IN } else { 0 }) | (if w { OUT } else { 0 })
                    }
                },
                SockKind::Udp(u) => {
                    (if u.readable() { IN } else { 0 }) | if u.writable() { OUT } else { 0 }
                }
            },
        })
    }

    /// Registers the new host epoll descriptor `epfd` (from epoll_create): the
    /// stack's descriptors added to it are watched here.
    pub fn epoll_created(&self, epfd: RawFd) -> SysResult<()> {
        let waker = Arc::new(Notifier::new().map_err(|e| rktio_sys::errno_of(&e.source))?);
        let d = self.new_desc(
            Kind::Epoll(EpollDesc {
                interest: Mutex::new(HashMap::new()),
                waker,
                in_host: AtomicBool::new(false),
                host_watched: AtomicUsize::new(0),
            }),
            libc::O_RDWR,
        );
        self.insert(epfd, d);
        Ok(())
    }

    /// epoll_ctl(2) for one of our descriptors in an epoll of ours. `None`: a
    /// host descriptor (or a host epoll), for the host's epoll_ctl.
    pub fn epoll_ctl(
        &self,
        epfd: RawFd,
        op: i32,
        fd: RawFd,
        ev: Option<EpollEvent>,
    ) -> Option<SysResult<()>> {
        let ed = self.desc(epfd)?;
        let Kind::Epoll(e) = &ed.kind else {
            return Some(Err(EINVAL));
        };
        let target = self.desc(fd)?;
        if let Kind::File(_) = &target.kind {
            // As Linux: regular files cannot be watched.
            return Some(Err(libc::EPERM));
        }
        if fd == epfd {
            return Some(Err(EINVAL));
        }
        let mut g = e
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(match op {
            libc::EPOLL_CTL_ADD => {
                let Some(ev) = ev else {
                    return Some(Err(libc::EFAULT));
                };
                match g.entry(fd) {
                    std::collections::hash_map::Entry::Occupied(_) => Err(libc::EEXIST),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Interest::new(ev));
                        Ok(())
                    }
                }
            }
            libc::EPOLL_CTL_MOD => {
                let Some(ev) = ev else {
                    return Some(Err(libc::EFAULT));
                };
                match g.get_mut(&fd) {
                    Some(i) => {
                        *i = Interest::new(ev);
                        Ok(())
                    }
                    None => Err(libc::ENOENT),
                }
            }
            libc::EPOLL_CTL_DEL => {
                if g.remove(&fd).is_some() {
                    Ok(())
                } else {
                    Err(libc::ENOENT)
                }
            }
            _ => Err(EINVAL),
        })
    }

    pub(crate) fn epoll_collect(
        &self,
        e: &EpollDesc,
        max: usize,
        consume: bool,
    ) -> Vec<EpollEvent> {
        let snapshot: Vec<(RawFd, Interest)> = e
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        let mut out = Vec::new();
        for (fd, i) in snapshot {
            if out.len() >= max {
                break;
            }
            if i.spent {
                continue;
            }
            let Some(now) = self.readiness(fd) else {
                continue;
            };
            let wanted = i.events & (IN | OUT | RDHUP | libc::EPOLLPRI as u32);
            let mut ev = now & (wanted | ERR | HUP);
            let blocked = self.send_blocked(fd);
            if i.events & ET != 0 {
                // EPOLLOUT only when it comes back: after it was last reported
                // and a send found no room since, it has.
                if i.last & OUT != 0 && blocked == i.blocked_seen {
                    ev &= !OUT;
                }
            }
            if consume {
                let mut g = e
                    .interest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(x) = g.get_mut(&fd) {
                    x.last = now;
                    x.blocked_seen = blocked;
                    if ev != 0 && i.events & ONESHOT != 0 {
                        x.spent = true;
                    }
                }
            }
            if ev != 0 {
                out.push(EpollEvent {
                    events: ev,
                    data: i.data,
                });
            }
        }
        out
    }

    /// Ready events of our descriptors in epoll `epfd` (at most `max`).
    pub fn epoll_ready(&self, epfd: RawFd, max: usize) -> Option<Vec<EpollEvent>> {
        let d = self.desc(epfd)?;
        let Kind::Epoll(e) = &d.kind else { return None };
        Some(self.epoll_collect(e, max, true))
    }

    /// For epoll_wait, one look at epoll `epfd` (None: not an epoll of ours).
    pub fn epoll_waker(&self, epfd: RawFd) -> Option<EpollWaker> {
        let d = self.desc(epfd)?;
        let Kind::Epoll(e) = &d.kind else { return None };
        Some(EpollWaker {
            fd: e.waker.as_fd().as_raw_fd(),
            first: !e.in_host.swap(true, Ordering::SeqCst),
            watches_host: e.host_watched.load(Ordering::SeqCst) > 0,
        })
    }

    /// The host's epoll_ctl `op` on a host descriptor in epoll `epfd` of ours
    /// succeeded.
    pub fn epoll_host_changed(&self, epfd: RawFd, op: i32) {
        if let Some(d) = self.desc(epfd)
            && let Kind::Epoll(e) = &d.kind
        {
            match op {
                libc::EPOLL_CTL_ADD => {
                    e.host_watched.fetch_add(1, Ordering::SeqCst);
                }
                libc::EPOLL_CTL_DEL => {
                    let _ = e
                        .host_watched
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                }
                _ => {}
            }
        }
    }

    /// Drains epoll `epfd`'s waker after it fired.
    pub fn epoll_drain(&self, epfd: RawFd) {
        if let Some(d) = self.desc(epfd)
            && let Kind::Epoll(e) = &d.kind
        {
            e.waker.drain();
        }
    }

    /// Keeps `n` notified while the guard lives (None: no network yet, nothing of
    /// ours can change by itself).
    pub fn watch_epoll(&self, epfd: RawFd) -> Option<rktio_net::Watch> {
        let d = self.desc(epfd)?;
        let Kind::Epoll(e) = &d.kind else { return None };
        let net = self.net.get()?.as_ref()?;
        Some(net.watch(&e.waker))
    }

    /// For poll/select: this thread's waker, registered while the guard lives.
    pub fn watch_thread(&self) -> Option<(RawFd, rktio_net::Watch, Arc<Notifier>)> {
        let net = self.net.get()?.as_ref()?;
        let w = thread_waker().ok()?;
        let g = net.watch(&w);
        Some((w.as_fd().as_raw_fd(), g, w))
    }

    pub(crate) fn forget_in_epolls(&self, fd: RawFd) {
        // Linux drops a closed descriptor from every epoll it was in.
        for d in self.fds().values() {
            if let Kind::Epoll(e) = &d.kind {
                e.interest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&fd);
            }
        }
    }

    /// Is `fd` an epoll of ours?
    pub fn is_epoll(&self, fd: RawFd) -> bool {
        self.desc(fd)
            .is_some_and(|d| matches!(d.kind, Kind::Epoll(_)))
    }
}
