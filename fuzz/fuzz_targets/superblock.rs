//! Untrusted superblock bytes: the header parser and the full parser never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_seal::format::Superblock;

fuzz_target!(|data: &[u8]| {
    let mut b = [0u8; 4096];
    let n = data.len().min(4096);
    b[..n].copy_from_slice(&data[..n]);
    // Give the fuzzer the magic and version for free half of the time.
    if data.first().is_some_and(|x| x & 1 == 1) {
        b[0..8].copy_from_slice(&rktio_seal::format::MAGIC);
        b[8..12].copy_from_slice(&rktio_seal::format::VERSION.to_le_bytes());
    }
    let _ = Superblock::decode_header(&b);
    if let Ok(sb) = Superblock::decode_authenticated(&b) {
        // What parses must re-encode to the same fields.
        let again = Superblock::decode_authenticated(&sb.encode()[..])
            .expect("re-encoded superblock parses");
        assert_eq!(again, sb);
    }
});
