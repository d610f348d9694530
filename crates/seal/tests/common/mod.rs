#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
use rktio_blk::{BLOCK_SIZE, Block, MemDisk, MemQueue};
use rktio_seal::*;
use zeroize::Zeroizing;

pub fn key(b: u8) -> KeySource {
    KeySource::Bytes(Zeroizing::new([b; 32]))
}

pub fn fast_argon() -> CreateOptions {
    CreateOptions {
        argon2: Argon2Params {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        ..Default::default()
    }
}

/// A block whose every byte depends on (lba, version), starting with a canary.
pub fn data(lba: u64, version: u64) -> Block {
    let mut b = [0u8; BLOCK_SIZE];
    let mut x =
        lba.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1;
    for c in b.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    b[..16].copy_from_slice(b"CANARY-PLAINTEXT");
    b[16..24].copy_from_slice(&lba.to_le_bytes());
    b[24..32].copy_from_slice(&version.to_le_bytes());
    b
}

pub fn new_disk(physical: u64) -> (MemDisk, SealedDisk<MemQueue>) {
    let media = MemDisk::new(physical);
    let d =
        SealedDisk::create(media.queue(8).unwrap(), &key(1), &CreateOptions::default()).unwrap();
    (media, d)
}

pub fn reopen(media: &MemDisk) -> SealedDisk<MemQueue> {
    SealedDisk::open(media.queue(8).unwrap(), &key(1), &OpenOptions::default()).unwrap()
}

pub fn read(d: &mut SealedDisk<impl rktio_blk::BlockQueue>, lba: u64) -> Result<Block, SealError> {
    let mut b = [0u8; BLOCK_SIZE];
    d.read(lba, &mut b).map(|()| b)
}
