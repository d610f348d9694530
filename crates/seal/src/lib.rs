//! The sealed disk: every 4 KiB block AES-256-GCM encrypted and authenticated, the
//! tags gathered into a copy-on-write MAC tree whose root sits in an authenticated
//! superblock with an epoch counter, and an atomic commit.
//!
//! See docs/FORMAT.md for the layout and docs/SECURITY.md for what it protects.

#![forbid(unsafe_code)]

mod alloc;
mod disk;
pub mod format;
pub mod hex;
mod keys;

pub use disk::{
    CheckReport, CreateOptions, DiskInfo, LOG_RECORDS, OpenOptions, SealStats, SealedCompletion,
    SealedDisk,
};
pub use keys::{Argon2Params, KeySource, generate_key};
pub use rktio_blk::{BLOCK_SIZE, Block};

use rktio_blk::{BlkError, IoError};

pub use rktio_blk::errno;

/// Everything that can go wrong with a sealed disk.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The image has no rkt-io superblock.
    #[error("not a rkt-io sealed disk: {0}")]
    NotSealed(String),
    /// The image is of a format this build does not read.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The key does not open this image. Nothing was written.
    #[error("{0}")]
    WrongKey(String),
    /// The key could not be loaded.
    #[error("key: {0}")]
    Key(String),
    /// Metadata failed a check: the image was damaged or tampered with.
    #[error("sealed disk metadata is corrupt or was tampered with: {0}")]
    Corrupt(String),
    /// A data block failed authentication.
    #[error("integrity check failed for block {lba}: {detail}")]
    Integrity {
        /// Logical block.
        lba: u64,
        /// What was found.
        detail: String,
    },
    /// The image is older than the caller demanded (rollback).
    #[error("stale image: {0}")]
    Stale(String),
    /// No room for copy-on-write.
    #[error("{0}")]
    NoSpace(String),
    /// Opened read-only.
    #[error("the sealed disk is open read-only")]
    ReadOnly,
    /// A block number past the end.
    #[error("block {lba} is past the end of the sealed disk ({blocks} blocks)")]
    OutOfRange {
        /// Block asked for.
        lba: u64,
        /// Blocks on the disk.
        blocks: u64,
    },
    /// An earlier write or commit failed; the disk refuses writes until reopened
    /// (which returns to the last commit).
    #[error(
        "sealed disk stopped accepting writes after an earlier failure ({0}); reopen it to return to the last commit"
    )]
    Poisoned(String),
    /// The host failed an I/O.
    #[error("host I/O failed: {0}")]
    Io(#[from] IoError),
    /// The block queue refused a request.
    #[error(transparent)]
    Queue(#[from] BlkError),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}

impl SealError {
    /// The errno the POSIX edge reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SealError::Io(e) => e.errno,
            SealError::NoSpace(_) => errno::ENOSPC,
            SealError::ReadOnly => errno::EROFS,
            SealError::OutOfRange { .. } | SealError::Invalid(_) => errno::EINVAL,
            SealError::WrongKey(_) | SealError::Key(_) => errno::EACCES,
            _ => errno::EIO,
        }
    }
}

impl From<rktio_sys::HostError> for SealError {
    fn from(e: rktio_sys::HostError) -> Self {
        SealError::Queue(BlkError::Host(e))
    }
}
