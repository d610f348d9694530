//! The storage figures: fio (1b, 5a), sealed-disk write with hardware vs
//! software AES (5c), SQLite speedtest1 (7a).

use std::path::Path;
use std::time::Duration;

use crate::Scale;
use crate::env::{Storage, Store, StoreOpts, run_for, run_ok, tail};
use crate::report::{Rec, Results};

pub struct Fio {
    read_iops: f64,
    pub write_iops: f64,
    write_mbs: f64,
    /// Ours: the host calls per I/O from the stats report (`RKTIO_STATS`).
    host_calls: Option<f64>,
}

/// The `rktio stats: 0.117 host calls per I/O (...)` line ours prints at exit.
pub fn host_calls_per_io(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("rktio stats: ")?
                .strip_suffix(')')?
                .split_once(" host calls per I/O")
        })
        .and_then(|(v, _)| v.trim().parse().ok())
}

/// Runs fio on `store` with `args` (plus JSON output and --thread: one process
/// per image is a limit of ours, and threads change nothing for the others).
pub fn fio(
    store: &Store,
    args: &[String],
    limit: Duration,
    env: &[(&str, &str)],
) -> Result<Fio, String> {
    let mut c = store.cmd(None, "fio");
    // Global options go before the first --name.
    c.args(["--thread", "--output-format=json"])
        .args(args)
        .env("RKTIO_STATS", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let (ok, out, err) = run_for(&mut c, limit)?;
    // fio prints its JSON after any notes; start at the first brace.
    let json = out.find('{').map(|i| &out[i..]).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| format!("fio failed: {}", tail(&format!("{out}{err}"))))?;
    // The measured job is the last (a warm-up job may come first).
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    let job = jobs.last().cloned().unwrap_or_default();
    if !ok || job["error"].as_i64().unwrap_or(0) != 0 {
        return Err(format!("fio failed: {}", tail(&err)));
    }
    Ok(Fio {
        read_iops: job["read"]["iops"].as_f64().unwrap_or(0.0),
        write_iops: job["write"]["iops"].as_f64().unwrap_or(0.0),
        write_mbs: job["write"]["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        host_calls: host_calls_per_io(&err),
    })
}

/// Writes `file` of `mib` MiB end to end with fio and syncs it (untimed), so
/// later runs read and overwrite written blocks.
pub fn lay_out(store: &Store, file: &str, mib: u64, limit: Duration) -> Result<(), String> {
    fio(
        store,
        &[
            "--name=layout".into(),
            format!("--filename={file}"),
            format!("--size={mib}M"),
            "--bs=1M".into(),
            "--rw=write".into(),
            "--end_fsync=1".into(),
        ],
        limit,
        &[],
    )
    .map(|_| ())
}

fn storages() -> [Storage; 4] {
    [
        Storage::Native,
        Storage::Gocryptfs,
        Storage::SealedFile,
        Storage::SealedUring,
    ]
}

/// A random-I/O fio run on `file`: first a sequential read of the whole file
/// (untimed, its own group), so every mode starts with the file in its page
/// cache: the kernel's, or ours, which lives in the process and starts empty;
/// fio's invalidate is off so the kernel's is not dropped. Then 4 KiB random
/// 60/40 read/write for `secs`.
fn randrw(file: &str, mib: u64, secs: u64, jobs: u32) -> Vec<String> {
    [
        format!("--filename={file}"),
        format!("--size={mib}M"),
        "--invalidate=0".into(),
        "--group_reporting".into(),
        "--name=warm".into(),
        "--rw=read".into(),
        "--bs=1M".into(),
        "--name=randrw".into(),
        "--stonewall".into(),
        "--bs=4k".into(),
        "--rw=randrw".into(),
        "--rwmixread=60".into(),
        format!("--numjobs={jobs}"),
        "--time_based".into(),
        format!("--runtime={secs}"),
        "--randrepeat=0".into(),
    ]
    .into()
}

/// Fig 1b and 5a: fio 4 KiB random 60/40 on every storage.
pub fn fio_figs(res: &mut Results, work: &Path, s: &Scale, want: &dyn Fn(&str) -> bool) {
    let (do1b, do5a) = (want("fig1b"), want("fig5a"));
    if !do1b && !do5a {
        return;
    }
    let limit = Duration::from_secs(s.fio_secs + 300);
    for kind in storages() {
        eprintln!("== fio on {}", kind.name());
        let opts = StoreOpts {
            image_mib: s.fio_mib + s.fio_mib / 4 + 256,
            cache_mib: s.fio_mib + 64,
            ..Default::default()
        };
        let store = match Store::new(kind, work, &opts) {
            Ok(st) => st,
            Err(e) => {
                for fig in ["fig1b", "fig5a"] {
                    res.add(Rec {
                        fig,
                        workload: "all".into(),
                        mode: kind.name().into(),
                        metric: "IOPS",
                        higher_better: true,
                        value: Err(format!("setup: {e}")),
                    });
                }
                continue;
            }
        };
        let file = store.path("fio.dat");
        // Lay the file out first (untimed), so every run reads written blocks.
        let layout = lay_out(&store, &file, s.fio_mib, limit);
        let mut rows: Vec<(&'static str, String, Vec<String>)> = Vec::new();
        if do1b {
            let j = s.fio_jobs_1b;
            let mut b = randrw(&file, s.fio_mib, s.fio_secs, j);
            b.push("--ioengine=psync".into());
            rows.push(("fig1b", format!("buffered psync, {j} jobs"), b));
            let mut d = randrw(&file, s.fio_mib, s.fio_secs, j);
            d.extend(["--ioengine=psync".into(), "--direct=1".into()]);
            rows.push(("fig1b", format!("O_DIRECT psync, {j} jobs"), d));
            let mut u = randrw(&file, s.fio_mib, s.fio_secs, j);
            u.extend([
                "--ioengine=io_uring".into(),
                "--iodepth=16".into(),
                "--direct=1".into(),
            ]);
            rows.push(("fig1b", format!("O_DIRECT io_uring QD16, {j} jobs"), u));
        }
        if do5a {
            for j in [1u32, 2, 4] {
                let mut b = randrw(&file, s.fio_mib, s.fio_secs, j);
                b.push("--ioengine=psync".into());
                rows.push((
                    "fig5a",
                    format!("{j} job{}", if j > 1 { "s" } else { "" }),
                    b,
                ));
            }
        }
        for (fig, workload, args) in rows {
            let r = match &layout {
                Err(e) => Err(format!("layout: {e}")),
                Ok(_) => fio(&store, &args, limit, &[]),
            };
            for (metric, pick) in [
                ("read IOPS", (|f: &Fio| f.read_iops) as fn(&Fio) -> f64),
                ("write IOPS", |f: &Fio| f.write_iops),
            ] {
                res.add(Rec {
                    fig,
                    workload: workload.clone(),
                    mode: kind.name().into(),
                    metric,
                    higher_better: true,
                    value: r.as_ref().map(pick).map_err(Clone::clone),
                });
            }
            if let Ok(Some(h)) = r.as_ref().map(|f| f.host_calls) {
                res.add(Rec {
                    fig,
                    workload: workload.clone(),
                    mode: kind.name().into(),
                    metric: "host calls per I/O",
                    higher_better: false,
                    value: Ok(h),
                });
            }
        }
    }
}

/// aws-lc's CPU capability masks (OPENSSL_ia32cap: the CPUID words it uses,
/// `~` clears bits). This one clears AES-NI (bit 57), PCLMULQDQ (33) and AVX
/// (60), and in the extended words AVX2, AVX-512F, VAES and VPCLMULQDQ: AES-GCM
/// then runs on vector-permutation AES and GHASH in SSSE3 (constant time, no AES
/// instructions).
const NO_AES_INSTRUCTIONS: &str = "~0x1200000200000000:~0x0000060000010020";
/// All capability bits clear: aws-lc's portable C AES and GHASH.
const PORTABLE_C: &str = "0";

/// Fig 5c: sequential write to the sealed disk (1 MiB writes, fsync at the end,
/// in the time), with AES-NI and on two software AES paths, next to native.
pub fn aes_fig(res: &mut Results, work: &Path, s: &Scale) {
    let limit = Duration::from_secs(600);
    type Env = &'static [(&'static str, &'static str)];
    let runs: [(Storage, &str, Env); 4] = [
        (Storage::Native, "native", &[]),
        (Storage::SealedUring, "rktio uring, AES-NI", &[]),
        (
            Storage::SealedUring,
            "rktio uring, software AES (vpaes)",
            &[("OPENSSL_ia32cap", NO_AES_INSTRUCTIONS)],
        ),
        (
            Storage::SealedUring,
            "rktio uring, portable C AES",
            &[("OPENSSL_ia32cap", PORTABLE_C)],
        ),
    ];
    for (kind, mode, env) in runs {
        eprintln!("== sealed write: {mode}");
        let opts = StoreOpts {
            image_mib: s.seq_mib * 2 + 256,
            cache_mib: 256,
            ..Default::default()
        };
        let r = Store::new(kind, work, &opts).and_then(|store| {
            fio(
                &store,
                &[
                    "--name=seqwrite".into(),
                    format!("--filename={}", store.path("seq.dat")),
                    format!("--size={}M", s.seq_mib),
                    "--bs=1M".into(),
                    "--rw=write".into(),
                    "--ioengine=psync".into(),
                    "--end_fsync=1".into(),
                ],
                limit,
                env,
            )
        });
        res.add(Rec {
            fig: "fig5c",
            workload: format!("sequential write {} MiB + fsync", s.seq_mib),
            mode: mode.into(),
            metric: "MB/s",
            higher_better: true,
            value: r.map(|f| f.write_mbs),
        });
    }
}

/// Fig 7a: SQLite's speedtest1 (built from Debian's sqlite3 source by
/// bench/reproduce), total time.
pub fn speedtest_fig(res: &mut Results, work: &Path, s: &Scale, speedtest1: &Path) {
    let limit = Duration::from_secs(900);
    for kind in storages() {
        eprintln!("== speedtest1 on {}", kind.name());
        let opts = StoreOpts {
            image_mib: 1024,
            cache_mib: 256,
            extra_toml: format!("[host]\nread = [\"{}\"]\n", speedtest1.display()),
            ..Default::default()
        };
        let r = Store::new(kind, work, &opts).and_then(|store| {
            let mut c = store.cmd(None, &speedtest1.display().to_string());
            c.args([
                "--size",
                &s.speedtest_size.to_string(),
                "--journal",
                "delete",
            ])
            .arg(store.path("speedtest1.db"))
            // SQLite's temporary files (VACUUM) go next to the database: sealed for ours.
            .env("TMPDIR", store.path(""));
            let out = run_ok(&mut c, limit)?;
            total_seconds(&out).ok_or_else(|| format!("no TOTAL line: {}", tail(&out)))
        });
        res.add(Rec {
            fig: "fig7a",
            workload: format!("speedtest1 --size {} --journal delete", s.speedtest_size),
            mode: kind.name().into(),
            metric: "seconds",
            higher_better: false,
            value: r,
        });
    }
}

/// speedtest1's `TOTAL.....  1.234s` line.
fn total_seconds(out: &str) -> Option<f64> {
    let l = out.lines().find(|l| l.trim_start().starts_with("TOTAL"))?;
    let v = l.split_whitespace().last()?.trim_end_matches('s');
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::total_seconds;

    #[test]
    fn stats_line() {
        let err = "rktio stats: host calls by the stack: open=7\nrktio stats: 0.117 host calls per I/O (30 for 257 I/Os)\n";
        assert_eq!(super::host_calls_per_io(err), Some(0.117));
        assert_eq!(super::host_calls_per_io("fio: error"), None);
    }

    #[test]
    fn speedtest1_total() {
        let out = " 990 - ANALYZE..........................    0.006s\n       TOTAL..........................    0.384s\n";
        assert_eq!(total_seconds(out), Some(0.384));
        assert_eq!(total_seconds("SQL error: disk I/O error"), None);
    }
}
