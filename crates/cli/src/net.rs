//! `rktio net serve`: files from a sealed disk over HTTP on rkt-io's own network
//! stack (AF_XDP or TAP, WireGuard by default). Until `rktio run` puts nginx on
//! the stack, this is the way to reach a sealed image over the network.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rktio_fs::{Ext4Fs, FileSystem, OpenOptions};
use rktio_net::{
    Cidr, Net, Nic, PollConfig, Security, StackConfig, TapNic, TcpOptions, TcpStream, WgConfig,
    XdpConfig, XdpNic,
};

use crate::disk::ImageArgs;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Serve the files of a sealed image over HTTP/1.0 (GET and HEAD) on rkt-io's
    /// network stack.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    image: ImageArgs,
    /// AF_XDP on this interface (the stack takes over the interface).
    #[arg(long, value_name = "IFNAME", group = "nic")]
    xdp: Option<String>,
    /// A TAP device with this name (created if missing).
    #[arg(long, value_name = "NAME", group = "nic")]
    tap: Option<String>,
    /// Network namespace (`ip netns` name) of the AF_XDP interface.
    #[arg(long, value_name = "NS", requires = "xdp")]
    netns: Option<String>,
    /// Our address on the link, with its prefix (e.g. 10.201.0.2/24).
    #[arg(long, value_name = "CIDR")]
    address: String,
    /// Default gateway on the link.
    #[arg(long, value_name = "IP")]
    gateway: Option<IpAddr>,
    /// WireGuard configuration in wg-quick's format ([Interface] and [Peer]s).
    #[arg(long, value_name = "FILE", group = "security")]
    wg: Option<PathBuf>,
    /// No WireGuard: packets go on the wire as they are.
    #[arg(long, group = "security")]
    plaintext: bool,
    /// TCP port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Stop after this many requests (default: serve until killed).
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Link MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
}

pub fn run(c: NetCommand) -> Result<(), Error> {
    match c {
        NetCommand::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> Result<(), Error> {
    let security = match (&a.wg, a.plaintext) {
        (Some(p), false) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Security::WireGuard(
                WgConfig::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?,
            )
        }
        (None, true) => Security::Plaintext,
        _ => return Err("say --wg FILE (WireGuard) or --plaintext".into()),
    };
    let nic: Box<dyn Nic> = match (&a.xdp, &a.tap) {
        (Some(dev), None) => Box::new(match &a.netns {
            Some(ns) => XdpNic::open_in_netns(ns, dev, a.mtu, XdpConfig::default())?,
            None => XdpNic::open(dev, a.mtu, XdpConfig::default())?,
        }),
        (None, Some(name)) => Box::new(TapNic::open(name, a.mtu)?),
        _ => return Err("say --xdp IFNAME or --tap NAME".into()),
    };
    let cfg = StackConfig {
        mac: None,
        addresses: vec![Cidr::parse(&a.address).map_err(|e| format!("--address: {e}"))?],
        gateways: a.gateway.into_iter().collect(),
        security,
        tuning: Default::default(),
    };
    let disk = a.image.open_read_only()?;
    let fs = crate::fs::mount_ro(disk)?;
    let net = Net::start(nic, &cfg, PollConfig::default())?;
    let mut listener = net.tcp_listen(a.port, 16, TcpOptions::default())?;
    eprintln!(
        "rktio: serving {} on port {} ({})",
        a.image.path().display(),
        a.port,
        if a.plaintext {
            "plaintext"
        } else {
            "WireGuard"
        }
    );
    let calls0 = rktio_sys::HostCalls::snapshot();
    let mut served = 0u64;
    while a.requests.is_none_or(|n| served < n) {
        let (mut s, from) = listener.accept()?;
        s.set_timeout(Some(std::time::Duration::from_secs(30)));
        match answer(&fs, &mut s) {
            Ok((status, path, bytes)) => eprintln!("{from} {status} {path} {bytes} bytes"),
            Err(e) => eprintln!("{from}: {e}"),
        }
        s.shutdown(false, true);
        // HTTP/1.0: the client closes once it has the body.
        let mut b = [0u8; 512];
        while matches!(s.read(&mut b), Ok(n) if n > 0) {}
        served += 1;
    }
    drop(listener);
    net.linger(std::time::Duration::from_secs(5));
    let st = net.stats();
    let calls = rktio_sys::HostCalls::snapshot().since(&calls0);
    let frames = st.nic.rx_frames + st.nic.tx_frames;
    eprintln!(
        "rktio: {served} requests; frames in {} out {} (bad {}); WireGuard packets in {} out {}, dropped {}; host calls {} ({calls}), {:.3} per frame",
        st.nic.rx_frames,
        st.nic.tx_frames,
        st.nic.rx_dropped_bad,
        st.wg.rx_packets,
        st.wg.tx_packets,
        st.wg.rx_dropped_bad + st.wg.rx_dropped_source,
        calls.total(),
        calls.total() as f64 / frames.max(1) as f64
    );
    Ok(())
}

/// Reads one request and answers it: (status, path, body bytes).
fn answer<B: rktio_blk::BlockQueue>(
    fs: &Ext4Fs<B>,
    s: &mut TcpStream,
) -> Result<(u16, String, u64), Error> {
    let mut req = Vec::new();
    let mut b = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        if req.len() > 16 << 10 {
            return reply(s, 431, "headers too large", "-");
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err("connection closed before the request ended".into());
        }
        req.extend_from_slice(&b[..n]);
    }
    let line = String::from_utf8_lossy(&req[..req.iter().position(|&c| c == b'\r').unwrap_or(0)])
        .into_owned();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return reply(s, 405, "only GET and HEAD", path);
    }
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return reply(s, 400, "bad path", path);
    }
    let f = match fs.open(path.as_bytes(), &OpenOptions::default()) {
        Ok(f) => f,
        Err(_) => return reply(s, 404, "not found", path),
    };
    let size = fs.fstat(&f).map_err(|e| e.detail)?.size;
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\nServer: rktio\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok((200, path.to_string(), 0));
    }
    let mut buf = vec![0u8; 256 << 10];
    let mut sent = 0u64;
    loop {
        let n = fs.read(&f, &mut buf).map_err(|e| e.detail)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
        sent += n as u64;
    }
    Ok((200, path.to_string(), sent))
}

fn reply(
    s: &mut TcpStream,
    status: u16,
    why: &str,
    path: &str,
) -> Result<(u16, String, u64), Error> {
    let body = format!("{why}\n");
    let msg = format!(
        "HTTP/1.0 {status} {why}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes())
        .map_err(|e: io::Error| -> Error { e.into() })?;
    Ok((status, path.to_string(), 0))
}
