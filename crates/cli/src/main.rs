//! `rktio`: the rkt-io command line.

#![forbid(unsafe_code)]

mod disk;
mod fs;
mod net;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// rkt-io: a direct userspace storage and network I/O stack for trusted execution.
///
/// Data lives in a sealed disk image: a file on the host that only ever holds
/// ciphertext, authenticated block by block.
#[derive(Debug, Parser)]
#[command(name = "rktio", version, propagate_version = true)]
struct Cli {
    /// Print host calls (system calls) made, by kind, when done.
    #[arg(long, global = true, env = "RKTIO_STATS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    stats: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect and check sealed disk images.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// WireGuard keys, compatible with `wg genkey` and `wg pubkey`.
    #[command(subcommand)]
    Wg(WgCommand),
    /// rkt-io's network stack: serve a sealed image's files over it.
    #[command(subcommand)]
    Net(net::NetCommand),
    /// Run an unmodified program with its files on sealed mounts (LD_PRELOAD of
    /// librktio; configured by rktio.toml).
    Run(run::RunArgs),
}

#[derive(Debug, Subcommand)]
enum WgCommand {
    /// Print a new random private key (base64).
    Genkey,
    /// Read a private key (base64) on stdin and print its public key.
    Pubkey,
}

fn wg(c: WgCommand) -> Result<(), Box<dyn std::error::Error>> {
    match c {
        WgCommand::Genkey => println!("{}", rktio_net::Key::generate()?.to_base64()),
        WgCommand::Pubkey => {
            let mut s = zeroize::Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            let k = rktio_net::Key::from_base64(&s).map_err(|e| format!("stdin: {e}"))?;
            println!("{}", k.public().to_base64());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Some(p) = std::env::var_os("RKTIO_LOAD") {
        // rktio run started this binary as the loader of a static program, but
        // librktio (which runs it) was not there to take over.
        eprintln!(
            "rktio: cannot load {}: librktio.so was not preloaded into the loader (RKTIO_LOAD is set)",
            std::path::Path::new(&p).display()
        );
        return ExitCode::from(126);
    }
    let filter = std::env::var("RKTIO_LOG").unwrap_or_else(|_| "off".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let before = rktio_sys::HostCalls::snapshot();
    let result = match cli.command {
        Command::Disk(c) => disk::run(c),
        Command::Wg(c) => wg(c),
        Command::Net(c) => net::run(c),
        Command::Run(a) => run::run(a, cli.stats),
    };
    if cli.stats {
        let calls = rktio_sys::HostCalls::snapshot().since(&before);
        eprintln!("host calls: {} total ({calls})", calls.total());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rktio: error: {e}");
            ExitCode::FAILURE
        }
    }
}
