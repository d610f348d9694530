//! Hostile ACKs against a sending TCP socket: SACK blocks, ACK numbers and lost
//! segments from the wire drive smoltcp's loss recovery (our SACK scoreboard,
//! vendor/smoltcp/RKTIO-PATCHES.md 3). Stack A sends to stack B over two in-memory
//! wires; every TCP segment B sends back passes through here, where the input
//! drops it or rewrites its ACK number and SACK blocks (checksums made right, so
//! the socket sees them). Nothing panics, and what B received is a prefix of
//! what A sent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_net::{Cidr, Nic, PipeNic, Security, Stack, StackConfig};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
    TcpRepr, TcpSeqNumber,
};

fn config(last: u8) -> StackConfig {
    StackConfig {
        mac: Some([2, 0, 0, 0, 0, last]),
        addresses: vec![Cidr::parse(&format!("10.1.0.{last}/24")).expect("cidr")],
        gateways: vec![],
        security: Security::Plaintext,
        tuning: Default::default(),
    }
}

/// Fuzz input, read a little at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// B's frame to A, dropped (None), passed on, or with its ACK number and SACK
/// blocks rewritten from the input.
fn mangle(frame: Vec<u8>, input: &mut Input) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(&frame[..]).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Some(frame);
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let caps = ChecksumCapabilities::default();
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if ip_repr.next_header != IpProtocol::Tcp {
        return Some(frame);
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (src, dst) = (
        IpAddress::Ipv4(ip_repr.src_addr),
        IpAddress::Ipv4(ip_repr.dst_addr),
    );
    let mut repr = TcpRepr::parse(&tcp, &src, &dst, &caps).ok()?;
    let op = input.u8();
    if op % 8 == 7 {
        return None;
    }
    if op & 8 == 8 {
        if let Some(ack) = repr.ack_number {
            // Mostly near the real ACK, where the socket takes it.
            let d = i32::from(input.u8() as i8) * 64;
            repr.ack_number = Some(TcpSeqNumber(ack.0.wrapping_add(d)));
        }
    }
    if op & 16 == 16 {
        let base = repr.ack_number.map_or(0, |a| a.0 as u32);
        for r in repr.sack_ranges.iter_mut() {
            *r = match input.u8() % 4 {
                0 => None,
                // Absolute, anything at all.
                1 => Some((input.u32(), input.u32())),
                // Relative to the ACK: blocks above it, in what was sent or not.
                _ => {
                    let l = base.wrapping_add(u32::from(input.u8()) * 512);
                    Some((l, l.wrapping_add(u32::from(input.u8()) * 256)))
                }
            };
        }
    }
    let tcp_len = repr.buffer_len();
    let out_ip = Ipv4Repr {
        payload_len: tcp_len,
        ..ip_repr
    };
    let mut out = vec![0u8; 14 + out_ip.buffer_len() + tcp_len];
    out[..14].copy_from_slice(&frame[..14]);
    let mut ipp = Ipv4Packet::new_unchecked(&mut out[14..]);
    out_ip.emit(&mut ipp, &caps);
    let mut tcpp = TcpPacket::new_unchecked(ipp.payload_mut());
    repr.emit(&mut tcpp, &src, &dst, &caps);
    Some(out)
}

fn shuttle(from: &mut PipeNic, to: &PipeNic, input: Option<&mut Input>) {
    let mut frames = Vec::new();
    let _ = from.recv(&mut frames, 4096);
    match input {
        None => frames.into_iter().for_each(|f| to.inject(f)),
        Some(input) => {
            for f in frames {
                if let Some(f) = mangle(f, input) {
                    to.inject(f);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (na, mut xa) = PipeNic::pair(1500, 4096).expect("pipe");
    let (nb, mut xb) = PipeNic::pair(1500, 4096).expect("pipe");
    let mut a = Stack::new(na, &config(1)).expect("stack a");
    let mut b = Stack::new(nb, &config(2)).expect("stack b");
    let buf = || tcp::SocketBuffer::new(vec![0u8; 64 << 10]);
    let mut listener = tcp::Socket::new(buf(), buf());
    listener.listen(80).expect("listen");
    // Every segment ACKed at once: the loop below does not wait for timers.
    listener.set_ack_delay(None);
    let hb = b.app().1.add(listener);
    let mut client = tcp::Socket::new(buf(), buf());
    let ha = {
        let (iface, _) = a.app();
        client
            .connect(iface.context(), (IpAddress::v4(10, 1, 0, 2), 80), 49152)
            .expect("connect");
        a.app().1.add(client)
    };
    let data: Vec<u8> = (0..200u32 << 10).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::new());
    let mut rx = vec![0u8; 64 << 10];
    for _ in 0..400 {
        {
            let s = a.app().1.get_mut::<tcp::Socket>(ha);
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap_or(0);
            }
        }
        a.poll();
        shuttle(&mut xa, b.nic(), None);
        b.poll();
        {
            let s = b.app().1.get_mut::<tcp::Socket>(hb);
            while let Ok(n) = s.recv_slice(&mut rx) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&rx[..n]);
            }
        }
        b.poll();
        shuttle(&mut xb, a.nic(), Some(&mut input));
        if input.0.is_empty() && got.len() == data.len() {
            break;
        }
    }
    let _ = a.poll_delay();
    // Whatever the ACKs said, B only ever received A's bytes, in order.
    assert!(got.len() <= sent);
    assert_eq!(&got[..], &data[..got.len()]);
});
