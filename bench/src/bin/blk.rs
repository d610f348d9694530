//! `bench/blk`: block I/O, native vs ours, side by side.
//!
//! Every workload is 4 KiB random I/O at a fixed queue depth over the same host
//! file. Host calls per I/O come from rkt-io's own counters and, for the sealed
//! disk, from `strace -c -f` (marginal calls between a short and a long run, so
//! setup does not count).

use clap::{Parser, Subcommand};
use rktio_blk::{BLOCK_SIZE, Backend, BlockQueue, HostCalls, Op, OpenOptions, Request};
use rktio_seal::{CreateOptions, KeySource, SealError, SealedDisk};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(about = "4 KiB random I/O: native vs rkt-io, side by side")]
struct Args {
    /// Size of the host file.
    #[arg(long, default_value = "1G")]
    size: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Where to put the test file.
    #[arg(long, default_value = "bench/out")]
    dir: PathBuf,
    /// Queue depth.
    #[arg(long, default_value_t = 32)]
    qd: usize,
    #[command(subcommand)]
    probe: Option<Probe>,
}

#[derive(Debug, Subcommand)]
enum Probe {
    /// (internal) Open the sealed image and do N random reads or writes, for strace.
    Probe {
        image: PathBuf,
        #[arg(long)]
        ios: u64,
        #[arg(long)]
        write: bool,
        #[arg(long, default_value_t = 32)]
        qd: usize,
    },
    /// Only the CPU cost of the sealed layer (over RAM, no device).
    Cpu,
}

const KEY: [u8; 32] = [0x5a; 32];

fn key() -> KeySource {
    KeySource::Bytes(Zeroizing::new(KEY))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Result1 {
    ios: u64,
    secs: f64,
    calls: u64,
}

impl Result1 {
    fn iops(&self) -> f64 {
        self.ios as f64 / self.secs
    }
    fn calls_per_io(&self) -> f64 {
        self.calls as f64 / self.ios.max(1) as f64
    }
}

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args = Args::parse();
    if let Some(Probe::Cpu) = &args.probe {
        let (r, w) = sealed_cpu_cost()?;
        println!(
            "sealed disk CPU per 4 KiB I/O over RAM (no device): read {r:.2} us, write {w:.2} us"
        );
        return Ok(());
    }
    if let Some(Probe::Probe {
        image,
        ios,
        write,
        qd,
    }) = &args.probe
    {
        let mut d = open_sealed(image)?;
        let n = d.logical_blocks();
        let before = HostCalls::snapshot();
        let r = sealed_random(&mut d, *write, *qd, n, Limit::Ios(*ios))?;
        eprintln!(
            "probe: {} I/Os in {:.2} s, host calls: {}",
            r.ios,
            r.secs,
            HostCalls::snapshot().since(&before)
        );
        return Ok(());
    }
    let size = parse_size(&args.size)?;
    std::fs::create_dir_all(&args.dir)?;
    // Two host files of the same size, both written end to end first so the host
    // has allocated every block: raw backends and fio use one, the sealed disk the
    // other (raw writes would destroy a sealed image).
    let raw_path = args.dir.join("blk-raw.img");
    let sealed_path = args.dir.join("blk-sealed.img");
    let blocks = size / BLOCK_SIZE as u64;
    let dur = Duration::from_secs_f64(args.seconds);
    let qd = args.qd;
    const ROUNDS: usize = 5;

    eprintln!(
        "preparing two {} MiB host files in {} ...",
        size >> 20,
        args.dir.display()
    );
    fill_raw(&raw_path, blocks)?;
    fill_raw(&sealed_path, blocks)?;

    let mut results: std::collections::BTreeMap<(&str, bool), Vec<Result1>> = Default::default();
    let mut fio_runs: std::collections::BTreeMap<bool, Vec<f64>> = Default::default();

    // The pread/pwrite baseline is one host call per I/O, whatever the depth.
    for write in [false, true] {
        let mut q = rktio_blk::open_image(
            &raw_path,
            OpenOptions {
                backend: Backend::File,
                depth: qd,
                ..Default::default()
            },
        )?;
        let r = raw_random(&mut *q, write, qd, blocks, dur)?;
        eprintln!(
            "raw file {}: {:.0} IOPS, {:.3} host calls/IO",
            rw(write),
            r.iops(),
            r.calls_per_io()
        );
        results.entry(("file", write)).or_default().push(r);
    }

    // Sealed over uring: create, fill sequentially (sealed sequential write).
    let q = rktio_blk::open_image(
        &sealed_path,
        OpenOptions {
            depth: 64,
            ..Default::default()
        },
    )?;
    let mut d = SealedDisk::create(q, &key(), &CreateOptions::default())?;
    let logical = d.logical_blocks();
    let t = Instant::now();
    let before = HostCalls::snapshot();
    sealed_fill(&mut d, qd)?;
    d.commit()?;
    let fill_secs = t.elapsed().as_secs_f64();
    let fill_calls = HostCalls::snapshot().since(&before);
    let seq_mbs = logical as f64 * BLOCK_SIZE as f64 / fill_secs / 1e6;
    eprintln!(
        "sealed sequential write: {seq_mbs:.0} MB/s ({logical} blocks, commit included; host calls {fill_calls})"
    );

    // Rounds: the virtual disk's speed drifts a lot (fio alone varies 2-3x between
    // runs here), so native, raw and sealed take turns, raw and sealed run back to
    // back in alternating order, and the sealed/raw ratio is taken per round (paired)
    // before the median.
    let mut paired: std::collections::BTreeMap<bool, Vec<f64>> = Default::default();
    for round in 0..ROUNDS {
        for write in [false, true] {
            let f = fio(
                &raw_path,
                if write { "randwrite" } else { "randread" },
                qd,
                args.seconds,
                size,
            )?;
            eprintln!("round {round}: fio {}: {f:.0} IOPS", rw(write));
            fio_runs.entry(write).or_default().push(f);
            let mut pair = [Result1::default(); 2];
            for turn in 0..2 {
                let sealed_turn = (turn + round) % 2 == 1;
                if sealed_turn {
                    let r = sealed_random(&mut d, write, qd, logical, Limit::Time(dur))?;
                    eprintln!(
                        "round {round}: sealed uring {}: {:.0} IOPS, {:.4} host calls/IO",
                        rw(write),
                        r.iops(),
                        r.calls_per_io()
                    );
                    results.entry(("sealed", write)).or_default().push(r);
                    pair[1] = r;
                } else {
                    let mut q = rktio_blk::open_image(
                        &raw_path,
                        OpenOptions {
                            depth: qd,
                            ..Default::default()
                        },
                    )?;
                    let r = raw_random(&mut *q, write, qd, blocks, dur)?;
                    eprintln!(
                        "round {round}: raw uring {}: {:.0} IOPS, {:.4} host calls/IO",
                        rw(write),
                        r.iops(),
                        r.calls_per_io()
                    );
                    results.entry(("uring", write)).or_default().push(r);
                    pair[0] = r;
                }
            }
            paired
                .entry(write)
                .or_default()
                .push(pair[1].iops() / pair[0].iops());
        }
    }
    drop(d);
    let med = |v: &Vec<Result1>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.iops().total_cmp(&b.iops()));
        v[v.len() / 2]
    };
    let results: std::collections::BTreeMap<(&str, bool), Result1> =
        results.iter().map(|(k, v)| (*k, med(v))).collect();
    let fmed = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fio_rr = fmed(&fio_runs[&false]);
    let fio_rw = fmed(&fio_runs[&true]);

    // strace: marginal system calls per I/O of the sealed disk over uring.
    let exe = std::env::current_exe()?;
    let mut strace_per_io = Vec::new();
    for write in [false, true] {
        let short = strace_calls(&exe, &sealed_path, 20_000, write, qd)?;
        let long = strace_calls(&exe, &sealed_path, 220_000, write, qd)?;
        let per = (long as f64 - short as f64) / 200_000.0;
        eprintln!(
            "strace -c -f sealed {}: {short} calls for 20k I/Os, {long} for 220k: {per:.5} per I/O",
            rw(write)
        );
        strace_per_io.push(per);
    }

    let aes = aes_gcm_mbs()?;
    let (cpu_read_us, cpu_write_us) = sealed_cpu_cost()?;

    // Table.
    println!();
    println!(
        "4 KiB random I/O, QD{qd}, {} MiB host file, {:.0} s per run, median of {ROUNDS} alternating rounds (pread/pwrite: one run); O_DIRECT everywhere",
        size >> 20,
        args.seconds
    );
    println!();
    println!(
        "| workload | read IOPS | write IOPS | read vs fio | write vs fio | host calls / I/O (read, write) |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    println!(
        "| fio native (io_uring engine) | {fio_rr:.0} | {fio_rw:.0} | 1.00 | 1.00 | (kernel I/O) |"
    );
    for (label, key) in [
        ("rkt-io raw `file` (pread/pwrite)", "file"),
        ("rkt-io raw `uring` (SQPOLL)", "uring"),
        ("rkt-io sealed over `uring`", "sealed"),
    ] {
        let r = results[&(key, false)];
        let w = results[&(key, true)];
        println!(
            "| {label} | {:.0} | {:.0} | {:.2} | {:.2} | {:.3}, {:.3} |",
            r.iops(),
            w.iops(),
            r.iops() / fio_rr,
            w.iops() / fio_rw,
            r.calls_per_io(),
            w.calls_per_io()
        );
    }
    println!();
    let show = |v: &Vec<f64>| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "sealed / raw uring, median of per-round ratios: read {:.2}, write {:.2} (target >= 0.90); rounds: read [{}], write [{}]",
        fmed(&paired[&false]),
        fmed(&paired[&true]),
        show(&paired[&false]),
        show(&paired[&true])
    );
    println!(
        "strace -c -f, marginal system calls per I/O (220k minus 20k I/Os), sealed over uring: read {:.5}, write {:.5}",
        strace_per_io[0], strace_per_io[1]
    );
    println!("sealed sequential write (fill of a new disk, commit included): {seq_mbs:.0} MB/s");
    println!("AES-256-GCM seal of 4 KiB blocks, one core: {aes:.0} MB/s");
    println!(
        "sealed disk CPU per 4 KiB I/O over RAM (no device): read {cpu_read_us:.2} us, write {cpu_write_us:.2} us (one core: {:.0}k reads/s, {:.0}k writes/s)",
        1e3 / cpu_read_us,
        1e3 / cpu_write_us
    );

    Ok(())
}

fn rw(write: bool) -> &'static str {
    if write { "randwrite" } else { "randread" }
}

fn parse_size(s: &str) -> Result<u64, Error> {
    let s = s.trim();
    let (n, m) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    Ok(n.parse::<u64>()? * m)
}

/// Writes the whole raw file once so reads hit real blocks.
fn fill_raw(path: &Path, blocks: u64) -> Result<(), Error> {
    if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) == blocks * BLOCK_SIZE as u64 {
        return Ok(());
    }
    let f = std::fs::File::create(path)?;
    f.set_len(blocks * BLOCK_SIZE as u64)?;
    drop(f);
    let mut q = rktio_blk::open_image(
        path,
        OpenOptions {
            depth: 64,
            ..Default::default()
        },
    )?;
    let mut rng = Rng(42);
    let mut buf = [0u8; BLOCK_SIZE];
    for s in 0..q.depth() {
        for c in buf.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes());
        }
        q.buffers_mut().copy_in(s, &buf)?;
    }
    let mut free: Vec<usize> = (0..q.depth()).collect();
    let mut out = Vec::new();
    let mut next = 0;
    while next < blocks || q.in_flight() > 0 {
        while next < blocks && !free.is_empty() {
            let slot = free.pop().ok_or("no slot")?;
            q.submit(Request {
                op: Op::Write {
                    block: next,
                    buf: slot,
                },
                user: slot as u64,
            })?;
            next += 1;
        }
        out.clear();
        q.poll(&mut out, 1)?;
        for c in &out {
            c.result.clone()?;
            free.push(c.user as usize);
        }
    }
    rktio_blk::run_one(&mut *q, Op::Flush)??;
    Ok(())
}

fn raw_random(
    q: &mut dyn BlockQueue,
    write: bool,
    qd: usize,
    blocks: u64,
    dur: Duration,
) -> Result<Result1, Error> {
    let qd = qd.min(q.depth());
    let mut rng = Rng(7);
    let mut free: Vec<usize> = (0..qd).collect();
    let mut out = Vec::with_capacity(qd);
    let mut ios = 0u64;
    let before = HostCalls::snapshot();
    let start = Instant::now();
    loop {
        let running = start.elapsed() < dur;
        while running && !free.is_empty() {
            let slot = free.pop().ok_or("no slot")?;
            let block = rng.next() % blocks;
            let op = if write {
                Op::Write { block, buf: slot }
            } else {
                Op::Read { block, buf: slot }
            };
            q.submit(Request {
                op,
                user: slot as u64,
            })?;
        }
        if !running && q.in_flight() == 0 {
            break;
        }
        out.clear();
        q.poll(&mut out, 1)?;
        for c in &out {
            c.result.clone()?;
            ios += 1;
            free.push(c.user as usize);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let calls = HostCalls::snapshot().since(&before).total();
    Ok(Result1 { ios, secs, calls })
}

fn open_sealed(path: &Path) -> Result<SealedDisk<Box<dyn BlockQueue>>, Error> {
    let q = rktio_blk::open_image(
        path,
        OpenOptions {
            depth: 64,
            ..Default::default()
        },
    )?;
    Ok(SealedDisk::open(
        q,
        &key(),
        &rktio_seal::OpenOptions::default(),
    )?)
}

fn sealed_fill(d: &mut SealedDisk<Box<dyn BlockQueue>>, qd: usize) -> Result<(), Error> {
    let mut rng = Rng(99);
    let mut block = [0u8; BLOCK_SIZE];
    for c in block.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    let mut out = Vec::new();
    for lba in 0..d.logical_blocks() {
        while d.outstanding() >= qd {
            out.clear();
            d.poll(1, &mut out)?;
            for c in out.drain(..) {
                c.result?;
            }
        }
        block[..8].copy_from_slice(&lba.to_le_bytes());
        d.submit_write(lba, &block, lba)?;
    }
    while d.outstanding() > 0 {
        d.poll(1, &mut out)?;
        for c in out.drain(..) {
            c.result?;
        }
    }
    Ok(())
}

enum Limit {
    Time(Duration),
    Ios(u64),
}

/// Random reads or writes on the sealed disk at depth `qd`; writes commit
/// whenever copy-on-write space runs out (commits are part of the cost).
fn sealed_random(
    d: &mut SealedDisk<Box<dyn BlockQueue>>,
    write: bool,
    qd: usize,
    blocks: u64,
    limit: Limit,
) -> Result<Result1, Error> {
    let mut rng = Rng(1234);
    let mut data = [0u8; BLOCK_SIZE];
    for c in data.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    let mut out = Vec::with_capacity(qd);
    let mut ios = 0u64;
    let mut submitted = 0u64;
    let before = HostCalls::snapshot();
    let start = Instant::now();
    loop {
        let running = match limit {
            Limit::Time(t) => start.elapsed() < t,
            Limit::Ios(n) => submitted < n,
        };
        while running && d.outstanding() < qd {
            let lba = rng.next() % blocks;
            let r = if write {
                d.submit_write(lba, &data, lba)
            } else {
                d.submit_read(lba, lba)
            };
            match r {
                Ok(()) => submitted += 1,
                Err(SealError::NoSpace(_)) => {
                    while d.outstanding() > 0 {
                        d.poll(1, &mut out)?;
                        ios += out.len() as u64;
                        out.clear();
                    }
                    d.commit()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !running && d.outstanding() == 0 {
            break;
        }
        d.poll(1, &mut out)?;
        for c in out.drain(..) {
            if let Some(b) = c.result? {
                d.recycle(b);
            }
            ios += 1;
        }
    }
    if write {
        d.commit()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let calls = HostCalls::snapshot().since(&before).total();
    Ok(Result1 { ios, secs, calls })
}

fn fio(path: &Path, rw: &str, qd: usize, secs: f64, size: u64) -> Result<f64, Error> {
    let out = Command::new("fio")
        .args([
            "--name=native",
            &format!("--filename={}", path.display()),
            &format!("--rw={rw}"),
            "--bs=4k",
            "--direct=1",
            "--ioengine=io_uring",
            &format!("--iodepth={qd}"),
            &format!("--runtime={secs}"),
            "--time_based",
            &format!("--size={size}"),
            "--randrepeat=0",
            "--output-format=json",
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = if rw.contains("read") { "read" } else { "write" };
    v["jobs"][0][dir]["iops"]
        .as_f64()
        .ok_or_else(|| "fio output without iops".into())
}

fn strace_calls(exe: &Path, image: &Path, ios: u64, write: bool, qd: usize) -> Result<u64, Error> {
    let log = image.with_extension(format!("strace-{ios}-{write}"));
    let mut cmd = Command::new("strace");
    cmd.args(["-c", "-f", "-o"])
        .arg(&log)
        .arg(exe)
        .arg("probe")
        .arg(image);
    cmd.args(["--ios", &ios.to_string(), "--qd", &qd.to_string()]);
    if write {
        cmd.arg("--write");
    }
    let st = cmd.status()?;
    if !st.success() {
        return Err("strace probe failed".into());
    }
    let text = std::fs::read_to_string(&log)?;
    let _ = std::fs::remove_file(&log);
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.last() == Some(&"total")).then(|| f.get(3).and_then(|c| c.parse::<u64>().ok()))
        })
        .next()
        .flatten()
        .ok_or_else(|| format!("no total in strace output:\n{text}").into())
}

fn aes_gcm_mbs() -> Result<f64, Error> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).map_err(|_| "key")?);
    let mut block = vec![7u8; BLOCK_SIZE];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..256 {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&n.to_le_bytes());
            let _tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([0u8; 25]),
                    &mut block,
                )
                .map_err(|_| "seal")?;
            n += 1;
        }
    }
    Ok(n as f64 * BLOCK_SIZE as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// CPU cost of the sealed layer alone: random reads and writes over the RAM
/// backend at depth 32, so no device time is included.
fn sealed_cpu_cost() -> Result<(f64, f64), Error> {
    let media = rktio_blk::MemDisk::new(40_000);
    let mut d = SealedDisk::create(media.queue(64)?, &key(), &CreateOptions::default())?;
    let n = d.logical_blocks();
    let mut rng = Rng(5);
    let data = [3u8; BLOCK_SIZE];
    let mut out = Vec::new();
    for lba in 0..n {
        d.submit_write(lba, &data, lba)?;
        if d.outstanding() >= 32 {
            d.poll(1, &mut out)?;
            out.clear();
        }
    }
    while d.outstanding() > 0 {
        d.poll(1, &mut out)?;
        out.clear();
    }
    d.commit()?;
    let mut measure = |write: bool| -> Result<f64, Error> {
        let ios = 200_000u64;
        let t = Instant::now();
        for i in 0..ios {
            let lba = rng.next() % n;
            match if write {
                d.submit_write(lba, &data, i)
            } else {
                d.submit_read(lba, i)
            } {
                Ok(()) => {}
                Err(SealError::NoSpace(_)) => {
                    while d.outstanding() > 0 {
                        d.poll(1, &mut out)?;
                        out.clear();
                    }
                    d.commit()?;
                }
                Err(e) => return Err(e.into()),
            }
            if d.outstanding() >= 32 {
                d.poll(1, &mut out)?;
                for c in out.drain(..) {
                    if let Some(b) = c.result? {
                        d.recycle(b);
                    }
                }
            }
        }
        while d.outstanding() > 0 {
            d.poll(1, &mut out)?;
            out.clear();
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / ios as f64)
    };
    let r = measure(false)?;
    let w = measure(true)?;
    Ok((r, w))
}
