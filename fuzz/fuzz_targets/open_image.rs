//! A whole hostile image: a small disk whose blocks the fuzzer writes (the first
//! block of input may be laid over a valid disk's superblock or map). Opening,
//! reading every block and checking must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_blk::MemDisk;
use rktio_seal::{CreateOptions, KeySource, OpenOptions, SealedDisk};

fuzz_target!(|data: &[u8]| {
    let key = KeySource::Bytes([9u8; 32].into());
    let media = MemDisk::new(200);
    let Ok(mut d) = SealedDisk::create(
        media.queue(4).expect("queue"),
        &key,
        &CreateOptions::default(),
    ) else {
        return;
    };
    for lba in 0..4u64 {
        let _ = d.write(lba * 40, &[lba as u8; 4096]);
    }
    let _ = d.commit();
    drop(d);
    // Overwrite chosen blocks with fuzz bytes: [block u8][offset u16][bytes...] chunks.
    let mut rest = data;
    while rest.len() >= 4 {
        let block = u64::from(rest[0]) % 200;
        let off = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 4096;
        let len = usize::from(rest[3]).min(rest.len() - 4).min(4096 - off);
        let mut b = media.read(block);
        b[off..off + len].copy_from_slice(&rest[4..4 + len]);
        media.write(block, &b);
        rest = &rest[4 + len..];
    }
    if let Ok(mut d) = SealedDisk::open(
        media.queue(4).expect("queue"),
        &key,
        &OpenOptions::default(),
    ) {
        let mut b = [0u8; 4096];
        for lba in 0..d.logical_blocks() {
            let _ = d.read(lba, &mut b);
        }
        let _ = d.check(&mut |_, _| {});
    }
});
