//! Crash atomicity: power cut at every write position of randomized workloads.
//!
//! The fault injector models a volatile write cache: writes sit there until a flush;
//! at the cut, each cached block keeps its old contents or one of its cached
//! versions at random, and the write in progress may tear sector by sector. After
//! every cut the image must open and hold exactly the state of the last completed
//! commit — or, if the cut fell inside a commit, possibly that commit's state.
//! Some commits are begun and not waited for while the next writes go on (the
//! file system's group commit). A third of the workloads commit through the log (a record and one flush), a
//! third checkpoint after every two records, a third checkpoint every commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use rktio_blk::{BLOCK_SIZE, Fault, FaultControl, FaultyQueue, MemDisk};
use rktio_seal::*;
use std::collections::BTreeMap;

type State = BTreeMap<u64, u64>; // lba -> version (absent: never written)

#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u64),
    Commit,
    /// A commit started and not waited for (its flush in flight while the
    /// next writes go on, as the file system's group commit does).
    Begin,
    Reopen,
    Read(u64),
}

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

struct Workload {
    physical: u64,
    /// Log records before a checkpoint: 0 (every commit checkpoints), 2, or
    /// the default.
    log_limit: usize,
    hot: Vec<u64>,
    steps: Vec<Step>,
}

fn workload(seed: u64) -> Workload {
    let mut r = Rng(seed);
    // 200 blocks: one map tier; 420: two tiers.
    let physical = if r.below(2) == 0 { 200 } else { 420 };
    let logical = if physical == 200 { 128 } else { 300 };
    let hot: Vec<u64> = (0..12).map(|_| r.below(logical)).collect();
    let n = 10 + r.below(20);
    let steps = (0..n)
        .map(|_| match r.below(20) {
            0..=10 => Step::Write(hot[r.below(hot.len() as u64) as usize]),
            11..=13 => Step::Commit,
            14 => Step::Begin,
            15..=16 => Step::Reopen,
            _ => Step::Read(hot[r.below(hot.len() as u64) as usize]),
        })
        .chain(std::iter::once(Step::Commit))
        .collect();
    Workload {
        physical,
        log_limit: [0, 2, rktio_seal::LOG_RECORDS][(seed % 3) as usize],
        hot,
        steps,
    }
}

/// What a run got to.
struct Outcome {
    /// State of the last commit that returned.
    committed: State,
    /// States that may be durable too: commits begun and not waited for, and
    /// the one being committed when the run stopped inside a commit.
    committing: Vec<State>,
    /// Create returned.
    created: bool,
}

fn run(w: &Workload, media: &MemDisk, ctl: &FaultControl) -> Outcome {
    let mut out = Outcome {
        committed: State::new(),
        committing: Vec::new(),
        created: false,
    };
    let q = FaultyQueue::new(media.queue(8).unwrap(), ctl.clone()).unwrap();
    let mut d = match SealedDisk::create(q, &key(7), &CreateOptions::default()) {
        Ok(d) => d,
        Err(_) => {
            out.committing.push(State::new());
            return out;
        }
    };
    out.created = true;
    d.set_log_limit(w.log_limit);
    let mut current = State::new();
    let mut version = 0;
    let mut begun: Option<(u64, State)> = None;
    for step in &w.steps {
        match *step {
            Step::Write(lba) => {
                version += 1;
                if d.write(lba, &data(lba, version)).is_err() {
                    return out;
                }
                current.insert(lba, version);
            }
            Step::Commit => match d.commit() {
                Ok(_) => {
                    out.committed = current.clone();
                    out.committing.clear();
                    begun = None;
                }
                Err(_) => {
                    out.committing.push(current.clone());
                    return out;
                }
            },
            Step::Begin => {
                out.committing.push(current.clone());
                match d.commit_begin() {
                    Ok(e) => begun = Some((e, current.clone())),
                    Err(_) => return out,
                }
            }
            Step::Reopen => {
                // A begun commit is waited for first (closing the disk lets its
                // flush finish; the model has to know whether it did).
                if let Some((e, st)) = begun.take() {
                    if d.wait_durable(e).is_err() {
                        return out;
                    }
                    out.committed = st;
                    out.committing.clear();
                }
                let q = d.into_queue();
                d = match SealedDisk::open(q, &key(7), &OpenOptions::default()) {
                    Ok(d) => d,
                    // The device is dead: nothing more can happen.
                    Err(_) => return out,
                };
                d.set_log_limit(w.log_limit);
                current = out.committed.clone();
            }
            Step::Read(lba) => {
                let want = current
                    .get(&lba)
                    .map_or([0u8; BLOCK_SIZE], |v| data(lba, *v));
                match read(&mut d, lba) {
                    Ok(b) => assert!(b == want, "read of {lba} returned wrong data"),
                    Err(_) => return out,
                }
            }
        }
    }
    out
}

fn state_of(d: &mut SealedDisk<rktio_blk::MemQueue>, hot: &[u64]) -> Option<State> {
    let mut s = State::new();
    for &lba in hot {
        let b = read(d, lba).ok()?;
        if b == [0u8; BLOCK_SIZE] {
            continue;
        }
        let v = u64::from_le_bytes(b[24..32].try_into().unwrap());
        if b != data(lba, v) {
            return None;
        }
        s.insert(lba, v);
    }
    Some(s)
}

#[test]
fn power_cut_at_every_write_of_200_workloads() {
    let mut positions = 0u64;
    let mut commits_in_doubt = 0u64;
    for seed in 0..200u64 {
        let w = workload(seed);
        // Dry run: how many writes does this workload make?
        let media = MemDisk::new(w.physical);
        let ctl = FaultControl::default();
        let full = run(&w, &media, &ctl);
        assert!(
            full.committing.is_empty() && full.created,
            "workload {seed} failed without faults"
        );
        let total = ctl.writes();
        for cut in 0..total {
            positions += 1;
            let media = MemDisk::new(w.physical);
            let ctl = FaultControl::default();
            ctl.arm(Fault::PowerCut {
                after_writes: cut,
                seed: seed * 1_000_003 + cut,
            });
            let got = run(&w, &media, &ctl);
            assert!(
                ctl.is_cut(),
                "workload {seed} cut {cut}: the power cut never happened"
            );
            // Reboot: open the media without faults.
            let mut d =
                match SealedDisk::open(media.queue(8).unwrap(), &key(7), &OpenOptions::default()) {
                    Ok(d) => d,
                    Err(e) => {
                        assert!(
                            !got.created,
                            "workload {seed} cut {cut}: committed image does not open: {e}"
                        );
                        continue;
                    }
                };
            let s = state_of(&mut d, &w.hot).unwrap_or_else(|| {
                panic!("workload {seed} cut {cut}: unreadable or wrong data after recovery")
            });
            let ok = s == got.committed || got.committing.contains(&s);
            assert!(
                ok,
                "workload {seed} cut {cut}: recovered {s:?}, last commit {:?}, in doubt {:?}",
                got.committed, got.committing
            );
            if !got.committing.is_empty() && s != got.committed {
                commits_in_doubt += 1;
            }
            // And the recovered disk keeps working.
            d.write(w.hot[0], &data(w.hot[0], 999_999)).unwrap();
            d.commit().unwrap();
            assert!(read(&mut d, w.hot[0]).unwrap() == data(w.hot[0], 999_999));
        }
    }
    eprintln!(
        "{positions} power-cut positions checked; {commits_in_doubt} cuts landed a commit in flight"
    );
    assert!(positions > 2000, "{positions}");
}
