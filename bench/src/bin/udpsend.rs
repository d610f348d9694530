//! `rktio-bench-udpsend ADDR:PORT PACKETS SIZE THREADS`: sends PACKETS UDP
//! datagrams of SIZE bytes to ADDR:PORT with plain `sendto` calls, split over
//! THREADS threads (a socket each), and prints one JSON line: packets, seconds,
//! packets per second, and the mean time one sendto call took. An ordinary
//! program: bench/reproduce runs it natively and under `rktio run` (fig 1a).

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let parsed = (|| -> Option<(SocketAddr, u64, usize, u64)> {
        Some((
            a.get(1)?.parse().ok()?,
            a.get(2)?.parse().ok()?,
            a.get(3)?.parse().ok()?,
            a.get(4)?.parse().ok()?,
        ))
    })();
    let Some((to, packets, size, threads)) = parsed.filter(|p| p.3 >= 1 && p.2 >= 1) else {
        eprintln!("usage: rktio-bench-udpsend ADDR:PORT PACKETS SIZE THREADS");
        std::process::exit(2);
    };
    let per = packets / threads;
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || -> Result<f64, String> {
                let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
                let buf = vec![0x5au8; size];
                let t = Instant::now();
                for _ in 0..per {
                    s.send_to(&buf, to).map_err(|e| format!("sendto: {e}"))?;
                }
                Ok(t.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut busy = 0.0;
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => busy += t,
            Ok(Err(e)) => {
                eprintln!("rktio-bench-udpsend: {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("rktio-bench-udpsend: a sender thread panicked");
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = per * threads;
    println!(
        "{{\"packets\":{sent},\"seconds\":{secs},\"pps\":{},\"ns_per_call\":{}}}",
        sent as f64 / secs,
        busy * 1e9 / sent as f64
    );
}
