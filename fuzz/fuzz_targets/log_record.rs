//! Untrusted log-record bytes (after decryption a record is authentic, but parse it
//! as if it were not): never panic; what parses names only blocks inside the disk
//! and re-encodes to the same bytes' meaning.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_seal::format::{Entry, LogRecord, RECORD_BODY};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let logical = u64::from_le_bytes(data[0..8].try_into().unwrap_or([0; 8]));
    let physical = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
    let mut b = [0u8; RECORD_BODY];
    let rest = &data[16..];
    let n = rest.len().min(RECORD_BODY);
    b[..n].copy_from_slice(&rest[..n]);
    // Give the fuzzer the magic for free half of the time.
    if data[0] & 1 == 1 {
        b[0..8].copy_from_slice(b"RKTIOLOG");
    }
    if let Ok(r) = LogRecord::decode(&b, logical, physical) {
        assert!(r.next >= 2 && r.next < physical);
        for (lba, e) in &r.entries {
            assert!(*lba < logical);
            assert!(*e == Entry::HOLE || (e.phys >= 2 && e.phys < physical));
        }
        let mut again = [0u8; RECORD_BODY];
        r.encode(&mut again);
        assert_eq!(LogRecord::decode(&again, logical, physical).ok(), Some(r));
    }
});
