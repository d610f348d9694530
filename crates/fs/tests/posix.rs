#![allow(clippy::unwrap_used, clippy::expect_used)]
//! POSIX semantics of the file system on a sealed disk in RAM.
mod common;
use common::*;
use rktio_fs::*;

fn rw() -> OpenOptions {
    OpenOptions::read_write_create(0o644)
}

#[test]
fn smoke_roundtrip_and_fsck() {
    let media = new_fs_disk(32);
    let fs = mount(&media);
    fs.mkdir(b"/d", 0o755).unwrap();
    let f = fs.open(b"/d/a", &rw()).unwrap();
    assert_eq!(fs.write(&f, b"hello world").unwrap(), 11);
    assert_eq!(fs.pwrite(&f, b"!", 20).unwrap(), 1);
    let st = fs.fstat(&f).unwrap();
    assert_eq!(st.size, 21);
    assert_eq!(st.file_type(), FileType::Regular);
    let mut buf = [0u8; 32];
    assert_eq!(fs.pread(&f, &mut buf, 0).unwrap(), 21);
    assert_eq!(&buf[..11], b"hello world");
    assert_eq!(&buf[11..20], &[0u8; 9]);
    fs.fsync(&f).unwrap();
    fs.close(&f).unwrap();
    fs.symlink(b"d/a", b"/l").unwrap();
    assert_eq!(fs.readlink(b"/l").unwrap(), b"d/a");
    assert_eq!(fs.stat(b"/l").unwrap().size, 21);
    let dir = fs
        .open(
            b"/d",
            &OpenOptions {
                directory: true,
                ..Default::default()
            },
        )
        .unwrap();
    let names: Vec<_> = fs
        .readdir(&dir)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"a".to_vec()), "{names:?}");
    fs.close(&dir).unwrap();
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (clean, out) = fsck(&mut disk, &tmp.path().join("plain.img"));
    assert!(clean, "{out}");
    drop(disk);
    let fs = mount(&media);
    let f = fs.open(b"/l", &OpenOptions::default()).unwrap();
    let mut buf = [0u8; 11];
    assert_eq!(fs.read(&f, &mut buf).unwrap(), 11);
    assert_eq!(&buf, b"hello world");
}

/// A file with more extents than the inode holds (an extent tree with index
/// blocks), also past 4 GiB; removing it must free every block.
#[test]
fn fragmented_big_file_unlink_leaves_fs_clean() {
    let media = new_fs_disk(32);
    let fs = mount(&media);
    let tmp = tempfile::tempdir().unwrap();
    for (case, trunc) in [("unlink", false), ("truncate", true)] {
        let f = fs.open(b"/frag", &rw()).unwrap();
        for i in 0..40u64 {
            fs.pwrite(&f, &[i as u8 + 1; 100], i * 3 * 4096).unwrap();
        }
        fs.pwrite(&f, b"far", 5 << 30).unwrap();
        let mut b = [0u8; 3];
        fs.pread(&f, &mut b, 5 << 30).unwrap();
        assert_eq!(&b, b"far");
        assert_eq!(fs.fstat(&f).unwrap().size, (5 << 30) + 3);
        if trunc {
            fs.ftruncate(&f, 0).unwrap();
        }
        fs.close(&f).unwrap();
        fs.unlink(b"/frag").unwrap();
        let img = tmp.path().join("snap.img");
        fs.export_snapshot(&img).unwrap();
        let (clean, out) = image::e2fsck(&img).unwrap();
        assert!(clean, "{case}: {out}");
    }
}

/// Blocks preallocated past the end of file (fallocate KEEP_SIZE) must be freed
/// by truncate and by the removal of the file.
#[test]
fn preallocated_tail_is_freed() {
    let media = new_fs_disk(32);
    let fs = mount(&media);
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("snap.img");
    for case in [
        "unlink",
        "truncate",
        "truncate-up",
        "open-unlink-close",
        "empty-unlink",
    ] {
        let f = fs.open(b"/p", &rw()).unwrap();
        if !case.starts_with("empty") {
            fs.pwrite(&f, &[1; 100], 0).unwrap();
        }
        fs.fallocate(&f, Fallocate::AllocateKeepSize, 940460, 2048)
            .unwrap();
        let size = if case.starts_with("empty") { 0 } else { 100 };
        assert_eq!(fs.fstat(&f).unwrap().size, size);
        fs.export_snapshot(&img).unwrap();
        let (clean, out) = image::e2fsck(&img).unwrap();
        assert!(clean, "{case}, after fallocate: {out}");
        match case {
            "truncate" => fs.ftruncate(&f, 10).unwrap(),
            "truncate-up" => fs.ftruncate(&f, 2 << 20).unwrap(),
            _ => {}
        }
        if case == "open-unlink-close" {
            fs.unlink(b"/p").unwrap();
            fs.close(&f).unwrap();
        } else {
            fs.close(&f).unwrap();
            fs.export_snapshot(&img).unwrap();
            let (clean, out) = image::e2fsck(&img).unwrap();
            assert!(clean, "{case}, before unlink: {out}");
            fs.unlink(b"/p").unwrap();
        }
        fs.export_snapshot(&img).unwrap();
        let (clean, out) = image::e2fsck(&img).unwrap();
        assert!(clean, "{case}: {out}");
    }
}
