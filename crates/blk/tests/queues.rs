//! Every backend behaves the same, and the fault injector does what it says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rktio_blk::*;

fn pattern(block: u64, version: u8) -> Block {
    let mut b = [0u8; BLOCK_SIZE];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (block as u8).wrapping_mul(31) ^ (i as u8) ^ version;
    }
    b[..8].copy_from_slice(&block.to_le_bytes());
    b[8] = version;
    b
}

fn image(blocks: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
    f.as_file().set_len(blocks * BLOCK_SIZE as u64).unwrap();
    f
}

/// Writes every block at full depth, flushes, reads them all back at full depth.
fn exercise(q: &mut dyn BlockQueue) {
    let blocks = q.blocks().min(200);
    let depth = q.depth();
    let mut out = Vec::new();
    let mut next = 0u64;
    let mut free: Vec<usize> = (0..depth).collect();
    while next < blocks || q.in_flight() > 0 {
        while next < blocks && !free.is_empty() {
            let slot = free.pop().unwrap();
            q.buffers_mut().copy_in(slot, &pattern(next, 1)).unwrap();
            q.submit(Request {
                op: Op::Write {
                    block: next,
                    buf: slot,
                },
                user: next,
            })
            .unwrap();
            next += 1;
        }
        out.clear();
        q.poll(&mut out, 1).unwrap();
        for c in &out {
            assert_eq!(c.result, Ok(()), "write {c:?}");
            free.push(c.op.buf().unwrap());
        }
    }
    assert_eq!(run_one(q, Op::Flush).unwrap(), Ok(()));
    next = 0;
    while next < blocks || q.in_flight() > 0 {
        while next < blocks && !free.is_empty() {
            let slot = free.pop().unwrap();
            q.submit(Request {
                op: Op::Read {
                    block: next,
                    buf: slot,
                },
                user: next,
            })
            .unwrap();
            next += 1;
        }
        out.clear();
        q.poll(&mut out, 1).unwrap();
        for c in &out {
            assert_eq!(c.result, Ok(()));
            let slot = c.op.buf().unwrap();
            let mut data = [0u8; BLOCK_SIZE];
            q.buffers().copy_out(slot, &mut data).unwrap();
            assert_eq!(data, pattern(c.user, 1), "block {}", c.user);
            free.push(slot);
        }
    }
    // Misuse is an error, not a panic.
    assert!(matches!(
        q.submit(Request {
            op: Op::Read {
                block: q.blocks(),
                buf: 0
            },
            user: 0
        }),
        Err(BlkError::OutOfRange { .. })
    ));
    assert!(matches!(
        q.submit(Request {
            op: Op::Read {
                block: 0,
                buf: depth + 7
            },
            user: 0
        }),
        Err(BlkError::BadBuffer(_))
    ));
    assert!(matches!(
        q.poll(&mut out, 1),
        Err(BlkError::WaitTooMany { .. })
    ));
}

#[test]
fn mem_backend() {
    let disk = MemDisk::new(256);
    let mut q = disk.queue(16).unwrap();
    exercise(&mut q);
    assert!(disk.contains(&pattern(5, 1)[..64]));
}

#[test]
fn file_backend() {
    let img = image(256);
    let mut q = open_image(
        img.path(),
        OpenOptions {
            backend: Backend::File,
            depth: 8,
            ..Default::default()
        },
    )
    .unwrap();
    let before = HostCalls::snapshot();
    exercise(&mut *q);
    let d = HostCalls::snapshot().since(&before);
    // One host call per I/O: 200 writes, 200 reads.
    assert!(
        d.get(HostCall::Pwrite) >= 200 && d.get(HostCall::Pread) >= 200,
        "{d}"
    );
}

#[test]
fn uring_backend_with_sqpoll() {
    let img = image(256);
    let mut q = open_image(
        img.path(),
        OpenOptions {
            backend: Backend::Uring,
            depth: 32,
            ..Default::default()
        },
    )
    .unwrap();
    exercise(&mut *q);
    assert_eq!(q.stats().host_protocol_errors, 0);
    // The data really is in the file.
    let bytes = std::fs::read(img.path()).unwrap();
    assert_eq!(&bytes[7 * BLOCK_SIZE..8 * BLOCK_SIZE], &pattern(7, 1)[..]);
}

#[test]
fn uring_backend_without_sqpoll() {
    let img = image(64);
    let mut q = open_image(
        img.path(),
        OpenOptions {
            backend: Backend::Uring,
            depth: 4,
            sqpoll_idle_ms: None,
            ..Default::default()
        },
    )
    .unwrap();
    exercise(&mut *q);
}

#[test]
fn image_size_must_be_whole_blocks() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(4097).unwrap();
    let e = open_image(
        f.path(),
        OpenOptions {
            backend: Backend::File,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("multiple of 4096"), "{e}");
}

fn faulty(blocks: u64) -> (MemDisk, FaultyQueue<MemQueue>, FaultControl) {
    let disk = MemDisk::new(blocks);
    let ctl = FaultControl::default();
    let q = FaultyQueue::new(disk.queue(8).unwrap(), ctl.clone()).unwrap();
    (disk, q, ctl)
}

fn read(q: &mut dyn BlockQueue, block: u64) -> Result<Block, IoError> {
    let mut b = [0u8; BLOCK_SIZE];
    read_block(q, block, 0, &mut b).unwrap().map(|()| b)
}

#[test]
fn faults_flip_swap_replay_eio() {
    let (_disk, mut q, ctl) = faulty(16);
    ctl.record_history(true);
    write_block(&mut q, 1, 0, &pattern(1, 1)).unwrap().unwrap();
    write_block(&mut q, 2, 0, &pattern(2, 1)).unwrap().unwrap();
    write_block(&mut q, 1, 0, &pattern(1, 2)).unwrap().unwrap();
    assert_eq!(read(&mut q, 1).unwrap(), pattern(1, 2));

    ctl.arm(Fault::FlipBit { block: 1, bit: 100 });
    let got = read(&mut q, 1).unwrap();
    assert_ne!(got, pattern(1, 2));
    assert_eq!(
        got.iter()
            .zip(pattern(1, 2).iter())
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    ctl.clear();

    ctl.arm(Fault::Swap { a: 1, b: 2 });
    assert_eq!(read(&mut q, 1).unwrap(), pattern(2, 1));
    assert_eq!(read(&mut q, 2).unwrap(), pattern(1, 2));
    ctl.clear();

    ctl.arm(Fault::ReplayOld { block: 1 });
    assert_eq!(read(&mut q, 1).unwrap(), pattern(1, 1));
    ctl.clear();

    ctl.arm(Fault::Eio { block: 2 });
    assert_eq!(read(&mut q, 2).unwrap_err().errno, EIO);
    ctl.arm(Fault::FailFlush);
    assert!(run_one(&mut q, Op::Flush).unwrap().is_err());
    ctl.clear();
    assert_eq!(read(&mut q, 2).unwrap(), pattern(2, 1));
    assert!(ctl.injected() >= 5);
}

#[test]
fn faults_drop_and_tear_writes() {
    let (disk, mut q, ctl) = faulty(16);
    ctl.record_history(true);
    write_block(&mut q, 3, 0, &pattern(3, 1)).unwrap().unwrap(); // write 1
    ctl.arm(Fault::DropWrite { nth: 2 });
    ctl.arm(Fault::TearWrite {
        nth: 3,
        keep_bytes: 1000,
    });
    write_block(&mut q, 3, 0, &pattern(3, 2)).unwrap().unwrap(); // dropped
    assert!(disk.read(3) == pattern(3, 1));
    write_block(&mut q, 3, 0, &pattern(3, 3)).unwrap().unwrap(); // torn
    let got = disk.read(3);
    // New bytes up to the tear, then what the disk held (write 2 was dropped).
    assert!(got[..1000] == pattern(3, 3)[..1000]);
    assert!(got[1000..] == pattern(3, 1)[1000..]);
}

#[test]
fn power_cut_keeps_flushed_writes_only() {
    for seed in 0..20 {
        let (disk, mut q, ctl) = faulty(16);
        ctl.arm(Fault::PowerCut {
            after_writes: 3,
            seed,
        });
        write_block(&mut q, 1, 0, &pattern(1, 1)).unwrap().unwrap();
        write_block(&mut q, 2, 0, &pattern(2, 1)).unwrap().unwrap();
        assert_eq!(run_one(&mut q, Op::Flush).unwrap(), Ok(()));
        write_block(&mut q, 1, 0, &pattern(1, 2)).unwrap().unwrap();
        // Read-your-writes from the volatile cache.
        assert_eq!(read(&mut q, 1).unwrap(), pattern(1, 2));
        // Write 4: the power fails.
        assert!(write_block(&mut q, 2, 0, &pattern(2, 2)).unwrap().is_err());
        assert!(ctl.is_cut());
        assert!(read(&mut q, 1).is_err());
        // Flushed data survives; the unflushed write may or may not have landed; the
        // write in progress may be torn, sector by sector.
        let b1 = disk.read(1);
        assert!(b1 == pattern(1, 1) || b1 == pattern(1, 2));
        let b2 = disk.read(2);
        for s in 0..8 {
            let r = s * 512..(s + 1) * 512;
            assert!(b2[r.clone()] == pattern(2, 1)[r.clone()] || b2[r.clone()] == pattern(2, 2)[r]);
        }
    }
}

#[test]
fn one_writer_at_a_time() {
    let img = image(16);
    let open = |write: bool| {
        open_image(
            img.path(),
            OpenOptions {
                backend: Backend::File,
                write,
                ..Default::default()
            },
        )
    };
    let w = open(true).unwrap();
    let e = open(true).map(|_| ()).unwrap_err();
    assert!(matches!(e, BlkError::InUse(_)), "{e}");
    assert!(e.to_string().contains("in use by another process"), "{e}");
    assert!(matches!(
        open(false).map(|_| ()).unwrap_err(),
        BlkError::InUse(_)
    ));
    drop(w);
    // Readers share.
    let r1 = open(false).unwrap();
    let r2 = open(false).unwrap();
    assert!(matches!(
        open(true).map(|_| ()).unwrap_err(),
        BlkError::InUse(_)
    ));
    drop((r1, r2));
    open(true).unwrap();
}
