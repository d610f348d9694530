//! An iperf3 server on rkt-io's sockets: the real `iperf3` client (Debian's) runs
//! against it from a peer, TCP, forward (`iperf3 -c`) and reverse (`-R`), one or
//! more streams (`-P`). It speaks iperf3's control protocol: the cookie, state
//! bytes, length-prefixed JSON parameters and results.
//!
//! Once `rktio run` can start the real `iperf3 -s` on the stack, that replaces
//! this; until then this is how real iperf3 clients measure our TCP.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rktio_net::{Net, TcpListener, TcpOptions, TcpStream};

const COOKIE: usize = 37;
const TEST_START: u8 = 1;
const TEST_RUNNING: u8 = 2;
const TEST_END: u8 = 4;
const PARAM_EXCHANGE: u8 = 9;
const CREATE_STREAMS: u8 = 10;
const EXCHANGE_RESULTS: u8 = 13;
const DISPLAY_RESULTS: u8 = 14;
const IPERF_DONE: u8 = 16;
const SERVER_ERROR: u8 = 0xfe; // -2
/// Largest parameter or result message accepted from the client.
const MAX_JSON: usize = 1 << 20;

/// What one test moved, as the server saw it.
#[derive(Debug, Clone, Copy)]
pub struct TestResult {
    /// Bytes received (forward) or sent (reverse) on all streams.
    pub bytes: u64,
    /// Seconds from the start of the test to its end.
    pub seconds: f64,
    /// Whether the server sent (`-R`).
    pub reverse: bool,
    /// Streams.
    pub streams: usize,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_exact(s: &mut TcpStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = s.read(buf)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

fn read_json(s: &mut TcpStream) -> io::Result<serde_json::Value> {
    let mut len = [0u8; 4];
    read_exact(s, &mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_JSON {
        return Err(bad(format!("{n}-byte JSON message")));
    }
    let mut b = vec![0u8; n];
    read_exact(s, &mut b)?;
    serde_json::from_slice(&b).map_err(|e| bad(format!("client JSON: {e}")))
}

fn write_json(s: &mut TcpStream, v: &serde_json::Value) -> io::Result<()> {
    let b = v.to_string().into_bytes();
    s.write_all(&(b.len() as u32).to_be_bytes())?;
    s.write_all(&b)
}

fn state(s: &mut TcpStream, st: u8) -> io::Result<()> {
    s.write_all(&[st])
}

/// An iperf3 server listening on a port of a running stack.
#[derive(Debug)]
pub struct Iperf3Server {
    listener: TcpListener,
}

impl Iperf3Server {
    /// Listens on `port` (iperf3's default is 5201).
    pub fn listen(net: &Net, port: u16) -> io::Result<Self> {
        let opts = TcpOptions {
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            ..TcpOptions::default()
        };
        Ok(Self {
            listener: net.tcp_listen(port, 16, opts)?,
        })
    }

    /// Serves one test (one client run) and returns what it moved.
    pub fn serve_one(&mut self) -> io::Result<TestResult> {
        let (mut ctl, _) = self.listener.accept()?;
        ctl.set_nodelay(true);
        let mut cookie = [0u8; COOKIE];
        read_exact(&mut ctl, &mut cookie)?;
        state(&mut ctl, PARAM_EXCHANGE)?;
        let params = read_json(&mut ctl)?;
        let flag = |k: &str| params.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if flag("udp") || flag("bidirectional") || flag("sctp") {
            state(&mut ctl, SERVER_ERROR)?;
            return Err(bad("only TCP, one direction at a time, is served"));
        }
        let reverse = flag("reverse");
        let streams = params
            .get("parallel")
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 16) as usize;
        let len = params
            .get("len")
            .and_then(|v| v.as_u64())
            .unwrap_or(128 << 10)
            .clamp(1, 1 << 20) as usize;
        state(&mut ctl, CREATE_STREAMS)?;
        let mut data = Vec::with_capacity(streams);
        while data.len() < streams {
            let (mut s, _) = self.listener.accept()?;
            let mut c = [0u8; COOKIE];
            read_exact(&mut s, &mut c)?;
            if c != cookie {
                // Another client's stream: not ours to serve.
                continue;
            }
            data.push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Vec<Arc<AtomicU64>> =
            (0..streams).map(|_| Arc::new(AtomicU64::new(0))).collect();
        state(&mut ctl, TEST_START)?;
        state(&mut ctl, TEST_RUNNING)?;
        let start = Instant::now();
        let workers: Vec<_> = data
            .into_iter()
            .zip(counters.iter().cloned())
            .map(|(mut s, count)| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0x5au8; len];
                    // Wake up now and then to see the end of the test.
                    s.set_timeout(Some(std::time::Duration::from_millis(100)));
                    while !stop.load(Ordering::Relaxed) {
                        let r = if reverse {
                            s.write(&buf)
                        } else {
                            s.read(&mut buf)
                        };
                        match r {
                            Ok(0) => break,
                            Ok(n) => {
                                count.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                    }
                    s
                })
            })
            .collect();
        // Wait for the client's TEST_END on the control connection.
        let mut b = [0u8; 1];
        loop {
            read_exact(&mut ctl, &mut b)?;
            if b[0] == TEST_END {
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        // As iperf3's server does at TEST_END: close the data streams (a client
        // in reverse mode may be blocked reading one).
        for w in workers {
            if let Ok(mut s) = w.join() {
                s.shutdown(false, true);
            }
        }
        state(&mut ctl, EXCHANGE_RESULTS)?;
        let _client_results = read_json(&mut ctl)?;
        let ids = std::iter::once(1).chain(3..);
        let per: Vec<serde_json::Value> = counters
            .iter()
            .zip(ids)
            .map(|(c, id)| {
                serde_json::json!({
                    "id": id, "bytes": c.load(Ordering::Relaxed), "retransmits": -1,
                    "jitter": 0, "errors": 0, "omitted_errors": 0, "packets": 0,
                    "omitted_packets": 0, "start_time": 0, "end_time": seconds,
                })
            })
            .collect();
        write_json(
            &mut ctl,
            &serde_json::json!({
                "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
                "sender_has_retransmits": if reverse { 0 } else { -1 },
                "streams": per,
            }),
        )?;
        state(&mut ctl, DISPLAY_RESULTS)?;
        // The client answers IPERF_DONE and closes; a client that just closes is fine.
        let _ = read_exact(&mut ctl, &mut b).map(|_| b[0] == IPERF_DONE);
        Ok(TestResult {
            bytes: counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            seconds,
            reverse,
            streams,
        })
    }
}

/// An iperf3 client on rkt-io's sockets: one TCP stream for `seconds`, sending
/// (forward) or receiving (`reverse`, iperf3's `-R`), against any iperf3 server
/// (ours or the real one). Returns the bytes the receiving side counted and the
/// seconds of the test: the client's own count when it received, the server's
/// reported count when it sent.
pub fn run_client(
    net: &Net,
    to: std::net::SocketAddr,
    seconds: u32,
    reverse: bool,
) -> io::Result<TestResult> {
    let opts = TcpOptions {
        recv_buffer: 1 << 20,
        send_buffer: 1 << 20,
        ..TcpOptions::default()
    };
    let mut ctl = net.tcp_connect(to, opts)?;
    ctl.set_nodelay(true);
    // 36 printable characters and a NUL, as iperf3's make_cookie.
    let mut cookie = [0u8; COOKIE];
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for c in cookie.iter_mut().take(COOKIE - 1) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *c = b"abcdefghijklmnopqrstuvwxyz234567"[(seed % 32) as usize];
    }
    ctl.write_all(&cookie)?;
    let expect = |ctl: &mut TcpStream, want: u8| -> io::Result<()> {
        let mut b = [0u8; 1];
        read_exact(ctl, &mut b)?;
        if b[0] == want {
            Ok(())
        } else {
            Err(bad(format!("server state {} where {want} was due", b[0])))
        }
    };
    expect(&mut ctl, PARAM_EXCHANGE)?;
    let len = 128usize << 10;
    let mut params = serde_json::json!({
        "tcp": true, "omit": 0, "time": seconds, "num": 0, "blockcount": 0,
        "parallel": 1, "len": len, "pacing_timer": 1000, "client_version": "3.12",
    });
    if reverse {
        params["reverse"] = serde_json::Value::Bool(true);
    }
    write_json(&mut ctl, &params)?;
    expect(&mut ctl, CREATE_STREAMS)?;
    let mut data = net.tcp_connect(to, opts)?;
    data.write_all(&cookie)?;
    expect(&mut ctl, TEST_START)?;
    expect(&mut ctl, TEST_RUNNING)?;
    let start = Instant::now();
    let end = start + std::time::Duration::from_secs(u64::from(seconds));
    let mut buf = vec![0x5au8; len];
    let mut bytes = 0u64;
    data.set_timeout(Some(std::time::Duration::from_millis(100)));
    while Instant::now() < end {
        let r = if reverse {
            data.read(&mut buf)
        } else {
            data.write(&buf)
        };
        match r {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let seconds_run = start.elapsed().as_secs_f64();
    state(&mut ctl, TEST_END)?;
    if !reverse {
        data.shutdown(false, true);
    }
    expect(&mut ctl, EXCHANGE_RESULTS)?;
    write_json(
        &mut ctl,
        &serde_json::json!({
            "cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
            "sender_has_retransmits": if reverse { -1 } else { 0 },
            "streams": [{
                "id": 1, "bytes": bytes, "retransmits": if reverse { -1 } else { 0 },
                "jitter": 0, "errors": 0, "omitted_errors": 0, "packets": 0,
                "omitted_packets": 0, "start_time": 0, "end_time": seconds_run,
            }],
        }),
    )?;
    let server = read_json(&mut ctl)?;
    expect(&mut ctl, DISPLAY_RESULTS)?;
    state(&mut ctl, IPERF_DONE)?;
    let received = if reverse {
        bytes
    } else {
        server["streams"][0]["bytes"]
            .as_u64()
            .ok_or_else(|| bad("server results without a byte count"))?
    };
    Ok(TestResult {
        bytes: received,
        seconds: seconds_run,
        reverse,
        streams: 1,
    })
}
