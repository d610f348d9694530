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

#[test]
fn open_flags_links_metadata_locks_statfs() {
    let media = new_fs_disk(32);
    let fs = mount(&media);
    let excl = OpenOptions {
        exclusive: true,
        ..rw()
    };
    let f = fs.open(b"/x", &excl).unwrap();
    assert_eq!(fs.open(b"/x", &excl).unwrap_err().errno, errno::EEXIST);
    fs.write(&f, b"0123456789").unwrap();
    // O_APPEND writes at the end whatever the offset.
    let a = fs
        .open(
            b"/x",
            &OpenOptions {
                write: true,
                append: true,
                ..Default::default()
            },
        )
        .unwrap();
    fs.pwrite(&a, b"AB", 0).unwrap();
    assert_eq!(fs.fstat(&a).unwrap().size, 12);
    fs.close(&a).unwrap();
    // O_TRUNC.
    let t = fs
        .open(
            b"/x",
            &OpenOptions {
                write: true,
                truncate: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(fs.fstat(&t).unwrap().size, 0);
    fs.close(&t).unwrap();
    // Hard links and nlink; unlink keeps an open file alive until close.
    fs.pwrite(&f, b"still here", 0).unwrap();
    fs.link(b"/x", b"/y").unwrap();
    assert_eq!(fs.stat(b"/y").unwrap().nlink, 2);
    fs.unlink(b"/x").unwrap();
    fs.unlink(b"/y").unwrap();
    assert_eq!(fs.stat(b"/x").unwrap_err().errno, errno::ENOENT);
    assert_eq!(fs.fstat(&f).unwrap().nlink, 0);
    let mut buf = [0u8; 10];
    assert_eq!(fs.pread(&f, &mut buf, 0).unwrap(), 10);
    assert_eq!(&buf, b"still here");
    let free_before = fs.statfs().unwrap().free_files;
    fs.close(&f).unwrap();
    assert_eq!(fs.statfs().unwrap().free_files, free_before + 1);
    // chmod, chown, utimens, timestamps.
    let g = fs.open(b"/g", &rw()).unwrap();
    fs.chmod(b"/g", 0o600).unwrap();
    fs.chown(b"/g", Some(1000), None, true).unwrap();
    let st = fs.stat(b"/g").unwrap();
    assert_eq!((st.mode & 0o7777, st.uid, st.gid), (0o600, 1000, 0));
    let when = Timespec {
        sec: 1_000_000_000,
        nsec: 0,
    };
    fs.utimens(b"/g", SetTime::At(when), SetTime::Omit, true)
        .unwrap();
    let st = fs.stat(b"/g").unwrap();
    assert_eq!(st.atime.sec, 1_000_000_000);
    assert!(st.mtime.sec > 1_700_000_000, "{st:?}");
    fs.utimens(b"/g", SetTime::Omit, SetTime::At(when), true)
        .unwrap();
    assert_eq!(fs.stat(b"/g").unwrap().mtime.sec, 1_000_000_000);
    fs.write(&g, b"x").unwrap();
    assert!(fs.fstat(&g).unwrap().mtime.sec > 1_700_000_000);
    // Record locks through the VFS, as SQLite takes them.
    let lk = |kind, owner| RecordLock {
        kind,
        start: 0x4000_0000,
        end: Some(0x4000_0001),
        owner,
    };
    fs.setlk(&g, &lk(LockKind::Write, 1), false).unwrap();
    assert_eq!(
        fs.setlk(&g, &lk(LockKind::Read, 2), false)
            .unwrap_err()
            .errno,
        errno::EAGAIN
    );
    assert_eq!(
        fs.getlk(&g, &lk(LockKind::Read, 2)).unwrap().unwrap().owner,
        1
    );
    fs.unlock_all(&g, 1);
    fs.setlk(&g, &lk(LockKind::Read, 2), false).unwrap();
    fs.close(&g).unwrap();
    // Directories.
    fs.mkdir(b"/d", 0o755).unwrap();
    fs.mkdir(b"/d/e", 0o700).unwrap();
    assert_eq!(fs.stat(b"/d").unwrap().nlink, 3);
    assert_eq!(fs.rmdir(b"/d").unwrap_err().errno, errno::ENOTEMPTY);
    assert_eq!(
        fs.rename(b"/d", b"/d/e/f").unwrap_err().errno,
        errno::EINVAL
    );
    fs.rmdir(b"/d/e").unwrap();
    fs.rmdir(b"/d").unwrap();
    let s = fs.statfs().unwrap();
    assert_eq!(s.block_size, 4096);
    assert!(s.free_blocks > 0 && s.free_blocks < s.blocks);
    fs.unmount().unwrap();
}

/// 100,000 entries in one directory (an htree): create, look up, list, remove.
#[test]
fn directory_with_100k_entries() {
    // Default inode ratio (one per 16 KiB): 2 GiB gives 131k inodes.
    let media = new_fs_disk(2048);
    let fs = mount(&media);
    fs.mkdir(b"/big", 0o755).unwrap();
    let n = 100_000;
    for i in 0..n {
        let f = fs
            .open(format!("/big/entry-{i:06}").as_bytes(), &rw())
            .unwrap();
        fs.close(&f).unwrap();
    }
    for i in (0..n).step_by(997) {
        assert!(fs.stat(format!("/big/entry-{i:06}").as_bytes()).is_ok());
    }
    let d = fs
        .open(
            b"/big",
            &OpenOptions {
                directory: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut names: Vec<Vec<u8>> = fs
        .readdir(&d)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != b"." && n != b"..")
        .collect();
    fs.close(&d).unwrap();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    for i in (0..n).step_by(2) {
        fs.unlink(format!("/big/entry-{i:06}").as_bytes()).unwrap();
    }
    assert_eq!(
        fs.stat(b"/big/entry-000000").unwrap_err().errno,
        errno::ENOENT
    );
    assert!(fs.stat(b"/big/entry-000001").is_ok());
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (clean, out) = fsck(&mut disk, &tmp.path().join("p.img"));
    assert!(clean, "{out}");
}

/// Several threads at once: each writes and reads back its own files, and all
/// share one directory; nothing is lost or mixed up, and the image stays clean.
#[test]
fn threads_share_the_file_system() {
    let media = new_fs_disk(64);
    let fs = std::sync::Arc::new(mount(&media));
    fs.mkdir(b"/shared", 0o755).unwrap();
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let path = format!("/shared/t{t}-{i}");
                    let f = fs.open(path.as_bytes(), &rw()).unwrap();
                    let data = vec![t.wrapping_mul(31).wrapping_add(i as u8); 3000 + i as usize];
                    fs.pwrite(&f, &data, u64::from(i) * 100).unwrap();
                    if i % 10 == 0 {
                        fs.fsync(&f).unwrap();
                    }
                    let mut back = vec![0u8; data.len()];
                    fs.pread(&f, &mut back, u64::from(i) * 100).unwrap();
                    assert!(back == data, "thread {t} file {i}");
                    fs.close(&f).unwrap();
                    if i % 3 == 0 {
                        fs.unlink(path.as_bytes()).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let d = fs
        .open(
            b"/shared",
            &OpenOptions {
                directory: true,
                ..Default::default()
            },
        )
        .unwrap();
    let count = fs.readdir(&d).unwrap().len() - 2;
    fs.close(&d).unwrap();
    assert_eq!(count, 4 * (50 - 17));
    let fs = std::sync::Arc::try_unwrap(fs).unwrap();
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (clean, out) = fsck(&mut disk, &tmp.path().join("p.img"));
    assert!(clean, "{out}");
}

/// An image made elsewhere with ext4's journal (mkfs.ext4 default) mounts,
/// takes writes, survives a remount and stays e2fsck-clean.
#[test]
fn image_with_a_journal_works() {
    let media = new_fs_disk_with(64, &["-O", "has_journal"]);
    let fs = mount(&media);
    let f = fs.open(b"/j", &rw()).unwrap();
    fs.pwrite(&f, &[9u8; 100_000], 0).unwrap();
    fs.fsync(&f).unwrap();
    fs.close(&f).unwrap();
    fs.mkdir(b"/dir", 0o755).unwrap();
    fs.rename(b"/j", b"/dir/j").unwrap();
    drop(fs.unmount().unwrap());
    let fs = mount(&media);
    let f = fs.open(b"/dir/j", &OpenOptions::default()).unwrap();
    let mut b = vec![0u8; 100_000];
    assert_eq!(fs.pread(&f, &mut b, 0).unwrap(), 100_000);
    assert!(b.iter().all(|&x| x == 9));
    fs.close(&f).unwrap();
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("j.img");
    let (clean, out) = fsck(&mut disk, &img);
    assert!(clean, "{out}");
    let dump = std::process::Command::new("dumpe2fs")
        .args(["-h"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).contains("has_journal"));
}

#[test]
fn fallocate_modes() {
    let media = new_fs_disk(32);
    let fs = mount(&media);
    let f = fs.open(b"/z", &rw()).unwrap();
    fs.pwrite(&f, &[7u8; 40_000], 0).unwrap();
    fs.fallocate(&f, Fallocate::ZeroRange { keep_size: true }, 5000, 10_000)
        .unwrap();
    fs.fallocate(&f, Fallocate::PunchHole, 20_000, 9000)
        .unwrap();
    let mut b = vec![0u8; 40_000];
    assert_eq!(fs.pread(&f, &mut b, 0).unwrap(), 40_000);
    for (i, &x) in b.iter().enumerate() {
        let zero = (5000..15_000).contains(&i) || (20_000..29_000).contains(&i);
        assert_eq!(x, if zero { 0 } else { 7 }, "byte {i}");
    }
    fs.fallocate(&f, Fallocate::ZeroRange { keep_size: false }, 50_000, 100)
        .unwrap();
    assert_eq!(fs.fstat(&f).unwrap().size, 50_100);
    fs.fallocate(&f, Fallocate::Allocate, 60_000, 4096).unwrap();
    assert_eq!(fs.fstat(&f).unwrap().size, 64_096);
    assert_eq!(
        fs.fallocate(&f, Fallocate::Allocate, 0, 0)
            .unwrap_err()
            .errno,
        errno::EINVAL
    );
    fs.close(&f).unwrap();
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (clean, out) = fsck(&mut disk, &tmp.path().join("p.img"));
    assert!(clean, "{out}");
}

/// O_DIRECT writes reach the sealed disk at once, so no dirty page shows the
/// copy-on-write room they use: the file system must still commit before the
/// room runs out, not fail with ENOSPC (fio's O_DIRECT randrw did, on a 2 GiB file).
#[test]
fn o_direct_random_writes_commit_before_copy_on_write_room_runs_out() {
    let media = new_fs_disk(64);
    let fs = mount(&media);
    let f = fs.open(b"/big", &rw()).unwrap();
    // Most of the file system, so the file has many more blocks than the sealed
    // disk has spare room for between commits.
    let blocks = 14336u64; // 56 MiB
    let mut block = vec![0u8; 4096];
    for b in 0..blocks {
        block[..8].copy_from_slice(&b.to_le_bytes());
        fs.pwrite(&f, &block, b * 4096).unwrap();
    }
    fs.fsync(&f).unwrap();
    fs.close(&f).unwrap();
    let room = fs.sealed_info().free_blocks;
    assert!(room < blocks / 2, "room {room}");
    let direct = OpenOptions {
        direct: true,
        ..OpenOptions::read_write_create(0o644)
    };
    let f = fs.open(b"/big", &direct).unwrap();
    // Several times the room, at pseudo-random blocks, each tagged with its round.
    let writes = 4 * room;
    let mut x = 12345u64;
    let mut last = std::collections::HashMap::new();
    for i in 0..writes {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = (x >> 33) % blocks;
        block[..8].copy_from_slice(&b.to_le_bytes());
        block[8..16].copy_from_slice(&i.to_le_bytes());
        fs.pwrite(&f, &block, b * 4096)
            .unwrap_or_else(|e| panic!("write {i} of {writes} (room {room}): {e}"));
        last.insert(b, i);
    }
    fs.fsync(&f).unwrap();
    fs.close(&f).unwrap();
    drop(fs.unmount().unwrap());
    let fs = mount(&media);
    let f = fs.open(b"/big", &OpenOptions::default()).unwrap();
    for (b, i) in last.iter().take(500) {
        fs.pread(&f, &mut block, b * 4096).unwrap();
        assert_eq!(u64::from_le_bytes(block[..8].try_into().unwrap()), *b);
        assert_eq!(u64::from_le_bytes(block[8..16].try_into().unwrap()), *i);
    }
}

/// Four threads write and fsync at once (their fsyncs wait for the sealed
/// disk's flush outside the engine's lock, so others write meanwhile and share
/// the next commit). Every fsync returns, and after the process "dies" without
/// unmounting, everything fsynced is on the image.
#[test]
fn concurrent_fsyncs_all_land() {
    let media = new_fs_disk(64);
    let fs = std::sync::Arc::new(mount(&media));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let path = format!("/t{t}");
                let f = fs.open(path.as_bytes(), &rw()).unwrap();
                for i in 0..100u64 {
                    fs.pwrite(&f, &[t ^ (i as u8); 4096], i * 4096).unwrap();
                    fs.fsync(&f).unwrap();
                }
                fs.close(&f).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // No unmount: the image holds what the fsyncs made durable, nothing more.
    std::mem::forget(fs);
    let fs = mount(&media);
    for t in 0..4u8 {
        let f = fs
            .open(format!("/t{t}").as_bytes(), &OpenOptions::default())
            .unwrap();
        let mut back = vec![0u8; 4096];
        for i in 0..100u64 {
            fs.pread(&f, &mut back, i * 4096).unwrap();
            assert!(
                back.iter().all(|&b| b == t ^ (i as u8)),
                "thread {t} block {i}"
            );
        }
        fs.close(&f).unwrap();
    }
    let mut disk = fs.unmount().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (clean, out) = fsck(&mut disk, &tmp.path().join("p.img"));
    assert!(clean, "{out}");
}
