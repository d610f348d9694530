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
    let dir = fs.open(b"/d", &OpenOptions { directory: true, ..Default::default() }).unwrap();
    let names: Vec<_> = fs.readdir(&dir).unwrap().into_iter().map(|e| e.name).collect();
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
