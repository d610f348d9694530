//! The mount table as the program reads it: `/proc/mounts`, `/proc/self/mounts`,
//! `/proc/self/mountinfo` (and `/etc/mtab`, a link to the first) list the host's
//! mounts followed by the sealed ones, as the kernel would if each image were
//! mounted at its path. glibc's pathconf(_PC_LINK_MAX) looks the file system up
//! there (ext4: 65000 links), and df, findmnt and getmntent(3) find the mounts.
//!
//! The table goes to the program in an anonymous memory file on the host: it
//! holds mount points and image names, which the host already knows from the
//! configuration, and nothing of a program's data.

use std::os::fd::RawFd;

use crate::{Runtime, SysResult};

/// Which table a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `/proc/mounts` format (fstab's six fields).
    Mounts,
    /// `/proc/<pid>/mountinfo` format.
    MountInfo,
}

/// The table `abs` (absolute, normalised) names, if it is one of the mount
/// tables of this process.
pub(crate) fn table_of(abs: &[u8]) -> Option<Table> {
    if abs == b"/proc/mounts" {
        return Some(Table::Mounts);
    }
    if abs == b"/etc/mtab" {
        // Debian's /etc/mtab is a link to ../proc/self/mounts; a real file
        // there is the host's to answer.
        let target = std::fs::read_link("/etc/mtab").ok()?;
        let t = target.as_os_str().as_encoded_bytes();
        return (t.ends_with(b"proc/self/mounts") || t.ends_with(b"proc/mounts"))
            .then_some(Table::Mounts);
    }
    let rest = abs.strip_prefix(b"/proc/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (who, file) = (&rest[..slash], &rest[slash + 1..]);
    let ours =
        who == b"self" || who == b"thread-self" || who == std::process::id().to_string().as_bytes();
    if !ours {
        return None;
    }
    match file {
        b"mounts" => Some(Table::Mounts),
        b"mountinfo" => Some(Table::MountInfo),
        _ => None,
    }
}

/// A mount point or source as the kernel escapes it in these tables: space,
/// tab, newline and backslash as three octal digits.
fn escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// The (major, minor) pair of a device number, as glibc's gnu_dev_major/minor.
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// The id and mount point of the host's root mount in a mountinfo table (the
/// parent of every sealed mount), 1 if none is found.
fn root_id(host: &[u8]) -> u64 {
    host.split(|&b| b == b'\n')
        .rev()
        .find_map(|line| {
            let mut f = line.split(|&b| b == b' ');
            let id = f.next()?;
            let _parent = f.next()?;
            let _dev = f.next()?;
            let _root = f.next()?;
            let point = f.next()?;
            (point == b"/")
                .then(|| std::str::from_utf8(id).ok()?.parse().ok())
                .flatten()
        })
        .unwrap_or(1)
}

impl Runtime {
    /// The bytes of `table`: the host's lines, then one per sealed mount.
    pub(crate) fn mount_table(&self, table: Table) -> Vec<u8> {
        let host_path = match table {
            Table::Mounts => "/proc/self/mounts",
            Table::MountInfo => "/proc/self/mountinfo",
        };
        let mut out = std::fs::read(host_path).unwrap_or_default();
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        let parent = root_id(&out);
        // Shortest mount point first, so a nested mount comes after (and
        // shadows) its parent, as in the kernel's table.
        let mut order: Vec<usize> = (0..self.mounts.len()).collect();
        order.sort_by_key(|&i| self.mounts[i].at.len());
        for (n, &i) in order.iter().enumerate() {
            let m = &self.mounts[i];
            let opts: &[u8] = if m.read_only {
                b"ro,relatime"
            } else {
                b"rw,relatime"
            };
            let image = m.cfg.image.as_os_str().as_encoded_bytes();
            match table {
                Table::Mounts => {
                    escaped(&mut out, image);
                    out.push(b' ');
                    escaped(&mut out, &m.at);
                    out.extend_from_slice(b" ext4 ");
                    out.extend_from_slice(opts);
                    out.extend_from_slice(b" 0 0\n");
                }
                Table::MountInfo => {
                    let (major, minor) = major_minor(m.dev);
                    out.extend_from_slice(
                        format!("{} {parent} {major}:{minor} / ", 100_000 + n).as_bytes(),
                    );
                    escaped(&mut out, &m.at);
                    out.push(b' ');
                    out.extend_from_slice(opts);
                    out.extend_from_slice(b" - ext4 ");
                    escaped(&mut out, image);
                    out.push(b' ');
                    out.extend_from_slice(&opts[..2]);
                    out.push(b'\n');
                }
            }
        }
        out
    }

    /// open(2) of a mount table: a host memory file holding it.
    pub(crate) fn open_mount_table(&self, table: Table, flags: i32) -> SysResult<RawFd> {
        let bytes = self.mount_table(table);
        rktio_sys::memory_file("rktio-mounts", &bytes, flags & libc::O_CLOEXEC != 0)
            .map_err(|e| rktio_sys::errno_of(&e.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tables_of_this_process_only() {
        assert_eq!(table_of(b"/proc/mounts"), Some(Table::Mounts));
        assert_eq!(table_of(b"/proc/self/mounts"), Some(Table::Mounts));
        assert_eq!(
            table_of(b"/proc/thread-self/mountinfo"),
            Some(Table::MountInfo)
        );
        let own = format!("/proc/{}/mountinfo", std::process::id());
        assert_eq!(table_of(own.as_bytes()), Some(Table::MountInfo));
        assert_eq!(table_of(b"/proc/1/mounts"), None);
        assert_eq!(table_of(b"/proc/self/status"), None);
        assert_eq!(table_of(b"/proc/self/mounts/x"), None);
    }

    #[test]
    fn escapes_as_the_kernel_does() {
        let mut out = Vec::new();
        escaped(&mut out, b"/a b\\c\td\ne");
        assert_eq!(out, b"/a\\040b\\134c\\011d\\012e");
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        assert_eq!(major_minor(libc::makedev(8, 1)), (8, 1));
        assert_eq!(
            major_minor(libc::makedev(4095, 1_000_000)),
            (4095, 1_000_000)
        );
        let dev = 0x726b_0003;
        let (ma, mi) = major_minor(dev);
        assert_eq!(libc::makedev(ma as u32, mi as u32), dev);
    }

    #[test]
    fn the_root_mount_is_the_parent() {
        let t = b"22 1 0:21 / /proc rw - proc proc rw\n1 0 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert_eq!(root_id(t), 1);
        assert_eq!(root_id(b"garbage\n\n"), 1);
        let t = b"30 20 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert_eq!(root_id(t), 30);
    }
}
