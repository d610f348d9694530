//! `bench/reproduce`: the rkt-io paper's evaluation, side by side with native and
//! the peers, on this machine. Each workload runs natively, on our stack with a
//! host call per I/O (`file` + `tap` backends: the SGX-LKL-style baseline), and on
//! our stack direct (`uring` + `xdp`), plus the peers a figure names (gocryptfs
//! for storage, the kernel through wireguard-go for the network). Writes
//! results.csv, results.md (machine, command, tables with ratios, where we are
//! ahead and behind) and a PNG per figure and metric into `--out`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durability;
mod env;
mod net;
mod plot;
mod report;
mod storage;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use report::{NATIVE, OURS_DIRECT, OURS_HOST, OURS_PLAIN, Results};

#[derive(Debug, Parser)]
#[command(about = "Reproduce the rkt-io paper's figures: native vs ours vs peers")]
struct Args {
    /// Small sizes and short runs (a few minutes), for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Only these figures (comma-separated: fig1a,fig1b,fig1c,fig5a,fig5c,fig7a,fig7b,fig7d,fig7f,fig7g).
    #[arg(long)]
    only: Option<String>,
    /// Where results go (default: bench/results, or bench/out/reproduce-quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Scratch directory for images and files (on the disk being measured).
    #[arg(long, default_value = "/var/tmp/rktio-reproduce")]
    work: PathBuf,
    /// speedtest1 binary (bench/reproduce builds it from Debian's sqlite3 source;
    /// needed for fig 7a only).
    #[arg(long)]
    speedtest1: Option<PathBuf>,
    /// Exit with status 1 if any measurement failed (for CI's smoke run).
    #[arg(long)]
    strict: bool,
    /// The command line to record in the results (bench/reproduce passes its own).
    #[arg(long, default_value = "bench/reproduce")]
    command: String,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Scale {
    /// fio's file, MiB.
    pub fio_mib: u64,
    /// Seconds per fio run.
    pub fio_secs: u64,
    /// fio jobs in fig 1b.
    pub fio_jobs_1b: u32,
    /// Sequential-write size in fig 5c, MiB.
    pub seq_mib: u64,
    /// UDP datagrams per fig-1a run.
    pub udp_packets: u64,
    /// Seconds per iperf3 / wrk run.
    pub net_secs: u64,
    /// Requests per redis-benchmark test.
    pub redis_requests: u64,
    /// speedtest1 --size.
    pub speedtest_size: u32,
    /// sysbench seconds.
    pub sysbench_secs: u64,
    /// Fig 7g: seconds per run, fio's file in MiB, rounds.
    pub fsync_secs: u64,
    /// Fig 7g's fio file, MiB.
    pub fsync_mib: u64,
    /// Fig 7g's rounds (modes alternate within each).
    pub fsync_rounds: u32,
}

impl Scale {
    fn new(quick: bool) -> Scale {
        if quick {
            Scale {
                fio_mib: 256,
                fio_secs: 2,
                fio_jobs_1b: 8,
                seq_mib: 256,
                udp_packets: 100_000,
                net_secs: 2,
                redis_requests: 20_000,
                speedtest_size: 10,
                sysbench_secs: 5,
                fsync_secs: 2,
                fsync_mib: 64,
                fsync_rounds: 1,
            }
        } else {
            Scale {
                fio_mib: 2048,
                fio_secs: 10,
                fio_jobs_1b: 8,
                seq_mib: 1024,
                udp_packets: 2_000_000,
                net_secs: 10,
                redis_requests: 200_000,
                speedtest_size: 10,
                sysbench_secs: 20,
                fsync_secs: 5,
                fsync_mib: 256,
                fsync_rounds: 3,
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "fio file {} MiB (the paper: 40 GiB; scaled to this machine's disk and \
             time), {} s per fio run; sequential write {} MiB; {} UDP datagrams per \
             sendto run; {} s per iperf3/wrk run; {} requests per redis-benchmark test; \
             speedtest1 --size {}; sysbench {} s; fig 7g: {} rounds of {} s runs, \
             fio file {} MiB",
            self.fio_mib,
            self.fio_secs,
            self.seq_mib,
            self.udp_packets,
            self.net_secs,
            self.redis_requests,
            self.speedtest_size,
            self.sysbench_secs,
            self.fsync_rounds,
            self.fsync_secs,
            self.fsync_mib
        )
    }
}

/// Figure titles, in the paper's order.
const FIGS: [(&str, &str); 11] = [
    ("fig1a", "Fig 1a: UDP sendto"),
    ("fig1b", "Fig 1b: fio 4 KiB random read/write 60/40"),
    ("fig1c", "Fig 1c: iperf3, one TCP stream"),
    ("fig5a", "Fig 5a: fio randrw buffered, SMP scaling"),
    ("fig5b", "Fig 5b: iperf3 with each optimisation off"),
    ("fig5c", "Fig 5c: sealed-disk write, AES-NI vs software AES"),
    ("fig7a", "Fig 7a: SQLite speedtest1"),
    ("fig7b", "Fig 7b/c: nginx + wrk"),
    ("fig7d", "Fig 7d/e: Redis + redis-benchmark"),
    ("fig7f", "Fig 7f: MariaDB + sysbench oltp_read_write"),
    (
        "fig7g",
        "Fig 7g: durability: fio with fsync, SQLite commits, MariaDB write-only",
    ),
];

fn title(fig: &str) -> &'static str {
    FIGS.iter().find(|f| f.0 == fig).map(|f| f.1).unwrap_or("")
}

/// Peers a figure compares against besides native.
fn peers(fig: &str) -> &'static [&'static str] {
    match fig {
        "fig1b" | "fig5a" | "fig7a" => &["gocryptfs"],
        "fig1a" | "fig1c" | "fig7b" | "fig7d" | "fig7f" => &["wireguard-go"],
        "fig7g" => &[report::DM_INTEGRITY],
        _ => &[],
    }
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    format!(
        "{} CPUs ({}), {} GiB memory, Linux {}, scratch on {} ({})",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'"),
        sh("awk '/MemTotal/ { printf \"%.0f\", $2 / 1048576 }' /proc/meminfo"),
        sh("uname -r"),
        sh("df --output=source /var/tmp | tail -1"),
        sh("df --output=fstype /var/tmp | tail -1"),
    )
}

fn slug(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            o.push(c.to_ascii_lowercase());
        } else if !o.ends_with('-') {
            o.push('-');
        }
    }
    o.trim_matches('-').to_string()
}

fn write_out(res: &Results, out: &Path, header: &str) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(out.join("results.csv"), res.csv()).map_err(|e| e.to_string())?;
    let mut md = String::from(header);
    for fig in res.figs() {
        let _ = writeln!(md, "\n## {}\n", title(fig));
        let recs = res.of(fig);
        let mut metrics: Vec<&str> = Vec::new();
        for r in &recs {
            if !metrics.contains(&r.metric) {
                metrics.push(r.metric);
            }
        }
        for m in metrics {
            let png = format!("{fig}-{}.png", slug(m));
            let these: Vec<&report::Rec> = recs.iter().copied().filter(|r| r.metric == m).collect();
            if these.iter().any(|r| r.value.is_ok()) {
                plot::bars(&out.join(&png), title(fig), m, &these)?;
                let _ = writeln!(md, "![{} ({m})]({png})\n", title(fig));
            }
        }
        md.push_str(&res.table(fig));
        let v = res.verdicts(fig, peers(fig));
        if !v.is_empty() {
            let _ = write!(md, "\n{v}");
        }
    }
    std::fs::write(out.join("results.md"), md).map_err(|e| e.to_string())
}

fn main() {
    let args = Args::parse();
    let want = |f: &str| {
        args.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|x| x.trim() == f))
    };
    if let Err(e) = plot::init_font() {
        eprintln!("bench/reproduce: {e}");
        std::process::exit(1);
    }
    let s = Scale::new(args.quick);
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "bench/out/reproduce-quick"
        } else {
            "bench/results"
        })
    });
    let _ = std::fs::remove_dir_all(&args.work);
    if let Err(e) = std::fs::create_dir_all(&args.work) {
        eprintln!("bench/reproduce: {}: {e}", args.work.display());
        std::process::exit(1);
    }
    let udpsend = env::rktio_bin().with_file_name("rktio-bench-udpsend");
    let started = Instant::now();
    let date = sh("date -u +%Y-%m-%dT%H:%MZ");
    let mut res = Results::default();
    storage::fio_figs(&mut res, &args.work, &s, &want);
    if want("fig5c") {
        storage::aes_fig(&mut res, &args.work, &s);
    }
    if want("fig7a") {
        match &args.speedtest1 {
            Some(st) => storage::speedtest_fig(&mut res, &args.work, &s, st),
            None => {
                eprintln!("bench/reproduce: fig 7a needs --speedtest1");
                std::process::exit(2);
            }
        }
    }
    if want("fig1a") {
        net::udp_fig(&mut res, &args.work, &s, &udpsend);
    }
    if want("fig1c") {
        net::iperf_fig(&mut res, &args.work, &s);
    }
    if want("fig5b") {
        net::knobs_fig(&mut res, &args.work, &s);
    }
    if want("fig7b") {
        net::nginx_fig(&mut res, &args.work, &s);
    }
    if want("fig7d") {
        net::redis_fig(&mut res, &args.work, &s);
    }
    if want("fig7f") {
        net::mariadb_fig(&mut res, &args.work, &s);
    }
    if want("fig7g") {
        durability::durability_fig(&mut res, &args.work, &s);
    }
    let header = format!(
        "# Reproduction of the rkt-io paper's evaluation\n\n\
         Generated by `{}` on {date} in {:.0} min; every number below comes from that \
         run (results.csv has them all).\n\n\
         - Machine: {}\n- Scale: {}\n- Modes: `{NATIVE}` (the kernel: ext4 on the host \
         disk, kernel TCP/IP over a veth); `{OURS_HOST}` (our stack with a host call \
         per I/O: sealed disk on the pread/pwrite backend, network on TAP, the \
         SGX-LKL-style baseline); `{OURS_DIRECT}` (our stack direct: sealed disk on \
         io_uring SQPOLL, network on AF_XDP); peers `gocryptfs` (FUSE, same disk) and \
         `wireguard-go` (kernel TCP through a wireguard-go tunnel at both ends). Our \
         network modes run WireGuard (the default), but `{OURS_PLAIN}` (the direct \
         mode in plaintext, to see the stack's cost apart from the crypto's); \
         `native` runs plaintext.\n\
         - Ratios in parentheses are against `native` (more is better for rates, less \
         for times and latencies); ahead/behind lines compare `{OURS_DIRECT}`.\n",
        args.command,
        started.elapsed().as_secs_f64() / 60.0,
        machine(),
        s.describe(),
    );
    if let Err(e) = write_out(&res, &out, &header) {
        eprintln!("bench/reproduce: {e}");
        std::process::exit(1);
    }
    let _ = std::fs::remove_dir_all(&args.work);
    for fig in res.figs() {
        println!("\n{}\n\n{}", title(fig), res.table(fig));
        print!("{}", res.verdicts(fig, peers(fig)));
    }
    println!(
        "\nresults: {}/results.md, results.csv, *.png",
        out.display()
    );
    // --strict: a failed measurement fails the run, except a peer this machine
    // cannot run (its cell says "unavailable: why"; it is listed here too).
    let mut failed = 0;
    for r in &res.recs {
        if let Err(e) = &r.value {
            if e.starts_with("unavailable:") {
                eprintln!(
                    "bench/reproduce: {} | {} | {}: {e}",
                    r.fig, r.workload, r.mode
                );
            } else {
                failed += 1;
            }
        }
    }
    if args.strict && failed > 0 {
        eprintln!("bench/reproduce: {failed} measurements failed (--strict)");
        std::process::exit(1);
    }
}
