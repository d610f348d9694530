//! Fig 7g: durability, what a database pays on every commit. fio 4 KiB random
//! writes with an fsync (1 and 4 jobs) or an fdatasync after each, SQLite
//! commits in rollback-journal and WAL mode, and MariaDB under sysbench
//! oltp_write_only (over a UNIX socket, so the network does not dominate).
//! Natively (the host's ext4), on the kernel's own authenticated encryption
//! (dm-crypt over dm-integrity, where the kernel has device-mapper) and on ours.
//! The modes alternate round by round (the host's flush time drifts) and each
//! cell is the median of its rounds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Scale;
use crate::env::{Bg, Storage, Store, StoreOpts, run_ok, tail};
use crate::net::{mariadb_seed, parse_sysbench};
use crate::report::{Rec, Results};
use crate::storage::{fio, lay_out};

const FIG: &str = "fig7g";

fn modes() -> [Storage; 3] {
    [Storage::Native, Storage::DmIntegrity, Storage::SealedUring]
}

/// SQLite commits per second from Python's sqlite3 module: one 2 KB row per
/// transaction, for `secs` seconds; prints the rate.
const SQLITE: &str = r#"
import os, sqlite3, sys, time
path, mode, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=" + mode)
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
row = os.urandom(2048)
n, start = 0, time.monotonic()
while time.monotonic() - start < secs:
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES (?)", (row,))
    db.execute("COMMIT")
    n += 1
print(n / (time.monotonic() - start))
"#;

/// What a row runs.
#[derive(Clone, Copy)]
enum Work {
    /// fio random writes, each followed by this sync option, with this many jobs.
    Fio(&'static str, u32),
    /// SQLite commits in this journal mode.
    Sqlite(&'static str),
    /// MariaDB under sysbench oltp_write_only.
    Mariadb,
}

/// The rows: what ran, its metric, and how.
const ROWS: [(&str, &str, Work); 6] = [
    (
        "fio randwrite 4 KiB, fsync every write, 1 job",
        "write IOPS",
        Work::Fio("--fsync=1", 1),
    ),
    (
        "fio randwrite 4 KiB, fsync every write, 4 jobs",
        "write IOPS",
        Work::Fio("--fsync=1", 4),
    ),
    (
        "fio randwrite 4 KiB, fdatasync every write, 1 job",
        "write IOPS",
        Work::Fio("--fdatasync=1", 1),
    ),
    (
        "SQLite commits, journal_mode delete, 2 KB rows",
        "commits/s",
        Work::Sqlite("delete"),
    ),
    (
        "SQLite commits, journal_mode wal, 2 KB rows",
        "commits/s",
        Work::Sqlite("wal"),
    ),
    (
        "MariaDB oltp_write_only, 4 tables × 10k rows, 4 threads",
        "transactions/s",
        Work::Mariadb,
    ),
];

/// A mode's store and what its setup failed with, kept across rounds.
struct Mode {
    kind: Storage,
    store: Result<Store, String>,
    /// MariaDB's tables are made in the first round.
    prepared: bool,
}

/// Fig 7g (see the module comment).
pub fn durability_fig(res: &mut Results, work: &Path, s: &Scale) {
    let secs = s.fsync_secs;
    let seed = mariadb_seed(work);
    let mut modes: Vec<Mode> = modes()
        .into_iter()
        .map(|kind| {
            eprintln!("== durability: setting up {}", kind.name());
            let sock = work.join(format!("mysqld-fsync-{}.sock", kind as u8));
            let o = StoreOpts {
                image_mib: 2048 + s.fsync_mib,
                cache_mib: 512,
                seed: seed.as_ref().ok().cloned(),
                extra_toml: format!("[host]\nwrite = [\"{}\"]\n", sock.display()),
                plaintext: false,
            };
            let store = Store::new(kind, work, &o).and_then(|st| {
                // Every write of the rows overwrites.
                lay_out(
                    &st,
                    &st.path("fio.dat"),
                    s.fsync_mib,
                    Duration::from_secs(600),
                )
                .map(|()| st)
                .map_err(|e| format!("layout: {e}"))
            });
            Mode {
                kind,
                store,
                prepared: false,
            }
        })
        .collect();
    // (row, mode) -> values of each round, or the first error.
    let mut got: BTreeMap<(usize, usize), Result<Vec<f64>, String>> = BTreeMap::new();
    for round in 0..s.fsync_rounds {
        for (mi, m) in modes.iter_mut().enumerate() {
            eprintln!("== durability round {} on {}", round + 1, m.kind.name());
            for (ri, (_, _, w)) in ROWS.iter().enumerate() {
                let v = match &m.store {
                    Err(e) => Err(e.clone()),
                    Ok(st) => match *w {
                        Work::Fio(sync, jobs) => fio_row(st, sync, jobs, s, secs),
                        Work::Sqlite(mode) => sqlite(st, mode, secs),
                        Work::Mariadb => match &seed {
                            Err(e) => Err(format!("mariadb-install-db: {e}")),
                            Ok(_) => {
                                let r = mariadb(st, work, m.kind, !m.prepared, secs);
                                m.prepared |= r.is_ok();
                                r
                            }
                        },
                    },
                };
                let e = got.entry((ri, mi)).or_insert_with(|| Ok(Vec::new()));
                match (e.as_mut(), v) {
                    (Ok(vals), Ok(v)) => vals.push(v),
                    (Ok(_), Err(err)) => *e = Err(err),
                    (Err(_), _) => {}
                }
            }
        }
    }
    for (ri, (workload, metric, _)) in ROWS.iter().enumerate() {
        for (mi, m) in modes.iter().enumerate() {
            let value = got
                .remove(&(ri, mi))
                .unwrap_or_else(|| Err("not run".into()))
                .map(|mut v| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                });
            res.add(Rec {
                fig: FIG,
                workload: (*workload).into(),
                mode: m.kind.name().into(),
                metric,
                higher_better: true,
                value,
            });
        }
    }
    res.note(
        FIG,
        format!(
            "median of {} rounds, modes alternating within each round; {secs} s per run; fio file {} MiB",
            s.fsync_rounds, s.fsync_mib
        ),
    );
}

fn fio_row(st: &Store, sync: &str, jobs: u32, s: &Scale, secs: u64) -> Result<f64, String> {
    fio(
        st,
        &[
            format!("--filename={}", st.path("fio.dat")),
            format!("--size={}M", s.fsync_mib),
            "--invalidate=0".into(),
            "--group_reporting".into(),
            "--name=sync".into(),
            "--rw=randwrite".into(),
            "--bs=4k".into(),
            "--ioengine=psync".into(),
            sync.into(),
            format!("--numjobs={jobs}"),
            "--time_based".into(),
            format!("--runtime={secs}"),
            "--randrepeat=0".into(),
        ],
        Duration::from_secs(secs + 300),
        &[],
    )
    .map(|f| f.write_iops)
}

fn sqlite(st: &Store, mode: &str, secs: u64) -> Result<f64, String> {
    let db = st.path(&format!("commits-{mode}.db"));
    let mut c = st.cmd(None, "/usr/bin/python3");
    c.args(["-c", SQLITE, &db, mode, &secs.to_string()]);
    let out = run_ok(&mut c, Duration::from_secs(secs + 120))?;
    out.lines()
        .rev()
        .find_map(|l| l.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no rate printed: {}", tail(&out)))
}

/// Starts MariaDB on the store (UNIX socket only), makes sysbench's tables
/// when `prepare`, runs oltp_write_only for `secs`, stops it.
fn mariadb(
    st: &Store,
    work: &Path,
    kind: Storage,
    prepare: bool,
    secs: u64,
) -> Result<f64, String> {
    let data = st.path("");
    // A UNIX socket is a host object: it cannot live in a sealed image, so it
    // goes in the host's scratch dir, which the policy lets mariadbd write.
    let sock = work.join(format!("mysqld-fsync-{}.sock", kind as u8));
    let sock = sock.display().to_string();
    let mut c = st.cmd(None, "mariadbd");
    c.args([
        "--no-defaults",
        "--user=root",
        "--skip-grant-tables",
        "--skip-networking",
        "--skip-log-bin",
        "--innodb-use-native-aio=0",
        "--innodb-buffer-pool-size=256M",
    ])
    .arg(format!("--datadir={data}/mysql"))
    .arg(format!("--tmpdir={data}/tmp"))
    .arg(format!("--socket={sock}"))
    .arg(format!("--pid-file={data}/mysqld.pid"));
    let mut srv = Bg::start(&mut c)?;
    let client = |sql: &str| {
        run_ok(
            Command::new("mariadb").args(["--socket", &sock, "-u", "root", "-e", sql]),
            Duration::from_secs(60),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while client("SELECT 1").is_err() {
        srv.alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "mariadbd did not answer in 120 s: {}",
                tail(&srv.out.text())
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let sb = |what: &str, extra: &[String]| {
        run_ok(
            Command::new("sysbench")
                .args(["oltp_write_only", "--db-driver=mysql", "--mysql-user=root"])
                .arg(format!("--mysql-socket={sock}"))
                .args(["--mysql-db=sbtest", "--tables=4", "--table-size=10000"])
                .args(extra)
                .arg(what),
            Duration::from_secs(secs + 600),
        )
    };
    let r = (|| {
        if prepare {
            client("CREATE DATABASE IF NOT EXISTS sbtest")?;
            sb("prepare", &[])?;
        }
        let out = sb(
            "run",
            &[
                "--threads=4".into(),
                format!("--time={secs}"),
                "--report-interval=0".into(),
            ],
        )?;
        parse_sysbench(&out).map(|(tps, _)| tps)
    })()
    .map_err(|e| format!("{e}; server: {}", tail(&srv.out.text())));
    srv.stop();
    r
}
