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
    let static_program = check_covered(&a.program[0])?;
    let lib = std::path::absolute(preload_library()?)?;
    let mut preload = lib.into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD")
        && !old.is_empty()
    {
        preload.push(":");
        preload.push(old);
    }
    // This binary is also the loader of statically linked programs: librktio,
    // preloaded into it with RKTIO_LOAD set, runs the program instead of main.
    let loader = std::env::current_exe()?;
    let mut cmd = match &static_program {
        Some(path) => {
            let mut c = std::process::Command::new(&loader);
            c.arg0(&a.program[0])
                .env("RKTIO_LOAD", std::path::absolute(path)?);
            c
        }
        None => std::process::Command::new(&a.program[0]),
    };
    cmd.args(&a.program[1..])
        .env("LD_PRELOAD", preload)
        .env("RKTIO_CONFIG", &config)
        .env("RKTIO_LOADER", &loader);
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

/// Refuses a program librktio could not cover (one for another machine, or a
/// script whose interpreter is statically linked); Some(path) for a statically
/// linked program, which the loader runs. The trap judges exec the same way.
fn check_covered(program: &str) -> Result<Option<PathBuf>, Error> {
    use rktio_posix::exec::{Verdict, verdict};
    use std::io::Read;
    let Some(path) = locate(program) else {
        return Ok(None); // exec reports it missing
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
        Err(_) | Ok(Verdict::Covered | Verdict::NotExecutable) => Ok(None),
        Ok(Verdict::Static(p)) if p == path.as_os_str().as_bytes() => Ok(Some(path)),
        Ok(Verdict::Static(p)) => Err(format!(
            "refusing to run {}: its interpreter {} is statically linked, and the loader runs a static program only when it is run directly",
            path.display(),
            show(p)
        )
        .into()),
        Ok(Verdict::Foreign(p)) => {
            Err(format!("refusing to run {}: not an x86-64 program", show(p)).into())
        }
    }
}
