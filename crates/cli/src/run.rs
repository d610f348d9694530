//! `rktio run`: start an unmodified program on the stack (LD_PRELOAD of
//! librktio with the configuration).

use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
    check_covered(&a.program[0])?;
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

/// Where `program` is, as exec would find it (PATH for a bare name).
fn locate(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Refuses a program librktio could not cover: a static executable (no dynamic
/// loader to bring librktio in) or one for another machine. The trap refuses the
/// same when a covered program execs one.
fn check_covered(program: &str) -> Result<(), Error> {
    use rktio_posix::exec::{Verdict, verdict};
    use std::io::Read;
    let Some(path) = locate(program) else {
        return Ok(()); // exec reports it missing
    };
    let head = |p: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut h = Vec::new();
        std::fs::File::open(std::ffi::OsStr::from_bytes(p))?
            .take(64 << 10)
            .read_to_end(&mut h)?;
        Ok(h)
    };
    let show = |p: Vec<u8>| {
        PathBuf::from(std::ffi::OsString::from_vec(p))
            .display()
            .to_string()
    };
    match verdict(path.as_os_str().as_bytes(), head) {
        // exec reports what it cannot read or run
        Err(_) | Ok(Verdict::Covered | Verdict::NotExecutable) => Ok(()),
        Ok(Verdict::Static(p)) => Err(format!(
            "refusing to run {}: it is statically linked, and rktio run covers a program's system calls through librktio, which only the dynamic loader brings in (its calls would reach the host in the clear)",
            show(p)
        )
        .into()),
        Ok(Verdict::Foreign(p)) => {
            Err(format!("refusing to run {}: not an x86-64 program", show(p)).into())
        }
    }
}
