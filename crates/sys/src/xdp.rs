//! AF_XDP: an XDP socket with its UMEM and four rings, the XDP program that
//! redirects the interface's frames to it, and the network-namespace switch tests
//! and tools need to open one inside a namespace.
//!
//! All in pure Rust over raw system calls: the XDP program is six instructions
//! assembled here and loaded with bpf(2), attached with a BPF link (it detaches by
//! itself when the link descriptor closes, so a crash leaves nothing behind), and
//! the socket's rings are mapped and driven directly.
//!
//! Everything in the rings is written by the kernel and read back here through
//! atomics and volatile reads; every index and descriptor is checked before use: a
//! producer that runs ahead of the ring, an address outside our frames, a frame the
//! kernel does not own, a length past the frame — each is counted and dropped.
//! Frame contents are copied out of the UMEM ([`HostBuffers`]), never borrowed.

use crate::{BLOCK_SIZE, HostBuffers, HostCall, HostError, Result, count};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const AF_XDP: i32 = 44;
const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_TX_RING: i32 = 3;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;
const XDP_PGOFF_RX_RING: u64 = 0;
const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Size of the `union bpf_attr` we pass (zero-padded; the kernel checks the tail).
const BPF_ATTR_SIZE: usize = 128;

/// How the kernel moves frames between the NIC and our UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies (what veth offers).
    Copy,
}

/// Sizes of an XDP socket.
#[derive(Debug, Clone, Copy)]
pub struct XdpConfig {
    /// Entries of each ring (a power of two); also the frames for receiving and
    /// for sending, so the UMEM holds `2 * ring` frames of 4 KiB.
    pub ring: u32,
    /// Ask for zero-copy first (falls back to copy mode if the driver cannot).
    pub zero_copy: bool,
    /// Send through an AF_PACKET socket with offloads (TCP super-segments and
    /// checksums the kernel finishes) instead of the tx ring; received frames
    /// still come through AF_XDP. Falls back to the tx ring, with a warning,
    /// where the kernel refuses the socket.
    pub offload: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            ring: 2048,
            zero_copy: true,
            offload: true,
        }
    }
}

/// Counters of bad values the kernel wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Descriptors naming a frame outside ours, one the kernel did not hold, or a
    /// length past the frame.
    pub bad_desc: u64,
    /// Ring indices that claimed more entries than the ring has.
    pub bad_index: u64,
}

fn last_err(what: &str) -> HostError {
    HostError::new(what, io::Error::last_os_error())
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; BPF_ATTR_SIZE], what: &str) -> Result<libc::c_long> {
    count(HostCall::NetSetup);
    // SAFETY: bpf(2) reads (and for some commands writes) at most `size` bytes of
    // `attr`, a live, writable buffer of exactly that size; any pointers stored in it
    // point to live buffers the caller keeps until this returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            BPF_ATTR_SIZE as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(last_err(what));
    }
    Ok(rc)
}

fn owned(fd: libc::c_long, what: &str) -> Result<OwnedFd> {
    let raw = RawFd::try_from(fd).map_err(|_| HostError::new(what, io::Error::other("bad fd")))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A new close-on-exec socket.
pub(crate) fn socket(domain: i32, kind: i32, what: &str) -> Result<OwnedFd> {
    count(HostCall::NetSetup);
    // SAFETY: socket(2) with integer arguments; no memory is passed. A raw
    // system call (not libc's socket) so that an LD_PRELOAD library's socket()
    // never sees the stack's own sockets.
    let raw = unsafe { libc::syscall(libc::SYS_socket, domain, kind | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last_err(what));
    }
    owned(raw, what)
}

fn put_u32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One eBPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0xf) | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The XDP program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
/// (frames of a queue with no socket in the map go on to the kernel).
fn redirect_program(map_fd: RawFd) -> Vec<u8> {
    [
        insn(0x61, 2, 1, 16, 0), // r2 = *(u32 *)(r1 + 16): rx_queue_index
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = &xsks (ld_imm64, first half)
        insn(0, 0, 0, 0, 0),     // ld_imm64, second half
        insn(0xb7, 3, 0, 0, XDP_PASS), // r3 = XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // call bpf_redirect_map
        insn(0x95, 0, 0, 0, 0),  // exit
    ]
    .concat()
}

/// The interface index of `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> Result<u32> {
    let c = CString::new(name)
        .map_err(|_| HostError::new("interface name", io::Error::other("NUL in name")))?;
    count(HostCall::NetSetup);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(last_err(&format!("interface {name}")));
    }
    Ok(i)
}

/// The hardware (MAC) address of interface `name` in the calling thread's network
/// namespace.
pub fn if_mac(name: &str) -> Result<[u8; 6]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(HostError::new(
            "interface name",
            io::Error::other("1 to 15 bytes"),
        ));
    }
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, "socket for SIOCGIFHWADDR")?;
    // struct ifreq: the name, then the union, here a struct sockaddr whose
    // sa_data begins with the MAC.
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    count(HostCall::NetSetup);
    // SAFETY: SIOCGIFHWADDR reads the name from and writes a sockaddr into a
    // `struct ifreq` (40 bytes): `req` is a live, writable buffer of that size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            sock.as_raw_fd(),
            libc::SIOCGIFHWADDR,
            req.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(last_err(&format!("MAC address of {name}")));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req[18..24]);
    Ok(mac)
}

/// Moves the calling thread into the network namespace `name` (as made by
/// `ip netns add`, under /var/run/netns). Sockets and devices it opens afterwards
/// live there; other threads are not affected.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/var/run/netns/{name}");
    count(HostCall::NetSetup);
    // rustix, not std: a raw system call never re-enters an LD_PRELOAD library
    // (whose policy would see our own open).
    let f = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| HostError::new(format!("open {path}"), e.into()))?;
    count(HostCall::NetSetup);
    // SAFETY: setns on a descriptor we hold open; it changes only this thread's
    // namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(last_err(&format!("enter network namespace {name}")));
    }
    Ok(())
}

/// The XDP program of an interface, with its map of sockets by receive queue,
/// attached by a BPF link: closing it (dropping this) detaches the program.
#[derive(Debug)]
pub struct XdpProgram {
    map: crate::InternalFd,
    prog: crate::InternalFd,
    link: Option<crate::InternalFd>,
}

/// Most receive queues served (the size of the socket map).
pub const XDP_MAX_QUEUES: u32 = 64;

impl XdpProgram {
    /// Builds the map and loads the redirect program (not attached yet).
    pub fn load() -> Result<XdpProgram> {
        let mut a = [0u8; BPF_ATTR_SIZE];
        put_u32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
        put_u32(&mut a, 4, 4);
        put_u32(&mut a, 8, 4);
        put_u32(&mut a, 12, XDP_MAX_QUEUES);
        let map = owned(
            bpf(BPF_MAP_CREATE, &mut a, "bpf map create (xskmap)")?,
            "xskmap",
        )?;
        let prog_bytes = redirect_program(map.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut log = vec![0u8; 4096];
        let mut a = [0u8; BPF_ATTR_SIZE];
        put_u32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put_u32(&mut a, 4, (prog_bytes.len() / 8) as u32);
        put_u64(&mut a, 8, prog_bytes.as_ptr() as u64);
        put_u64(&mut a, 16, license.as_ptr() as u64);
        put_u32(&mut a, 24, 1);
        put_u32(&mut a, 28, log.len() as u32);
        put_u64(&mut a, 32, log.as_mut_ptr() as u64);
        a[48..48 + 10].copy_from_slice(b"rktio_xsk\0");
        let prog = match bpf(BPF_PROG_LOAD, &mut a, "bpf prog load (xdp redirect)") {
            Ok(fd) => owned(fd, "xdp program")?,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).into_owned();
                return Err(HostError::new(
                    format!("{}; verifier: {text}", e.what),
                    e.source,
                ));
            }
        };

        Ok(XdpProgram {
            map: crate::InternalFd::new(map),
            prog: crate::InternalFd::new(prog),
            link: None,
        })
    }

    /// Puts `sock` in the map at receive queue `queue`.
    pub fn insert(&self, queue: u32, sock: &XdpSocket) -> Result<()> {
        let key = queue;
        let value = sock.fd.as_raw_fd() as u32;
        let mut a = [0u8; BPF_ATTR_SIZE];
        put_u32(&mut a, 0, self.map.as_raw_fd() as u32);
        put_u64(&mut a, 8, (&key as *const u32) as u64);
        put_u64(&mut a, 16, (&value as *const u32) as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a, "xskmap update")?;
        Ok(())
    }

    /// Attaches the program to interface `ifindex`.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        let mut a = [0u8; BPF_ATTR_SIZE];
        put_u32(&mut a, 0, self.prog.as_raw_fd() as u32);
        put_u32(&mut a, 4, ifindex);
        put_u32(&mut a, 8, BPF_XDP);
        let link = owned(
            bpf(
                BPF_LINK_CREATE,
                &mut a,
                &format!("attach XDP program to {ifname}"),
            )?,
            "bpf link",
        )?;
        self.link = Some(crate::InternalFd::new(link));
        Ok(())
    }
}

/// Opens an XDP socket on every receive queue of `ifname` (in the calling
/// thread's network namespace: a NIC spreads flows over its queues, and veth has
/// one per CPU), loads the redirect program with all of them in its map and
/// attaches it. The sockets and the program may be dropped in either order: the
/// kernel drops a closed socket from the map, and frames of a queue with no
/// socket go on to the kernel.
pub fn open_xdp(ifname: &str, cfg: XdpConfig) -> Result<(XdpProgram, Vec<XdpSocket>)> {
    let ifindex = if_index(ifname)?;
    let mut prog = XdpProgram::load()?;
    let mut socks = Vec::new();
    for q in 0..XDP_MAX_QUEUES {
        match XdpSocket::open(ifname, ifindex, q, cfg) {
            Ok(s) => {
                prog.insert(q, &s)?;
                socks.push(s);
            }
            // Past the last queue the kernel answers EINVAL.
            Err(e) if q > 0 && e.errno() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    prog.attach(ifname, ifindex)?;
    Ok((prog, socks))
}

/// One mapped ring of an XDP socket.
#[derive(Debug)]
struct Ring {
    /// The kernel's mapping (null for a test ring over `_heap`).
    map: *mut libc::c_void,
    map_len: usize,
    /// Memory of a test ring (no kernel behind it).
    _heap: Vec<u64>,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    desc_size: usize,
    size: u32,
    /// Our side's index (producer for fill/tx, consumer for rx/completion).
    local: u32,
}

/// Ring offsets as XDP_MMAP_OFFSETS returns them.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

fn atomic<'a>(p: *const AtomicU32) -> &'a AtomicU32 {
    // SAFETY: `p` points at a 4-byte-aligned u32 inside a ring mapping that lives as
    // long as the socket (every caller holds `&Ring` of that socket); the kernel
    // updates it concurrently, which is what an atomic is for.
    unsafe { &*p }
}

impl Ring {
    fn map(
        fd: BorrowedFd<'_>,
        off: &RingOffset,
        pgoff: u64,
        size: u32,
        desc_size: usize,
    ) -> Result<Ring> {
        let len = (off.desc as usize)
            .checked_add(size as usize * desc_size)
            .ok_or_else(|| HostError::new("xdp ring", io::Error::other("ring too large")))?;
        count(HostCall::Mmap);
        // SAFETY: a new shared mapping of the socket's ring at the kernel-given page
        // offset, with a null hint: it creates memory and touches nothing that exists.
        let map = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::POPULATE,
                fd,
                pgoff,
            )
        }
        .map_err(|e| HostError::new("mmap xdp ring", e.into()))?;
        let at = |o: u64| -> Result<*mut u8> {
            let o = usize::try_from(o)
                .ok()
                .filter(|&o| o + 4 <= len && o % 4 == 0);
            o.map(|o| map.cast::<u8>().wrapping_add(o))
                .ok_or_else(|| HostError::new("xdp ring", io::Error::other("bad ring offset")))
        };
        Ok(Ring {
            map,
            map_len: len,
            _heap: Vec::new(),
            producer: at(off.producer)?.cast(),
            consumer: at(off.consumer)?.cast(),
            flags: at(off.flags)?.cast(),
            desc: at(off.desc)?,
            desc_size,
            size,
            local: 0,
        })
    }

    /// Entries the kernel produced that we have not consumed (rx, completion).
    /// A producer more than a ring ahead is a lie: counted, treated as nothing.
    fn available(&self, stats: &mut XdpStats) -> u32 {
        let prod = atomic(self.producer).load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.local);
        if n > self.size {
            stats.bad_index += 1;
            return 0;
        }
        n
    }

    /// Free slots for us to produce into (fill, tx), given `pending` written but
    /// not yet published.
    fn free(&self, pending: u32, stats: &mut XdpStats) -> u32 {
        let cons = atomic(self.consumer).load(Ordering::Acquire);
        let used = self.local.wrapping_add(pending).wrapping_sub(cons);
        if used > self.size {
            stats.bad_index += 1;
            return 0;
        }
        self.size - used
    }

    fn slot(&self, index: u32) -> *mut u8 {
        let i = (index & (self.size - 1)) as usize;
        self.desc.wrapping_add(i * self.desc_size)
    }

    fn read_u64(&self, index: u32, field: usize) -> u64 {
        // SAFETY: the slot lies inside the mapping (index masked to the ring size,
        // desc + size * desc_size <= map_len by construction) and `field + 8 <=
        // desc_size`; a volatile read, since the kernel may write it at any time.
        unsafe { std::ptr::read_volatile(self.slot(index).wrapping_add(field).cast::<u64>()) }
    }

    fn read_u32(&self, index: u32, field: usize) -> u32 {
        // SAFETY: as in `read_u64`, with `field + 4 <= desc_size`.
        unsafe { std::ptr::read_volatile(self.slot(index).wrapping_add(field).cast::<u32>()) }
    }

    fn write_u64(&self, index: u32, field: usize, v: u64) {
        // SAFETY: as in `read_u64`; the slot is ours to write until published.
        unsafe { std::ptr::write_volatile(self.slot(index).wrapping_add(field).cast::<u64>(), v) }
    }

    fn write_u32(&self, index: u32, field: usize, v: u32) {
        // SAFETY: as in `write_u64`, with `field + 4 <= desc_size`.
        unsafe { std::ptr::write_volatile(self.slot(index).wrapping_add(field).cast::<u32>(), v) }
    }

    fn publish_producer(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        atomic(self.producer).store(self.local, Ordering::Release);
    }

    fn release_consumer(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        atomic(self.consumer).store(self.local, Ordering::Release);
    }

    fn needs_wakeup(&self) -> bool {
        atomic(self.flags).load(Ordering::Acquire) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.map.is_null() {
            return;
        }
        count(HostCall::Mmap);
        // SAFETY: map/map_len are exactly the mapping made in `Ring::map`; the
        // pointers into it die with this value.
        let _ = unsafe { rustix::mm::munmap(self.map, self.map_len) };
    }
}

/// An AF_XDP socket bound to one queue of an interface, with the XDP program that
/// feeds it.
#[derive(Debug)]
pub struct XdpSocket {
    // Rings first: unmapped before the socket closes.
    fill: Ring,
    comp: Ring,
    rx: Ring,
    tx: Ring,
    /// Shared with the kicks handed out by `publish`.
    fd: std::sync::Arc<crate::InternalFd>,
    umem: HostBuffers,
    /// Frames 0..ring receive, ring..2*ring send.
    frames: u32,
    /// Receive frames the kernel holds (given on the fill ring, not yet returned).
    rx_in_kernel: Vec<bool>,
    /// Receive frames waiting for room on the fill ring.
    to_fill: Vec<u32>,
    /// Send frames free for use.
    tx_free: Vec<u32>,
    /// Send frames the kernel holds (on the tx ring, not yet completed).
    tx_in_kernel: Vec<bool>,
    tx_pending: u32,
    mode: XdpMode,
    ifindex: u32,
    stats: XdpStats,
}

// SAFETY: the raw pointers are into mappings owned by this value; all access goes
// through `&mut self` (or `&self` reads of atomics), so moving it between threads
// is sound.
unsafe impl Send for XdpSocket {}

/// setsockopt(2) of option `opt` at `level` to `v`.
pub(crate) fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: i32,
    opt: i32,
    v: &T,
    what: &str,
) -> Result<()> {
    count(HostCall::NetSetup);
    // SAFETY: `v` is a live value of size_of::<T>() bytes, read by the kernel only
    // during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setsockopt,
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last_err(what));
    }
    Ok(())
}

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

impl XdpSocket {
    /// Opens an XDP socket bound to queue `queue` of interface `ifindex` (in the
    /// calling thread's network namespace). Frames reach it once an
    /// [`XdpProgram`] holding it is attached.
    pub fn open(ifname: &str, ifindex: u32, queue: u32, cfg: XdpConfig) -> Result<XdpSocket> {
        if !cfg.ring.is_power_of_two() || !(64..=16384).contains(&cfg.ring) {
            return Err(HostError::new(
                "xdp socket",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "ring size must be a power of two in 64..=16384",
                ),
            ));
        }
        let ring = cfg.ring;
        let frames = 2 * ring;

        // The socket, its UMEM and rings.
        let fd = socket(AF_XDP, libc::SOCK_RAW, "socket(AF_XDP)")?;
        let umem = HostBuffers::new(frames as usize)?;
        let reg = UmemReg {
            addr: umem.base_ptr() as u64,
            len: umem.len_bytes() as u64,
            chunk_size: BLOCK_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd.as_fd(), SOL_XDP, XDP_UMEM_REG, &reg, "register UMEM")?;
        for opt in [
            XDP_UMEM_FILL_RING,
            XDP_UMEM_COMPLETION_RING,
            XDP_RX_RING,
            XDP_TX_RING,
        ] {
            setsockopt(fd.as_fd(), SOL_XDP, opt, &ring, "xdp ring size")?;
        }
        let mut off = MmapOffsets::default();
        let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        count(HostCall::NetSetup);
        // SAFETY: `off` is a live, writable MmapOffsets and `len` its size; the kernel
        // writes at most `len` bytes and updates `len`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_getsockopt,
                fd.as_raw_fd(),
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast::<libc::c_void>(),
                &mut len as *mut libc::socklen_t,
            )
        };
        if rc != 0 || len as usize != std::mem::size_of::<MmapOffsets>() {
            return Err(last_err("xdp mmap offsets"));
        }
        let fill = Ring::map(fd.as_fd(), &off.fr, XDP_UMEM_PGOFF_FILL_RING, ring, 8)?;
        let comp = Ring::map(fd.as_fd(), &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, ring, 8)?;
        let rx = Ring::map(fd.as_fd(), &off.rx, XDP_PGOFF_RX_RING, ring, 16)?;
        let tx = Ring::map(fd.as_fd(), &off.tx, XDP_PGOFF_TX_RING, ring, 16)?;

        let bind = |flags: u16| -> Result<()> {
            let sa = SockaddrXdp {
                family: AF_XDP as u16,
                flags: flags | XDP_USE_NEED_WAKEUP,
                ifindex,
                queue_id: queue,
                shared_umem_fd: 0,
            };
            count(HostCall::NetSetup);
            // SAFETY: `sa` is a live sockaddr_xdp of the size given, read during the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bind,
                    fd.as_raw_fd(),
                    (&sa as *const SockaddrXdp).cast::<libc::c_void>(),
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(last_err(&format!("bind AF_XDP to {ifname} queue {queue}")));
            }
            Ok(())
        };
        // A socket closed on this queue just before is released by the kernel
        // asynchronously: the queue reads as busy for a moment. Retry, bounded.
        let bind_retrying = |flags: u16| -> Result<()> {
            let mut tries = 0;
            loop {
                match bind(flags) {
                    Err(e) if e.errno() == Some(libc::EBUSY) && tries < 500 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    r => return r,
                }
            }
        };
        let mode = if cfg.zero_copy && bind_retrying(XDP_ZEROCOPY).is_ok() {
            XdpMode::ZeroCopy
        } else {
            bind_retrying(XDP_COPY)?;
            XdpMode::Copy
        };

        let mut s = XdpSocket {
            fill,
            comp,
            rx,
            tx,
            fd: std::sync::Arc::new(crate::InternalFd::new(fd)),
            umem,
            frames,
            rx_in_kernel: vec![false; ring as usize],
            to_fill: (0..ring).collect(),
            tx_free: (ring..frames).rev().collect(),
            tx_in_kernel: vec![false; ring as usize],
            tx_pending: 0,
            mode,
            ifindex,
            stats: XdpStats::default(),
        };
        s.refill();
        Ok(s)
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Bad values seen from the kernel.
    pub fn stats(&self) -> XdpStats {
        self.stats
    }

    fn ring_size(&self) -> u32 {
        self.frames / 2
    }

    /// Gives free receive frames back to the kernel on the fill ring.
    fn refill(&mut self) {
        let room = self.fill.free(0, &mut self.stats) as usize;
        let n = room.min(self.to_fill.len());
        if n == 0 {
            return;
        }
        for i in 0..n {
            let Some(f) = self.to_fill.pop() else { break };
            self.fill.write_u64(
                self.fill.local.wrapping_add(i as u32),
                0,
                u64::from(f) * BLOCK_SIZE as u64,
            );
            self.rx_in_kernel[f as usize] = true;
        }
        self.fill.publish_producer(n as u32);
    }

    /// Copies up to `max` received frames out of the UMEM into `out`, each at most
    /// a length in `lens` (others are dropped and counted in `dropped`). Returns
    /// (frames added, frames dropped).
    pub fn recv(
        &mut self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        lens: std::ops::RangeInclusive<usize>,
    ) -> (usize, usize) {
        let avail = self.rx.available(&mut self.stats).min(max as u32);
        let ring = self.ring_size();
        let (mut got, mut dropped) = (0, 0);
        for i in 0..avail {
            let idx = self.rx.local.wrapping_add(i);
            let addr = self.rx.read_u64(idx, 0);
            let len = self.rx.read_u32(idx, 8) as usize;
            let frame = addr / BLOCK_SIZE as u64;
            let offset = (addr % BLOCK_SIZE as u64) as usize;
            if frame >= u64::from(ring) || !self.rx_in_kernel[frame as usize] {
                // Not a frame the kernel holds: nothing to read, nothing to recycle.
                self.stats.bad_desc += 1;
                dropped += 1;
                continue;
            }
            let f = frame as u32;
            self.rx_in_kernel[f as usize] = false;
            if !lens.contains(&len) || offset + len > BLOCK_SIZE {
                if offset + len > BLOCK_SIZE {
                    self.stats.bad_desc += 1;
                }
                dropped += 1;
                self.to_fill.push(f);
                continue;
            }
            let mut v = vec![0u8; len];
            match self.umem.copy_out_at(f as usize, offset, &mut v) {
                Ok(()) => {
                    out.push(v);
                    got += 1;
                }
                Err(_) => {
                    self.stats.bad_desc += 1;
                    dropped += 1;
                }
            }
            self.to_fill.push(f);
        }
        if avail > 0 {
            self.rx.release_consumer(avail);
            self.refill();
        }
        (got, dropped)
    }

    /// Whether received frames are waiting on the rx ring.
    pub fn rx_ready(&self) -> bool {
        let prod = atomic(self.rx.producer).load(Ordering::Acquire);
        prod != self.rx.local
    }

    /// Takes back send frames the kernel finished with.
    fn reclaim(&mut self) {
        let avail = self.comp.available(&mut self.stats);
        let ring = self.ring_size();
        for i in 0..avail {
            let addr = self.comp.read_u64(self.comp.local.wrapping_add(i), 0);
            let frame = addr / BLOCK_SIZE as u64;
            let slot = frame.wrapping_sub(u64::from(ring));
            if frame < u64::from(ring)
                || frame >= u64::from(self.frames)
                || !self.tx_in_kernel[slot as usize]
            {
                self.stats.bad_desc += 1;
                continue;
            }
            self.tx_in_kernel[slot as usize] = false;
            self.tx_free.push(frame as u32);
        }
        if avail > 0 {
            self.comp.release_consumer(avail);
        }
    }

    /// Queues one frame on the tx ring (published by [`XdpSocket::flush`]).
    /// `Ok(false)` when the ring or the send frames are all in use.
    pub fn send(&mut self, frame: &[u8]) -> Result<bool> {
        if frame.len() > BLOCK_SIZE {
            return Err(HostError::new(
                "xdp send",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "frame larger than a UMEM frame",
                ),
            ));
        }
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        if self.tx.free(self.tx_pending, &mut self.stats) == 0 {
            return Ok(false);
        }
        let Some(f) = self.tx_free.pop() else {
            return Ok(false);
        };
        self.umem.copy_in(f as usize, frame)?;
        let idx = self.tx.local.wrapping_add(self.tx_pending);
        self.tx.write_u64(idx, 0, u64::from(f) * BLOCK_SIZE as u64);
        self.tx.write_u32(idx, 8, frame.len() as u32);
        self.tx.write_u32(idx, 12, 0);
        let slot = (f - self.ring_size()) as usize;
        self.tx_in_kernel[slot] = true;
        self.tx_pending += 1;
        Ok(true)
    }

    /// Publishes queued frames and, when the kernel asks for it (always in copy
    /// mode), kicks it with one sendto(2): one host call per batch.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(k) = self.publish() {
            k.send()?;
            self.reclaim();
        }
        Ok(())
    }

    /// Publishes queued frames and takes back completed ones; returns the kick
    /// the kernel wants (always in copy mode, where the kick does the sending),
    /// for the caller to make once it has let go of its locks: in copy mode on
    /// a veth the kick runs the receiving side's network stack too.
    pub fn publish(&mut self) -> Option<XdpKick> {
        if self.tx_pending > 0 {
            let n = self.tx_pending;
            self.tx_pending = 0;
            self.tx.publish_producer(n);
        }
        self.reclaim();
        // Any send frame out of the free list is the kernel's (one count, not a
        // scan of the ring's flags on every poll).
        let in_kernel = self.tx_free.len() < (self.frames - self.ring_size()) as usize;
        (self.tx.needs_wakeup() && in_kernel).then(|| XdpKick(self.fd.clone()))
    }

    /// Before parking: if the kernel wants a wake-up to fill its receive queue
    /// (zero-copy drivers set the flag), polling the socket gives it one.
    pub fn rx_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }
}

/// What a NIC leaves for its driver to send once the stack's lock is let go:
/// an AF_XDP kick, or a batch of AF_PACKET frames.
#[derive(Debug)]
pub enum TxKick {
    /// Process an AF_XDP socket's tx ring.
    Xdp(XdpKick),
    /// Send these frames.
    Packet(crate::PacketBatch),
}

impl TxKick {
    /// Makes the host send (one host call per 64 frames at most).
    pub fn send(&self) -> Result<()> {
        match self {
            TxKick::Xdp(k) => k.send(),
            TxKick::Packet(b) => b.send().map(|_| ()),
        }
    }
}

/// A transmit kick for an AF_XDP socket (see [`XdpSocket::publish`]); it holds
/// the socket's descriptor open.
#[derive(Debug, Clone)]
pub struct XdpKick(std::sync::Arc<crate::InternalFd>);

impl XdpKick {
    /// The kick: one sendto(2) that makes the kernel process the tx ring.
    pub fn send(&self) -> Result<()> {
        count(HostCall::NetSend);
        // SAFETY: sendto with a null buffer of length 0 and no address on a
        // descriptor this value holds open: the kernel reads no memory of ours;
        // it only processes the tx ring.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                self.0.as_raw_fd(),
                std::ptr::null::<libc::c_void>(),
                0usize,
                libc::MSG_DONTWAIT,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => {}
                _ => return Err(HostError::new("xdp tx kick", e)),
            }
        }
        Ok(())
    }
}

impl AsFd for XdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
impl Ring {
    /// A ring over ordinary memory: producer at 0, consumer at 8, flags at 16,
    /// descriptors from 64.
    fn heap(size: u32, desc_size: usize) -> Ring {
        let mut heap = vec![0u64; 8 + size as usize * desc_size / 8];
        let base = heap.as_mut_ptr().cast::<u8>();
        Ring {
            map: std::ptr::null_mut(),
            map_len: 0,
            producer: base.cast(),
            consumer: base.wrapping_add(8).cast(),
            flags: base.wrapping_add(16).cast(),
            desc: base.wrapping_add(64),
            desc_size,
            size,
            local: 0,
            _heap: heap,
        }
    }

    /// What the kernel does on a ring it produces into: write entries, move the
    /// producer.
    fn kernel_produce(&self, entries: &[(u64, u32)]) {
        let prod = atomic(self.producer).load(Ordering::Acquire);
        for (i, &(addr, len)) in entries.iter().enumerate() {
            let idx = prod.wrapping_add(i as u32);
            self.write_u64(idx, 0, addr);
            if self.desc_size == 16 {
                self.write_u32(idx, 8, len);
            }
        }
        atomic(self.producer).store(prod.wrapping_add(entries.len() as u32), Ordering::Release);
    }

    fn kernel_set(&self, producer: Option<u32>, consumer: Option<u32>) {
        if let Some(p) = producer {
            atomic(self.producer).store(p, Ordering::Release);
        }
        if let Some(c) = consumer {
            atomic(self.consumer).store(c, Ordering::Release);
        }
    }
}

#[cfg(test)]
impl XdpSocket {
    /// A socket with no kernel behind it, for tests that play a hostile kernel.
    fn fake(ring: u32) -> XdpSocket {
        let null = || -> OwnedFd {
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .expect("/dev/null")
        };
        let frames = 2 * ring;
        let mut s = XdpSocket {
            fill: Ring::heap(ring, 8),
            comp: Ring::heap(ring, 8),
            rx: Ring::heap(ring, 16),
            tx: Ring::heap(ring, 16),
            fd: std::sync::Arc::new(crate::InternalFd::new(null())),
            umem: HostBuffers::new(frames as usize).expect("umem"),
            frames,
            rx_in_kernel: vec![false; ring as usize],
            to_fill: (0..ring).collect(),
            tx_free: (ring..frames).rev().collect(),
            tx_in_kernel: vec![false; ring as usize],
            tx_pending: 0,
            mode: XdpMode::Copy,
            ifindex: 0,
            stats: XdpStats::default(),
        };
        s.refill();
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const F: u64 = BLOCK_SIZE as u64;

    #[test]
    fn program_is_six_instructions() {
        let p = redirect_program(7);
        assert_eq!(p.len(), 6 * 8);
        assert_eq!(p[8], 0x18);
        assert_eq!(i32::from_ne_bytes(p[12..16].try_into().unwrap()), 7);
        assert_eq!(p[40], 0x95);
    }

    #[test]
    fn good_frames_arrive_and_are_recycled() {
        let mut s = XdpSocket::fake(64);
        // All 64 receive frames were handed to the kernel on the fill ring.
        assert_eq!(s.fill.local, 64);
        s.umem.copy_in(3, b"....hello frame").unwrap();
        // The kernel took the fill entries and received into frame 3.
        s.fill.kernel_set(None, Some(64));
        s.rx.kernel_produce(&[(3 * F + 4, 11)]);
        let mut out = Vec::new();
        assert_eq!(s.recv(&mut out, 16, 1..=1514), (1, 0));
        assert_eq!(out[0], b"hello frame");
        // Frame 3 went straight back on the fill ring.
        assert_eq!(s.fill.local, 65);
        assert_eq!(s.stats(), XdpStats::default());
    }

    #[test]
    fn hostile_receive_descriptors_are_dropped_and_counted() {
        let mut s = XdpSocket::fake(64);
        let mut out = Vec::new();
        s.rx.kernel_produce(&[
            (200 * F, 60),       // beyond the UMEM
            (64 * F, 60),        // a send frame
            (5 * F, 60),         // fine
            (5 * F, 60),         // the same frame again: the kernel no longer holds it
            (6 * F + 4000, 500), // runs past the end of its frame
            (7 * F, 0),          // empty
            (8 * F, 9000),       // longer than the MTU allows
            (u64::MAX, u32::MAX),
        ]);
        let (got, dropped) = s.recv(&mut out, 64, 1..=1514);
        assert_eq!((got, dropped), (1, 7));
        assert_eq!(s.stats().bad_desc, 6);
        // A producer that claims more than a ring of entries is not believed.
        s.rx.kernel_set(Some(s.rx.local.wrapping_add(65)), None);
        assert_eq!(s.recv(&mut out, 64, 1..=1514), (0, 0));
        assert_eq!(s.stats().bad_index, 1);
        s.rx.kernel_set(Some(s.rx.local.wrapping_sub(1)), None);
        assert_eq!(s.recv(&mut out, 64, 1..=1514), (0, 0));
        assert_eq!(s.stats().bad_index, 2);
    }

    #[test]
    fn hostile_completions_and_consumers_are_refused() {
        let mut s = XdpSocket::fake(64);
        for _ in 0..64 {
            assert!(s.send(&[0xab; 100]).unwrap());
        }
        // The tx ring is full until the kernel consumes.
        assert!(!s.send(&[0xab; 100]).unwrap());
        s.tx.publish_producer(s.tx_pending);
        s.tx_pending = 0;
        // Completions: an rx frame, a frame twice, one beyond the UMEM, one good.
        s.tx.kernel_set(None, Some(64));
        s.comp
            .kernel_produce(&[(2 * F, 0), (64 * F, 0), (64 * F, 0), (999 * F, 0)]);
        s.reclaim();
        assert_eq!(s.stats().bad_desc, 3);
        assert_eq!(s.tx_free.len(), 1);
        // A consumer index ahead of our producer is a lie: no room is believed.
        s.tx.kernel_set(None, Some(s.tx.local.wrapping_add(10)));
        assert!(!s.send(&[1; 60]).unwrap());
        assert_eq!(s.stats().bad_index, 1);
        assert!(
            s.send(&[1; 5000]).is_err(),
            "a frame larger than a UMEM frame"
        );
    }
}
