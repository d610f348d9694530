//! Image tooling: build ext4 with the reference `mkfs.ext4` (from a directory if
//! asked), seal a plain image into a sealed disk, unseal a sealed disk back into a
//! plain image that e2fsck, debugfs and the kernel read.
//!
//! This is tooling, run before or after a program, not the data path: it reads
//! and writes plain image files with std I/O.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

use rktio_blk::BlockQueue;
use rktio_seal::{BLOCK_SIZE, Block, SealError, SealedDisk};

/// What can go wrong with image tooling.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing a plain file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The sealed disk refused.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// An external tool failed or is missing.
    #[error("{0}")]
    Tool(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The `mkfs.ext4` arguments rkt-io uses: 4 KiB blocks, 256-byte inodes, no
/// journal (the sealed disk's atomic commit makes it redundant), all inode tables
/// written now (nothing left for the kernel to initialise lazily), no reserved
/// blocks (one program owns the file system).
pub const MKFS_ARGS: &[&str] = &[
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    "4096",
    "-I",
    "256",
    "-m",
    "0",
    "-O",
    "^has_journal",
    "-E",
    "lazy_itable_init=0,nodiscard",
];

/// Makes a plain ext4 image of `size` bytes at `plain` (created or truncated),
/// filled from `from` when given (`mkfs.ext4 -d`).
pub fn mkfs(plain: &Path, size: u64, from: Option<&Path>) -> Result<(), ImageError> {
    mkfs_with(plain, size, from, &[])
}

/// [`mkfs`] with extra `mkfs.ext4` arguments (e.g. `-N 200000` for more inodes).
pub fn mkfs_with(
    plain: &Path,
    size: u64,
    from: Option<&Path>,
    extra: &[&str],
) -> Result<(), ImageError> {
    let f = File::create(plain).map_err(io(plain))?;
    f.set_len(size).map_err(io(plain))?;
    drop(f);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(MKFS_ARGS).args(extra);
    if let Some(d) = from {
        if !d.is_dir() {
            return Err(ImageError::Tool(format!(
                "{}: not a directory",
                d.display()
            )));
        }
        cmd.arg("-d").arg(d);
    }
    cmd.arg(plain);
    let out = cmd.output().map_err(|e| {
        ImageError::Tool(format!(
            "cannot run mkfs.ext4 ({e}); install e2fsprogs (apt-get install --no-install-recommends e2fsprogs)"
        ))
    })?;
    if !out.status.success() {
        return Err(ImageError::Tool(format!(
            "mkfs.ext4 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs `e2fsck -fn` on a plain image. Returns (clean, output).
pub fn e2fsck(plain: &Path) -> Result<(bool, String), ImageError> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(plain)
        .output()
        .map_err(|e| {
            ImageError::Tool(format!(
                "cannot run e2fsck ({e}); install e2fsprogs (apt-get install --no-install-recommends e2fsprogs)"
            ))
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Blocks moved per batch of asynchronous sealed writes or reads.
const BATCH: usize = 256;

/// Seals the plain image at `plain` into `disk` block by block (all-zero blocks
/// stay holes), then commits. `progress(done, total)` is called per batch.
/// Returns the blocks written.
pub fn import<Q: BlockQueue>(
    plain: &Path,
    disk: &mut SealedDisk<Q>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ImageError> {
    let mut f = File::open(plain).map_err(io(plain))?;
    let len = f.metadata().map_err(io(plain))?.len();
    if len % BLOCK_SIZE as u64 != 0 {
        return Err(ImageError::Tool(format!(
            "{}: size {len} is not a multiple of 4096",
            plain.display()
        )));
    }
    let total = len / BLOCK_SIZE as u64;
    if total > disk.logical_blocks() {
        return Err(ImageError::Tool(format!(
            "{}: {total} blocks do not fit the sealed disk ({} blocks)",
            plain.display(),
            disk.logical_blocks()
        )));
    }
    let mut buf = vec![0u8; BLOCK_SIZE * BATCH];
    let mut lba = 0u64;
    let mut written = 0u64;
    let mut done = Vec::new();
    while lba < total {
        let n = ((total - lba) as usize).min(BATCH);
        let bytes = &mut buf[..n * BLOCK_SIZE];
        f.read_exact(bytes).map_err(io(plain))?;
        for (i, chunk) in bytes.chunks_exact(BLOCK_SIZE).enumerate() {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let block: &Block = chunk
                .try_into()
                .map_err(|_| ImageError::Tool("block size".into()))?;
            disk.submit_write(lba + i as u64, block, i as u64)?;
            written += 1;
        }
        while disk.outstanding() > 0 {
            disk.poll(1, &mut done)?;
        }
        for c in done.drain(..) {
            c.result?;
        }
        lba += n as u64;
        progress(lba, total);
        // Keep well inside the copy-on-write budget of a disk being overwritten.
        if disk.write_budget() < 2 * BATCH as u64 {
            disk.commit()?;
        }
    }
    disk.commit()?;
    Ok(written)
}

/// Unseals every block of `disk` into a plain (sparse) image at `out`.
/// `progress(done, total)` is called per batch. Returns the non-zero blocks.
pub fn export<Q: BlockQueue>(
    disk: &mut SealedDisk<Q>,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ImageError> {
    // Plaintext: readable by the owner only.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(io(out))?;
    let total = disk.logical_blocks();
    f.set_len(total * BLOCK_SIZE as u64).map_err(io(out))?;
    let mut lba = 0u64;
    let mut nonzero = 0u64;
    let mut done = Vec::new();
    while lba < total {
        let n = ((total - lba) as usize).min(BATCH);
        for i in 0..n {
            disk.submit_read(lba + i as u64, i as u64)?;
        }
        while disk.outstanding() > 0 {
            disk.poll(1, &mut done)?;
        }
        for c in done.drain(..) {
            if let Some(b) = c.result? {
                if b.iter().any(|&x| x != 0) {
                    f.write_all_at(&b[..], c.lba * BLOCK_SIZE as u64)
                        .map_err(io(out))?;
                    nonzero += 1;
                }
                disk.recycle(b);
            }
        }
        lba += n as u64;
        progress(lba, total);
    }
    f.flush().map_err(io(out))?;
    f.sync_all().map_err(io(out))?;
    Ok(nonzero)
}

/// Makes an ext4 file system on a fresh sealed disk (through a temporary plain
/// image that is deleted afterwards; it holds only file-system metadata unless
/// `from` is given, in which case it holds a copy of that directory, which is
/// plaintext the caller already had).
pub fn format<Q: BlockQueue>(
    disk: &mut SealedDisk<Q>,
    from: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
    format_with(disk, from, &[], progress)
}

/// [`format`] with extra `mkfs.ext4` arguments.
pub fn format_with<Q: BlockQueue>(
    disk: &mut SealedDisk<Q>,
    from: Option<&Path>,
    extra: &[&str],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImageError> {
    let tmp = tempfile::Builder::new()
        .prefix("rktio-mkfs-")
        .tempfile()
        .map_err(|e| ImageError::Tool(format!("temporary file: {e}")))?;
    let path = tmp.path().to_path_buf();
    mkfs_with(
        &path,
        disk.logical_blocks() * BLOCK_SIZE as u64,
        from,
        extra,
    )?;
    import(&path, disk, progress)?;
    Ok(())
}
