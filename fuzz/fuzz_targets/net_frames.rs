//! Untrusted frames from the wire, through the whole stack: Ethernet/ARP/NDP/IPv4/
//! IPv6/TCP/UDP/ICMP parsing in smoltcp (after the device has finished the
//! checksums a host left unfinished: rktio-net's offload::finish_received), and
//! WireGuard datagrams (aimed at the WireGuard port so they reach boringtun and
//! our peer lookup). Nothing panics, and the stack still has its state afterwards.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_net::{Cidr, Key, PipeNic, Security, Stack, StackConfig, WgConfig};

fn config(wireguard: bool) -> StackConfig {
    let ours = Key([7u8; 32]);
    let theirs = Key([9u8; 32]).public();
    let security = if wireguard {
        let text = format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.9.0.1/24\nListenPort = 51820\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.9.0.2/32\nEndpoint = 10.1.0.2:51820\n",
            ours.to_base64(),
            theirs.to_base64()
        );
        Security::WireGuard(WgConfig::parse(&text).expect("fixed config parses"))
    } else {
        Security::Plaintext
    };
    StackConfig {
        mac: Some([2, 0, 0, 0, 0, 1]),
        addresses: vec![
            Cidr::parse("10.1.0.1/24").expect("cidr"),
            Cidr::parse("fd01::1/64").expect("cidr"),
        ],
        gateways: vec![],
        security,
        tuning: Default::default(),
    }
}

/// Wraps `payload` in Ethernet + IPv4 + UDP to the WireGuard port, checksums right.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let ip_len = 20 + 8 + payload.len();
    let mut f = vec![0u8; 14 + ip_len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 1, 0, 2]);
    ip[16..20].copy_from_slice(&[10, 1, 0, 1]);
    let sum = checksum(&ip[..20], 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_len = (8 + payload.len()) as u16;
    ip[20..22].copy_from_slice(&51820u16.to_be_bytes());
    ip[22..24].copy_from_slice(&51820u16.to_be_bytes());
    ip[24..26].copy_from_slice(&udp_len.to_be_bytes());
    ip[28..].copy_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&[10, 1, 0, 2, 10, 1, 0, 1, 0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let partial = sum_words(&pseudo, 0);
    let s = checksum(&ip[20..], partial);
    ip[26..28].copy_from_slice(&(if s == 0 { 0xffff } else { s }).to_be_bytes());
    f
}

fn sum_words(b: &[u8], mut acc: u32) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn checksum(b: &[u8], acc: u32) -> u16 {
    let mut s = sum_words(b, acc);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wireguard = mode & 1 == 1;
    let (nic, _other) = PipeNic::pair(1500, 4096).expect("pipe");
    let mut stack = Stack::new(nic, &config(wireguard)).expect("stack");
    // Frames separated by a 2-byte length prefix.
    let mut rest = rest;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % 1600;
        rest = &rest[2..];
        let n = n.min(rest.len());
        let (frame, tail) = rest.split_at(n);
        rest = tail;
        let f = if wireguard && mode & 2 == 2 {
            udp_frame(&frame[..frame.len().min(1400)])
        } else {
            frame.to_vec()
        };
        stack.nic().inject(f);
        stack.poll();
    }
    stack.poll();
    let _ = stack.poll_delay();
    let s = stack.stats();
    assert!(s.nic.rx_frames + s.nic.rx_dropped_bad <= 1 << 20);
});
