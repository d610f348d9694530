#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Helpers for the tests that run real programs with `rktio run`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// librktio.so is a cdylib no test depends on, so cargo does not build it for
/// the tests: build it (once) next to the rktio binary.
pub fn preload() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let st = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "rktio-preload"])
                .status()
                .unwrap();
            assert!(st.success(), "cargo build -p rktio-preload failed");
            let lib = Path::new(env!("CARGO_BIN_EXE_rktio")).with_file_name("librktio.so");
            assert!(lib.exists(), "{} missing after the build", lib.display());
            lib
        })
        .clone()
}

pub fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is not installed (apt-get install --no-install-recommends {tool})"
    );
}

/// The rktio binary in `dir` with our librktio and none of the caller's rktio
/// settings, its output piped.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rktio"));
    c.args(args)
        .current_dir(dir)
        .env("RKTIO_PRELOAD", preload())
        .env_remove("RKTIO_KEY")
        .env_remove("RKTIO_CONFIG")
        .env_remove("RKTIO_STATS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn rktio(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = command(dir, args);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        si.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A sealed image with an empty ext4 and a config mounting it at /data.
pub fn setup(size: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = dir.path();
    assert!(rktio(d, &["disk", "keygen", "k"], None).status.success());
    let o = rktio(
        d,
        &["disk", "create", "d.img", "--size", size, "--key-file", "k"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(
        d.join("rktio.toml"),
        format!("[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_file = \"k\"\n{extra}"),
    )
    .unwrap();
    dir
}

/// `rktio run` as a child process (for servers), with its output piped.
pub fn rktio_spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut c = command(dir, args);
    c.stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}
