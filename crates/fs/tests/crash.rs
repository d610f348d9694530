#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash consistency of the file system on the sealed disk: a power cut at every
//! write position of 200 randomized workloads (volatile write cache, torn
//! writes; see rktio-blk's `Fault::PowerCut`). After every cut:
//! - the image opens and mounts;
//! - its tree equals the model's tree at an operation boundary no earlier than
//!   the last fsync/sync that returned (so every fsynced byte is there, and no
//!   operation is half done);
//! - after unmount, `e2fsck -fn` on the unsealed image is clean.
//!
//! A third of the workloads commit through the sealed disk's log, a third
//! checkpoint after every two records, a third checkpoint at every commit.
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use common::*;
use rktio_blk::{Fault, FaultControl, FaultyQueue, MemDisk};
use rktio_fs::*;
use rktio_seal::{OpenOptions as SealOpen, SealedDisk};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// path -> contents; directories map to `None`.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

#[derive(Debug, Clone)]
enum Op {
    Write {
        file: String,
        off: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        file: String,
        len: u64,
    },
    Unlink(String),
    Rename(String, String),
    Mkdir(String),
    /// Open a file and keep it open (it may be unlinked meanwhile: an orphan).
    Hold(String),
    Release,
    Fsync(String),
    Sync,
}

fn workload(seed: u64) -> Vec<Op> {
    let mut r = Rng(seed);
    let files = ["/a", "/b", "/c", "/d/e", "/d/f"];
    let n = 12 + r.below(14);
    let mut ops = vec![Op::Mkdir("/d".into())];
    for _ in 0..n {
        let f = files[r.below(files.len() as u64) as usize].to_string();
        ops.push(match r.below(20) {
            0..=6 => Op::Write {
                file: f,
                off: r.below(40_000),
                len: [1, 100, 4096, 9000, 30000][r.below(5) as usize],
                seed: r.next(),
            },
            7..=8 => Op::Truncate {
                file: f,
                len: r.below(50_000),
            },
            9..=10 => Op::Unlink(f),
            11..=12 => Op::Rename(f, files[r.below(files.len() as u64) as usize].to_string()),
            13 => Op::Hold(f),
            14 => Op::Release,
            15..=17 => Op::Fsync(f),
            _ => Op::Sync,
        });
    }
    ops.push(Op::Sync);
    ops
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Applies `op` to the model (only if it succeeded on the FS).
fn apply_model(t: &mut Tree, op: &Op) {
    match op {
        Op::Write {
            file,
            off,
            len,
            seed,
        } => {
            let d = t.entry(file.clone()).or_insert_with(|| Some(Vec::new()));
            let d = d.as_mut().unwrap();
            let end = *off as usize + len;
            if d.len() < end {
                d.resize(end, 0);
            }
            d[*off as usize..end].copy_from_slice(&pattern(*seed, *len));
        }
        Op::Truncate { file, len } => {
            if let Some(Some(d)) = t.get_mut(file) {
                d.resize(*len as usize, 0);
            }
        }
        Op::Unlink(f) => {
            t.remove(f);
        }
        Op::Rename(a, b) => {
            if a != b
                && let Some(v) = t.remove(a)
            {
                t.insert(b.clone(), v);
            }
        }
        Op::Mkdir(d) => {
            t.insert(d.clone(), None);
        }
        _ => {}
    }
}

/// Runs the workload until the first error. Returns the model snapshots (one
/// per completed operation, starting with the empty tree) and the index of the
/// snapshot made durable by the last fsync/sync that returned.
fn run<Q: rktio_blk::BlockQueue + Send>(fs: &Ext4Fs<Q>, ops: &[Op]) -> (Vec<Tree>, usize, bool) {
    let mut model = Tree::new();
    let mut snaps = vec![model.clone()];
    let mut durable = 0;
    let mut held: Option<Arc<OpenFile>> = None;
    let rw = OpenOptions::read_write_create(0o644);
    for op in ops {
        let r: FsResult<()> = (|| match op {
            Op::Write {
                file,
                off,
                len,
                seed,
            } => {
                let f = fs.open(file.as_bytes(), &rw)?;
                let n = fs.pwrite(&f, &pattern(*seed, *len), *off);
                fs.close(&f)?;
                assert_eq!(n?, *len);
                Ok(())
            }
            Op::Truncate { file, len } => {
                let f = fs.open(
                    file.as_bytes(),
                    &OpenOptions {
                        write: true,
                        ..Default::default()
                    },
                )?;
                let r = fs.ftruncate(&f, *len);
                fs.close(&f)?;
                r
            }
            Op::Unlink(f) => fs.unlink(f.as_bytes()),
            Op::Rename(a, b) => fs.rename(a.as_bytes(), b.as_bytes()),
            Op::Mkdir(d) => fs.mkdir(d.as_bytes(), 0o755),
            Op::Hold(f) => {
                if let Some(h) = held.take() {
                    fs.close(&h)?;
                }
                held = Some(fs.open(f.as_bytes(), &rw)?);
                Ok(())
            }
            Op::Release => match held.take() {
                Some(h) => fs.close(&h),
                None => Ok(()),
            },
            Op::Fsync(f) => {
                let h = fs.open(f.as_bytes(), &OpenOptions::default())?;
                let r = fs.fsync(&h);
                fs.close(&h)?;
                r
            }
            Op::Sync => fs.sync(),
        })();
        match r {
            Ok(()) => {
                // Hold creates the file if missing.
                if let Op::Hold(f) = op {
                    model.entry(f.clone()).or_insert_with(|| Some(Vec::new()));
                }
                apply_model(&mut model, op);
                snaps.push(model.clone());
                if matches!(op, Op::Fsync(_) | Op::Sync) {
                    durable = snaps.len() - 1;
                }
            }
            // ENOENT and friends are ordinary outcomes; the device dying is not.
            Err(e) if e.errno == libc::EIO || e.errno == libc::ENOSPC => {
                return (snaps, durable, false);
            }
            Err(_) => snaps.push(model.clone()),
        }
    }
    if let Some(h) = held.take() {
        let _ = fs.close(&h);
    }
    (snaps, durable, true)
}

fn read_tree<Q: rktio_blk::BlockQueue + Send>(fs: &Ext4Fs<Q>, dir: &str, out: &mut Tree) {
    let d = fs
        .open(
            if dir.is_empty() { b"/" } else { dir.as_bytes() },
            &OpenOptions {
                directory: true,
                ..Default::default()
            },
        )
        .unwrap();
    for e in fs.readdir(&d).unwrap() {
        let name = String::from_utf8(e.name).unwrap();
        if name == "." || name == ".." || name == "lost+found" {
            continue;
        }
        let path = format!("{dir}/{name}");
        if e.file_type == FileType::Directory {
            out.insert(path.clone(), None);
            read_tree(fs, &path, out);
        } else {
            let f = fs.open(path.as_bytes(), &OpenOptions::default()).unwrap();
            let size = fs.fstat(&f).unwrap().size as usize;
            let mut buf = vec![0u8; size];
            assert_eq!(fs.pread(&f, &mut buf, 0).unwrap(), size);
            fs.close(&f).unwrap();
            out.insert(path, Some(buf));
        }
    }
    fs.close(&d).unwrap();
}

/// Mounts through the fault injector. The sealed disk's log holds up to
/// `log_limit` commits before one checkpoints (0: every commit checkpoints).
fn mount_faulty(
    media: &MemDisk,
    ctl: &FaultControl,
    log_limit: usize,
) -> Option<Ext4Fs<FaultyQueue<rktio_blk::MemQueue>>> {
    let q = FaultyQueue::new(media.queue(16).unwrap(), ctl.clone()).unwrap();
    let mut d = SealedDisk::open(q, &key(), &SealOpen::default()).ok()?;
    d.set_log_limit(log_limit);
    Ext4Fs::mount(
        d,
        MountOptions {
            cache_pages: 512,
            ..Default::default()
        },
    )
    .ok()
}

#[test]
fn power_cut_at_every_write_of_200_workloads() {
    let base = new_fs_disk(16);
    let work = tempfile::tempdir().unwrap();
    let workloads: u64 = std::env::var("RKTIO_CRASH_WORKLOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (mut cuts, mut fscks, mut rolled_forward) = (0u64, 0u64, 0u64);
    for seed in 0..workloads {
        let ops = workload(seed);
        // A third each: through the log, a checkpoint every two records, a
        // checkpoint every commit.
        let log_limit = [rktio_seal::LOG_RECORDS, 2, 0][(seed % 3) as usize];
        // Dry run without faults: how many writes reach the device?
        let media = base.deep_copy();
        let ctl = FaultControl::default();
        let fs = mount_faulty(&media, &ctl, log_limit).unwrap();
        let (snaps, _, finished) = run(&fs, &ops);
        assert!(finished, "workload {seed} failed without faults");
        fs.unmount().unwrap();
        let total = ctl.writes();
        let mut checked: HashSet<u64> = HashSet::new();
        for cut in 0..total {
            cuts += 1;
            let media = base.deep_copy();
            let ctl = FaultControl::default();
            ctl.arm(Fault::PowerCut {
                after_writes: cut,
                seed: seed * 1_000_003 + cut,
            });
            let (got, durable) = match mount_faulty(&media, &ctl, log_limit) {
                Some(fs) => {
                    let (s, d, _) = run(&fs, &ops);
                    let _ = fs.unmount();
                    (s, d)
                }
                None => (vec![Tree::new()], 0),
            };
            assert!(ctl.is_cut(), "workload {seed} cut {cut}: no cut happened");
            // Reboot.
            let disk = open_disk(&media);
            // Recovered images of one workload differ only in timestamps when they
            // come from the same checkpoint: e2fsck each checkpoint once.
            let epoch = disk.epoch();
            let fs = Ext4Fs::mount(disk, MountOptions::default()).unwrap_or_else(|e| {
                panic!("workload {seed} cut {cut}: recovered image does not mount: {e}")
            });
            let mut tree = Tree::new();
            read_tree(&fs, "", &mut tree);
            let matched = got[durable..].iter().position(|s| *s == tree);
            assert!(
                matched.is_some(),
                "workload {seed} cut {cut}: recovered tree matches no state at or after the last fsync (op {durable} of {}); ops: {ops:?}\nrecovered: {:?}\nlast durable: {:?}",
                got.len() - 1,
                tree.iter()
                    .map(|(k, v)| (k, v.as_ref().map(Vec::len)))
                    .collect::<Vec<_>>(),
                got[durable]
                    .iter()
                    .map(|(k, v)| (k, v.as_ref().map(Vec::len)))
                    .collect::<Vec<_>>(),
            );
            if matched != Some(0) {
                rolled_forward += 1;
            }
            let mut disk = fs.unmount().unwrap();
            if checked.insert(epoch) {
                fscks += 1;
                let img = work.path().join("recovered.img");
                let (clean, out) = fsck(&mut disk, &img);
                assert!(clean, "workload {seed} cut {cut}: e2fsck -fn:\n{out}");
            }
        }
        let _ = snaps;
    }
    eprintln!(
        "{workloads} workloads, {cuts} power cuts, {fscks} distinct recovered images checked by e2fsck, {rolled_forward} recoveries past the last fsync"
    );
    assert!(cuts > workloads * 10, "too few cut positions: {cuts}");
}

/// A device that fails under a write-back: the program's fsync sees EIO (the
/// sealed disk's I/O error keeps its type down the stack; it once came up as
/// EINVAL).
#[test]
fn a_failed_write_back_is_eio() {
    let media = new_fs_disk(16);
    let ctl = FaultControl::default();
    let fs = mount_faulty(&media, &ctl, rktio_seal::LOG_RECORDS).unwrap();
    let f = fs
        .open(b"/f", &OpenOptions::read_write_create(0o644))
        .unwrap();
    fs.pwrite(&f, &[7u8; 64 << 10], 0).unwrap();
    fs.fsync(&f).unwrap();
    // One dirty page: its write-back is all in flight before any completion.
    fs.pwrite(&f, &[8u8], 0).unwrap();
    // Every block of the device fails from now on (completions with EIO).
    for block in 1..(64 << 20) / 4096 {
        ctl.arm(Fault::Eio { block });
    }
    let e = fs.fsync(&f).unwrap_err();
    assert_eq!(e.errno, libc::EIO, "{e}");
}
