#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two smoltcp stacks joined by a pipe NIC: TCP over IPv4 and IPv6 carries data
//! byte-exact, and hostile frames on the wire are dropped without a panic.
use rktio_net::{Nic, PipeNic, SmolDevice};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

struct Host {
    iface: Interface,
    dev: SmolDevice<PipeNic>,
    sockets: SocketSet<'static>,
}

fn host(nic: PipeNic, mac: u8, v4: [u8; 4], v6: u16) -> Host {
    let mut dev = SmolDevice::new(nic, rktio_net::Tuning::default().batch);
    let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([
        2, 0, 0, 0, 0, mac,
    ])));
    let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(v4[0], v4[1], v4[2], v4[3]), 24))
            .unwrap();
        a.push(IpCidr::new(IpAddress::v6(0xfd00, 0, 0, 0, 0, 0, 0, v6), 64))
            .unwrap();
    });
    Host {
        iface,
        dev,
        sockets: SocketSet::new(vec![]),
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
    )
}

/// Sends `total` bytes from a to b over TCP to `dst`, echoing them back; the
/// clock is simulated, so this does not depend on timing.
fn echo(a: &mut Host, b: &mut Host, dst: IpAddress, total: usize) {
    let server = b.sockets.add(tcp_socket());
    b.sockets.get_mut::<tcp::Socket>(server).listen(7).unwrap();
    let client = a.sockets.add(tcp_socket());
    a.sockets
        .get_mut::<tcp::Socket>(client)
        .connect(a.iface.context(), (dst, 7), 49152)
        .unwrap();
    let data: Vec<u8> = (0..total).map(|i| (i * 31 + i / 7) as u8).collect();
    let (mut sent, mut back) = (0, Vec::with_capacity(total));
    let mut now = Instant::ZERO;
    for _ in 0..1_000_000 {
        now += smoltcp::time::Duration::from_millis(1);
        a.iface.poll(now, &mut a.dev, &mut a.sockets);
        b.iface.poll(now, &mut b.dev, &mut b.sockets);
        let c = a.sockets.get_mut::<tcp::Socket>(client);
        if c.can_send() && sent < total {
            sent += c.send_slice(&data[sent..]).unwrap();
        }
        if c.can_recv() {
            c.recv(|buf| {
                back.extend_from_slice(buf);
                (buf.len(), ())
            })
            .unwrap();
        }
        let s = b.sockets.get_mut::<tcp::Socket>(server);
        if s.can_recv() && s.can_send() {
            let mut tmp = vec![0u8; 64 << 10];
            let room = s.send_capacity() - s.send_queue();
            let n = s.recv_slice(&mut tmp[..room.min(64 << 10)]).unwrap();
            assert_eq!(s.send_slice(&tmp[..n]).unwrap(), n);
        }
        if back.len() == total {
            break;
        }
    }
    assert_eq!(back.len(), total, "echo incomplete");
    assert!(back == data, "echoed bytes differ");
    a.sockets.remove(client);
    b.sockets.remove(server);
}

#[test]
fn tcp_echo_over_ipv4_and_ipv6() {
    let (na, nb) = PipeNic::pair(1500, 256).unwrap();
    let mut a = host(na, 1, [10, 0, 0, 1], 1);
    let mut b = host(nb, 2, [10, 0, 0, 2], 2);
    echo(&mut a, &mut b, IpAddress::v4(10, 0, 0, 2), 4 << 20);
    echo(
        &mut a,
        &mut b,
        IpAddress::v6(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        1 << 20,
    );
    let s = a.dev.nic().stats();
    assert!(s.tx_frames > 3000 && s.rx_frames > 1000, "{s:?}");
    assert_eq!(s.rx_dropped_bad, 0);
}

#[test]
fn hostile_frames_are_dropped_without_panic() {
    let (na, nb) = PipeNic::pair(1500, 1 << 16).unwrap();
    let mut a = host(na, 1, [10, 0, 0, 1], 1);
    let mut b = host(nb, 2, [10, 0, 0, 2], 2);
    // Garbage of every length around the limits, and mutated real headers.
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for len in [0, 1, 13, 14, 15, 60, 1514, 1515, 9000] {
        let f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        a.dev.nic().inject(f);
    }
    for i in 0..20_000u32 {
        let len = 14 + (rnd() % 1500) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        // Aim at our MAC with IPv4, IPv6 or ARP ethertypes most of the time.
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let et: [u8; 2] = match i % 4 {
            0 => [0x08, 0x00],
            1 => [0x86, 0xdd],
            2 => [0x08, 0x06],
            _ => [rnd() as u8, rnd() as u8],
        };
        f[12..14].copy_from_slice(&et);
        if i % 4 == 0 && len > 34 {
            f[14] = 0x45; // IPv4, IHL 5
        }
        a.dev.nic().inject(f);
    }
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        now += smoltcp::time::Duration::from_millis(1);
        a.iface.poll(now, &mut a.dev, &mut a.sockets);
        b.iface.poll(now, &mut b.dev, &mut b.sockets);
    }
    let s = a.dev.nic().stats();
    assert_eq!(s.rx_dropped_bad, 5, "{s:?}"); // 0, 1, 13, 1515, 9000 bytes
    // The stacks still work afterwards.
    echo(&mut a, &mut b, IpAddress::v4(10, 0, 0, 2), 64 << 10);
}
