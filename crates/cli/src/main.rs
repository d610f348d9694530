//! `rktio`: the rkt-io command line.

#![forbid(unsafe_code)]

mod disk;
mod fs;

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
}

fn main() -> ExitCode {
    let filter = std::env::var("RKTIO_LOG").unwrap_or_else(|_| "off".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let before = rktio_sys::HostCalls::snapshot();
    let result = match cli.command {
        Command::Disk(c) => disk::run(c),
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
