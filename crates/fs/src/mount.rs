//! The one place that builds a mount: an image file as a block queue, the
//! sealed disk on it, ext4 on that. `rktio run` (rktio-posix), the command
//! line (`rktio disk ...`) and the benchmarks all build theirs here, the
//! command line in two steps (it unlocks disks it does not mount).

use std::path::Path;

use rktio_blk::{BlkError, BlockQueue, OpenOptions as QueueOptions};
use rktio_seal::{KeySource, OpenOptions as SealOptions, SealError, SealedDisk};

use crate::{Ext4Fs, FsError, MountOptions};

/// A sealed disk over any block queue.
pub type Disk = SealedDisk<Box<dyn BlockQueue>>;

/// What went wrong building a mount, by layer.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The image file could not be opened as a queue.
    #[error("{0}")]
    Queue(#[from] BlkError),
    /// The sealed disk would not open (key, integrity, freshness, ...).
    #[error("{0}")]
    Seal(#[from] SealError),
    /// No usable ext4 file system on it.
    #[error("no usable ext4 file system: {}", .0.detail)]
    Fs(FsError),
}

/// How to build a mount.
#[derive(Debug, Clone, Default)]
pub struct MountSpec {
    /// The queue under the sealed disk (backend, writable).
    pub queue: QueueOptions,
    /// The sealed disk (read-only, pins).
    pub seal: SealOptions,
    /// The file system (cache, owner, read-only).
    pub fs: MountOptions,
    /// Where the program sees it (absolute symbolic links under it are
    /// followed inside); `None`: the file system's root.
    pub at: Option<Vec<u8>>,
}

/// Opens the sealed disk in `image` with `key`.
pub fn open_disk(
    image: &Path,
    key: &KeySource,
    queue: QueueOptions,
    seal: &SealOptions,
) -> Result<Disk, MountError> {
    let q = rktio_blk::open_image(image, queue)?;
    Ok(SealedDisk::open(q, key, seal)?)
}

/// Mounts ext4 on an open sealed disk.
pub fn mount_disk(
    disk: Disk,
    opts: MountOptions,
    at: Option<&[u8]>,
) -> Result<Ext4Fs<Box<dyn BlockQueue>>, MountError> {
    let fs = Ext4Fs::mount(disk, opts).map_err(MountError::Fs)?;
    if let Some(at) = at {
        fs.set_mount_point(at);
    }
    Ok(fs)
}

/// Opens and mounts the image: queue, sealed disk, file system.
pub fn mount(
    image: &Path,
    key: &KeySource,
    spec: &MountSpec,
) -> Result<Ext4Fs<Box<dyn BlockQueue>>, MountError> {
    let disk = open_disk(image, key, spec.queue, &spec.seal)?;
    mount_disk(disk, spec.fs, spec.at.as_deref())
}
