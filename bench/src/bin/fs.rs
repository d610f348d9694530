//! File-system benchmark: the kernel's ext4 on a loop-mounted host file vs
//! rkt-io's ext4 on a sealed disk (io_uring SQPOLL, O_DIRECT) in a host file of the
//! same size, the same workloads one after the other, ratios printed.
//! Run through `bench/fs` (needs root for the loop mount, and e2fsprogs).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rktio_blk::{BlockQueue, HostCalls};
use rktio_fs::{Ext4Fs, FileSystem, MountOptions, OpenFile, OpenOptions, image};
use rktio_seal::{CreateOptions, KeySource, OpenOptions as SealOpen, SealedDisk};

#[derive(Parser, Debug)]
#[command(about = "kernel ext4 vs rkt-io ext4 on a sealed disk")]
struct Args {
    /// Working directory for the two image files.
    #[arg(long, default_value = "bench/out")]
    dir: PathBuf,
    /// Size of the test file (the sequential and random workloads use it).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// Seconds per random workload.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Files in the create/stat/unlink workload.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// rkt-io page cache, in MiB (default: room for the whole test file, as the
    /// kernel's page cache has on this machine).
    #[arg(long)]
    cache_mib: Option<usize>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (n, m) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>()
        .map(|v| v * m)
        .map_err(|e| format!("{s}: {e}"))
}

type Error = Box<dyn std::error::Error>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[repr(C, align(4096))]
struct Aligned([u8; 4096]);

/// One measured result.
struct Row {
    name: String,
    unit: &'static str,
    kernel: f64,
    ours: f64,
    ours_calls_per_op: f64,
}

/// The loop mount, undone on drop.
struct LoopMount {
    dir: PathBuf,
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// The random-I/O and sequential workloads, written once for both sides.
trait Side {
    fn seq_write(&mut self, total: u64) -> Result<(), Error>;
    fn seq_read(&mut self, total: u64) -> Result<u64, Error>;
    fn drop_cache(&mut self) -> Result<(), Error>;
    fn rand(&mut self, direct: bool, read_pct: u64, secs: f64, size: u64) -> Result<u64, Error>;
    fn meta(&mut self, files: usize) -> Result<[f64; 3], Error>;
}

struct Kernel {
    mnt: PathBuf,
    image: PathBuf,
}

impl Side for Kernel {
    fn seq_write(&mut self, total: u64) -> Result<(), Error> {
        let mut f = File::create(self.mnt.join("big"))?;
        let buf = vec![0x5au8; 1 << 20];
        let mut done = 0;
        while done < total {
            f.write_all(&buf)?;
            done += buf.len() as u64;
        }
        f.sync_all()?;
        Ok(())
    }
    fn seq_read(&mut self, total: u64) -> Result<u64, Error> {
        let f = File::open(self.mnt.join("big"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < total {
            let n = f.read_at(&mut buf, off)?;
            if n == 0 {
                break;
            }
            off += n as u64;
        }
        Ok(off)
    }
    fn drop_cache(&mut self) -> Result<(), Error> {
        let f = File::open(self.mnt.join("big"))?;
        f.sync_all()?;
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
        // The loop device's backing file has its own pages in the host cache.
        let img = File::open(&self.image)?;
        img.sync_all()?;
        rustix::fs::fadvise(&img, 0, None, rustix::fs::Advice::DontNeed)?;
        std::fs::write("/proc/sys/vm/drop_caches", "1")?;
        Ok(())
    }
    fn rand(&mut self, direct: bool, read_pct: u64, secs: f64, size: u64) -> Result<u64, Error> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        let f = o.open(self.mnt.join("big"))?;
        let mut a = Box::new(Aligned([0x33; 4096]));
        let blocks = size / 4096;
        let mut r = Rng(0x1234_5678);
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut ops = 0;
        while ops % 256 != 0 || Instant::now() < end {
            let off = (r.next() % blocks) * 4096;
            if r.next() % 100 < read_pct {
                f.read_exact_at(&mut a.0, off)?;
            } else {
                f.write_all_at(&a.0, off)?;
            }
            ops += 1;
        }
        f.sync_data()?;
        Ok(ops)
    }
    fn meta(&mut self, files: usize) -> Result<[f64; 3], Error> {
        let d = self.mnt.join("meta");
        std::fs::create_dir_all(&d)?;
        let t = Instant::now();
        for i in 0..files {
            File::create(d.join(format!("f{i}")))?;
        }
        File::open(&d)?.sync_all()?;
        let create = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..files {
            std::fs::metadata(d.join(format!("f{i}")))?;
        }
        let stat = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..files {
            std::fs::remove_file(d.join(format!("f{i}")))?;
        }
        File::open(&d)?.sync_all()?;
        let unlink = t.elapsed().as_secs_f64();
        Ok([create, stat, unlink])
    }
}

struct Ours<Q: BlockQueue> {
    fs: Ext4Fs<Q>,
}

impl<Q: BlockQueue> Ours<Q> {
    fn open(&self, direct: bool) -> Result<Arc<OpenFile>, Error> {
        Ok(self.fs.open(
            b"/big",
            &OpenOptions {
                write: true,
                create: true,
                direct,
                ..Default::default()
            },
        )?)
    }
}

impl<Q: BlockQueue> Side for Ours<Q> {
    fn seq_write(&mut self, total: u64) -> Result<(), Error> {
        let f = self.open(false)?;
        let buf = vec![0x5au8; 1 << 20];
        let mut done = 0;
        while done < total {
            done += self.fs.write(&f, &buf)? as u64;
        }
        self.fs.fsync(&f)?;
        self.fs.close(&f)?;
        Ok(())
    }
    fn seq_read(&mut self, total: u64) -> Result<u64, Error> {
        let f = self.open(false)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < total {
            let n = self.fs.pread(&f, &mut buf, off)?;
            if n == 0 {
                break;
            }
            off += n as u64;
        }
        self.fs.close(&f)?;
        Ok(off)
    }
    fn drop_cache(&mut self) -> Result<(), Error> {
        self.fs.sync()?;
        self.fs.drop_caches();
        Ok(())
    }
    fn rand(&mut self, direct: bool, read_pct: u64, secs: f64, size: u64) -> Result<u64, Error> {
        let f = self.open(direct)?;
        let mut a = vec![0x33u8; 4096];
        let blocks = size / 4096;
        let mut r = Rng(0x1234_5678);
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut ops = 0;
        while ops % 256 != 0 || Instant::now() < end {
            let off = (r.next() % blocks) * 4096;
            if r.next() % 100 < read_pct {
                self.fs.pread(&f, &mut a, off)?;
            } else {
                self.fs.pwrite(&f, &a, off)?;
            }
            ops += 1;
        }
        self.fs.fdatasync(&f)?;
        self.fs.close(&f)?;
        Ok(ops)
    }
    fn meta(&mut self, files: usize) -> Result<[f64; 3], Error> {
        self.fs.mkdir(b"/meta", 0o755)?;
        let t = Instant::now();
        for i in 0..files {
            let f = self.fs.open(
                format!("/meta/f{i}").as_bytes(),
                &OpenOptions::read_write_create(0o644),
            )?;
            self.fs.close(&f)?;
        }
        self.fs.sync()?;
        let create = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..files {
            self.fs.stat(format!("/meta/f{i}").as_bytes())?;
        }
        let stat = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..files {
            self.fs.unlink(format!("/meta/f{i}").as_bytes())?;
        }
        self.fs.sync()?;
        let unlink = t.elapsed().as_secs_f64();
        Ok([create, stat, unlink])
    }
}

/// Writes the whole file once, so the host file system has allocated every
/// block: O_DIRECT writes into holes or unwritten extents of a host file cost the
/// host an allocation each (measured here: 5x slower write-back).
fn prefill(path: &std::path::Path, size: u64) -> Result<(), Error> {
    let mut f = File::create(path)?;
    let z = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < size {
        let n = (size - done).min(z.len() as u64) as usize;
        f.write_all(&z[..n])?;
        done += n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Runs every workload on one side; returns (name, unit, value, host calls per op).
fn workloads(s: &mut dyn Side, a: &Args) -> Result<Vec<(String, &'static str, f64, f64)>, Error> {
    let mut out = Vec::new();
    let mb = a.size as f64 / 1e6;
    let calls = HostCalls::snapshot;
    let c0 = calls();
    let t = Instant::now();
    s.seq_write(a.size)?;
    let secs = t.elapsed().as_secs_f64();
    out.push((
        format!("sequential write {} MiB + fsync", a.size >> 20),
        "MB/s",
        mb / secs,
        calls().since(&c0).total() as f64 / (a.size as f64 / 4096.0),
    ));
    s.drop_cache()?;
    let c0 = calls();
    let t = Instant::now();
    let n = s.seq_read(a.size)?;
    let secs = t.elapsed().as_secs_f64();
    if n != a.size {
        return Err(format!("sequential read got {n} of {} bytes", a.size).into());
    }
    out.push((
        format!("sequential read {} MiB (cold)", a.size >> 20),
        "MB/s",
        mb / secs,
        calls().since(&c0).total() as f64 / (a.size as f64 / 4096.0),
    ));
    for direct in [false, true] {
        for (name, pct) in [("read", 100), ("write", 0), ("60/40 mix", 60)] {
            let c0 = calls();
            let t = Instant::now();
            let ops = s.rand(direct, pct, a.seconds, a.size)?;
            let secs = t.elapsed().as_secs_f64();
            out.push((
                format!(
                    "4 KiB random {name}, {}",
                    if direct { "O_DIRECT" } else { "buffered" }
                ),
                "IOPS",
                ops as f64 / secs,
                calls().since(&c0).total() as f64 / ops as f64,
            ));
        }
    }
    let c0 = calls();
    let [c, st, u] = s.meta(a.files)?;
    let per = calls().since(&c0).total() as f64 / (3 * a.files) as f64;
    for (name, secs) in [("create", c), ("stat", st), ("unlink", u)] {
        out.push((
            format!(
                "{name} {} files{}",
                a.files,
                if name == "stat" { "" } else { " (+ sync)" }
            ),
            "files/s",
            a.files as f64 / secs,
            per,
        ));
    }
    Ok(out)
}

fn main() -> Result<(), Error> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    // Both images: the test file plus room for metadata and the 10k files.
    let image_size = a.size + a.size / 4 + (256 << 20);

    // Kernel: ext4 (same mkfs options as ours: no journal) on a loop-mounted file.
    let kimg = dir.join("kernel-ext4.img");
    prefill(&kimg, image_size)?;
    // mkfs.ext4 straight on the prefilled file (image::mkfs would truncate it).
    run(Command::new("mkfs.ext4").args(image::MKFS_ARGS).arg(&kimg))?;
    let mnt = dir.join("kernel-mnt");
    std::fs::create_dir_all(&mnt)?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&kimg)
        .arg(&mnt))?;
    let guard = LoopMount { dir: mnt.clone() };
    eprintln!("kernel ext4 (loop mount of {}) ...", kimg.display());
    let kernel = workloads(
        &mut Kernel {
            mnt: mnt.clone(),
            image: kimg.clone(),
        },
        &a,
    )?;
    drop(guard);
    std::fs::remove_file(&kimg)?;

    // Ours: ext4 on a sealed disk over io_uring in a host file.
    let simg = dir.join("rktio-sealed.img");
    prefill(&simg, image_size + image_size / 8)?;
    let key = KeySource::Bytes([0x42u8; 32].into());
    let q = rktio_blk::open_image(&simg, rktio_blk::OpenOptions::default())?;
    let mut disk = SealedDisk::create(q, &key, &CreateOptions::default())?;
    let logical = disk.logical_blocks() * 4096;
    image::format(&mut disk, None, &mut |_, _| {})?;
    drop(disk);
    let disk = rktio_fs::mount::open_disk(
        &simg,
        &key,
        rktio_blk::OpenOptions::default(),
        &SealOpen::default(),
    )?;
    let backend = disk.queue().name().to_string();
    let cache_mib = a
        .cache_mib
        .unwrap_or(((a.size >> 20) as usize + 64).max(64));
    let fs = rktio_fs::mount::mount_disk(
        disk,
        MountOptions {
            cache_pages: cache_mib * 256,
            ..Default::default()
        },
        None,
    )?;
    eprintln!(
        "rkt-io ext4 on a sealed disk ({backend}, {} MiB usable, {cache_mib} MiB page cache) ...",
        logical >> 20
    );
    let mut ours_side = Ours { fs };
    let ours = workloads(&mut ours_side, &a)?;
    let stats = ours_side.fs.cache_stats();
    ours_side.fs.unmount()?;
    std::fs::remove_file(&simg)?;

    let rows: Vec<Row> = kernel
        .into_iter()
        .zip(ours)
        .map(|(k, o)| Row {
            name: k.0,
            unit: k.1,
            kernel: k.2,
            ours: o.2,
            ours_calls_per_op: o.3,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<44} {:>8} {:>12} {:>12} {:>7} {:>14}",
        "workload", "unit", "kernel ext4", "rkt-io", "ratio", "host calls/op"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<44} {:>8} {:>12.0} {:>12.0} {:>7.2} {:>14.3}",
            r.name,
            r.unit,
            r.kernel,
            r.ours,
            r.ours / r.kernel,
            r.ours_calls_per_op
        )?;
    }
    writeln!(
        out,
        "ratio = rkt-io / kernel (higher is better for rkt-io); host calls/op: rkt-io's system calls per operation (per 4 KiB block for the sequential rows)"
    )?;
    writeln!(
        out,
        "O_DIRECT rows: the kernel goes to the device (here a loop device over a host file); rkt-io writes each O_DIRECT write through to the sealed disk, but serves reads from its trusted page cache when the page is there (already authenticated), so the read rows compare different things"
    )?;
    writeln!(
        out,
        "rkt-io page cache: {} hits, {} misses, {} read ahead, {} written back, {} evictions, {} commits",
        stats.hits, stats.misses, stats.readahead, stats.writebacks, stats.evictions, stats.commits
    )?;
    Ok(())
}
