//! Unit tests that need the sealed disk's insides.
#![allow(clippy::unwrap_used)]
use super::*;
use rktio_blk::MemDisk;

fn key() -> KeySource {
    KeySource::Bytes(Zeroizing::new([3; 32]))
}

/// A new 300-block disk in memory.
fn create() -> (MemDisk, SealedDisk<rktio_blk::MemQueue>) {
    let media = MemDisk::new(300);
    let d = SealedDisk::create(media.queue(8).unwrap(), &key(), &CreateOptions::default()).unwrap();
    (media, d)
}

fn reopen(media: &MemDisk) -> SealedDisk<rktio_blk::MemQueue> {
    SealedDisk::open(media.queue(8).unwrap(), &key(), &OpenOptions::default()).unwrap()
}

fn block(lba: u64) -> Block {
    let mut b = [0u8; BLOCK_SIZE];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b[100] = 0x5a;
    b
}

/// An image of format version 1 (no log) opens, and its first commit
/// checkpoints into version 2.
#[test]
fn a_version_1_image_opens_and_moves_to_version_2() {
    let (media, mut d) = create();
    d.set_log_limit(0);
    d.write(3, &block(3)).unwrap();
    d.commit().unwrap();
    // Rewrite both slots as version 1 wrote them: version 1, no log head.
    for slot in 0..SUPERBLOCK_SLOTS {
        let mut b = media.read(slot);
        let Ok(mut sb) = Superblock::decode_authenticated(&b[..]) else {
            continue;
        };
        sb.log_head = 0;
        b = *sb.encode();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let tag = hmac::sign(&d.keys.mac, &b[..MAC_OFFSET]);
        b[MAC_OFFSET..].copy_from_slice(tag.as_ref());
        media.write(slot, &b);
    }
    drop(d);
    let mut d = reopen(&media);
    assert_eq!(d.info().log_records, 0);
    let mut out = [0u8; BLOCK_SIZE];
    d.read(3, &mut out).unwrap();
    assert!(out == block(3));
    d.write(4, &block(4)).unwrap();
    d.commit().unwrap();
    assert_eq!(d.stats().checkpoints, 1, "the first commit checkpoints");
    d.write(5, &block(5)).unwrap();
    d.commit().unwrap();
    assert_eq!(d.info().log_records, 1, "the second goes to the log");
    drop(d);
    let mut d = reopen(&media);
    for lba in [3, 4, 5] {
        d.read(lba, &mut out).unwrap();
        assert!(out == block(lba));
    }
    let v = u32::from_le_bytes(media.read(d.sb_slot)[8..12].try_into().unwrap());
    assert_eq!(v, format::VERSION);
}

/// A record that only raises the nonce limit, in the middle of writes,
/// commits nothing and so frees nothing the last commit still needs.
#[test]
fn a_nonce_reservation_between_commits_frees_nothing() {
    let (media, mut d) = create();
    let v = |lba: u64, ver: u8| {
        let mut b = block(lba);
        b[200] = ver;
        b
    };
    for lba in 0..20 {
        d.write(lba, &v(lba, 1)).unwrap();
    }
    d.commit().unwrap();
    // A reservation after three more nonces.
    d.nonce_limit = d.nonce_next + 3;
    let records = d.stats().log_records;
    for lba in 0..20 {
        d.write(lba, &v(lba, 2)).unwrap();
    }
    assert_eq!(d.stats().log_records, records + 1, "one reservation record");
    // Cycle through the free blocks: a wrongly freed one gets overwritten.
    for round in 0..30 {
        for lba in 20..40 {
            d.write(lba, &v(lba, 3 + round)).unwrap();
        }
    }
    drop(d);
    let mut d = reopen(&media);
    let mut out = [0u8; BLOCK_SIZE];
    for lba in 0..20 {
        d.read(lba, &mut out).unwrap();
        assert!(out == v(lba, 1), "block {lba} lost its committed contents");
    }
}
