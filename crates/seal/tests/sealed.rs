//! The sealed disk's guarantees, one by one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use rktio_blk::{BLOCK_SIZE, BlockQueue, Fault, FaultControl, FaultyQueue, MemDisk};
use rktio_seal::*;
use zeroize::Zeroizing;

#[test]
fn round_trip_holes_and_reopen() {
    let (media, mut d) = new_disk(1000);
    let l = d.logical_blocks();
    assert!(l > 800, "{l}");
    assert!(read(&mut d, 5).unwrap() == [0u8; BLOCK_SIZE]);
    for lba in [0, 1, 127, 128, 129, l - 1] {
        d.write(lba, &data(lba, 1)).unwrap();
    }
    d.write(1, &data(1, 2)).unwrap();
    assert!(read(&mut d, 1).unwrap() == data(1, 2));
    let e = d.commit().unwrap();
    assert!(e >= 3);
    assert!(matches!(
        d.write(l, &data(0, 0)),
        Err(SealError::OutOfRange { .. })
    ));
    drop(d);
    let mut d = reopen(&media);
    assert_eq!(d.epoch(), e);
    for lba in [0, 127, 128, 129, l - 1] {
        assert!(read(&mut d, lba).unwrap() == data(lba, 1), "lba {lba}");
    }
    assert!(read(&mut d, 1).unwrap() == data(1, 2));
    assert!(read(&mut d, 2).unwrap() == [0u8; BLOCK_SIZE]);
    let info = d.info();
    assert_eq!(info.used_blocks, 6);
    assert_eq!(info.depth, 2);
    let rep = d.check(&mut |_, _| {}).unwrap();
    assert_eq!((rep.good_blocks, rep.bad_count), (6, 0));
}

#[test]
fn uncommitted_writes_vanish_on_reopen() {
    let (media, mut d) = new_disk(300);
    d.write(3, &data(3, 1)).unwrap();
    d.commit().unwrap();
    d.write(3, &data(3, 2)).unwrap();
    d.write(4, &data(4, 2)).unwrap();
    drop(d);
    let mut d = reopen(&media);
    assert!(read(&mut d, 3).unwrap() == data(3, 1));
    assert!(read(&mut d, 4).unwrap() == [0u8; BLOCK_SIZE]);
}

#[test]
fn async_queue_depth_and_out_of_order() {
    let (media, mut d) = new_disk(2000);
    for lba in 0..500u64 {
        d.submit_write(lba, &data(lba, 7), lba).unwrap();
    }
    let mut out = Vec::new();
    while d.outstanding() > 0 {
        d.poll(1, &mut out).unwrap();
    }
    assert_eq!(out.len(), 500);
    assert!(out.iter().all(|c| c.result.is_ok()));
    d.commit().unwrap();
    let mut d = reopen(&media);
    out.clear();
    for lba in (0..500u64).rev() {
        d.submit_read(lba, lba + 10_000).unwrap();
    }
    while d.outstanding() > 0 {
        d.poll(1, &mut out).unwrap();
    }
    for c in out {
        let b = c.result.unwrap().unwrap();
        assert_eq!(c.user, c.lba + 10_000);
        assert!(*b == data(c.lba, 7));
    }
}

#[test]
fn confidentiality_media_and_host_buffers_never_hold_plaintext() {
    let (media, mut d) = new_disk(600);
    for lba in 0..300 {
        d.write(lba, &data(lba, 1)).unwrap();
    }
    d.commit().unwrap();
    for lba in 0..300 {
        assert!(read(&mut d, lba).unwrap() == data(lba, 1));
    }
    assert!(!media.contains(b"CANARY-PLAINTEXT"));
    assert!(!d.queue().buffers().contains(b"CANARY-PLAINTEXT"));
    // The test can fail: a plaintext write does show up.
    media.write(500, &data(1, 1));
    assert!(media.contains(b"CANARY-PLAINTEXT"));
}

#[test]
fn integrity_flipped_bit_in_data_is_eio() {
    flipped_bits(0);
    flipped_bits(LOG_RECORDS);
}

/// Flips a bit in every block in turn. With the map alone (`log_limit` 0) every
/// flip is caught or harmless. With the log, a flipped record reads as the end
/// of the log: the disk opens at the commit before it, which an epoch pin refuses.
fn flipped_bits(log_limit: usize) {
    let (media, mut d) = new_disk(300);
    d.set_log_limit(log_limit);
    let e0 = d.epoch();
    d.write(9, &data(9, 1)).unwrap();
    let e1 = d.commit().unwrap();
    drop(d);
    let mut rolled_back = 0;
    // Flip one bit in every block the host holds, in turn. Blocks the committed map
    // no longer references may change harmlessly; every other flip must be caught.
    let mut caught = 0;
    for phys in media.written_blocks().into_iter().filter(|p| *p >= 2) {
        let orig = media.read(phys);
        let mut bad = orig;
        bad[1234] ^= 0x10;
        media.write(phys, &bad);
        match SealedDisk::open(media.queue(8).unwrap(), &key(1), &OpenOptions::default()) {
            // A map node was hit: open refuses.
            Err(e) => {
                assert!(matches!(e, SealError::Corrupt(_)), "{e}");
                caught += 1;
            }
            Ok(mut d) if d.epoch() != e1 => {
                assert!(log_limit > 0, "a map without a log rolled back");
                assert_eq!(d.epoch(), e0);
                assert!(read(&mut d, 9).unwrap() == [0; BLOCK_SIZE]);
                let pin = OpenOptions {
                    expect_epoch: Some(e1),
                    ..Default::default()
                };
                assert!(matches!(
                    SealedDisk::open(media.queue(8).unwrap(), &key(1), &pin),
                    Err(SealError::Stale(_))
                ));
                rolled_back += 1;
            }
            Ok(mut d) => match read(&mut d, 9) {
                Ok(b) => assert!(b == data(9, 1), "wrong data returned"),
                Err(e) => {
                    assert!(matches!(e, SealError::Integrity { lba: 9, .. }), "{e}");
                    assert_eq!(e.errno(), errno::EIO);
                    assert!(e.to_string().contains("integrity check failed for block 9"));
                    caught += 1;
                }
            },
        }
        media.write(phys, &orig);
    }
    if log_limit == 0 {
        // The data block and the map node above it at least.
        assert!(caught >= 2, "{caught}");
    } else {
        // The data block; the record (a flip there ends the log before it).
        assert!(caught >= 1 && rolled_back >= 1, "{caught} {rolled_back}");
    }
    assert!(read(&mut reopen(&media), 9).unwrap() == data(9, 1));
}

#[test]
fn integrity_faults_through_the_queue() {
    let media = MemDisk::new(400);
    let ctl = FaultControl::default();
    let q = FaultyQueue::new(media.queue(8).unwrap(), ctl.clone()).unwrap();
    let mut d = SealedDisk::create(q, &key(1), &CreateOptions::default()).unwrap();
    for lba in 0..10 {
        d.write(lba, &data(lba, 1)).unwrap();
    }
    d.commit().unwrap();
    let phys: Vec<u64> = media
        .written_blocks()
        .into_iter()
        .filter(|p| *p >= 2)
        .collect();
    // Every kind of read-side tampering on every block: an error, never wrong data.
    for &p in &phys {
        for f in [
            Fault::FlipBit { block: p, bit: 77 },
            Fault::Swap {
                a: p,
                b: phys[0].max(p ^ 1),
            },
        ] {
            ctl.arm(f);
            for lba in 0..10 {
                match read(&mut d, lba) {
                    Ok(b) => assert!(b == data(lba, 1)),
                    Err(e) => assert!(matches!(e, SealError::Integrity { .. }), "{e}"),
                }
            }
            ctl.clear();
        }
    }
    assert!(d.stats().integrity_failures >= 10);
    // Host I/O errors come back as errors with their errno.
    let mut errs = 0;
    for &p in &phys {
        ctl.arm(Fault::Eio { block: p });
        for lba in 0..10 {
            if let Err(e) = read(&mut d, lba) {
                assert!(
                    matches!(e, SealError::Io(_)) && e.errno() == errno::EIO,
                    "{e}"
                );
                errs += 1;
            }
        }
        ctl.clear();
    }
    assert_eq!(
        errs, 10,
        "each data block fails exactly when its block does"
    );
}

#[test]
fn integrity_replayed_blocks_from_an_older_epoch() {
    replayed_blocks(0);
    replayed_blocks(LOG_RECORDS);
}

/// The host puts back an old copy of each block in turn: an error, the newest
/// data, or (with the log) a whole older commit that an epoch pin refuses.
fn replayed_blocks(log_limit: usize) {
    // 128 data blocks in 200: rewriting 50 blocks 5 times must reuse physical blocks.
    let (media, mut d) = new_disk(200);
    d.set_log_limit(log_limit);
    for lba in 0..50 {
        d.write(lba, &data(lba, 1)).unwrap();
    }
    d.commit().unwrap();
    let old = media.deep_copy();
    // Rewrite everything several times so physical blocks get reused.
    for v in 2..6 {
        for lba in 0..50 {
            d.write(lba, &data(lba, v)).unwrap();
        }
        d.commit().unwrap();
    }
    let last = d.epoch();
    drop(d);
    // The host puts back old contents of every block, one at a time.
    let mut caught = 0;
    for phys in old.written_blocks().into_iter().filter(|p| *p >= 2) {
        let now = media.read(phys);
        let then = old.read(phys);
        if now == then {
            continue;
        }
        media.write(phys, &then);
        match SealedDisk::open(media.queue(8).unwrap(), &key(1), &OpenOptions::default()) {
            Err(e) => {
                assert!(matches!(e, SealError::Corrupt(_)), "{e}");
                caught += 1;
            }
            Ok(mut d) => {
                // A rolled-back log shows one whole older commit.
                let want = 5 - (last - d.epoch());
                assert!(
                    log_limit > 0 || want == 5,
                    "a map without a log rolled back"
                );
                if want < 5 {
                    caught += 1;
                    let pin = OpenOptions {
                        expect_epoch: Some(last),
                        ..Default::default()
                    };
                    assert!(matches!(
                        SealedDisk::open(media.queue(8).unwrap(), &key(1), &pin),
                        Err(SealError::Stale(_))
                    ));
                }
                for lba in 0..50 {
                    match read(&mut d, lba) {
                        Ok(b) => assert!(b == data(lba, want), "stale data returned for {lba}"),
                        Err(SealError::Integrity { .. }) => caught += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
        media.write(phys, &now);
    }
    assert!(caught > 10, "log limit {log_limit}: {caught}");
}

#[test]
fn whole_image_rollback_needs_a_pin() {
    let (media, mut d) = new_disk(300);
    // Every commit a superblock, so the two slots hold the last two commits.
    d.set_log_limit(0);
    d.write(1, &data(1, 1)).unwrap();
    let e1 = d.commit().unwrap();
    let root1 = d.root();
    let old = media.deep_copy();
    d.write(1, &data(1, 2)).unwrap();
    let e2 = d.commit().unwrap();
    let root2 = d.root();
    assert!(e2 > e1);
    assert_ne!(root1, root2);
    drop(d);
    // An old copy opens by itself (nothing inside can tell) ...
    let mut rolled =
        SealedDisk::open(old.queue(8).unwrap(), &key(1), &OpenOptions::default()).unwrap();
    assert_eq!(rolled.epoch(), e1);
    assert!(read(&mut rolled, 1).unwrap() == data(1, 1));
    // ... but not when the caller pins the epoch or the root.
    let pin = OpenOptions {
        expect_epoch: Some(e2),
        ..Default::default()
    };
    let e = SealedDisk::open(old.queue(8).unwrap(), &key(1), &pin).unwrap_err();
    assert!(matches!(e, SealError::Stale(_)), "{e}");
    let pin = OpenOptions {
        expect_root: Some(root2.clone()),
        ..Default::default()
    };
    assert!(matches!(
        SealedDisk::open(old.queue(8).unwrap(), &key(1), &pin),
        Err(SealError::Stale(_))
    ));
    let d = SealedDisk::open(media.queue(8).unwrap(), &key(1), &pin).unwrap();
    assert_eq!(d.root(), root2);
    // The host replaying the older superblock slot over the newer one is a rollback
    // by one epoch: the epoch pin catches it too.
    drop(d);
    let slot_new = newest_slot(&media);
    media.write(slot_new, &media.read(1 - slot_new));
    let pin = OpenOptions {
        expect_epoch: Some(e2),
        ..Default::default()
    };
    assert!(matches!(
        SealedDisk::open(media.queue(8).unwrap(), &key(1), &pin),
        Err(SealError::Stale(_))
    ));
}

/// The superblock slot with the higher epoch (read without the key).
fn newest_slot(media: &MemDisk) -> u64 {
    let epoch = |slot: u64| {
        format::Superblock::decode_authenticated(&media.read(slot)[..]).map_or(0, |s| s.epoch)
    };
    if epoch(1) > epoch(0) { 1 } else { 0 }
}

#[test]
fn torn_or_corrupt_superblock_falls_back_to_the_other_slot() {
    let (media, mut d) = new_disk(300);
    d.set_log_limit(0);
    d.write(1, &data(1, 1)).unwrap();
    let e1 = d.commit().unwrap();
    d.write(1, &data(1, 2)).unwrap();
    let e2 = d.commit().unwrap();
    assert_eq!(e2, e1 + 1);
    drop(d);
    let (slot2, slot1) = (newest_slot(&media), 1 - newest_slot(&media));
    let mut sb = media.read(slot2);
    sb[200] ^= 1;
    media.write(slot2, &sb);
    let mut d = reopen(&media);
    assert_eq!(d.epoch(), e1);
    assert!(read(&mut d, 1).unwrap() == data(1, 1));
    // Both slots bad: a clear error.
    drop(d);
    let mut sb = media.read(slot1);
    sb[4000] ^= 1;
    media.write(slot1, &sb);
    let e =
        SealedDisk::open(media.queue(8).unwrap(), &key(1), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, SealError::Corrupt(_)), "{e}");
    // Not a sealed disk at all.
    let blank = MemDisk::new(100);
    let e =
        SealedDisk::open(blank.queue(8).unwrap(), &key(1), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, SealError::NotSealed(_)), "{e}");
}

#[test]
fn wrong_key_is_a_clear_error_and_touches_nothing() {
    let (media, mut d) = new_disk(300);
    d.write(1, &data(1, 1)).unwrap();
    d.commit().unwrap();
    drop(d);
    let before = media.deep_copy();
    let e =
        SealedDisk::open(media.queue(8).unwrap(), &key(2), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, SealError::WrongKey(_)), "{e}");
    assert!(e.to_string().contains("wrong key"));
    let e = SealedDisk::open(
        media.queue(8).unwrap(),
        &KeySource::Passphrase(Zeroizing::new("hunter2".into())),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a passphrase"), "{e}");
    for b in 0..300 {
        assert!(media.read(b) == before.read(b), "block {b} changed");
    }
}

#[test]
fn passphrase_key_file_env_and_change_key() {
    let dir = tempfile::tempdir().unwrap();
    let pass = KeySource::Passphrase(Zeroizing::new("correct horse battery staple".into()));
    let media = MemDisk::new(300);
    let mut d = SealedDisk::create(media.queue(8).unwrap(), &pass, &fast_argon()).unwrap();
    assert!(d.info().key_kind.contains("Argon2id"));
    d.write(1, &data(1, 1)).unwrap();
    d.commit().unwrap();
    // Change to a hex key file.
    let kf = dir.path().join("key");
    let k = generate_key().unwrap();
    std::fs::write(&kf, format!("{}\n", hex::encode(&k[..]))).unwrap();
    d.change_key(&KeySource::File(kf.clone()), Argon2Params::default())
        .unwrap();
    drop(d);
    assert!(matches!(
        SealedDisk::open(media.queue(8).unwrap(), &pass, &OpenOptions::default()),
        Err(SealError::WrongKey(_))
    ));
    let mut d = SealedDisk::open(
        media.queue(8).unwrap(),
        &KeySource::File(kf.clone()),
        &OpenOptions::default(),
    )
    .unwrap();
    assert!(read(&mut d, 1).unwrap() == data(1, 1));
    // The same key as raw bytes in a file, and from the environment.
    let raw = dir.path().join("raw");
    std::fs::write(&raw, &k[..]).unwrap();
    drop(d);
    let d = SealedDisk::open(
        media.queue(8).unwrap(),
        &KeySource::File(raw),
        &OpenOptions::default(),
    )
    .unwrap();
    drop(d);
    // SAFETY-free: tests in this file do not read this variable concurrently.
    let var = "RKTIO_TEST_KEY_PASSPHRASE_FILE_ENV";
    // Setting the environment is unsafe in edition 2024; use a child-free check of
    // the error path instead: an unset variable is a clear error.
    let e = SealedDisk::open(
        media.queue(8).unwrap(),
        &KeySource::Env(var.into()),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("is not set"), "{e}");
    // Bad key files are clear errors.
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "not a key").unwrap();
    let e = SealedDisk::open(
        media.queue(8).unwrap(),
        &KeySource::File(bad),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("32 raw bytes or 64 hex digits"),
        "{e}"
    );
}

#[test]
fn out_of_space_between_commits_then_commit_reclaims() {
    let (media, mut d) = new_disk(400);
    let l = d.logical_blocks();
    for lba in 0..l {
        d.write(lba, &data(lba, 1)).unwrap();
    }
    d.commit().unwrap();
    // Rewriting everything without a commit needs 2x space: it must stop cleanly.
    let mut failed_at = None;
    for lba in 0..l {
        if let Err(e) = d.write(lba, &data(lba, 2)) {
            assert!(matches!(e, SealError::NoSpace(_)), "{e}");
            assert_eq!(e.errno(), errno::ENOSPC);
            failed_at = Some(lba);
            break;
        }
    }
    let mut lba = failed_at.expect("expected ENOSPC");
    // Committing reclaims the superseded blocks; carry on in commit-sized steps.
    d.commit().unwrap();
    while lba < l {
        match d.write(lba, &data(lba, 2)) {
            Ok(()) => lba += 1,
            Err(SealError::NoSpace(_)) => {
                d.commit().unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    d.commit().unwrap();
    let mut d = reopen(&media);
    for lba in 0..l {
        assert!(read(&mut d, lba).unwrap() == data(lba, 2));
    }
}

#[test]
fn failed_write_poisons_until_reopen() {
    let media = MemDisk::new(300);
    let ctl = FaultControl::default();
    let q = FaultyQueue::new(media.queue(8).unwrap(), ctl.clone()).unwrap();
    let mut d = SealedDisk::create(q, &key(1), &CreateOptions::default()).unwrap();
    d.write(1, &data(1, 1)).unwrap();
    d.commit().unwrap();
    ctl.arm(Fault::FailFlush);
    d.write(2, &data(2, 1)).unwrap();
    assert!(d.commit().is_err());
    assert!(matches!(
        d.write(3, &data(3, 1)),
        Err(SealError::Poisoned(_))
    ));
    ctl.clear();
    let mut d = reopen(&media);
    assert!(read(&mut d, 1).unwrap() == data(1, 1));
    // The log record and its data were written before the flush failed: the
    // commit is in doubt, and the disk holds one whole commit or the other.
    let b2 = read(&mut d, 2).unwrap();
    assert!(b2 == [0; BLOCK_SIZE] || b2 == data(2, 1));
}

#[test]
fn read_only_refuses_writes() {
    let (media, d) = new_disk(300);
    drop(d);
    let mut d = SealedDisk::open(
        media.queue(8).unwrap(),
        &key(1),
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(d.write(0, &data(0, 0)), Err(SealError::ReadOnly)));
    assert!(matches!(d.commit(), Err(SealError::ReadOnly)));
}

#[test]
fn over_uring_on_a_real_file() {
    let f = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
    f.as_file().set_len(2048 * BLOCK_SIZE as u64).unwrap();
    let q = rktio_blk::open_image(f.path(), rktio_blk::OpenOptions::default()).unwrap();
    let mut d = SealedDisk::create(q, &key(3), &CreateOptions::default()).unwrap();
    for lba in 0..1000 {
        d.submit_write(lba, &data(lba, 1), lba).unwrap();
    }
    let mut out = Vec::new();
    while d.outstanding() > 0 {
        d.poll(1, &mut out).unwrap();
    }
    d.commit().unwrap();
    for lba in (0..1000).step_by(7) {
        assert!(read(&mut d, lba).unwrap() == data(lba, 1));
    }
    assert!(!d.queue().buffers().contains(b"CANARY-PLAINTEXT"));
    drop(d);
    let bytes = std::fs::read(f.path()).unwrap();
    assert!(!bytes.windows(16).any(|w| w == b"CANARY-PLAINTEXT"));
    let q = rktio_blk::open_image(
        f.path(),
        rktio_blk::OpenOptions {
            backend: rktio_blk::Backend::File,
            ..Default::default()
        },
    )
    .unwrap();
    let mut d = SealedDisk::open(q, &key(3), &OpenOptions::default()).unwrap();
    assert!(read(&mut d, 999).unwrap() == data(999, 1));
}

/// A commit that fits the log costs its data, one record block and one flush.
#[test]
fn a_small_commit_is_one_record_and_one_flush() {
    let (_media, mut d) = new_disk(300);
    for round in 1..=3u64 {
        let before = d.queue().stats();
        let stats = d.stats();
        for lba in 0..5 {
            d.write(lba * 40, &data(lba, round)).unwrap();
        }
        d.commit().unwrap();
        let after = d.queue().stats();
        assert_eq!(
            after.writes - before.writes,
            6,
            "5 data blocks and the record"
        );
        assert_eq!(after.flushes - before.flushes, 1);
        assert_eq!(d.stats().log_records, stats.log_records + 1);
        assert_eq!(d.stats().map_writes, stats.map_writes);
    }
    assert_eq!(d.info().log_records, 3);
}

/// Commits past the log's limit checkpoint; every state survives reopening,
/// the epoch counts every commit, and the log's blocks come back.
#[test]
fn the_log_replays_and_checkpoints() {
    let (media, mut d) = new_disk(300);
    d.set_log_limit(3);
    let free0 = d.info().free_blocks;
    let mut model = std::collections::BTreeMap::new();
    let mut epoch = d.epoch();
    for v in 1..=20u64 {
        for k in 0..(v % 4 + 1) {
            let lba = (v * 7 + k * 13) % 128;
            d.write(lba, &data(lba, v)).unwrap();
            model.insert(lba, v);
        }
        // One epoch per commit, and one more for the nonce reservation a
        // session's first write makes.
        let e = d.commit().unwrap();
        assert!(e == epoch + 1 || e == epoch + 2, "{e} after {epoch}");
        epoch = e;
        assert!(d.info().log_records <= 3);
        if v % 3 == 0 {
            drop(d);
            d = reopen(&media);
            d.set_log_limit(3);
            assert_eq!(d.epoch(), epoch);
        }
        for (&lba, &ver) in &model {
            assert!(read(&mut d, lba).unwrap() == data(lba, ver), "block {lba}");
        }
    }
    assert!(d.stats().checkpoints > 0 || d.stats().log_records > 0);
    // A read-only open replays the same state.
    let root = d.root();
    drop(d);
    let ro = OpenOptions {
        read_only: true,
        expect_root: Some(root.clone()),
        expect_epoch: Some(epoch),
    };
    let mut d = SealedDisk::open(media.queue(8).unwrap(), &key(1), &ro).unwrap();
    for (&lba, &ver) in &model {
        assert!(read(&mut d, lba).unwrap() == data(lba, ver));
    }
    drop(d);
    // The space the log held is back after a checkpoint.
    let mut d = reopen(&media);
    d.set_log_limit(0);
    d.write(0, &data(0, 99)).unwrap();
    d.commit().unwrap();
    let used = model.len() as u64 + u64::from(!model.contains_key(&0));
    assert!(
        d.info().free_blocks + used + 3 >= free0,
        "{} {free0}",
        d.info().free_blocks
    );
}

/// What the host can do to the log: drop, truncate, reorder, replay or splice
/// its records. Every open is an error or one whole commit's state, and an
/// older commit than the last is refused by an epoch pin.
#[test]
fn log_attacks_give_an_error_or_an_older_commit_that_a_pin_refuses() {
    let (media, mut d) = new_disk(300);
    d.set_log_limit(1000);
    // states[i]: the data after the commit at epoch e0 + i.
    let e0 = d.epoch();
    let mut states = vec![std::collections::BTreeMap::new()];
    let mut snapshots = vec![media.deep_copy()];
    for v in 1..=6u64 {
        let mut s = states.last().unwrap().clone();
        for k in 0..3 {
            let lba = (v * 5 + k * 11) % 40;
            d.write(lba, &data(lba, v)).unwrap();
            s.insert(lba, v);
        }
        d.commit().unwrap();
        states.push(s);
        snapshots.push(media.deep_copy());
    }
    let last = d.epoch();
    assert_eq!(last, e0 + 6);
    drop(d);
    // Another image under the same key: its records must not splice in.
    let (other, mut o) = new_disk(300);
    for v in 1..=6u64 {
        o.write(v, &data(v, 100 + v)).unwrap();
        o.commit().unwrap();
    }
    drop(o);
    let check = |label: &str| {
        let mut d =
            match SealedDisk::open(media.queue(8).unwrap(), &key(1), &OpenOptions::default()) {
                Err(e) => {
                    assert!(matches!(e, SealError::Corrupt(_)), "{label}: {e}");
                    return;
                }
                Ok(d) => d,
            };
        let i = (d.epoch() - e0) as usize;
        assert!(
            i < states.len(),
            "{label}: epoch {} from nowhere",
            d.epoch()
        );
        for lba in 0..40 {
            let want = states[i]
                .get(&lba)
                .map_or([0; BLOCK_SIZE], |v| data(lba, *v));
            match read(&mut d, lba) {
                Ok(b) => assert!(
                    b == want,
                    "{label}: wrong data for {lba} at epoch {}",
                    d.epoch()
                ),
                Err(e) => assert!(matches!(e, SealError::Integrity { .. }), "{label}: {e}"),
            }
        }
        if d.epoch() < last {
            let pin = OpenOptions {
                expect_epoch: Some(last),
                ..Default::default()
            };
            assert!(
                matches!(
                    SealedDisk::open(media.queue(8).unwrap(), &key(1), &pin),
                    Err(SealError::Stale(_))
                ),
                "{label}: a rollback to epoch {} opened under a pin",
                d.epoch()
            );
        }
    };
    let blocks: Vec<u64> = media
        .written_blocks()
        .into_iter()
        .filter(|p| *p >= 2)
        .collect();
    for &p in &blocks {
        let now = media.read(p);
        // Dropped or truncated: zeros; replayed: each older version.
        media.write(p, &[0; BLOCK_SIZE]);
        check(&format!("block {p} zeroed"));
        for (i, snap) in snapshots.iter().enumerate() {
            media.write(p, &snap.read(p));
            check(&format!("block {p} as after commit {i}"));
        }
        // Spliced from the other image.
        media.write(p, &other.read(p));
        check(&format!("block {p} from another image"));
        // Reordered: swapped with each other block.
        for &q in blocks.iter().filter(|&&q| q > p) {
            let qn = media.read(q);
            media.write(p, &qn);
            media.write(q, &now);
            check(&format!("blocks {p} and {q} swapped"));
            media.write(q, &qn);
        }
        media.write(p, &now);
    }
    // Untouched, it opens at the last commit.
    assert_eq!(reopen(&media).epoch(), last);
}
