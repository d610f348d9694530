//! The file-system side of `rktio disk`: format, check, export, import, ls, cat.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rktio_blk::BlockQueue;
use rktio_fs::{Ext4Fs, FileSystem, FileType, MountOptions, OpenOptions, image};
use rktio_seal::{BLOCK_SIZE, SealedDisk};

type Error = Box<dyn std::error::Error>;
type Disk = SealedDisk<Box<dyn BlockQueue>>;

fn bar(total: u64, msg: &'static str, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

/// Bytes of regular files below `dir` (for a default image size).
pub fn dir_size(dir: &Path) -> Result<u64, Error> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !md.is_dir() {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e?;
            let md = e.metadata()?;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.len().div_ceil(4096) * 4096 + 256;
            }
        }
    }
    Ok(total)
}

/// Makes ext4 (with `mkfs.ext4`, from `from` if given) on a fresh sealed disk.
pub fn format(disk: &mut Disk, from: Option<&Path>) -> Result<(), Error> {
    let spin = crate::disk::spinner(if from.is_some() {
        "building ext4 from the directory (mkfs.ext4 -d)"
    } else {
        "making ext4 (mkfs.ext4)"
    });
    let mut b: Option<ProgressBar> = None;
    let r = image::format(disk, from, &mut |done, total| {
        let p = b.get_or_insert_with(|| {
            spin.finish_and_clear();
            bar(total, "sealing", "blocks")
        });
        p.set_position(done);
    });
    spin.finish_and_clear();
    if let Some(b) = b {
        b.finish_and_clear();
    }
    r?;
    Ok(())
}

/// Unseals the image to `out`.
pub fn export(disk: &mut Disk, out: &Path) -> Result<(), Error> {
    let b = bar(disk.logical_blocks(), "unsealing", "blocks");
    let n = image::export(disk, out, &mut |d, _| b.set_position(d))?;
    b.finish_and_clear();
    println!(
        "wrote plain ext4 image {} ({} bytes, {} non-zero blocks; it holds plaintext)",
        out.display(),
        disk.logical_blocks() * BLOCK_SIZE as u64,
        n
    );
    Ok(())
}

/// Seals a plain image into a fresh sealed disk.
pub fn import(plain: &Path, disk: &mut Disk) -> Result<(), Error> {
    let b = bar(0, "sealing", "blocks");
    let n = image::import(plain, disk, &mut |d, t| {
        b.set_length(t);
        b.set_position(d);
    })?;
    b.finish_and_clear();
    println!("{n} non-zero blocks sealed");
    Ok(())
}

pub fn mount_ro(disk: Disk) -> Result<Ext4Fs<Box<dyn BlockQueue>>, Error> {
    Ok(rktio_fs::mount::mount_disk(
        disk,
        MountOptions {
            read_only: true,
            ..Default::default()
        },
        None,
    )
    .map_err(|e| match e {
        rktio_fs::mount::MountError::Fs(e) => {
            format!("no usable ext4 file system on the image: {}", e.detail)
        }
        e => e.to_string(),
    })?)
}

/// File-system check: read everything through our ext4, then `e2fsck -fn` on an
/// unsealed temporary copy.
pub fn check(image_path: &Path, disk: Disk) -> Result<(), Error> {
    let fs = mount_ro(disk)?;
    let spin = ProgressBar::new_spinner();
    spin.enable_steady_tick(std::time::Duration::from_millis(100));
    let (files, bytes) = fs
        .walk_tree(&mut |f, b| spin.set_message(format!("reading files: {f} files, {b} bytes")))
        .map_err(|e| format!("file system check failed: {e}"))?;
    spin.finish_and_clear();
    println!(
        "file system: {files} files and directories, {bytes} bytes read back and authenticated"
    );
    let mut disk = fs.unmount()?;
    let dir = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::Builder::new()
        .prefix("rktio-check-")
        .tempfile_in(&dir)?;
    let b = bar(disk.logical_blocks(), "unsealing for e2fsck", "blocks");
    image::export(&mut disk, tmp.path(), &mut |d, _| b.set_position(d))?;
    b.finish_and_clear();
    let (clean, out) = image::e2fsck(tmp.path())?;
    if !clean {
        return Err(format!(
            "e2fsck -fn found problems in {}:\n{out}",
            image_path.display()
        )
        .into());
    }
    let summary = out
        .lines()
        .find(|l| l.contains("files") && l.contains("blocks"))
        .unwrap_or("clean");
    println!("e2fsck -fn: clean ({})", summary.trim());
    Ok(())
}

fn kind(t: FileType) -> char {
    match t {
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        _ => '-',
    }
}

fn perms(mode: u32) -> String {
    let mut s = String::new();
    for shift in [6, 3, 0] {
        let m = (mode >> shift) & 7;
        s.push(if m & 4 != 0 { 'r' } else { '-' });
        s.push(if m & 2 != 0 { 'w' } else { '-' });
        s.push(if m & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `ls -l` of a directory.
pub fn ls(disk: Disk, path: &str) -> Result<(), Error> {
    let fs = mount_ro(disk)?;
    let p = path.as_bytes();
    let st = fs.stat(p).map_err(|e| format!("{path}: {}", e.detail))?;
    let entries = if st.file_type() == FileType::Directory {
        let d = fs
            .open(
                p,
                &OpenOptions {
                    directory: true,
                    ..Default::default()
                },
            )
            .map_err(|e| format!("{path}: {}", e.detail))?;
        let mut v = fs
            .readdir(&d)
            .map_err(|e| format!("{path}: {}", e.detail))?;
        fs.close(&d)?;
        v.retain(|e| e.name != b"." && e.name != b"..");
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.into_iter()
            .map(|e| {
                let full = format!(
                    "{}/{}",
                    path.trim_end_matches('/'),
                    String::from_utf8_lossy(&e.name)
                );
                (String::from_utf8_lossy(&e.name).into_owned(), full)
            })
            .collect()
    } else {
        vec![(path.to_string(), path.to_string())]
    };
    let mut out = std::io::stdout().lock();
    for (name, full) in entries {
        let st = fs
            .lstat(full.as_bytes())
            .map_err(|e| format!("{full}: {}", e.detail))?;
        let link = if st.file_type() == FileType::Symlink {
            let t = fs.readlink(full.as_bytes()).unwrap_or_default();
            format!(" -> {}", String::from_utf8_lossy(&t))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}{} {:>3} {:>5} {:>5} {:>12} {name}{link}",
            kind(st.file_type()),
            perms(st.mode),
            st.nlink,
            st.uid,
            st.gid,
            st.size
        )?;
    }
    Ok(())
}

/// Copies a file to stdout.
pub fn cat(disk: Disk, path: &str) -> Result<(), Error> {
    let fs = mount_ro(disk)?;
    let f = fs
        .open(path.as_bytes(), &OpenOptions::default())
        .map_err(|e| format!("{path}: {}", e.detail))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut out = std::io::stdout().lock();
    loop {
        let n = fs
            .read(&f, &mut buf)
            .map_err(|e| format!("{path}: {}", e.detail))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    Ok(())
}
