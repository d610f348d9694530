//! The socket layer: a running stack ([`Net`]) and its stream and datagram sockets.
//!
//! A driver thread polls the stack: it spins briefly while traffic flows, then parks
//! on the NIC's wake-up descriptor and an eventfd with a timeout from the stack's
//! timers (TCP retransmits and keepalives, WireGuard rekeying), so an idle program
//! burns no core. Program threads operate on sockets under the stack's lock and
//! wake the driver only when it is parked.
//!
//! Errors are `std::io::Error`s with the kind the POSIX edge turns into an errno
//! (`WouldBlock` = EAGAIN, `ConnectionRefused`, `ConnectionReset`, `BrokenPipe`,
//! `AddrInUse`, `NotConnected`, `TimedOut`, `InvalidInput`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rktio_sys::Notifier;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::stack::{Stack, StackConfig, StackError, StackStats};
use crate::{Nic, NicError};

/// How the driver polls.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// How long to keep polling after the last activity before parking.
    pub spin: Duration,
    /// Longest park without a timer due (a safety net; nothing depends on it).
    pub max_park: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            spin: Duration::from_micros(50),
            max_park: Duration::from_secs(1),
        }
    }
}

/// TCP socket options, fixed when the socket is created (smoltcp sockets keep
/// their buffers for life).
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// SO_RCVBUF: receive buffer (the advertised window follows it; above 64 KiB
    /// window scaling is used).
    pub recv_buffer: usize,
    /// SO_SNDBUF: send buffer.
    pub send_buffer: usize,
    /// TCP_NODELAY: send small segments at once (Nagle off).
    pub nodelay: bool,
    /// SO_KEEPALIVE: probe an idle connection at this interval.
    pub keepalive: Option<Duration>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            recv_buffer: 256 << 10,
            send_buffer: 256 << 10,
            nodelay: false,
            keepalive: None,
        }
    }
}

/// Most listening sockets kept ready per listener (smoltcp needs one socket per
/// connection being accepted; a SYN that finds none ready is refused).
pub const MAX_BACKLOG: usize = 64;
/// How long a connect waits for the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a closed socket may linger (sending what is left, FIN) before it is
/// aborted.
const LINGER: Duration = Duration::from_secs(30);

/// Local ports in use, each with the addresses it is bound to (`None`: every
/// local address). Two bindings of one port conflict unless both name an
/// address and the addresses differ.
#[derive(Debug, Default)]
struct Ports(HashMap<u16, Vec<Option<IpAddr>>>);

impl Ports {
    fn in_use(&self, port: u16) -> bool {
        self.0.contains_key(&port)
    }

    /// Takes `port` on `addr`; false if that conflicts with a binding.
    fn claim(&mut self, port: u16, addr: Option<IpAddr>) -> bool {
        let v = self.0.entry(port).or_default();
        if v.iter()
            .any(|b| b.is_none() || addr.is_none() || *b == addr)
        {
            return false;
        }
        v.push(addr);
        true
    }

    fn release(&mut self, port: u16, addr: Option<IpAddr>) {
        if let Some(v) = self.0.get_mut(&port) {
            if let Some(i) = v.iter().position(|b| *b == addr) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.0.remove(&port);
            }
        }
    }
}

struct Core {
    stack: Stack<Box<dyn Nic>>,
    /// Local TCP ports in use (listening or bound by a connection).
    tcp_ports: Ports,
    udp_ports: Ports,
    next_port: u16,
    /// Sockets the program closed, with when: reaped once closed (or lingered).
    closing: Vec<(SocketHandle, Instant, u16)>,
}

impl Core {
    fn ephemeral(&mut self, udp: bool) -> io::Result<u16> {
        for _ in 0..16384 {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { 49152 } else { p + 1 };
            let used = if udp {
                &self.udp_ports
            } else {
                &self.tcp_ports
            };
            if !used.in_use(p) {
                return Ok(p);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free ephemeral port",
        ))
    }

    fn reap(&mut self) {
        let now = Instant::now();
        let (_, sockets) = self.stack.app();
        let mut freed = Vec::new();
        self.closing.retain(|&(h, since, port)| {
            let s = sockets.get_mut::<tcp::Socket>(h);
            let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done || now.duration_since(since) > LINGER {
                sockets.remove(h);
                freed.push(port);
                false
            } else {
                true
            }
        });
        for p in freed {
            self.tcp_ports.release(p, None);
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    changed: Condvar,
    kick: Notifier,
    parked: AtomicBool,
    stop: AtomicBool,
    /// Threads waiting on descriptors (poll/epoll of the POSIX edge): each is
    /// woken through its own notifier whenever the stack moved.
    watchers: Mutex<Vec<Arc<Notifier>>>,
    watching: AtomicUsize,
    /// Threads in `wait` (on `changed`): the driver signals the condition
    /// variable only when there is one (each signal is a futex call).
    waiting: AtomicUsize,
}

impl Shared {
    /// Wakes every watcher (one host call each; none when nobody watches).
    fn notify_watchers(&self) {
        if self.watching.load(Ordering::SeqCst) == 0 {
            return;
        }
        for n in self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            n.notify();
        }
    }

    /// The stack's lock. The driver and the program's threads each hold it for
    /// microseconds (a poll, a copy), so a taker spins a little before it
    /// sleeps in the kernel (a futex wait and the holder's wake: two system
    /// calls and a context switch), backing off between tries.
    fn lock(&self) -> MutexGuard<'_, Core> {
        for round in 0..LOCK_SPINS {
            match self.core.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    for _ in 0..(1u32 << round.min(6)) {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a poll that moved, under the lock: wakes threads in `wait`.
    fn changed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Wakes the driver if it is parked (one host call then, none otherwise).
    fn kick(&self) {
        if self.parked.load(Ordering::SeqCst) {
            self.kick.notify();
        }
    }

    /// Waits (with the lock released) until the driver has polled again, at most
    /// `limit`.
    fn wait<'a>(&self, g: MutexGuard<'a, Core>, limit: Duration) -> MutexGuard<'a, Core> {
        self.kick();
        // Counted under the lock, which the driver holds when it signals.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = match self.changed.wait_timeout(g, limit) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        g
    }
}

/// A running network stack: a NIC, TCP/IP (with WireGuard unless plaintext was
/// asked for) and the driver thread that polls them.
pub struct Net {
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").finish_non_exhaustive()
    }
}

/// Errors starting a stack.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] StackError),
    /// The NIC or the host failed.
    #[error("network device: {0}")]
    Nic(#[from] NicError),
    /// The host failed.
    #[error(transparent)]
    Host(#[from] rktio_sys::HostError),
}

impl Net {
    /// Builds the stack over `nic` and starts its driver thread.
    pub fn start(nic: Box<dyn Nic>, cfg: &StackConfig, poll: PollConfig) -> Result<Net, NetError> {
        let wake = nic.wait_fd().map(rktio_sys::dup_fd).transpose()?;
        let stack = Stack::new(nic, cfg)?;
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                stack,
                tcp_ports: Ports::default(),
                udp_ports: Ports::default(),
                next_port: 49152 + (std::process::id() % 8192) as u16,
                closing: Vec::new(),
            }),
            changed: Condvar::new(),
            kick: Notifier::new()?,
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            watchers: Mutex::new(Vec::new()),
            watching: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        });
        let s = shared.clone();
        // Signals are the program's: none is delivered to the driver.
        let driver = rktio_sys::spawn_masked("rktio-net", move || drive(&s, wake, poll))
            .map_err(|e| rktio_sys::HostError::new("spawn the network driver", e))?;
        Ok(Net {
            shared,
            driver: Some(driver),
        })
    }

    /// Has `n` notified whenever the stack moves, until the guard is dropped: a
    /// thread waiting on several descriptors (some of them the host's) parks on
    /// `n`'s descriptor and checks readiness again when it fires. Register first,
    /// then check, then park: nothing that happens in between is missed.
    pub fn watch(&self, n: &Arc<Notifier>) -> Watch {
        self.shared
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(n.clone());
        self.shared.watching.fetch_add(1, Ordering::SeqCst);
        // The program may have queued work the driver has not seen.
        self.shared.kick();
        Watch {
            shared: self.shared.clone(),
            n: n.clone(),
        }
    }

    /// Counters of the stack.
    pub fn stats(&self) -> StackStats {
        self.shared.lock().stack.stats()
    }

    /// Waits (at most `limit`) until every closed TCP socket has delivered what
    /// was queued and finished closing: call before dropping the stack, or data
    /// written just before a close may never leave.
    pub fn linger(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut c = self.shared.lock();
        while !c.closing.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            c = self
                .shared
                .wait(c, (deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Whether `ip` is one of the stack's own addresses (where the program's
    /// sockets live: the tunnel's in WireGuard mode; localhost included).
    pub fn is_local_addr(&self, ip: IpAddr) -> bool {
        local_addr(&mut self.shared.lock(), Some(ip)).is_ok_and(|a| a.is_some())
    }

    /// Whether WireGuard peer `i` has completed a handshake.
    pub fn wg_has_session(&self, peer: usize) -> bool {
        self.shared
            .lock()
            .stack
            .wireguard()
            .is_some_and(|w| w.has_session(peer))
    }

    /// Listens for TCP connections on `port` (0: an ephemeral port) of every local
    /// address.
    pub fn tcp_listen(
        &self,
        port: u16,
        backlog: usize,
        opts: TcpOptions,
    ) -> io::Result<TcpListener> {
        self.tcp_listen_on(None, port, backlog, opts)
    }

    /// Listens for TCP connections on `port` (0: an ephemeral port) of `addr`
    /// (one of the stack's own addresses, localhost included), or of every local
    /// address (`None`, or an unspecified address such as 0.0.0.0 or ::).
    /// `AddrNotAvailable` if `addr` is not ours, `AddrInUse` if the port is
    /// taken on that address or on every address.
    pub fn tcp_listen_on(
        &self,
        addr: Option<IpAddr>,
        port: u16,
        backlog: usize,
        opts: TcpOptions,
    ) -> io::Result<TcpListener> {
        let mut c = self.shared.lock();
        let addr = local_addr(&mut c, addr)?;
        let port = if port == 0 { c.ephemeral(false)? } else { port };
        if !c.tcp_ports.claim(port, addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("TCP port {port} is in use"),
            ));
        }
        let mut ready = Vec::new();
        for _ in 0..backlog.clamp(1, MAX_BACKLOG) {
            match listen_socket(&mut c, addr, port, &opts) {
                Ok(h) => ready.push(h),
                Err(e) => {
                    for h in ready {
                        c.stack.app().1.remove(h);
                    }
                    c.tcp_ports.release(port, addr);
                    return Err(e);
                }
            }
        }
        drop(c);
        self.shared.kick();
        Ok(TcpListener {
            shared: self.shared.clone(),
            addr,
            port,
            ready,
            opts,
            nonblocking: false,
        })
    }

    /// Starts connecting to `to` and returns at once, as connect(2) on a
    /// non-blocking socket does (EINPROGRESS): the stream becomes writable when
    /// the handshake is done, and [`TcpStream::connect_result`] says how it ended.
    pub fn tcp_connect_start(&self, to: SocketAddr, opts: TcpOptions) -> io::Result<TcpStream> {
        let mut c = self.shared.lock();
        let port = c.ephemeral(false)?;
        let mut s = new_tcp(&opts);
        let (iface, sockets) = c.stack.app();
        s.connect(
            iface.context(),
            IpEndpoint::new(IpAddress::from(to.ip()), to.port()),
            port,
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("connect: {e}")))?;
        let h = sockets.add(s);
        // An ephemeral port is free on every address.
        c.tcp_ports.claim(port, None);
        drop(c);
        self.shared.kick();
        Ok(TcpStream {
            shared: self.shared.clone(),
            handle: h,
            port,
            nonblocking: false,
            read_shut: false,
            write_shut: false,
            timeout: None,
        })
    }

    /// Connects to `to`, waiting for the handshake (at most [`CONNECT_TIMEOUT`]).
    pub fn tcp_connect(&self, to: SocketAddr, opts: TcpOptions) -> io::Result<TcpStream> {
        let stream = self.tcp_connect_start(to, opts)?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut c = self.shared.lock();
        let outcome = loop {
            if let Some(r) = connect_state(&mut c, stream.handle) {
                break r;
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            c = self.shared.wait(c, deadline - now);
        };
        // The guard goes before the stream can: dropping a stream takes the lock.
        drop(c);
        outcome
            .map(|()| stream)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {to}: {e}")))
    }

    /// Binds a UDP socket to `port` (0: an ephemeral port) of every local address.
    pub fn udp_bind(&self, port: u16) -> io::Result<UdpSocket> {
        self.udp_bind_on(None, port)
    }

    /// Binds a UDP socket to `port` (0: an ephemeral port) of `addr`, or of every
    /// local address (`None` or unspecified); errors as [`Net::tcp_listen_on`].
    pub fn udp_bind_on(&self, addr: Option<IpAddr>, port: u16) -> io::Result<UdpSocket> {
        let mut c = self.shared.lock();
        let addr = local_addr(&mut c, addr)?;
        let port = if port == 0 { c.ephemeral(true)? } else { port };
        if !c.udp_ports.claim(port, addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("UDP port {port} is in use"),
            ));
        }
        let meta = 256;
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; meta], vec![0; 256 << 10]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; meta], vec![0; 256 << 10]),
        );
        if let Err(e) = s.bind(IpListenEndpoint {
            addr: addr.map(IpAddress::from),
            port,
        }) {
            c.udp_ports.release(port, addr);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bind: {e}"),
            ));
        }
        let h = c.stack.app().1.add(s);
        Ok(UdpSocket {
            shared: self.shared.clone(),
            handle: h,
            addr,
            port,
            nonblocking: false,
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.kick.notify();
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

fn new_tcp(o: &TcpOptions) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; o.recv_buffer.clamp(4096, 16 << 20)]),
        tcp::SocketBuffer::new(vec![0; o.send_buffer.clamp(4096, 16 << 20)]),
    );
    s.set_nagle_enabled(!o.nodelay);
    s.set_keep_alive(o.keepalive.map(smoltcp::time::Duration::from));
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(120)));
    s
}

/// Tries at the stack's lock before sleeping on it (see `Shared::lock`): the
/// spins between tries double up to 64, about 10 µs in all.
const LOCK_SPINS: u32 = 16;

/// The driver: poll while busy, spin a little when idle, then park.
fn drive(shared: &Shared, wake: Option<rktio_sys::InternalFd>, cfg: PollConfig) {
    let mut idle_since: Option<Instant> = None;
    // The NIC's kick (the host call that sends, and in AF_XDP copy mode on a
    // veth runs the receiver's stack too) is made after the lock is let go,
    // so the program's threads are not kept waiting on it.
    shared.lock().stack.nic_mut().defer_kicks();
    let send = |kick: Option<rktio_sys::TxKick>| {
        if let Some(k) = kick
            && let Err(e) = k.send()
        {
            tracing::warn!("network driver: {e}");
        }
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let (moved, kick) = {
            let mut c = shared.lock();
            if !c.stack.poll_needed() {
                (false, None)
            } else {
                let moved = c.stack.poll();
                if moved {
                    c.reap();
                    shared.changed();
                }
                (moved, c.stack.nic_mut().take_kick())
            }
        };
        send(kick);
        if moved {
            shared.notify_watchers();
        }
        if moved {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < cfg.spin {
            std::hint::spin_loop();
            continue;
        }
        // Park: announce it, clear stale wake-ups, poll once more (anything a
        // program did before seeing `parked` is picked up here), then sleep.
        shared.parked.store(true, Ordering::SeqCst);
        let (delay, kick) = {
            let mut c = shared.lock();
            c.stack.nic_mut().prepare_wait();
            shared.kick.drain();
            let moved = c.stack.poll();
            // What that poll found of the timers (before `reap` takes sockets).
            let delay = c.stack.idle_delay();
            c.reap();
            if moved {
                shared.changed();
                shared.notify_watchers();
            }
            (delay, c.stack.nic_mut().take_kick())
        };
        send(kick);
        let delay = delay.map_or(cfg.max_park, |d| d.min(cfg.max_park));
        if !delay.is_zero() {
            let mut fds = vec![shared.kick.as_fd()];
            if let Some(w) = &wake {
                fds.push(w.as_fd());
            }
            if let Err(e) = rktio_sys::wait_readable(&fds, Some(delay)) {
                tracing::warn!("network driver: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        shared.parked.store(false, Ordering::SeqCst);
        idle_since = None;
    }
}

/// How a connection attempt stands: `None` while the handshake runs.
fn connect_state(c: &mut Core, h: SocketHandle) -> Option<io::Result<()>> {
    match c.stack.app().1.get::<tcp::Socket>(h).state() {
        tcp::State::SynSent | tcp::State::SynReceived => None,
        tcp::State::Closed => Some(Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "refused",
        ))),
        _ => Some(Ok(())),
    }
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// A registration made by [`Net::watch`].
pub struct Watch {
    shared: Arc<Shared>,
    n: Arc<Notifier>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut w = self
            .shared
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = w.iter().position(|x| Arc::ptr_eq(x, &self.n)) {
            w.swap_remove(i);
        }
        self.shared.watching.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listening TCP socket.
pub struct TcpListener {
    shared: Arc<Shared>,
    /// The address it listens on (`None`: every local address).
    addr: Option<IpAddr>,
    port: u16,
    /// Sockets listening (or mid-handshake) on the port.
    ready: Vec<SocketHandle>,
    opts: TcpOptions,
    nonblocking: bool,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("port", &self.port)
            .finish()
    }
}

/// A new socket listening on `port`, in the stack's socket set.
/// The address a socket binds to: `None` for every local address (asked for, or
/// unspecified), else one of the stack's own (a v4-mapped IPv6 address as the
/// IPv4 address it maps).
fn local_addr(c: &mut Core, addr: Option<IpAddr>) -> io::Result<Option<IpAddr>> {
    let Some(a) = addr.map(|a| a.to_canonical()) else {
        return Ok(None);
    };
    if a.is_unspecified() {
        return Ok(None);
    }
    let ours = c
        .stack
        .app()
        .0
        .ip_addrs()
        .iter()
        .any(|cidr| IpAddr::from(cidr.address()) == a);
    if ours {
        Ok(Some(a))
    } else {
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{a} is not an address of this stack"),
        ))
    }
}

fn listen_socket(
    c: &mut Core,
    addr: Option<IpAddr>,
    port: u16,
    opts: &TcpOptions,
) -> io::Result<SocketHandle> {
    let mut s = new_tcp(opts);
    s.listen(IpListenEndpoint {
        addr: addr.map(IpAddress::from),
        port,
    })
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("listen: {e}")))?;
    Ok(c.stack.app().1.add(s))
}

impl TcpListener {
    fn new_listener(&self, c: &mut Core) -> io::Result<SocketHandle> {
        listen_socket(c, self.addr, self.port, &self.opts)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Non-blocking mode: `accept` returns `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// Whether a connection is waiting to be accepted.
    pub fn acceptable(&self) -> bool {
        let mut c = self.shared.lock();
        let sockets = c.stack.app().1;
        self.ready.iter().any(|h| {
            !matches!(
                sockets.get::<tcp::Socket>(*h).state(),
                tcp::State::Listen | tcp::State::SynReceived
            )
        })
    }

    /// Accepts one connection (waiting for it unless non-blocking).
    pub fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut c = self.shared.lock();
        loop {
            let sockets = c.stack.app().1;
            let mut got = None;
            let mut dead = Vec::new();
            for (i, h) in self.ready.iter().enumerate() {
                let s = sockets.get::<tcp::Socket>(*h);
                match s.state() {
                    tcp::State::Listen | tcp::State::SynReceived => {}
                    tcp::State::Closed | tcp::State::TimeWait => dead.push(i),
                    _ => {
                        got = Some((i, s.remote_endpoint()));
                        break;
                    }
                }
            }
            // A connection reset before it was accepted: listen again in its place.
            for i in dead.into_iter().rev() {
                let h = self.ready.swap_remove(i);
                c.stack.app().1.remove(h);
                let n = self.new_listener(&mut c)?;
                self.ready.push(n);
            }
            if let Some((i, remote)) = got {
                let h = self.ready.swap_remove(i);
                let n = self.new_listener(&mut c)?;
                self.ready.push(n);
                let remote = remote
                    .map(|e| SocketAddr::new(IpAddr::from(e.addr), e.port))
                    .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                drop(c);
                self.shared.kick();
                return Ok((
                    TcpStream {
                        shared: self.shared.clone(),
                        handle: h,
                        port: 0,
                        nonblocking: false,
                        read_shut: false,
                        write_shut: false,
                        timeout: None,
                    },
                    remote,
                ));
            }
            if self.nonblocking {
                return Err(would_block());
            }
            c = self.shared.wait(c, Duration::from_millis(500));
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut c = self.shared.lock();
        for h in self.ready.drain(..) {
            c.stack.app().1.remove(h);
        }
        c.tcp_ports.release(self.port, self.addr);
    }
}

/// A connected TCP socket.
pub struct TcpStream {
    shared: Arc<Shared>,
    handle: SocketHandle,
    /// The local port to free on close (0 for accepted sockets: the listener's).
    port: u16,
    nonblocking: bool,
    read_shut: bool,
    write_shut: bool,
    /// SO_RCVTIMEO / SO_SNDTIMEO: a blocking call gives up with `WouldBlock` after this.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").finish_non_exhaustive()
    }
}

impl TcpStream {
    /// Non-blocking mode: reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// For a stream from [`Net::tcp_connect_start`]: `None` while the handshake
    /// runs, then how it ended (SO_ERROR: refused, or fine). A stream that was
    /// accepted or connected already answers `Some(Ok(()))`.
    pub fn connect_result(&self) -> Option<io::Result<()>> {
        connect_state(&mut self.shared.lock(), self.handle)
    }

    /// SO_RCVTIMEO and SO_SNDTIMEO: blocking reads and writes give up with
    /// `WouldBlock` (EAGAIN, as Linux does) after this long (`None`: wait forever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t.filter(|d| !d.is_zero());
    }

    /// Waits for the driver within the socket's timeout, or fails with `WouldBlock`.
    fn block<'a>(
        &self,
        c: MutexGuard<'a, Core>,
        deadline: Option<Instant>,
    ) -> io::Result<MutexGuard<'a, Core>> {
        if self.nonblocking {
            return Err(would_block());
        }
        let limit = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(would_block());
                }
                (d - now).min(Duration::from_millis(500))
            }
            None => Duration::from_millis(500),
        };
        Ok(self.shared.wait(c, limit))
    }

    /// Runs `f` on the smoltcp socket under the stack's lock.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut c = self.shared.lock();
        f(c.stack.app().1.get_mut::<tcp::Socket>(self.handle))
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, on: bool) {
        self.with_socket(|s| s.set_nagle_enabled(!on));
    }

    /// SO_KEEPALIVE with this interval (`None`: off).
    pub fn set_keepalive(&self, every: Option<Duration>) {
        self.with_socket(|s| s.set_keep_alive(every.map(smoltcp::time::Duration::from)));
        self.shared.kick();
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with_socket(|s| s.remote_endpoint())
            .map(|e| SocketAddr::new(IpAddr::from(e.addr), e.port))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Our address and port.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with_socket(|s| s.local_endpoint())
            .map(|e| SocketAddr::new(IpAddr::from(e.addr), e.port))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Copies what is waiting without taking it (MSG_PEEK); never waits.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_shut {
            return Ok(0);
        }
        self.with_socket(|s| {
            if s.can_recv() {
                s.peek_slice(buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e.to_string()))
            } else if !s.may_recv() {
                Ok(0)
            } else {
                Err(would_block())
            }
        })
    }

    /// Readiness now: (readable, writable). Readable includes end of stream and
    /// errors (a read will not block); writable includes a closed connection.
    pub fn readiness(&self) -> (bool, bool) {
        let (r, w) =
            self.with_socket(|s| (s.can_recv() || !s.may_recv(), s.can_send() || !s.may_send()));
        (self.read_shut || r, w)
    }

    /// Bytes waiting to be read (FIONREAD).
    pub fn pending(&self) -> usize {
        self.with_socket(|s| s.recv_queue())
    }

    /// Reads what is there (waiting for something unless non-blocking); `Ok(0)` at
    /// end of stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.read_shut {
            return Ok(0);
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut c = self.shared.lock();
        loop {
            let s = c.stack.app().1.get_mut::<tcp::Socket>(self.handle);
            if s.can_recv() {
                let n = s
                    .recv_slice(buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e.to_string()))?;
                drop(c);
                // The window opened: let the driver tell the peer.
                self.shared.kick();
                return Ok(n);
            }
            if !s.may_recv() {
                if s.state() == tcp::State::Closed && !self.write_shut {
                    return Err(io::Error::from(io::ErrorKind::ConnectionReset));
                }
                return Ok(0);
            }
            c = self.block(c, deadline)?;
        }
    }

    /// Writes what fits (waiting for room unless non-blocking).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_shut {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut c = self.shared.lock();
        loop {
            let s = c.stack.app().1.get_mut::<tcp::Socket>(self.handle);
            if !s.may_send() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            if s.can_send() {
                let n = s
                    .send_slice(buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
                drop(c);
                self.shared.kick();
                return Ok(n);
            }
            c = self.block(c, deadline)?;
        }
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// shutdown(2): `read` stops delivering data; `write` sends FIN after what is
    /// queued.
    pub fn shutdown(&mut self, read: bool, write: bool) {
        if read {
            self.read_shut = true;
        }
        if write && !self.write_shut {
            self.write_shut = true;
            self.with_socket(|s| s.close());
            self.shared.kick();
        }
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut c = self.shared.lock();
        c.stack.app().1.get_mut::<tcp::Socket>(self.handle).close();
        c.closing.push((self.handle, Instant::now(), self.port));
        drop(c);
        self.shared.kick();
    }
}

/// A UDP socket.
pub struct UdpSocket {
    shared: Arc<Shared>,
    handle: SocketHandle,
    /// The address it is bound to (`None`: every local address).
    addr: Option<IpAddr>,
    port: u16,
    nonblocking: bool,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("port", &self.port)
            .finish()
    }
}

impl UdpSocket {
    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Non-blocking mode.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// Sends one datagram (waiting for buffer room unless non-blocking).
    pub fn send_to(&mut self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let ep = IpEndpoint::new(IpAddress::from(to.ip()), to.port());
        let mut c = self.shared.lock();
        loop {
            let s = c.stack.app().1.get_mut::<udp::Socket>(self.handle);
            match s.send_slice(data, ep) {
                Ok(()) => {
                    drop(c);
                    self.shared.kick();
                    return Ok(data.len());
                }
                Err(udp::SendError::BufferFull) if data.len() <= s.payload_send_capacity() => {}
                Err(e) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
                }
            }
            if self.nonblocking {
                return Err(would_block());
            }
            c = self.shared.wait(c, Duration::from_millis(500));
        }
    }

    /// Receives one datagram (a longer one is truncated, as recvfrom does).
    pub fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut c = self.shared.lock();
        loop {
            let s = c.stack.app().1.get_mut::<udp::Socket>(self.handle);
            if let Ok((data, meta)) = s.recv() {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                let from = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
                return Ok((n, from));
            }
            if self.nonblocking {
                return Err(would_block());
            }
            c = self.shared.wait(c, Duration::from_millis(500));
        }
    }

    /// Whether a datagram is waiting.
    pub fn readable(&self) -> bool {
        let mut c = self.shared.lock();
        c.stack.app().1.get::<udp::Socket>(self.handle).can_recv()
    }

    /// Whether a datagram can be queued now.
    pub fn writable(&self) -> bool {
        let mut c = self.shared.lock();
        c.stack.app().1.get::<udp::Socket>(self.handle).can_send()
    }

    /// Bytes of the next datagram waiting (FIONREAD), 0 if none.
    pub fn pending(&self) -> usize {
        let mut c = self.shared.lock();
        c.stack
            .app()
            .1
            .get_mut::<udp::Socket>(self.handle)
            .peek()
            .map_or(0, |(d, _)| d.len())
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut c = self.shared.lock();
        c.stack.app().1.remove(self.handle);
        c.udp_ports.release(self.port, self.addr);
    }
}
