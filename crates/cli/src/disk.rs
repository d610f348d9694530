//! `rktio disk ...`

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rktio_blk::{Backend, BlockQueue, OpenOptions as QueueOptions};
use rktio_seal::{Argon2Params, BLOCK_SIZE, CreateOptions, KeySource, OpenOptions, SealedDisk};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Create a new sealed disk image (a host file of the given size) with an ext4
    /// file system on it, empty or filled from a directory.
    ///
    /// Example:  rktio disk keygen my.key && rktio disk create data.img --size 1G --key-file my.key
    ///           rktio disk create app.img --from ./rootfs --key-file my.key
    Create {
        /// Image file to create.
        image: PathBuf,
        /// Size of the image file: bytes, or with a suffix K, M, G, T (powers of 1024).
        /// Some of it holds metadata and copy-on-write room; `info` shows the usable size.
        /// With --from it defaults to twice the directory's size (at least 64M).
        #[arg(long, value_parser = parse_size, required_unless_present = "from")]
        size: Option<u64>,
        /// Fill the file system with a copy of this directory (`mkfs.ext4 -d`), like
        /// `sgx-lkl-disk create --copy`.
        #[arg(long, value_name = "DIR", conflicts_with = "raw")]
        from: Option<PathBuf>,
        /// A bare sealed block device: no ext4 file system on it.
        #[arg(long)]
        raw: bool,
        /// Spare room for copy-on-write, in percent of the usable size. Writes between
        /// two commits can replace at most this much committed data.
        #[arg(long, default_value_t = 10)]
        overprovision: u64,
        /// Reserve the host space now (fallocate) instead of growing a sparse file.
        #[arg(long)]
        preallocate: bool,
        /// Overwrite IMAGE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Show an image's geometry, epoch and root (unlocks it; writes nothing).
    Info(ImageArgs),
    /// Authenticate every block of an image, then check its file system: read every
    /// file through rkt-io's ext4, and run `e2fsck -fn` on an unsealed temporary copy
    /// (writes nothing to the image). Exit status 1 if anything fails.
    Check {
        #[command(flatten)]
        image: ImageArgs,
        /// Only authenticate the blocks (also for --raw images).
        #[arg(long)]
        blocks_only: bool,
    },
    /// Unseal an image into a plain ext4 image file (for e2fsck, debugfs or
    /// `mount -o loop`). The output holds plaintext: keep it somewhere safe.
    Export {
        #[command(flatten)]
        image: ImageArgs,
        /// Plain image file to write.
        out: PathBuf,
        /// Overwrite OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Seal a plain ext4 image file (e.g. made by `mkfs.ext4 -d`) into a new sealed image.
    Import {
        /// Plain ext4 image file.
        plain: PathBuf,
        /// Sealed image file to create (sized to hold PLAIN).
        image: PathBuf,
        /// Spare room for copy-on-write, in percent of the usable size.
        #[arg(long, default_value_t = 10)]
        overprovision: u64,
        /// Overwrite IMAGE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        io: IoArgs,
    },
    /// List a directory of the file system on an image (read-only).
    Ls {
        #[command(flatten)]
        image: ImageArgs,
        /// Directory (default: /).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a file from the file system on an image to stdout (read-only).
    Cat {
        #[command(flatten)]
        image: ImageArgs,
        /// File.
        path: String,
    },
    /// Change the key or passphrase that unlocks an image.
    ///
    /// The data key is re-wrapped; data is not re-encrypted, so a copy of the image
    /// made before still opens with the old key.
    ChangeKey {
        /// Image file.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// New key: a file with 32 raw bytes or 64 hex digits.
        #[arg(long, value_name = "FILE", group = "new")]
        new_key_file: Option<PathBuf>,
        /// New key: an environment variable holding 64 hex digits.
        #[arg(long, value_name = "VAR", group = "new")]
        new_key_env: Option<String>,
        /// New key: a passphrase, asked for on the terminal (or read from RKTIO_NEW_PASSPHRASE).
        #[arg(long, group = "new")]
        new_passphrase: bool,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Write a new random 256-bit key (64 hex digits) to FILE, readable only by you.
    Keygen {
        /// Key file to create.
        file: PathBuf,
    },
}

/// How to unlock the image. Without any of these, RKTIO_KEY (64 hex digits) is used if set.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Key file with 32 raw bytes or 64 hex digits (see `rktio disk keygen`).
    #[arg(long, value_name = "FILE", group = "keysrc")]
    key_file: Option<PathBuf>,
    /// Environment variable holding the key as 64 hex digits.
    #[arg(long, value_name = "VAR", group = "keysrc")]
    key_env: Option<String>,
    /// Use a passphrase, asked for on the terminal (or read from RKTIO_PASSPHRASE).
    #[arg(long, group = "keysrc")]
    passphrase: bool,
}

/// An existing image, how to unlock it, and what to demand of it.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Image file.
    image: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    io: IoArgs,
}

impl ImageArgs {
    /// The image file.
    pub fn path(&self) -> &Path {
        &self.image
    }

    /// Opens the image read-only, with the key and pins given.
    pub fn open_read_only(&self) -> Result<SealedDisk<Box<dyn BlockQueue>>, Error> {
        open(&self.image, &self.key, &self.pin, &self.io, true)
    }
}

/// Freshness pins: refuse an image that was rolled back.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// Refuse the image if its epoch is lower than N.
    #[arg(long, value_name = "N")]
    expect_epoch: Option<u64>,
    /// Refuse the image unless its root is exactly HEX (as `info` prints it).
    #[arg(long, value_name = "HEX")]
    expect_root: Option<String>,
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// Block backend: uring (io_uring, no system call per I/O) or file (pread/pwrite).
    #[arg(long, default_value = "uring")]
    backend: Backend,
}

pub fn run(cmd: DiskCommand) -> Result<(), Error> {
    match cmd {
        DiskCommand::Create {
            image,
            size,
            from,
            raw,
            overprovision,
            preallocate,
            force,
            key,
            io,
        } => {
            let size = match (size, &from) {
                (Some(s), _) => s,
                (None, Some(dir)) => {
                    let bytes = crate::fs::dir_size(dir)?;
                    (bytes.saturating_mul(2)).max(64 << 20)
                }
                (None, None) => return Err("--size is needed".into()),
            };
            let mut disk = create(&image, size, overprovision, preallocate, force, &key, &io)?;
            if !raw {
                crate::fs::format(&mut disk, from.as_deref())?;
            }
            println!("created sealed disk {}", image.display());
            print_info(&image, &disk);
            Ok(())
        }
        DiskCommand::Info(a) => {
            let disk = open(&a.image, &a.key, &a.pin, &a.io, true)?;
            print_info(&a.image, &disk);
            Ok(())
        }
        DiskCommand::Check {
            image: a,
            blocks_only,
        } => {
            check(&a.image, &a.key, &a.pin, &a.io)?;
            if !blocks_only {
                let disk = open(&a.image, &a.key, &a.pin, &a.io, true)?;
                crate::fs::check(&a.image, disk)?;
            }
            Ok(())
        }
        DiskCommand::Export {
            image: a,
            out,
            force,
        } => {
            if out.exists() && !force {
                return Err(
                    format!("{} exists; pass --force to overwrite it", out.display()).into(),
                );
            }
            let mut disk = open(&a.image, &a.key, &a.pin, &a.io, true)?;
            crate::fs::export(&mut disk, &out)
        }
        DiskCommand::Import {
            plain,
            image,
            overprovision,
            force,
            key,
            io,
        } => {
            let len = std::fs::metadata(&plain)
                .map_err(|e| format!("{}: {e}", plain.display()))?
                .len();
            // Size the sealed image so that its usable part holds the plain image.
            let mut size = len + len * overprovision / 100 + len / 64 + (4 << 20);
            let mut disk = loop {
                let d = create(&image, size, overprovision, false, force, &key, &io)?;
                if d.logical_blocks() * BLOCK_SIZE as u64 >= len {
                    break d;
                }
                drop(d);
                size += size / 8;
            };
            crate::fs::import(&plain, &mut disk)?;
            println!("sealed {} into {}", plain.display(), image.display());
            print_info(&image, &disk);
            Ok(())
        }
        DiskCommand::Ls { image: a, path } => {
            let disk = open(&a.image, &a.key, &a.pin, &a.io, true)?;
            crate::fs::ls(disk, &path)
        }
        DiskCommand::Cat { image: a, path } => {
            let disk = open(&a.image, &a.key, &a.pin, &a.io, true)?;
            crate::fs::cat(disk, &path)
        }
        DiskCommand::ChangeKey {
            image,
            key,
            new_key_file,
            new_key_env,
            new_passphrase,
            io,
        } => {
            let new = if let Some(f) = new_key_file {
                KeySource::File(f)
            } else if let Some(v) = new_key_env {
                KeySource::Env(v)
            } else if new_passphrase {
                KeySource::Passphrase(ask_passphrase(
                    "RKTIO_NEW_PASSPHRASE",
                    "New passphrase",
                    true,
                )?)
            } else {
                return Err(
                    "say what the new key is: --new-key-file, --new-key-env or --new-passphrase"
                        .into(),
                );
            };
            let mut disk = open(
                &image,
                &key,
                &PinArgs {
                    expect_epoch: None,
                    expect_root: None,
                },
                &io,
                false,
            )?;
            let spin = spinner("re-wrapping the data key");
            disk.change_key(&new, Argon2Params::default())?;
            spin.finish_and_clear();
            println!("key changed; epoch {} root {}", disk.epoch(), disk.root());
            Ok(())
        }
        DiskCommand::Keygen { file } => keygen(&file),
    }
}

fn key_source(k: &KeyArgs, confirm: bool) -> Result<KeySource, Error> {
    if let Some(f) = &k.key_file {
        return Ok(KeySource::File(f.clone()));
    }
    if let Some(v) = &k.key_env {
        return Ok(KeySource::Env(v.clone()));
    }
    if k.passphrase {
        return Ok(KeySource::Passphrase(ask_passphrase(
            "RKTIO_PASSPHRASE",
            "Passphrase",
            confirm,
        )?));
    }
    if std::env::var_os("RKTIO_KEY").is_some() {
        return Ok(KeySource::Env("RKTIO_KEY".into()));
    }
    Err("no key given: use --key-file FILE (make one with `rktio disk keygen FILE`), --key-env VAR, --passphrase, or set RKTIO_KEY".into())
}

fn ask_passphrase(var: &str, prompt: &str, confirm: bool) -> Result<Zeroizing<String>, Error> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Zeroizing::new(p));
    }
    let p = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: "))?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password(format!("{prompt} (again): "))?);
        if *again != *p {
            return Err("the passphrases differ".into());
        }
    }
    Ok(p)
}

fn queue(image: &Path, io: &IoArgs, write: bool) -> Result<Box<dyn BlockQueue>, Error> {
    if !image.exists() {
        return Err(format!("{}: no such image", image.display()).into());
    }
    Ok(rktio_blk::open_image(
        image,
        QueueOptions {
            backend: io.backend,
            write,
            ..Default::default()
        },
    )?)
}

fn open(
    image: &Path,
    key: &KeyArgs,
    pin: &PinArgs,
    io: &IoArgs,
    read_only: bool,
) -> Result<SealedDisk<Box<dyn BlockQueue>>, Error> {
    let src = key_source(key, false)?;
    if !image.exists() {
        return Err(format!("{}: no such image", image.display()).into());
    }
    let spin = spinner("unlocking");
    let opts = OpenOptions {
        read_only,
        expect_epoch: pin.expect_epoch,
        expect_root: pin.expect_root.clone(),
    };
    let d = rktio_fs::mount::open_disk(
        image,
        &src,
        QueueOptions {
            backend: io.backend,
            write: !read_only,
            ..Default::default()
        },
        &opts,
    )
    .map_err(|e| format!("{}: {e}", image.display()));
    spin.finish_and_clear();
    Ok(d?)
}

fn create(
    image: &Path,
    size: u64,
    overprovision: u64,
    preallocate: bool,
    force: bool,
    key: &KeyArgs,
    io: &IoArgs,
) -> Result<SealedDisk<Box<dyn BlockQueue>>, Error> {
    if image.exists() && !force {
        return Err(format!("{} exists; pass --force to overwrite it", image.display()).into());
    }
    let size = size / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;
    if size < 1 << 20 {
        return Err("--size must be at least 1M".into());
    }
    let src = key_source(key, true)?;
    let file = rktio_sys::HostFile::open(
        image,
        rktio_sys::FileOptions {
            create: true,
            write: true,
            direct: false,
            ..Default::default()
        },
    )?;
    file.set_len(0)?;
    file.set_len(size)?;
    if preallocate {
        file.allocate(size)?;
    }
    drop(file);
    let q = queue(image, io, true)?;
    let spin = spinner("sealing");
    let disk = SealedDisk::create(
        q,
        &src,
        &CreateOptions {
            overprovision_pct: overprovision,
            ..Default::default()
        },
    );
    spin.finish_and_clear();
    Ok(disk.map_err(|e| format!("{}: {e}", image.display()))?)
}

fn print_info<Q: BlockQueue>(image: &Path, disk: &SealedDisk<Q>) {
    let i = disk.info();
    let gib = |blocks: u64| blocks as f64 * BLOCK_SIZE as f64 / (1u64 << 30) as f64;
    println!("image:       {}", image.display());
    println!("uuid:        {}", i.uuid);
    println!(
        "usable size: {} blocks ({:.3} GiB)",
        i.logical_blocks,
        gib(i.logical_blocks)
    );
    println!(
        "image size:  {} blocks ({:.3} GiB)",
        i.physical_blocks,
        gib(i.physical_blocks)
    );
    println!("in use:      {} blocks", i.used_blocks);
    println!("free:        {} blocks", i.free_blocks);
    println!("map depth:   {}", i.depth);
    println!("key:         {}", i.key_kind);
    println!("epoch:       {}", i.epoch);
    println!("root:        {}", i.root);
    println!(
        "log:         {} records since the last checkpoint",
        i.log_records
    );
    println!("backend:     {}", disk.queue().name());
}

fn check(image: &Path, key: &KeyArgs, pin: &PinArgs, io: &IoArgs) -> Result<(), Error> {
    let mut disk = open(image, key, pin, io, true)?;
    let total = disk.logical_blocks();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} blocks ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("checking");
    let report = disk.check(&mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    println!(
        "{}: epoch {} root {}: {} map nodes and {} data blocks authenticated, {} never written, {} bad",
        image.display(),
        disk.epoch(),
        disk.root(),
        report.map_nodes,
        report.good_blocks,
        report.holes,
        report.bad_count
    );
    if report.bad_count > 0 {
        let list: Vec<String> = report.bad_blocks.iter().map(u64::to_string).collect();
        return Err(format!(
            "{} blocks failed authentication (first: {}): the image was damaged or tampered with",
            report.bad_count,
            list.join(", ")
        )
        .into());
    }
    Ok(())
}

fn keygen(file: &Path) -> Result<(), Error> {
    if file.exists() {
        return Err(format!("{} exists; not overwriting a key", file.display()).into());
    }
    let k = rktio_seal::generate_key()?;
    let text = Zeroizing::new(format!("{}\n", rktio_seal::hex::encode(&k[..])));
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    println!(
        "wrote a new 256-bit key to {} (mode 0600); keep it safe: without it the image cannot be opened",
        file.display()
    );
    Ok(())
}

pub fn spinner(msg: &'static str) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_message(msg);
    s.enable_steady_tick(std::time::Duration::from_millis(100));
    s
}

/// Parses sizes like 4096, 64K, 512M, 1G, 2T, 1GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "unknown size suffix '{c}' in '{s}' (use K, M, G or T)"
                    ));
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 512M, 1G)"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4096").unwrap(), 4096);
        assert_eq!(super::parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(super::parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(super::parse_size("512m").unwrap(), 512 << 20);
        assert!(super::parse_size("12Q").is_err());
        assert!(super::parse_size("x").is_err());
        assert!(super::parse_size("99999999999T").is_err());
    }
}
