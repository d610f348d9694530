#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Differential test: the same random sequence of file operations on a kernel
//! ext4 directory and on our file system must give the same results, the same
//! data and the same errno values. At the end both trees must be identical and
//! `e2fsck -fn` must find our (unsealed) image clean.
mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use rktio_blk::MemQueue;
use rktio_fs::*;
use rustix::fs::{FallocateFlags, Mode, OFlags, SeekFrom};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const SLOTS: usize = 4;

/// What an operation returned, in a form both sides can produce.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Ok,
    Num(u64),
    Bytes(Vec<u8>),
    Stat {
        kind: u32,
        perm: u32,
        nlink: u64,
        size: Option<u64>,
    },
    Names(Vec<Vec<u8>>),
    Err(i32),
}

fn kerr(e: rustix::io::Errno) -> Out {
    Out::Err(e.raw_os_error())
}

fn ours<T>(r: FsResult<T>, f: impl FnOnce(T) -> Out) -> Out {
    match r {
        Ok(v) => f(v),
        Err(e) => {
            if e.errno == libc::EOPNOTSUPP || e.errno == libc::EIO || e.errno == libc::EUCLEAN {
                eprintln!("unexpected error from our FS: {e}");
            }
            Out::Err(e.errno)
        }
    }
}

fn stat_out(mode: u32, nlink: u64, size: u64) -> Out {
    let kind = mode & 0o170000;
    Out::Stat {
        kind,
        perm: mode & 0o7777,
        nlink,
        // Directory sizes depend on the allocation history of each implementation's
        // directory blocks; only compare them for other files.
        size: (kind != 0o040000).then_some(size),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        path: String,
        slot: usize,
        flags: u32,
        mode: u32,
    },
    Close(usize),
    Pwrite {
        slot: usize,
        off: u64,
        len: usize,
        seed: u64,
    },
    Write {
        slot: usize,
        len: usize,
        seed: u64,
    },
    Pread {
        slot: usize,
        off: u64,
        len: usize,
    },
    Read {
        slot: usize,
        len: usize,
    },
    Seek {
        slot: usize,
        off: i64,
        whence: u8,
    },
    Ftruncate {
        slot: usize,
        len: u64,
    },
    Fallocate {
        slot: usize,
        mode: u8,
        off: u64,
        len: u64,
    },
    Fsync(usize),
    Fstat(usize),
    Stat(String),
    Lstat(String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Rename(String, String),
    Link(String, String),
    Symlink(String, String),
    Readlink(String),
    Readdir(String),
    Chmod(String, u32),
}

const O_RD: u32 = 1;
const O_WR: u32 = 2;
const O_CREAT: u32 = 4;
const O_EXCL: u32 = 8;
const O_TRUNC: u32 = 16;
const O_APPEND: u32 = 32;
const O_DIR: u32 = 64;
const O_NOFOLLOW: u32 = 128;

fn random_path(r: &mut Rng) -> String {
    let dirs = ["", "d0/", "d1/", "d0/d1/", "d1/d0/", "n0/", "l0/", "nope/"];
    let names = ["n0", "n1", "n2", "n3", "d0", "d1", "l0", "l1"];
    let mut p = format!("{}{}", r.pick(&dirs), r.pick(&names));
    if r.below(25) == 0 {
        p.push('/');
    }
    p
}

fn random_op(r: &mut Rng) -> Op {
    let slot = r.below(SLOTS as u64) as usize;
    let big = |r: &mut Rng| {
        if r.below(20) == 0 {
            // Past 4 GiB: sparse, 64-bit offsets.
            (5 << 30) + r.below(1 << 20)
        } else {
            r.below(64 << 10)
        }
    };
    match r.below(100) {
        0..=11 => {
            let access = *r.pick(&[O_RD, O_WR, O_RD | O_WR, O_RD | O_WR]);
            let mut flags = access;
            for (bit, p) in [
                (O_CREAT, 2),
                (O_EXCL, 6),
                (O_TRUNC, 6),
                (O_APPEND, 6),
                (O_DIR, 10),
                (O_NOFOLLOW, 10),
            ] {
                if r.below(p) == 0 {
                    flags |= bit;
                }
            }
            if flags & O_CREAT != 0 {
                // O_CREAT|O_DIRECTORY is EINVAL on recent kernels: not interesting.
                flags &= !O_DIR;
            }
            Op::Open {
                path: random_path(r),
                slot,
                flags,
                mode: *r.pick(&[0o644, 0o600, 0o755, 0o4755]),
            }
        }
        12..=15 => Op::Close(slot),
        16..=27 => Op::Pwrite {
            slot,
            off: big(r),
            len: *r.pick(&[1, 100, 4096, 5000, 70000]),
            seed: r.next(),
        },
        28..=33 => Op::Write {
            slot,
            len: *r.pick(&[1, 10, 4096, 9000]),
            seed: r.next(),
        },
        34..=41 => Op::Pread {
            slot,
            off: big(r),
            len: *r.pick(&[1, 100, 4096, 20000]),
        },
        42..=44 => Op::Read {
            slot,
            len: *r.pick(&[7, 4096, 10000]),
        },
        45..=47 => Op::Seek {
            slot,
            off: r.below(20000) as i64 - 5000,
            whence: r.below(3) as u8,
        },
        48..=51 => Op::Ftruncate { slot, len: big(r) },
        52..=54 => Op::Fallocate {
            slot,
            mode: r.below(5) as u8,
            off: r.below(1 << 20),
            len: 1 + r.below(100_000),
        },
        55..=56 => Op::Fsync(slot),
        57..=59 => Op::Fstat(slot),
        60..=64 => Op::Stat(random_path(r)),
        65..=66 => Op::Lstat(random_path(r)),
        67..=71 => Op::Unlink(random_path(r)),
        72..=77 => Op::Mkdir(random_path(r)),
        78..=80 => Op::Rmdir(random_path(r)),
        81..=86 => Op::Rename(random_path(r), random_path(r)),
        87..=89 => Op::Link(random_path(r), random_path(r)),
        90..=92 => {
            // No target may climb above the root: the kernel side would leave the test tree.
            let targets = ["n0", "d0", "d0/n1", "d1/../n2", "l0", "nope", "l1/n0"];
            Op::Symlink(r.pick(&targets).to_string(), random_path(r))
        }
        93..=94 => Op::Readlink(random_path(r)),
        95..=97 => Op::Readdir(random_path(r)),
        _ => Op::Chmod(random_path(r), *r.pick(&[0o644, 0o600, 0o755, 0o1777])),
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

fn slot_fd(slots: &[Option<OwnedFd>], slot: usize) -> Option<&OwnedFd> {
    slots[slot].as_ref()
}

struct Kernel {
    root: PathBuf,
    slots: Vec<Option<OwnedFd>>,
}

impl Kernel {
    fn p(&self, rel: &str) -> PathBuf {
        // Keep a trailing slash: it changes the semantics.
        PathBuf::from(format!("{}/{}", self.root.display(), rel))
    }

    fn run(&mut self, op: &Op) -> Out {
        use rustix::fs as f;
        use rustix::io;
        match op {
            Op::Open {
                path,
                slot,
                flags,
                mode,
            } => {
                let mut o = match flags & 3 {
                    O_RD => OFlags::RDONLY,
                    O_WR => OFlags::WRONLY,
                    _ => OFlags::RDWR,
                };
                for (bit, of) in [
                    (O_CREAT, OFlags::CREATE),
                    (O_EXCL, OFlags::EXCL),
                    (O_TRUNC, OFlags::TRUNC),
                    (O_APPEND, OFlags::APPEND),
                    (O_DIR, OFlags::DIRECTORY),
                    (O_NOFOLLOW, OFlags::NOFOLLOW),
                ] {
                    if flags & bit != 0 {
                        o |= of;
                    }
                }
                if self.slots[*slot].is_some() {
                    return Out::Err(libc::EMFILE);
                }
                match f::open(
                    self.p(path),
                    o | OFlags::CLOEXEC,
                    Mode::from_raw_mode(*mode),
                ) {
                    Ok(fd) => {
                        self.slots[*slot] = Some(fd);
                        Out::Ok
                    }
                    Err(e) => kerr(e),
                }
            }
            Op::Close(slot) => match self.slots[*slot].take() {
                Some(_) => Out::Ok,
                None => Out::Err(libc::EBADF),
            },
            Op::Pwrite {
                slot,
                off,
                len,
                seed,
            } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => match io::pwrite(fd, &pattern(*seed, *len), *off) {
                    Ok(n) => Out::Num(n as u64),
                    Err(e) => kerr(e),
                },
            },
            Op::Write { slot, len, seed } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => match io::write(fd, &pattern(*seed, *len)) {
                    Ok(n) => Out::Num(n as u64),
                    Err(e) => kerr(e),
                },
            },
            Op::Pread { slot, off, len } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => {
                    let mut b = vec![0u8; *len];
                    match io::pread(fd, &mut b[..], *off) {
                        Ok(n) => Out::Bytes(b[..n].to_vec()),
                        Err(e) => kerr(e),
                    }
                }
            },
            Op::Read { slot, len } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => {
                    let mut b = vec![0u8; *len];
                    match io::read(fd, &mut b[..]) {
                        Ok(n) => Out::Bytes(b[..n].to_vec()),
                        Err(e) => kerr(e),
                    }
                }
            },
            Op::Seek { slot, off, whence } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => {
                    let pos = match whence {
                        0 => {
                            if *off < 0 {
                                return Out::Err(libc::EINVAL);
                            }
                            SeekFrom::Start(*off as u64)
                        }
                        1 => SeekFrom::Current(*off),
                        _ => SeekFrom::End(*off),
                    };
                    match f::seek(fd, pos) {
                        Ok(n) => Out::Num(n),
                        Err(e) => kerr(e),
                    }
                }
            },
            Op::Ftruncate { slot, len } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => f::ftruncate(fd, *len).map_or_else(kerr, |()| Out::Ok),
            },
            Op::Fallocate {
                slot,
                mode,
                off,
                len,
            } => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => {
                    let m = match mode {
                        0 => FallocateFlags::empty(),
                        1 => FallocateFlags::KEEP_SIZE,
                        2 => FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                        3 => FallocateFlags::ZERO_RANGE,
                        _ => FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE,
                    };
                    f::fallocate(fd, m, *off, *len).map_or_else(kerr, |()| Out::Ok)
                }
            },
            Op::Fsync(slot) => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => f::fsync(fd).map_or_else(kerr, |()| Out::Ok),
            },
            Op::Fstat(slot) => match slot_fd(&self.slots, *slot) {
                None => Out::Err(libc::EBADF),
                Some(fd) => f::fstat(fd)
                    .map_or_else(kerr, |s| stat_out(s.st_mode, s.st_nlink, s.st_size as u64)),
            },
            Op::Stat(p) => f::stat(self.p(p))
                .map_or_else(kerr, |s| stat_out(s.st_mode, s.st_nlink, s.st_size as u64)),
            Op::Lstat(p) => f::lstat(self.p(p))
                .map_or_else(kerr, |s| stat_out(s.st_mode, s.st_nlink, s.st_size as u64)),
            Op::Unlink(p) => f::unlink(self.p(p)).map_or_else(kerr, |()| Out::Ok),
            Op::Mkdir(p) => {
                f::mkdir(self.p(p), Mode::from_raw_mode(0o755)).map_or_else(kerr, |()| Out::Ok)
            }
            Op::Rmdir(p) => f::rmdir(self.p(p)).map_or_else(kerr, |()| Out::Ok),
            Op::Rename(a, b) => f::rename(self.p(a), self.p(b)).map_or_else(kerr, |()| Out::Ok),
            Op::Link(a, b) => f::link(self.p(a), self.p(b)).map_or_else(kerr, |()| Out::Ok),
            Op::Symlink(t, p) => f::symlink(t.as_str(), self.p(p)).map_or_else(kerr, |()| Out::Ok),
            Op::Readlink(p) => {
                f::readlink(self.p(p), Vec::new()).map_or_else(kerr, |s| Out::Bytes(s.into_bytes()))
            }
            Op::Readdir(p) => match std::fs::read_dir(self.p(p)) {
                Ok(it) => {
                    let mut v: Vec<Vec<u8>> = it
                        .map(|e| {
                            use std::os::unix::ffi::OsStrExt;
                            e.unwrap().file_name().as_bytes().to_vec()
                        })
                        .collect();
                    v.sort();
                    Out::Names(v)
                }
                Err(e) => Out::Err(e.raw_os_error().unwrap()),
            },
            Op::Chmod(p, m) => {
                f::chmod(self.p(p), Mode::from_raw_mode(*m)).map_or_else(kerr, |()| Out::Ok)
            }
        }
    }
}

struct Ours<'a> {
    fs: &'a Ext4Fs<MemQueue>,
    slots: Vec<Option<Arc<OpenFile>>>,
}

impl Ours<'_> {
    fn run(&mut self, op: &Op) -> Out {
        let fs = self.fs;
        let p = |s: &str| format!("/{s}").into_bytes();
        match op {
            Op::Open {
                path,
                slot,
                flags,
                mode,
            } => {
                if self.slots[*slot].is_some() {
                    return Out::Err(libc::EMFILE);
                }
                let o = OpenOptions {
                    read: flags & 3 != O_WR,
                    write: flags & 3 != O_RD,
                    create: flags & O_CREAT != 0,
                    exclusive: flags & O_EXCL != 0,
                    truncate: flags & O_TRUNC != 0,
                    append: flags & O_APPEND != 0,
                    directory: flags & O_DIR != 0,
                    nofollow: flags & O_NOFOLLOW != 0,
                    direct: false,
                    mode: *mode,
                };
                ours(fs.open(&p(path), &o), |f| {
                    self.slots[*slot] = Some(f);
                    Out::Ok
                })
            }
            Op::Close(slot) => match self.slots[*slot].take() {
                Some(f) => ours(fs.close(&f), |()| Out::Ok),
                None => Out::Err(libc::EBADF),
            },
            other => {
                let slot_of = |o: &Op| match o {
                    Op::Pwrite { slot, .. }
                    | Op::Write { slot, .. }
                    | Op::Pread { slot, .. }
                    | Op::Read { slot, .. }
                    | Op::Seek { slot, .. }
                    | Op::Ftruncate { slot, .. }
                    | Op::Fallocate { slot, .. } => Some(*slot),
                    Op::Fsync(s) | Op::Fstat(s) => Some(*s),
                    _ => None,
                };
                if let Some(s) = slot_of(other) {
                    let Some(f) = self.slots[s].clone() else {
                        return Out::Err(libc::EBADF);
                    };
                    return match other {
                        Op::Pwrite { off, len, seed, .. } => {
                            ours(fs.pwrite(&f, &pattern(*seed, *len), *off), |n| {
                                Out::Num(n as u64)
                            })
                        }
                        Op::Write { len, seed, .. } => {
                            ours(fs.write(&f, &pattern(*seed, *len)), |n| Out::Num(n as u64))
                        }
                        Op::Pread { off, len, .. } => {
                            let mut b = vec![0u8; *len];
                            ours(fs.pread(&f, &mut b, *off), |n| Out::Bytes(b[..n].to_vec()))
                        }
                        Op::Read { len, .. } => {
                            let mut b = vec![0u8; *len];
                            ours(fs.read(&f, &mut b), |n| Out::Bytes(b[..n].to_vec()))
                        }
                        Op::Seek { off, whence, .. } => {
                            let w = match whence {
                                0 => Whence::Set,
                                1 => Whence::Current,
                                _ => Whence::End,
                            };
                            ours(fs.seek(&f, *off, w), Out::Num)
                        }
                        Op::Ftruncate { len, .. } => ours(fs.ftruncate(&f, *len), |()| Out::Ok),
                        Op::Fallocate { mode, off, len, .. } => {
                            let m = match mode {
                                0 => Fallocate::Allocate,
                                1 => Fallocate::AllocateKeepSize,
                                2 => Fallocate::PunchHole,
                                3 => Fallocate::ZeroRange { keep_size: false },
                                _ => Fallocate::ZeroRange { keep_size: true },
                            };
                            ours(fs.fallocate(&f, m, *off, *len), |()| Out::Ok)
                        }
                        Op::Fsync(_) => ours(fs.fsync(&f), |()| Out::Ok),
                        Op::Fstat(_) => ours(fs.fstat(&f), |s| {
                            stat_out(s.mode, u64::from(s.nlink), s.size)
                        }),
                        _ => unreachable!(),
                    };
                }
                match other {
                    Op::Stat(x) => ours(fs.stat(&p(x)), |s| {
                        stat_out(s.mode, u64::from(s.nlink), s.size)
                    }),
                    Op::Lstat(x) => ours(fs.lstat(&p(x)), |s| {
                        stat_out(s.mode, u64::from(s.nlink), s.size)
                    }),
                    Op::Unlink(x) => ours(fs.unlink(&p(x)), |()| Out::Ok),
                    Op::Mkdir(x) => ours(fs.mkdir(&p(x), 0o755), |()| Out::Ok),
                    Op::Rmdir(x) => ours(fs.rmdir(&p(x)), |()| Out::Ok),
                    Op::Rename(a, b) => ours(fs.rename(&p(a), &p(b)), |()| Out::Ok),
                    Op::Link(a, b) => ours(fs.link(&p(a), &p(b)), |()| Out::Ok),
                    Op::Symlink(t, x) => ours(fs.symlink(t.as_bytes(), &p(x)), |()| Out::Ok),
                    Op::Readlink(x) => ours(fs.readlink(&p(x)), Out::Bytes),
                    Op::Readdir(x) => {
                        let o = OpenOptions {
                            directory: true,
                            ..Default::default()
                        };
                        let d = match fs.open(&p(x), &o) {
                            Ok(d) => d,
                            Err(e) => return Out::Err(e.errno),
                        };
                        let r = fs.readdir(&d);
                        fs.close(&d).unwrap();
                        ours(r, |v| {
                            let mut n: Vec<Vec<u8>> = v
                                .into_iter()
                                .map(|e| e.name)
                                .filter(|n| n != b"." && n != b"..")
                                .collect();
                            n.sort();
                            Out::Names(n)
                        })
                    }
                    Op::Chmod(x, m) => ours(fs.chmod(&p(x), *m), |()| Out::Ok),
                    _ => unreachable!(),
                }
            }
        }
    }
}

/// The byte ranges the random operations can touch; file contents are compared there.
const WINDOWS: [(u64, u64); 2] = [(0, 2 << 20), (5 << 30, (5 << 30) + (2 << 20))];

/// The whole tree as (path -> description), read through our FS.
fn our_tree(fs: &Ext4Fs<MemQueue>, dir: &str, out: &mut BTreeMap<String, String>) {
    let d = fs
        .open(
            format!("/{dir}").as_bytes(),
            &OpenOptions {
                directory: true,
                ..Default::default()
            },
        )
        .unwrap();
    for e in fs.readdir(&d).unwrap() {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let rel = format!("{dir}{}", String::from_utf8(e.name).unwrap());
        let st = fs.lstat(format!("/{rel}").as_bytes()).unwrap();
        let desc = match st.file_type() {
            FileType::Directory => {
                our_tree(fs, &format!("{rel}/"), out);
                format!("dir {:o} {}", st.mode & 0o7777, st.nlink)
            }
            FileType::Symlink => format!(
                "link {}",
                String::from_utf8(fs.readlink(format!("/{rel}").as_bytes()).unwrap()).unwrap()
            ),
            _ => {
                let f = fs
                    .open(format!("/{rel}").as_bytes(), &OpenOptions::default())
                    .unwrap();
                let mut h = 0xcbf2_9ce4_8422_2325u64;
                for (start, end) in WINDOWS {
                    let mut buf = vec![0u8; (end - start) as usize];
                    let n = fs.pread(&f, &mut buf, start).unwrap();
                    for &b in &buf[..n] {
                        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                    }
                }
                fs.close(&f).unwrap();
                format!("file {:o} {} {} {h:x}", st.mode & 0o7777, st.nlink, st.size)
            }
        };
        out.insert(rel, desc);
    }
    fs.close(&d).unwrap();
}

fn kernel_tree(root: &Path, dir: &str, out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for e in std::fs::read_dir(root.join(dir)).unwrap() {
        let e = e.unwrap();
        let rel = format!("{dir}{}", e.file_name().to_str().unwrap());
        let md = std::fs::symlink_metadata(root.join(&rel)).unwrap();
        let perm = md.permissions().mode() & 0o7777;
        let desc = if md.is_dir() {
            kernel_tree(root, &format!("{rel}/"), out);
            format!("dir {perm:o} {}", md.nlink())
        } else if md.file_type().is_symlink() {
            format!(
                "link {}",
                std::fs::read_link(root.join(&rel)).unwrap().display()
            )
        } else {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(root.join(&rel)).unwrap();
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for (start, end) in WINDOWS {
                let mut buf = vec![0u8; (end - start) as usize];
                let mut n = 0;
                while n < buf.len() {
                    let k = f.read_at(&mut buf[n..], start + n as u64).unwrap();
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                for &b in &buf[..n] {
                    h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
            format!("file {perm:o} {} {} {h:x}", md.nlink(), md.len())
        };
        out.insert(rel, desc);
    }
}

fn run_sequence(seed: u64, ops: usize, work: &Path) -> usize {
    let kroot = work.join(format!("kernel-{seed}"));
    std::fs::create_dir_all(&kroot).unwrap();
    let mut k = Kernel {
        root: kroot.clone(),
        slots: (0..SLOTS).map(|_| None).collect(),
    };
    let media = new_fs_disk(64);
    let fs = mount(&media);
    let mut o = Ours {
        fs: &fs,
        slots: (0..SLOTS).map(|_| None).collect(),
    };
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut history = Vec::new();
    let mut errors = 0;
    for i in 0..ops {
        let op = random_op(&mut r);
        let a = k.run(&op);
        let b = o.run(&op);
        let short = |x: &Out| {
            let s = format!("{x:?}");
            s.chars().take(200).collect::<String>()
        };
        history.push(format!("{i}: {op:?} -> {}", short(&a)));
        if matches!(a, Out::Err(_)) {
            errors += 1;
        }
        if std::env::var_os("RKTIO_DIFF_FSCK_EACH").is_some() {
            let img = work.join(format!("each-{seed}.img"));
            fs.export_snapshot(&img).unwrap();
            let (_, out) = rktio_fs::image::e2fsck(&img).unwrap();
            // Orphans (unlinked while open) are a legal state; look for other trouble.
            if out.contains("differences") || out.contains("count wrong") {
                let rel: Vec<_> = history
                    .iter()
                    .filter(|h| h.contains(&std::env::var("RKTIO_DIFF_GREP").unwrap_or_default()))
                    .cloned()
                    .collect();
                let all: Vec<_> = history
                    .iter()
                    .filter(|h| !h.contains("Err("))
                    .cloned()
                    .collect();
                panic!(
                    "seed {seed}: after op {i} {op:?}: e2fsck:\n{out}\n{}\nALL:\n{}",
                    rel.join("\n"),
                    all.join("\n")
                );
            }
        }
        if a != b {
            if let Ok(g) = std::env::var("RKTIO_DIFF_GREP") {
                for h in history.iter().filter(|h| h.contains(&g)) {
                    eprintln!("{h}");
                }
            }
            let tail: Vec<_> = history.iter().rev().take(25).rev().cloned().collect();
            panic!(
                "seed {seed}: op {i} differs\n  kernel: {}\n  ours:   {}\nlast operations:\n{}",
                short(&a),
                short(&b),
                tail.join("\n")
            );
        }
    }
    for s in 0..SLOTS {
        if let Some(f) = o.slots[s].take() {
            fs.close(&f).unwrap();
        }
        k.slots[s] = None;
    }
    let mut ot = BTreeMap::new();
    our_tree(&fs, "", &mut ot);
    ot.remove("lost+found");
    let mut kt = BTreeMap::new();
    kernel_tree(&kroot, "", &mut kt);
    if kt != ot {
        let tail: Vec<_> = history.iter().rev().take(60).rev().cloned().collect();
        panic!(
            "seed {seed}: final trees differ\n  kernel: {kt:?}\n  ours:   {ot:?}\nlast operations:\n{}",
            tail.join("\n")
        );
    }
    let mut disk = fs.unmount().unwrap();
    let (clean, out) = fsck(&mut disk, &work.join(format!("ours-{seed}.img")));
    assert!(clean, "seed {seed}: e2fsck -fn:\n{out}");
    std::fs::remove_file(work.join(format!("ours-{seed}.img"))).unwrap();
    std::fs::remove_dir_all(&kroot).unwrap();
    errors
}

#[test]
fn same_results_and_errnos_as_kernel_ext4() {
    let work = tempfile::Builder::new()
        .prefix("rktio-diff-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let sf = rustix::fs::statfs(work.path()).unwrap();
    assert_eq!(
        sf.f_type as u64, 0xEF53,
        "the kernel side of this test must be an ext4 directory; /var/tmp is not ext4"
    );
    let seqs: u64 = std::env::var("RKTIO_DIFF_SEQS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut errors = 0;
    let first: u64 = std::env::var("RKTIO_DIFF_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in first..first + seqs {
        errors += run_sequence(seed, 400, work.path());
    }
    // The sequences must exercise error paths, not only successes.
    assert!(errors > 100 * seqs as usize / 10, "only {errors} errors");
}
