//! `rktio run`: start an unmodified program on the stack (LD_PRELOAD of
//! librktio with the configuration).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;
use rktio_posix::Config;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration (mounts, host policy, network); see docs/COMPAT.md.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "rktio.toml",
        env = "RKTIO_CONFIG"
    )]
    config: PathBuf,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    program: Vec<String>,
}

/// Where librktio.so is: $RKTIO_PRELOAD, next to this binary, or ../lib/rktio/.
pub fn preload_library() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("RKTIO_PRELOAD") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    for cand in [
        dir.join("librktio.so"),
        dir.join("../lib/rktio/librktio.so"),
    ] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(format!(
        "librktio.so not found next to {} (build it with `cargo build -p rktio-preload`, or set RKTIO_PRELOAD)",
        exe.display()
    )
    .into())
}

pub fn run(a: RunArgs, stats: bool) -> Result<(), Error> {
    // Check the configuration here, so mistakes show before the program starts.
    let config = std::path::absolute(&a.config)?;
    let c = Config::load(&config)?;
    // ... and the images and keys (read-only, then let go: the program opens each
    // mount at its first use).
    for m in &c.mount {
        drop(rktio_posix::open_mount(m, true)?);
    }
    let lib = std::path::absolute(preload_library()?)?;
    let mut preload = lib.into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD")
        && !old.is_empty()
    {
        preload.push(":");
        preload.push(old);
    }
    let mut cmd = std::process::Command::new(&a.program[0]);
    cmd.args(&a.program[1..])
        .env("LD_PRELOAD", preload)
        .env("RKTIO_CONFIG", &config);
    if stats {
        cmd.env("RKTIO_STATS", "1");
    }
    let e = cmd.exec();
    Err(format!("{}: {e}", a.program[0]).into())
}
