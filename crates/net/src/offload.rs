//! Send offloads: TCP super-segments and checksums the host finishes.
//!
//! A NIC that [`Nic::offloads`](crate::Nic::offloads) takes each frame with a
//! virtio-net header ([`VnetHdr`]) in front. smoltcp then leaves the TCP
//! checksum to us and may hand over one TCP segment of up to 64 KiB with the
//! segment size it wants ([`tcp_header`]): the host cuts it up and finishes the
//! checksums, or, on a veth, passes it to the peer whole, as the kernel's own
//! TCP does. [`finish`] does in software what the host does with such a header:
//! for frames that never reach a host (to our own address) and for the in-memory
//! pipe NIC, which plays the host in tests.

use rktio_sys::{Gso, VnetHdr};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

use crate::ETH_HEADER;

/// The ones'-complement sum of `data` as 16-bit big-endian words (RFC 1071),
/// folded, not inverted, continuing from `sum`.
fn ones_sum(mut sum: u32, data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [b] = words.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header's sum (RFC 9293 3.1, RFC 768, RFC 8200 8.1), folded.
fn pseudo_sum(src: &IpAddress, dst: &IpAddress, proto: IpProtocol, l4_len: usize) -> u16 {
    let mut sum = 0u32;
    for a in [src, dst] {
        sum = u32::from(match a {
            IpAddress::Ipv4(a) => ones_sum(sum, &a.octets()),
            IpAddress::Ipv6(a) => ones_sum(sum, &a.octets()),
        });
    }
    let len = l4_len as u32;
    let tail = [
        (len >> 24) as u8,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        u8::from(proto),
    ];
    ones_sum(sum, &tail)
}

/// Offset of the checksum in a TCP header.
const TCP_CSUM_AT: u16 = 16;

/// Where a frame's TCP or UDP header is, with the IP addresses and the length.
struct L4At {
    /// Offset of the TCP header in the frame.
    l4: usize,
    /// Frame bytes that belong to the packet (past them: padding).
    end: usize,
    src: IpAddress,
    dst: IpAddress,
    v6: bool,
    proto: IpProtocol,
}

/// Finds the TCP header of an Ethernet frame carrying IPv4 or IPv6 (no
/// extension headers) TCP; `None` for anything else or a frame that does not
/// parse (smoltcp's checked views: lengths within the buffer).
fn tcp_at(frame: &[u8]) -> Option<L4At> {
    l4_at(frame).filter(|a| a.proto == IpProtocol::Tcp)
}

/// As [`tcp_at`], for TCP or UDP (the header checked as far as its own
/// length: TCP's data offset, UDP's eight bytes).
fn l4_at(frame: &[u8]) -> Option<L4At> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (l4, end, src, dst, v6, proto) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let l4 = ETH_HEADER + usize::from(ip.header_len());
            let end = ETH_HEADER + usize::from(ip.total_len());
            let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
            (l4, end, s, d, false, ip.next_header())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let l4 = ETH_HEADER + ip.header_len();
            let end = l4 + usize::from(ip.payload_len());
            let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
            (l4, end, s, d, true, ip.next_header())
        }
        _ => return None,
    };
    let body = frame.get(l4..end)?;
    match proto {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(body).ok()?;
        }
        IpProtocol::Udp if body.len() >= 8 => {}
        _ => return None,
    }
    Some(L4At {
        l4,
        end,
        src,
        dst,
        v6,
        proto,
    })
}

/// Offset of the checksum in a UDP header.
const UDP_CSUM_AT: usize = 6;

/// Finishes the TCP or UDP checksum of a received frame that a host sent with
/// it unfinished. A kernel that leaves checksums to the device
/// (CHECKSUM_PARTIAL) puts only the pseudo-header's sum in the field, and a
/// veth hands such frames to XDP as they are: from a kernel peer with checksum
/// offload on, or from another stack of ours sending with offloads. A frame
/// whose checksum field holds exactly its pseudo-header's sum, and which does
/// not verify as it is, gets its checksum finished here; every other frame is
/// left for smoltcp to verify. Checksums guard against corruption, not a host
/// (WireGuard's AEAD does): this accepts what the kernel itself would
/// deliver. Returns whether it finished one.
pub(crate) fn finish_received(frame: &mut [u8]) -> bool {
    let Some(at) = l4_at(frame) else {
        return false;
    };
    let off = at.l4
        + match at.proto {
            IpProtocol::Tcp => usize::from(TCP_CSUM_AT),
            _ => UDP_CSUM_AT,
        };
    let field = u16::from_be_bytes([frame[off], frame[off + 1]]);
    let pseudo = pseudo_sum(&at.src, &at.dst, at.proto, at.end - at.l4);
    if field != pseudo {
        return false;
    }
    // Verifies as it is: the sum of pseudo-header and segment is all ones.
    if ones_sum(u32::from(pseudo), &frame[at.l4..at.end]) == 0xffff {
        return false;
    }
    let mut sum = !ones_sum(0, &frame[at.l4..at.end]);
    if at.proto == IpProtocol::Udp && sum == 0 {
        // RFC 768: a computed zero is sent as all ones.
        sum = 0xffff;
    }
    frame[off..off + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

/// The header for a frame smoltcp built with its TCP checksum left to the
/// device: puts the pseudo-header's sum in the TCP checksum field (what the
/// host adds the rest to), and asks for segments of `gso` payload bytes when
/// the segment carries more. Frames other than TCP need nothing (smoltcp
/// checksummed them).
pub(crate) fn tcp_header(frame: &mut [u8], gso: Option<u16>) -> VnetHdr {
    let Some(at) = tcp_at(frame) else {
        return VnetHdr::default();
    };
    let tcp_len = at.end - at.l4;
    let pseudo = pseudo_sum(&at.src, &at.dst, IpProtocol::Tcp, tcp_len);
    let mut tcp = TcpPacket::new_unchecked(&mut frame[at.l4..at.end]);
    tcp.set_checksum(pseudo);
    let hdr_len = at.l4 + usize::from(tcp.header_len());
    let mut h = VnetHdr {
        needs_csum: true,
        csum_start: at.l4 as u16,
        csum_offset: TCP_CSUM_AT,
        ..VnetHdr::default()
    };
    if let Some(mss) = gso
        && mss > 0
        && at.end - hdr_len > usize::from(mss)
    {
        h.gso = if at.v6 { Gso::TcpV6 } else { Gso::TcpV4 };
        h.gso_size = mss;
        h.hdr_len = hdr_len as u16;
    }
    h
}

/// Does what the host does with a frame and its header: cuts a super-segment
/// into segments of `gso_size` payload bytes (sequence numbers advanced, FIN
/// and PSH on the last only, IP lengths and IDs set) and finishes the TCP
/// checksums. A frame whose header does not fit it is dropped (an empty list),
/// as the kernel refuses it.
pub fn finish(frame: &[u8], h: &VnetHdr) -> Vec<Vec<u8>> {
    if h.gso == Gso::None {
        let mut f = frame.to_vec();
        if h.needs_csum {
            let start = usize::from(h.csum_start);
            let at = start + usize::from(h.csum_offset);
            if at + 2 > f.len() {
                return Vec::new();
            }
            let sum = ones_sum(0, &f[start..]);
            f[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
        }
        return vec![f];
    }
    segment(frame, usize::from(h.gso_size)).unwrap_or_default()
}

fn segment(frame: &[u8], mss: usize) -> Option<Vec<Vec<u8>>> {
    let at = tcp_at(frame)?;
    if mss == 0 {
        return None;
    }
    let tcp = TcpPacket::new_checked(&frame[at.l4..at.end]).ok()?;
    let thl = usize::from(tcp.header_len());
    let hdrs = at.l4 + thl;
    let (seq0, fin, psh) = (tcp.seq_number(), tcp.fin(), tcp.psh());
    let payload = frame.get(hdrs..at.end)?;
    let n = payload.len().div_ceil(mss).max(1);
    let mut out = Vec::with_capacity(n);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(mss).collect()
    };
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut f = Vec::with_capacity(hdrs + chunk.len());
        f.extend_from_slice(&frame[..hdrs]);
        f.extend_from_slice(chunk);
        let l4_len = thl + chunk.len();
        if at.v6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut f[ETH_HEADER..]);
            ip.set_payload_len(u16::try_from(l4_len).ok()?);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH_HEADER..]);
            let ihl = usize::from(ip.header_len());
            ip.set_total_len(u16::try_from(ihl + l4_len).ok()?);
            ip.set_ident(ip.ident().wrapping_add(i as u16));
            ip.fill_checksum();
        }
        let mut t = TcpPacket::new_unchecked(&mut f[at.l4..]);
        t.set_seq_number(seq0 + i * mss);
        let last = i + 1 == n;
        t.set_fin(fin && last);
        t.set_psh(psh && last);
        t.fill_checksum(&at.src, &at.dst);
        out.push(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    /// An IPv4 TCP frame with `payload`, checksums left as the device gets them.
    fn frame(payload: &[u8], fin: bool) -> Vec<u8> {
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: if fin {
                TcpControl::Fin
            } else {
                TcpControl::Psh
            },
            seq_number: TcpSeqNumber(1000),
            ack_number: Some(TcpSeqNumber(7)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut f = vec![0u8; ETH_HEADER + ip.buffer_len() + tcp.buffer_len()];
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        eth.emit(&mut e);
        let mut caps = ChecksumCapabilities::default();
        caps.tcp = smoltcp::phy::Checksum::Rx;
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        ip.emit(&mut p, &caps);
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(&mut t, &src.into(), &dst.into(), &caps);
        f
    }

    fn check(f: &[u8]) -> (u32, bool, bool, Vec<u8>) {
        let e = EthernetFrame::new_checked(f).unwrap();
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum());
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(
            t.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()),
            "TCP checksum"
        );
        (
            (t.seq_number() - TcpSeqNumber(1000)) as u32,
            t.fin(),
            t.psh(),
            t.payload().to_vec(),
        )
    }

    #[test]
    fn a_super_segment_is_cut_as_the_host_cuts_it() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for fin in [false, true] {
            let mut f = frame(&data, fin);
            let h = tcp_header(&mut f, Some(1448));
            assert_eq!(h.gso, Gso::TcpV4);
            assert_eq!((h.gso_size, h.csum_start, h.csum_offset), (1448, 34, 16));
            assert_eq!(h.hdr_len, 54);
            let segs = finish(&f, &h);
            assert_eq!(segs.len(), 4);
            let mut back = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let (off, sf, sp, p) = check(s);
                assert_eq!(off as usize, i * 1448);
                let last = i == 3;
                assert_eq!((sf, sp), (fin && last, !fin && last));
                back.extend(p);
            }
            assert_eq!(back, data);
        }
    }

    #[test]
    fn a_small_segment_only_gets_its_checksum() {
        let mut f = frame(b"hello", false);
        let h = tcp_header(&mut f, Some(1448));
        assert_eq!(h.gso, Gso::None);
        assert!(h.needs_csum);
        let segs = finish(&f, &h);
        assert_eq!(segs.len(), 1);
        assert_eq!(check(&segs[0]).3, b"hello");
        // Without the header's checksum request nothing is touched.
        assert_eq!(finish(&f, &VnetHdr::default()), vec![f.clone()]);
    }

    #[test]
    fn an_unfinished_checksum_from_a_host_is_finished_on_receive() {
        // What a kernel with checksum offload sends: the pseudo-header's sum.
        let mut f = frame(b"GET / HTTP/1.1\r\n\r\n", false);
        let h = tcp_header(&mut f, None);
        let sent = f.clone();
        assert!(finish_received(&mut f), "unfinished: finished");
        assert_eq!(finish(&sent, &h), vec![f.clone()], "as the host would");
        check(&f);
        // A finished one is left alone, and so is a wrong one (smoltcp drops it).
        assert!(!finish_received(&mut f));
        let mut bad = f.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let before = bad.clone();
        assert!(!finish_received(&mut bad));
        assert_eq!(bad, before);
        // UDP: the same, with RFC 768's zero rule.
        let mut u = udp_frame(b"hello");
        assert!(finish_received(&mut u));
        let e = EthernetFrame::new_checked(&u[..]).unwrap();
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        let p = smoltcp::wire::UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(p.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        // Nothing that does not parse is touched, and nothing panics.
        for n in 0..f.len() {
            let mut g = f[..n].to_vec();
            assert!(!finish_received(&mut g), "{n} bytes");
        }
    }

    /// An IPv4 UDP frame whose checksum field holds the pseudo-header's sum.
    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
        let mut f = frame(b"", false);
        f.truncate(ETH_HEADER + 20);
        f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89]);
        let len = (8 + payload.len()) as u16;
        f.extend_from_slice(&len.to_be_bytes());
        let pseudo = pseudo_sum(&src.into(), &dst.into(), IpProtocol::Udp, len as usize);
        f.extend_from_slice(&pseudo.to_be_bytes());
        f.extend_from_slice(payload);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH_HEADER..]);
        ip.set_next_header(IpProtocol::Udp);
        ip.set_total_len(20 + len);
        ip.fill_checksum();
        f
    }

    #[test]
    fn frames_that_do_not_parse_are_left_alone_or_dropped() {
        let f = frame(&[1; 3000], false);
        for n in 0..f.len().min(80) {
            let mut g = f[..n].to_vec();
            let h = tcp_header(&mut g, Some(1448));
            assert_eq!(h, VnetHdr::default(), "{n} bytes");
        }
        let bad = VnetHdr {
            needs_csum: true,
            csum_start: 60000,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert!(finish(&f, &bad).is_empty());
        let gso = VnetHdr {
            gso: Gso::TcpV4,
            gso_size: 0,
            ..bad
        };
        assert!(finish(&f, &gso).is_empty());
        assert!(
            finish(
                &f[..20],
                &VnetHdr {
                    gso_size: 100,
                    ..gso
                }
            )
            .is_empty()
        );
    }
}
