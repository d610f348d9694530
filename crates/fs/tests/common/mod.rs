#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Helpers shared by the file-system tests.
use std::path::Path;

use rktio_blk::{BlockQueue, MemDisk, MemQueue};
use rktio_fs::{Ext4Fs, MountOptions, image};
use rktio_seal::{CreateOptions, KeySource, OpenOptions, SealedDisk};

pub fn key() -> KeySource {
    KeySource::Bytes([7u8; 32].into())
}

/// A sealed disk of `mib` MiB (logical) in RAM, with a fresh ext4 on it.
pub fn new_fs_disk(mib: u64) -> MemDisk {
    new_fs_disk_with(mib, &[])
}

/// Like [`new_fs_disk`], with extra `mkfs.ext4` arguments.
pub fn new_fs_disk_with(mib: u64, extra: &[&str]) -> MemDisk {
    let logical = mib * 256;
    let media = MemDisk::new(logical + logical / 8 + 512);
    let mut d =
        SealedDisk::create(media.queue(16).unwrap(), &key(), &CreateOptions::default()).unwrap();
    assert!(
        d.logical_blocks() >= logical,
        "{} < {logical}",
        d.logical_blocks()
    );
    image::format_with(&mut d, None, extra, &mut |_, _| {}).unwrap();
    media
}

pub fn open_disk(media: &MemDisk) -> SealedDisk<MemQueue> {
    SealedDisk::open(media.queue(16).unwrap(), &key(), &OpenOptions::default()).unwrap()
}

pub fn mount(media: &MemDisk) -> Ext4Fs<MemQueue> {
    Ext4Fs::mount(open_disk(media), MountOptions::default()).unwrap()
}

/// Unseals the disk to a plain file and runs `e2fsck -fn` on it.
pub fn fsck<Q: BlockQueue>(disk: &mut SealedDisk<Q>, plain: &Path) -> (bool, String) {
    image::export(disk, plain, &mut |_, _| {}).unwrap();
    image::e2fsck(plain).unwrap()
}
