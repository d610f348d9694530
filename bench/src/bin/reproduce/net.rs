//! The network figures: UDP sendto (1a), iperf3 (1c), nginx + wrk (7b/c),
//! redis-benchmark (7d/e), MariaDB + sysbench (7f). Every server runs in each
//! of the four modes of [`NetMode`]; the clients run in the peer namespace.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::Scale;
use crate::env::{Bed, NetMode, StoreOpts, run_ok, tail};
use crate::report::{Rec, Results};

fn bed(mode: NetMode, work: &Path, o: &StoreOpts) -> Result<Bed, String> {
    eprintln!("== test bed: {}", mode.name());
    Bed::new(mode, work, o)
}

fn fail_all(
    res: &mut Results,
    fig: &'static str,
    mode: NetMode,
    e: &str,
    metrics: &[(&'static str, bool)],
) {
    for (metric, hb) in metrics {
        res.add(Rec {
            fig,
            workload: "all".into(),
            mode: mode.name().into(),
            metric,
            higher_better: *hb,
            value: Err(format!("setup: {e}")),
        });
    }
}

/// Fig 1a: sendto of small and MTU-sized UDP datagrams, 1 and 2 threads.
pub fn udp_fig(res: &mut Results, work: &Path, s: &Scale, udpsend: &Path) {
    let metrics = [("packets/s", true), ("µs per sendto", false)];
    for mode in NetMode::all() {
        let b = match bed(mode, work, &StoreOpts::default()) {
            Ok(b) => b,
            Err(e) => {
                fail_all(res, "fig1a", mode, &e, &metrics);
                continue;
            }
        };
        // MTU-sized: 1472 B fills a 1500-byte frame; through a tunnel (MTU 1420)
        // 1392 B fills a tunnel packet.
        let tunnel = mode.tunnel();
        for (label, size) in [
            ("32 B", 32usize),
            ("MTU-sized", if tunnel { 1392 } else { 1472 }),
        ] {
            for threads in [1u32, 2] {
                let mut c = b.server(&udpsend.display().to_string());
                c.args([
                    format!("{}:9000", b.peer_addr),
                    s.udp_packets.to_string(),
                    size.to_string(),
                    threads.to_string(),
                ]);
                let r = run_ok(&mut c, Duration::from_secs(600)).and_then(|out| {
                    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or("");
                    let v: serde_json::Value = serde_json::from_str(line)
                        .map_err(|_| format!("no result: {}", tail(&out)))?;
                    Ok((
                        v["pps"].as_f64().unwrap_or(0.0),
                        v["ns_per_call"].as_f64().unwrap_or(0.0) / 1000.0,
                    ))
                });
                let workload = format!(
                    "{label}, {threads} thread{}",
                    if threads > 1 { "s" } else { "" }
                );
                for (i, (metric, hb)) in metrics.iter().enumerate() {
                    res.add(Rec {
                        fig: "fig1a",
                        workload: workload.clone(),
                        mode: mode.name().into(),
                        metric,
                        higher_better: *hb,
                        value: r.clone().map(|v| if i == 0 { v.0 } else { v.1 }),
                    });
                }
            }
        }
    }
}

/// iperf3 -c from the peer; Gbit/s as the receiver saw it.
fn iperf3_client(b: &Bed, secs: u64, reverse: bool) -> Result<f64, String> {
    let mut c = b.client("iperf3");
    c.args([
        "-c",
        b.addr,
        "-t",
        &secs.to_string(),
        "-J",
        "--connect-timeout",
        "10000",
    ]);
    if reverse {
        c.arg("-R");
    }
    let out = run_ok(&mut c, Duration::from_secs(secs + 60))
        .or_else(|e| if e.contains('{') { Ok(e) } else { Err(e) })?;
    let json = out.find('{').map(|i| &out[i..]).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| format!("iperf3: {}", tail(&out)))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3: {e}"));
    }
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

/// Fig 1c: iperf3, one stream, both directions.
pub fn iperf_fig(res: &mut Results, work: &Path, s: &Scale) {
    let metric = [("Gbit/s", true)];
    for mode in NetMode::all() {
        let b = match bed(mode, work, &StoreOpts::default()) {
            Ok(b) => b,
            Err(e) => {
                fail_all(res, "fig1c", mode, &e, &metric);
                continue;
            }
        };
        let srv = b.iperf3_server(false);
        for (workload, rev) in [("peer → server", false), ("server → peer (-R)", true)] {
            let v = match &srv {
                Err(e) => Err(e.clone()),
                Ok(_) => iperf3_client(&b, s.net_secs, rev),
            };
            res.add(Rec {
                fig: "fig1c",
                workload: workload.into(),
                mode: mode.name().into(),
                metric: metric[0].0,
                higher_better: true,
                value: v,
            });
        }
    }
}

/// wrk's `Requests/sec:`, the 99th percentile of its latency distribution (ms),
/// and how many requests took longer than its timeout (2 s). Any other socket
/// error or a non-2xx answer fails the measurement.
fn parse_wrk(out: &str) -> Result<(f64, f64, u64), String> {
    if out.contains("Non-2xx") {
        return Err(format!("wrk saw errors: {}", tail(out)));
    }
    let mut timeouts = 0;
    if let Some(l) = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
    {
        // "connect 0, read 0, write 0, timeout 3"
        let mut other = 0u64;
        for part in l.split(',') {
            let mut w = part.split_whitespace();
            let (Some(what), Some(n)) = (w.next(), w.next().and_then(|n| n.parse::<u64>().ok()))
            else {
                return Err(format!("wrk: {}", tail(out)));
            };
            if what == "timeout" {
                timeouts = n;
            } else {
                other += n;
            }
        }
        if other > 0 {
            return Err(format!("wrk saw errors: {}", tail(out)));
        }
    }
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("wrk: {}", tail(out)))?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .and_then(|v| {
            let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
            let n: f64 = n.parse().ok()?;
            Some(match unit {
                "us" => n / 1000.0,
                "ms" => n,
                "s" => n * 1000.0,
                "m" => n * 60_000.0,
                _ => return None,
            })
        })
        .ok_or_else(|| format!("wrk printed no 99% latency: {}", tail(out)))?;
    Ok((rps, p99, timeouts))
}

/// The site nginx serves (sealed into the image for ours): a 16 KiB page and a
/// self-signed certificate for HTTPS, as the paper used.
fn site(work: &Path) -> Result<std::path::PathBuf, String> {
    let seed = work.join("site-seed");
    let _ = std::fs::remove_dir_all(&seed);
    for d in ["www", "tls", "tmp", "logs"] {
        std::fs::create_dir_all(seed.join(d)).map_err(|e| e.to_string())?;
    }
    let page: Vec<u8> = (0..16384u32)
        .map(|i| b"rkt-io bench page "[(i % 18) as usize])
        .collect();
    std::fs::write(seed.join("www/page.html"), page).map_err(|e| e.to_string())?;
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=rktio-bench",
                "-keyout",
            ])
            .arg(seed.join("tls/key.pem"))
            .arg("-out")
            .arg(seed.join("tls/cert.pem")),
        Duration::from_secs(60),
    )?;
    Ok(seed)
}

/// Fig 7b/c: nginx (one worker, epoll, sendfile) with wrk from the peer, HTTP and
/// HTTPS (TLS 1.3 with the self-signed certificate).
pub fn nginx_fig(res: &mut Results, work: &Path, s: &Scale) {
    let metrics = [("req/s", true), ("p99 latency ms", false)];
    let seed = match site(work) {
        Ok(p) => p,
        Err(e) => {
            for m in NetMode::all() {
                fail_all(res, "fig7b", m, &e, &metrics);
            }
            return;
        }
    };
    for mode in NetMode::all() {
        let conf = work.join(format!("nginx-{}.conf", mode as u8));
        let o = StoreOpts {
            image_mib: 128,
            seed: Some(seed.clone()),
            extra_toml: format!("[host]\nread = [\"{}\"]\n", conf.display()),
            ..Default::default()
        };
        let b = match bed(mode, work, &o) {
            Ok(b) => b,
            Err(e) => {
                fail_all(res, "fig7b", mode, &e, &metrics);
                continue;
            }
        };
        let data = b.store.path("");
        let text = format!(
            "master_process off;\ndaemon off;\nworker_processes 1;\nerror_log stderr warn;\n\
             pid nginx.pid;\nevents {{ worker_connections 512; use epoll; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  keepalive_requests 1000000;\n\
             client_body_temp_path tmp/body;\n  proxy_temp_path tmp/proxy;\n\
             fastcgi_temp_path tmp/fastcgi;\n  uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n\
             server {{\n    listen 80;\n    listen 443 ssl;\n    ssl_protocols TLSv1.3;\n\
             ssl_certificate {data}/tls/cert.pem;\n    ssl_certificate_key {data}/tls/key.pem;\n\
             root www;\n  }}\n}}\n"
        );
        if let Err(e) = std::fs::write(&conf, text) {
            fail_all(res, "fig7b", mode, &e.to_string(), &metrics);
            continue;
        }
        let mut c = b.server("nginx");
        c.arg("-c").arg(&conf).args(["-p", &data]);
        let srv = b.serve(&mut c, &[80, 443]);
        for (scheme, port) in [("http", 80u16), ("https", 443)] {
            let r = srv.as_ref().map_err(Clone::clone).and_then(|_| {
                let mut c = b.client("wrk");
                c.args([
                    "-t2",
                    "-c32",
                    &format!("-d{}s", s.net_secs),
                    "--latency",
                    &format!("{scheme}://{}:{port}/page.html", b.addr),
                ]);
                parse_wrk(&run_ok(&mut c, Duration::from_secs(s.net_secs + 60))?)
            });
            if let Ok((_, _, t)) = &r
                && *t > 0
            {
                res.note(
                    "fig7b",
                    format!(
                        "{} / {}: {t} requests took longer than wrk's 2 s timeout.",
                        scheme.to_uppercase(),
                        mode.name()
                    ),
                );
            }
            for (i, (metric, hb)) in metrics.iter().enumerate() {
                res.add(Rec {
                    fig: "fig7b",
                    workload: format!("{} 16 KiB page", scheme.to_uppercase()),
                    mode: mode.name().into(),
                    metric,
                    higher_better: *hb,
                    value: r.clone().map(|v| if i == 0 { v.0 } else { v.1 }),
                });
            }
        }
        drop(srv);
    }
}

/// redis-benchmark's --csv: rows of test name, rps, avg, min, p50, p95, p99, max.
fn parse_redis_csv(out: &str) -> Result<Vec<(String, f64, f64)>, String> {
    let mut v = Vec::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split(',').map(|x| x.trim_matches('"')).collect();
        if f.len() >= 7
            && f[0] != "test"
            && let (Ok(rps), Ok(p99)) = (f[1].parse(), f[6].parse())
        {
            v.push((f[0].to_string(), rps, p99));
        }
    }
    if v.is_empty() {
        Err(format!("redis-benchmark: {}", tail(out)))
    } else {
        Ok(v)
    }
}

/// Fig 7d/e: Redis with redis-benchmark from the peer (SET, GET; 50 clients).
/// YCSB is not run: see the record it leaves.
pub fn redis_fig(res: &mut Results, work: &Path, s: &Scale) {
    let metrics = [("req/s", true), ("p99 latency ms", false)];
    for mode in NetMode::all() {
        let b = match bed(mode, work, &StoreOpts::default()) {
            Ok(b) => b,
            Err(e) => {
                fail_all(res, "fig7d", mode, &e, &metrics);
                continue;
            }
        };
        let mut c = b.server("redis-server");
        c.args([
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ])
        .args(["--dir", &b.store.path("")]);
        let r = b.serve(&mut c, &[6379]).and_then(|srv| {
            let mut c = b.client("redis-benchmark");
            c.args([
                "-h", b.addr, "-p", "6379", "-c", "50", "-t", "set,get", "--csv",
            ])
            .args(["-n", &s.redis_requests.to_string()]);
            let out = run_ok(&mut c, Duration::from_secs(600));
            drop(srv);
            parse_redis_csv(&out?)
        });
        for test in ["SET", "GET"] {
            let row = r.as_ref().map_err(Clone::clone).and_then(|v| {
                v.iter()
                    .find(|t| t.0 == test)
                    .map(|t| (t.1, t.2))
                    .ok_or_else(|| format!("no {test} row"))
            });
            for (i, (metric, hb)) in metrics.iter().enumerate() {
                res.add(Rec {
                    fig: "fig7d",
                    workload: format!("{test}, 50 clients"),
                    mode: mode.name().into(),
                    metric,
                    higher_better: *hb,
                    value: row.clone().map(|v| if i == 0 { v.0 } else { v.1 }),
                });
            }
        }
    }
    res.note(
        "fig7d",
        "Not run: YCSB workload A. YCSB is a Java program published on Maven Central and GitHub; \
         Debian does not package it, and this machine's registries (crates.io, PyPI, \
         Debian, npm) do not reach either"
            .into(),
    );
}

/// sysbench's `transactions: N (X per sec.)` and `95th percentile: Y` (ms).
pub fn parse_sysbench(out: &str) -> Result<(f64, f64), String> {
    let tps = out
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("sysbench: {}", tail(out)))?;
    let p95 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("95th percentile:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("sysbench printed no 95th percentile: {}", tail(out)))?;
    Ok((tps, p95))
}

/// An initialised MariaDB data directory (system tables), made natively once and
/// copied (sealed with `disk create --from` for ours) into each mode.
pub fn mariadb_seed(work: &Path) -> Result<std::path::PathBuf, String> {
    let seed = work.join("mariadb-seed");
    let _ = std::fs::remove_dir_all(&seed);
    std::fs::create_dir_all(seed.join("tmp")).map_err(|e| e.to_string())?;
    run_ok(
        Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", seed.join("mysql").display())),
        Duration::from_secs(300),
    )?;
    Ok(seed)
}

/// Fig 7f: MariaDB with sysbench oltp_read_write from the peer.
pub fn mariadb_fig(res: &mut Results, work: &Path, s: &Scale) {
    let metrics = [("transactions/s", true), ("p95 latency ms", false)];
    let seed = match mariadb_seed(work) {
        Ok(p) => p,
        Err(e) => {
            for m in NetMode::all() {
                fail_all(res, "fig7f", m, &e, &metrics);
            }
            return;
        }
    };
    for mode in NetMode::all() {
        // A UNIX socket is a host object: it cannot live in a sealed image, so it
        // goes in the host's scratch dir, which the policy lets mariadbd write.
        let sock = work.join(format!("mysqld-{}.sock", mode as u8));
        let o = StoreOpts {
            image_mib: 2048,
            cache_mib: 512,
            seed: Some(seed.clone()),
            extra_toml: format!("[host]\nwrite = [\"{}\"]\n", sock.display()),
            plaintext: false,
        };
        let b = match bed(mode, work, &o) {
            Ok(b) => b,
            Err(e) => {
                fail_all(res, "fig7f", mode, &e, &metrics);
                continue;
            }
        };
        let data = b.store.path("");
        let mut c = b.server("mariadbd");
        c.args([
            "--no-defaults",
            "--user=root",
            "--skip-grant-tables",
            "--skip-name-resolve",
        ])
        .args(["--bind-address=0.0.0.0", "--port=3306", "--skip-log-bin"])
        .args([
            "--innodb-use-native-aio=0",
            "--innodb-buffer-pool-size=256M",
        ])
        .arg(format!("--datadir={data}/mysql"))
        .arg(format!("--tmpdir={data}/tmp"))
        // A UNIX socket is a host object: it cannot live in a sealed image
        // (binding one there fails), so it goes in the host's scratch dir.
        .arg(format!(
            "--socket={}/mysqld-{}.sock",
            work.display(),
            mode as u8
        ))
        .arg(format!("--pid-file={data}/mysqld.pid"));
        let sb = |b: &Bed, what: &str, extra: &[String]| -> Result<String, String> {
            let mut c = b.client("sysbench");
            c.args(["oltp_read_write", "--db-driver=mysql", "--mysql-user=root"])
                .arg(format!("--mysql-host={}", b.addr))
                .args([
                    "--mysql-port=3306",
                    "--mysql-db=sbtest",
                    "--tables=4",
                    "--table-size=10000",
                ])
                .args(extra)
                .arg(what);
            run_ok(&mut c, Duration::from_secs(600))
        };
        let r = b.serve(&mut c, &[3306]).and_then(|srv| {
            run_ok(
                b.client("mariadb").args([
                    "-h",
                    b.addr,
                    "-P",
                    "3306",
                    "-u",
                    "root",
                    "-e",
                    "CREATE DATABASE sbtest",
                ]),
                Duration::from_secs(60),
            )
            .map_err(|e| format!("{e}; server: {}", tail(&srv.out.text())))?;
            sb(&b, "prepare", &[])
                .map_err(|e| format!("{e}; server: {}", tail(&srv.out.text())))?;
            let out = sb(
                &b,
                "run",
                &[
                    "--threads=4".into(),
                    format!("--time={}", s.sysbench_secs),
                    "--report-interval=0".into(),
                ],
            )
            .map_err(|e| format!("{e}; server: {}", tail(&srv.out.text())))?;
            parse_sysbench(&out)
        });
        for (i, (metric, hb)) in metrics.iter().enumerate() {
            res.add(Rec {
                fig: "fig7f",
                workload: "oltp_read_write, 4 tables × 10k rows, 4 threads".into(),
                mode: mode.name().into(),
                metric,
                higher_better: *hb,
                value: r.clone().map(|v| if i == 0 { v.0 } else { v.1 }),
            });
        }
    }
}

/// Fig 5b: iperf3 to our stack (AF_XDP, WireGuard) with each optimisation off
/// in turn. The stats report ours prints at exit says which XDP mode the driver
/// gave (veth has no AF_XDP zero-copy, so there the zero-copy row is copy mode
/// both times).
pub fn knobs_fig(res: &mut Results, work: &Path, s: &Scale) {
    let variants: [(&str, &str); 5] = [
        ("all on (default)", ""),
        ("batching off (batch = 1)", "batch = 1\n"),
        ("zero-copy off (zero_copy = false)", "zero_copy = false\n"),
        ("send offloads off (offload = false)", "offload = false\n"),
        (
            "tunnel checksums verified",
            "verify_tunnel_checksums = true\n",
        ),
    ];
    for plaintext in [false, true] {
        let net = if plaintext { "plaintext" } else { "WireGuard" };
        for (name, knob) in variants {
            if plaintext && knob.starts_with("verify_tunnel") {
                continue; // no tunnel: every checksum is checked anyway
            }
            let o = StoreOpts {
                extra_toml: knob.into(),
                plaintext,
                ..Default::default()
            };
            let b = match bed(NetMode::OursXdp, work, &o) {
                Ok(b) => b,
                Err(e) => {
                    fail_all(res, "fig5b", NetMode::OursXdp, &e, &[("Gbit/s", true)]);
                    continue;
                }
            };
            let srv = b.iperf3_server(true);
            let mut vals = Vec::new();
            for (dir, rev) in [("peer → server", false), ("server → peer (-R)", true)] {
                vals.push((
                    format!("{net}, {dir}"),
                    match &srv {
                        Err(e) => Err(e.clone()),
                        Ok(_) => iperf3_client(&b, s.net_secs, rev),
                    },
                ));
            }
            // Say what the NIC really ran as (the server's stats line).
            let nic = srv
                .map(|srv| srv.stop())
                .ok()
                .and_then(|out| {
                    out.lines()
                        .find_map(|l| l.strip_prefix("rktio stats: network: "))
                        .and_then(|l| l.split(';').next())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "?".into());
            res.note("fig5b", format!("{net}, {name}: the server's NIC: {nic}."));
            for (workload, v) in vals {
                res.add(Rec {
                    fig: "fig5b",
                    workload,
                    mode: name.into(),
                    metric: "Gbit/s",
                    higher_better: true,
                    value: v,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let out = "Running 2s test @ http://10.202.0.2:80/page.html\n  2 threads and 32 connections\n\
                   \x20 Latency Distribution\n     50%    1.20ms\n     75%    2.00ms\n     90%    3.10ms\n\
                   \x20    99%  594.60ms\n  7102 requests in 2.00s, 111.07MB read\n\
                   Requests/sec:   3551.12\nTransfer/sec:     55.51MB\n";
        let (rps, p99, timeouts) = parse_wrk(out).unwrap();
        assert_eq!(timeouts, 0);
        assert_eq!(rps, 3551.12);
        assert!((p99 - 594.6).abs() < 1e-9);
        let us = out.replace("594.60ms", "830.00us");
        assert!((parse_wrk(&us).unwrap().1 - 0.83).abs() < 1e-9);
        let errs = format!("{out}  Socket errors: connect 0, read 3, write 0, timeout 0\n");
        assert!(parse_wrk(&errs).unwrap_err().contains("errors"));
        let slow = format!("{out}  Socket errors: connect 0, read 0, write 0, timeout 3\n");
        assert_eq!(parse_wrk(&slow).unwrap().2, 3);
        assert!(parse_wrk("unable to connect").is_err());
    }

    #[test]
    fn redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"74074.07\",\"0.360\",\"0.104\",\"0.343\",\"0.455\",\"0.503\",\"1.111\"\n\
                   \"GET\",\"86206.90\",\"0.310\",\"0.096\",\"0.295\",\"0.407\",\"0.447\",\"0.903\"\n";
        let v = parse_redis_csv(out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], ("SET".to_string(), 74074.07, 0.503));
        assert_eq!(v[1].0, "GET");
        assert!(parse_redis_csv("Could not connect to Redis").is_err());
    }

    #[test]
    fn sysbench_output() {
        let out = "SQL statistics:\n    transactions:                        5190   (1038.21 per sec.)\n\
                   \x20   queries:                             103800 (20764.20 per sec.)\n\
                   Latency (ms):\n         min:                                    1.71\n\
                   \x20        95th percentile:                        5.99\n";
        assert_eq!(parse_sysbench(out).unwrap(), (1038.21, 5.99));
        assert!(parse_sysbench("FATAL: unable to connect").is_err());
    }
}
