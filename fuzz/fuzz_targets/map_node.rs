//! Untrusted map-node bytes (after decryption a node is authentic, but parse it as
//! if it were not): never panic, and only in-range, unique-looking entries come out.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_seal::format::{Entry, decode_node};

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let valid = (data[0] as usize) % 129;
    let physical = u64::from_le_bytes(data[1..9].try_into().unwrap_or([0; 8]));
    let mut b = [0u8; 4096];
    let rest = &data[9..];
    let n = rest.len().min(4096);
    b[..n].copy_from_slice(&rest[..n]);
    let mut out = Vec::new();
    if decode_node(&b, valid, physical, &mut out).is_ok() {
        assert_eq!(out.len(), valid);
        for e in out {
            assert!(e == Entry::HOLE || (e.phys >= 2 && e.phys < physical));
        }
    }
});
