//! Hostile ext4 metadata: a small ext4 image made by mkfs.ext4 (with files, a
//! symlink and a directory), bytes of its written blocks overwritten by the
//! fuzzer, sealed, then mounted and used through rkt-io's file system (walk and
//! read everything, create, write, rename, unlink, sync, unmount). Errors are
//! fine; a panic, a hang or a crash is a finding.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rktio_blk::MemDisk;
use rktio_fs::{Ext4Fs, FileSystem, MountOptions, OpenOptions};
use rktio_seal::{CreateOptions, KeySource, SealedDisk};

const BLOCKS: u64 = 256;

/// The plain base image and the indexes of its non-zero blocks (the metadata
/// and the few data blocks).
fn base() -> &'static (Vec<u8>, Vec<usize>) {
    static BASE: OnceLock<(Vec<u8>, Vec<usize>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
        std::fs::write(src.join("a.txt"), b"hello").expect("write");
        std::fs::write(src.join("sub/b.bin"), vec![7u8; 20_000]).expect("write");
        for i in 0..40 {
            std::fs::write(src.join(format!("sub/deeper/f{i}")), format!("{i}")).expect("write");
        }
        std::os::unix::fs::symlink("sub/b.bin", src.join("link")).expect("symlink");
        let img = dir.path().join("base.img");
        rktio_fs::image::mkfs(&img, BLOCKS * 4096, Some(&src)).expect("mkfs.ext4");
        let bytes = std::fs::read(&img).expect("read");
        let used = bytes
            .chunks(4096)
            .enumerate()
            .filter(|(_, b)| b.iter().any(|&x| x != 0))
            .map(|(i, _)| i)
            .collect();
        (bytes, used)
    })
}

/// Panics inside rsext4 on hostile metadata are contained by `Ext4Fs` (turned
/// into EIO, the file system stops). libfuzzer-sys aborts on every panic, so let
/// those through to our `catch_unwind`, and abort on any other panic: one in
/// rkt-io's own code is a finding.
fn contain_engine_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_engine = info
                .location()
                .is_some_and(|l| l.file().contains("rsext4-"));
            if !in_engine {
                abort_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    contain_engine_panics();
    let (plain, used) = base();
    let mut img = plain.clone();
    // [which written block u8][offset u16][len u8][bytes...] chunks.
    let mut rest = data;
    while rest.len() >= 4 {
        let block = used[usize::from(rest[0]) % used.len()];
        let off = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 4096;
        let len = usize::from(rest[3]).min(rest.len() - 4).min(4096 - off);
        img[block * 4096 + off..block * 4096 + off + len].copy_from_slice(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    let key = KeySource::Bytes([3u8; 32].into());
    let media = MemDisk::new(BLOCKS + BLOCKS / 10 + 80);
    let Ok(mut d) = SealedDisk::create(
        media.queue(8).expect("queue"),
        &key,
        &CreateOptions::default(),
    ) else {
        return;
    };
    for (i, b) in img.chunks(4096).enumerate() {
        if (i as u64) < d.logical_blocks() && b.iter().any(|&x| x != 0) {
            let block: &[u8; 4096] = b.try_into().expect("block");
            let _ = d.write(i as u64, block);
        }
    }
    let Ok(fs) = Ext4Fs::mount(
        d,
        MountOptions {
            cache_pages: 64,
            ..Default::default()
        },
    ) else {
        return;
    };
    let _ = fs.walk_tree(&mut |_, _| {});
    let _ = fs.stat(b"/link");
    let _ = fs.readlink(b"/link");
    if let Ok(root) = fs.open(
        b"/sub/deeper",
        &OpenOptions {
            directory: true,
            ..Default::default()
        },
    ) {
        let _ = fs.readdir(&root);
        let _ = fs.close(&root);
    }
    if let Ok(f) = fs.open(b"/sub/new", &OpenOptions::read_write_create(0o644)) {
        let _ = fs.pwrite(&f, &[1u8; 9000], 100);
        let mut buf = [0u8; 128];
        let _ = fs.pread(&f, &mut buf, 0);
        let _ = fs.ftruncate(&f, 50);
        let _ = fs.close(&f);
    }
    let _ = fs.mkdir(b"/m", 0o755);
    let _ = fs.rename(b"/a.txt", b"/m/a");
    let _ = fs.unlink(b"/sub/deeper/f3");
    let _ = fs.rmdir(b"/sub/deeper");
    let _ = fs.symlink(b"x", b"/s");
    let _ = fs.sync();
    let _ = fs.unmount();
});
