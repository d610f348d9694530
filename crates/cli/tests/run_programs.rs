//! Unmodified programs from Debian run with `rktio run`: their files on a sealed
//! mount. They need sqlite3 and fio (`.ci/run` installs them); a missing one
//! fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;
use common::*;

const CANARY: &str = "RKTIO-SQL-CANARY-7d41";

fn image_has(d: &Path, needle: &[u8]) -> bool {
    let img = std::fs::read(d.join("d.img")).unwrap();
    img.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sqlite3_100k_rows_on_a_sealed_mount() {
    need("sqlite3");
    let dir = setup("256M", "");
    let d = dir.path();
    let mut sql = String::from("create table r(id integer primary key, name text, v real);\n");
    for t in 0..10 {
        sql.push_str("begin;\n");
        for i in 0..10_000 {
            let n = t * 10_000 + i;
            sql.push_str(&format!(
                "insert into r(name, v) values('{CANARY}-{n}', {n}.5);\n"
            ));
        }
        sql.push_str("commit;\n");
    }
    sql.push_str("pragma integrity_check;\nselect count(*), sum(v) from r;\n");
    let o = rktio(
        d,
        &["--stats", "run", "--", "sqlite3", "/data/t.db"],
        Some(sql.as_bytes()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "100000|5000000000.0"],
        "{}",
        text(&o)
    );
    // --stats printed the report, and the writes went through the stack.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rktio stats: files:") && err.contains("host calls per I/O"),
        "{err}"
    );

    // A new process finds the data (the first one committed at exit).
    let o = rktio(
        d,
        &["run", "--", "sqlite3", "/data/t.db"],
        Some(b"pragma integrity_check;\nselect count(*), max(name) from r where id > 99990;\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["ok", &format!("10|{CANARY}-99999")],
        "{}",
        text(&o)
    );

    // The image holds only ciphertext; its ext4 is clean (disk check runs our
    // whole-tree read and e2fsck -fn on an unsealed copy).
    assert!(!image_has(d, CANARY.as_bytes()), "plaintext in the image");
    let o = rktio(d, &["disk", "check", "d.img", "--key-file", "k"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 bad"), "{}", text(&o));
    let o = rktio(d, &["disk", "ls", "d.img", "--key-file", "k", "/"], None);
    assert!(text(&o).contains("t.db"), "{}", text(&o));
}

#[test]
fn fio_verify_on_a_sealed_mount() {
    need("fio");
    let dir = setup("256M", "");
    let d = dir.path();
    // fio's jobs as threads: a forked job would share the parent's stack, which
    // the fork policy refuses (docs/COMPAT.md).
    let o = rktio(
        d,
        &[
            "--stats",
            "run",
            "--",
            "fio",
            "--name=v",
            "--directory=/data",
            "--rw=randwrite",
            "--bs=4k",
            "--size=8M",
            "--numjobs=3",
            "--thread",
            "--verify=crc32c",
            "--verify_state_save=0",
            "--ioengine=psync",
            "--group_reporting",
        ],
        None,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("err= 0"), "{t}");
    assert!(!t.contains("verify: bad"), "{t}");
    // 3 jobs x 8 MiB written, and read back by the verify pass, through the stack.
    let l = t
        .lines()
        .find(|l| l.starts_with("rktio stats: files:"))
        .unwrap();
    // "... N reads (R bytes), M writes (W bytes), ..."
    let bytes: Vec<u64> = l
        .split('(')
        .skip(1)
        .map(|p| p.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(bytes[0] >= 24 << 20 && bytes[1] >= 24 << 20, "{l}");
    // fio's files are on the sealed disk, not on the host.
    assert!(!d.join("data").exists());
    let o = rktio(d, &["disk", "ls", "d.img", "--key-file", "k", "/"], None);
    assert!(text(&o).contains("v.0.0"), "{}", text(&o));
}

#[test]
fn host_policy_refuses_and_says_why() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let allowed = host.path().join("ok");
    std::fs::create_dir(&allowed).unwrap();
    let dir = setup(
        "64M",
        &format!("[host]\nwrite = [\"{}\"]\n", allowed.display()),
    );
    let d = dir.path();
    let denied = host.path().join("denied.txt");
    // One program (a stack is per process, see the next test): python3 writes a
    // refused host file, an allowed one, a sealed one, and reads a system file.
    let script = format!(
        "import sys\n\
         try:\n    open('{denied}', 'w').write('one')\nexcept PermissionError as e:\n    print('denied', e.errno)\n\
         open('{allowed}/f.txt', 'w').write('two')\n\
         open('/data/f.txt', 'w').write('three')\n\
         print(open('/data/f.txt').read())\n\
         open('/etc/hostname').read()\n\
         print('read-ok')\n",
        denied = denied.display(),
        allowed = allowed.display()
    );
    // Debian's python3 (a pyenv shim elsewhere on PATH would be a script in a
    // home directory, which the policy refuses to read).
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "python3 is not installed"
    );
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", &script], None);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!denied.exists(), "{t}");
    assert!(t.contains(&format!("denied {}", libc_eacces())), "{t}");
    assert!(
        t.contains(&format!("refused open of {} for writing", denied.display())),
        "{t}"
    );
    assert!(t.contains("[host] write"), "{t}");
    assert_eq!(
        std::fs::read_to_string(allowed.join("f.txt")).unwrap(),
        "two"
    );
    assert!(t.contains("three\n") && t.contains("read-ok"), "{t}");
    // /data/f.txt is on the sealed disk only.
    let o = rktio(
        d,
        &["disk", "cat", "d.img", "--key-file", "k", "/f.txt"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "three", "{}", text(&o));
}

fn libc_eacces() -> i32 {
    13
}

#[test]
fn bad_configs_stop_before_the_program_starts() {
    let dir = setup("64M", "");
    let d = dir.path();
    let marker = d.join("ran");
    let cmd = format!("touch {}", marker.display());
    let cases: &[(&str, &str)] = &[
        (
            "[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_fil = \"k\"\n",
            "unknown field `key_fil`",
        ),
        ("[storage]\n", "unknown field `storage`"),
        (
            "[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_file = \"missing\"\n",
            "cannot read key file",
        ),
        (
            "[[mount]]\npath = \"/data\"\nimage = \"nope.img\"\nkey_file = \"k\"\n",
            "nope.img",
        ),
        (
            "[net]\nbackend = \"tap\"\ninterface = \"t0\"\naddress = [\"10.0.0.1/24\"]\n",
            "plaintext = true",
        ),
    ];
    for (conf, want) in cases {
        std::fs::write(d.join("bad.toml"), conf).unwrap();
        let o = rktio(d, &["run", "-c", "bad.toml", "--", "sh", "-c", &cmd], None);
        assert!(!o.status.success(), "{conf}");
        assert!(text(&o).contains(want), "{conf}: {}", text(&o));
        assert!(!marker.exists(), "{conf}: the program ran");
    }
    // A wrong key for an existing image.
    assert!(rktio(d, &["disk", "keygen", "k2"], None).status.success());
    std::fs::write(
        d.join("bad.toml"),
        "[[mount]]\npath = \"/data\"\nimage = \"d.img\"\nkey_file = \"k2\"\n",
    )
    .unwrap();
    let o = rktio(d, &["run", "-c", "bad.toml", "--", "sh", "-c", &cmd], None);
    assert!(!o.status.success() && !marker.exists(), "{}", text(&o));
}

#[test]
fn a_child_that_uses_the_mount_after_its_parent_did_is_refused_clearly() {
    need("sqlite3");
    let dir = setup("64M", "");
    let d = dir.path();
    // The shell writes to the mount (so it holds the image), then starts sqlite3,
    // which opens its own stack: the image is in use, and it says so.
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo x > /data/a; sqlite3 /data/t.db 'create table t(a);'; echo rc=$?",
        ],
        None,
    );
    let t = text(&o);
    assert!(t.contains("in use by another process"), "{t}");
    assert!(!t.contains("rc=0"), "{t}");
    // A shell that only starts it is fine.
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "sqlite3 /data/t.db 'create table t(a); select 7;'",
        ],
        None,
    );
    assert!(o.status.success() && text(&o).contains('7'), "{}", text(&o));
}

#[test]
fn directories_with_python3_and_coreutils() {
    let dir = setup("64M", "");
    let d = dir.path();
    let script = "import os\n\
        os.makedirs('/data/dd/sub', exist_ok=True)\n\
        for i in range(5): open(f'/data/dd/f{i}.txt', 'w').write(str(i))\n\
        print(sorted(os.listdir('/data/dd')))\n\
        print(sorted((e.name, e.is_dir()) for e in os.scandir('/data/dd')))\n\
        print([(r, sorted(ds), sorted(fs)) for r, ds, fs in os.walk('/data/dd')])\n\
        os.chdir('/data/dd/sub'); open('here.txt', 'w').write('x'); print(os.getcwd(), os.listdir('.'))\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let files = "'f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt'";
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("[{files}, 'sub']"),
            "[('f0.txt', False), ('f1.txt', False), ('f2.txt', False), ('f3.txt', False), ('f4.txt', False), ('sub', True)]".to_string(),
            format!("[('/data/dd', ['sub'], [{files}]), ('/data/dd/sub', [], [])]"),
            "/data/dd/sub ['here.txt']".to_string(),
        ],
        "{}",
        text(&o)
    );
    // Coreutils: opendir/readdir, statx, copy.
    let o = rktio(
        d,
        &["run", "--", "ls", "-l", "--color=never", "/data/dd"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let ls = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        ls.contains(" f4.txt")
            && ls
                .lines()
                .any(|l| l.starts_with('d') && l.ends_with(" sub")),
        "{ls}"
    );
    let o = rktio(
        d,
        &["run", "--", "cp", "/data/dd/f3.txt", "/data/dd/copy.txt"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rktio(
        d,
        &["run", "--", "stat", "-c", "%n %s %F", "/data/dd/copy.txt"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/data/dd/copy.txt 1 regular file\n",
        "{}",
        text(&o)
    );
    let o = rktio(
        d,
        &["run", "--", "find", "/data/dd", "-name", "*.txt"],
        None,
    );
    let mut found: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    found.sort();
    assert_eq!(found.len(), 7, "{}", text(&o));
    assert!(
        found.contains(&"/data/dd/sub/here.txt".to_string()),
        "{found:?}"
    );
}

#[test]
fn poll_family_on_stack_and_host_descriptors() {
    // python3's poll/select on a sealed file (always ready, as a regular file is)
    // next to a host pipe, and libc's ppoll/pselect through ctypes.
    let dir = setup("64M", "");
    let d = dir.path();
    let script = "import os, select, ctypes\n\
        f = os.open('/data/p.txt', os.O_RDWR | os.O_CREAT)\n\
        r, w = os.pipe()\n\
        p = select.poll(); p.register(f, select.POLLIN | select.POLLOUT); p.register(r, select.POLLIN)\n\
        print(sorted(p.poll(1000)) == sorted([(f, select.POLLIN | select.POLLOUT)]))\n\
        os.write(w, b'x')\n\
        print(sorted(fd for fd, ev in p.poll(1000)) == sorted([f, r]))\n\
        print(select.select([f, r], [f], [], 1) == ([f, r], [f], []))\n\
        class PFD(ctypes.Structure): _fields_ = [('fd', ctypes.c_int), ('events', ctypes.c_short), ('revents', ctypes.c_short)]\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        a = (PFD * 1)(PFD(f, 1, 0))\n\
        print(libc.ppoll(a, 1, None, None) == 1 and a[0].revents == 1)\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["True", "True", "True", "True"],
        "{}",
        text(&o)
    );
}

/// A shared mapping of a sealed file sees the file's later writes (pwrite,
/// write, writev, through another descriptor too), as the kernel's page cache
/// makes it: bbolt (etcd's database) reads through a read-only shared mapping
/// what it wrote with pwrite. Stores to a writable one reach the file, and the
/// file's other mappings, on msync.
#[test]
fn shared_mappings_see_the_files_writes() {
    let dir = setup("16M", "");
    let d = dir.path();
    let script = "import mmap, os\n\
        fd = os.open('/data/m.bin', os.O_RDWR | os.O_CREAT, 0o644)\n\
        os.pwrite(fd, b'A' * 12288, 0)\n\
        ro = mmap.mmap(fd, 12288, mmap.MAP_SHARED, mmap.PROT_READ)\n\
        rw = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=4096)\n\
        os.pwrite(fd, b'BBBB', 4094)\n\
        os.lseek(fd, 8190, 0); os.write(fd, b'CCCC')\n\
        os.writev(fd, [b'DD', b'EE'])\n\
        other = os.open('/data/m.bin', os.O_WRONLY)\n\
        os.pwrite(other, b'F', 12287)\n\
        print(ro[4092:4100], ro[8188:8200], ro[12286:12288])\n\
        print(rw[0:4], rw[4094:4104])\n\
        rw[100:104] = b'GGGG'; rw.flush()\n\
        print(os.pread(fd, 4, 4196), ro[4196:4200])\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "b'AABBBBAA' b'AACCCCDDEEAA' b'AF'\nb'BBAA' b'CCCCDDEEAA'\nb'GGGG' b'GGGG'\n",
        "{}",
        text(&o)
    );
}

/// flock(2) on sealed files: locks of one open file description (its dups
/// too), conflicting with another's, gone with its last descriptor (bbolt,
/// etcd's database, takes one on open).
#[test]
fn flock_on_sealed_files() {
    let dir = setup("16M", "");
    let d = dir.path();
    let script = "import fcntl, os\n\
        a = os.open('/data/l', os.O_RDWR | os.O_CREAT, 0o644)\n\
        b = os.open('/data/l', os.O_RDONLY)\n\
        fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)\n\
        try:\n\
        \x20   fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB); print('b got it')\n\
        except BlockingIOError:\n\
        \x20   print('b refused')\n\
        a2 = os.dup(a); os.close(a)\n\
        try:\n\
        \x20   fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB); print('b got it')\n\
        except BlockingIOError:\n\
        \x20   print('b refused while a dup holds it')\n\
        os.close(a2)\n\
        fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB); print('b got it after the last close')\n\
        fcntl.flock(b, fcntl.LOCK_UN)\n\
        c = os.open('/data/l', os.O_RDONLY)\n\
        fcntl.flock(b, fcntl.LOCK_SH); fcntl.flock(c, fcntl.LOCK_SH | fcntl.LOCK_NB); print('two shared')\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "b refused\nb refused while a dup holds it\nb got it after the last close\ntwo shared\n",
        "{}",
        text(&o)
    );
}

/// Permissions on sealed files are checked as ext4 checks them: by the
/// calling thread's fsuid, fsgid and capabilities after seteuid (a server
/// dropping privileges), setfsuid in one thread only, the umask umask(2) set,
/// access(2) by the real ids, new files owned by their maker.
#[test]
fn permissions_follow_the_callers_credentials() {
    let dir = setup("16M", "");
    let d = dir.path();
    let script = r#"
import ctypes, os, threading
def t(name, f):
    try:
        f(); print(name, 'ok')
    except PermissionError:
        print(name, 'EACCES')
os.umask(0o077)
os.close(os.open('/data/secret', os.O_WRONLY | os.O_CREAT, 0o666))
print('umask', oct(os.stat('/data/secret').st_mode & 0o777))
os.umask(0o022)
os.mkdir('/data/pub', 0o755); open('/data/pub/f', 'w').write('x')
os.mkdir('/data/closed', 0o700); open('/data/closed/f', 'w').write('x')
os.mkdir('/data/open'); os.chmod('/data/open', 0o777)
libc = ctypes.CDLL(None, use_errno=True)
def one_thread():
    libc.syscall(122, 65534)  # setfsuid: this thread only
    t('thread read secret', lambda: open('/data/secret').read())
th = threading.Thread(target=one_thread); th.start(); th.join()
t('main read secret', lambda: open('/data/secret').read())
os.setegid(65534); os.seteuid(65534)
t('read secret', lambda: open('/data/secret').read())
t('read pub', lambda: open('/data/pub/f').read())
t('stat in closed', lambda: os.stat('/data/closed/f'))
t('create in pub', lambda: open('/data/pub/g', 'w'))
t('chmod pub', lambda: os.chmod('/data/pub/f', 0o777))
open('/data/open/mine', 'w').write('y')
print('owner', os.stat('/data/open/mine').st_uid)
print('access by real ids', os.access('/data/secret', os.R_OK))
print('access by effective ids', os.access('/data/secret', os.R_OK, effective_ids=True))
os.seteuid(0); os.setegid(0)
t('root read secret', lambda: open('/data/secret').read())
"#;
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "umask 0o600\nthread read secret EACCES\nmain read secret ok\nread secret EACCES\n\
         read pub ok\nstat in closed EACCES\ncreate in pub EACCES\nchmod pub EACCES\n\
         owner 65534\naccess by real ids True\naccess by effective ids False\n\
         root read secret ok\n",
        "{}",
        text(&o)
    );
}

/// The mount table lists the sealed mount: findmnt (util-linux, mountinfo),
/// df (coreutils, statfs of the mount point found in /proc/self/mounts) and
/// glibc's pathconf(_PC_LINK_MAX) (ext4's 65000, told from ext2's 32000 by
/// the mount table) see an ext4 file system at /data.
#[test]
fn the_mount_table_lists_sealed_mounts() {
    let dir = setup("16M", "");
    let d = dir.path();
    let image = d.join("d.img");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--"];
        all.extend_from_slice(args);
        let o = rktio(d, &all, None);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        run(&["findmnt", "-n", "-o", "TARGET,FSTYPE,SOURCE", "/data"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["/data", "ext4", image.to_str().unwrap()]
    );
    let df = run(&["df", "-P", "/data"]);
    let line = df.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with(image.to_str().unwrap()) && line.ends_with(" /data"),
        "{df}"
    );
    assert_eq!(run(&["getconf", "LINK_MAX", "/data"]).trim(), "65000");
    // The table is read-only, as the kernel's is.
    let o = rktio(
        d,
        &["run", "--", "sh", "-c", "echo x >> /proc/self/mounts"],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
}

/// Closed descriptors of ours are kept as spare slots (no host call for the
/// next open), and the program cannot tell but by numbering: a closed number
/// is EBADF to fstat and close, dup2 onto it works, the next open of a sealed
/// file gets the lowest free number (a host descriptor closed below the spares
/// included), close-on-exec follows F_SETFD/FIONCLEX, and a child the program
/// executes inherits none of them.
#[test]
fn closed_descriptors_stay_closed_to_the_program() {
    let dir = setup("16M", "");
    let d = dir.path();
    let script = r#"
import os, subprocess
fds = [os.open('/data/s%d' % i, os.O_CREAT | os.O_WRONLY, 0o644) for i in range(3)]
for fd in fds:
    os.set_inheritable(fd, True)
print('inheritable', all(os.get_inheritable(fd) for fd in fds))
for fd in fds:
    os.close(fd)
for fd in fds:
    try:
        os.fstat(fd); print('open', fd)
    except OSError as e:
        print('fstat', e.errno)
try:
    os.close(fds[1]); print('close ok')
except OSError as e:
    print('close', e.errno)
child = subprocess.run(['ls', '/proc/self/fd'], close_fds=False, capture_output=True, text=True)
# (its own directory descriptor takes the lowest free number, fds[0]'s)
print('child has', sorted(set(map(int, child.stdout.split())) & set(fds[1:])))
r = os.open('/dev/null', os.O_RDONLY)
print('dup2', os.dup2(r, fds[0]) == fds[0], os.path.samestat(os.fstat(r), os.fstat(fds[0])))
os.close(fds[0])
n = os.open('/data/s1', os.O_RDONLY)
print('lowest', n == min(fds + [r]))
print('cloexec', not os.get_inheritable(n))
for i in range(1000):
    os.close(os.open('/data/s2', os.O_RDONLY))
"#;
    let o = rktio(
        d,
        &["--stats", "run", "--", "/usr/bin/python3", "-c", script],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "inheritable True\nfstat 9\nfstat 9\nfstat 9\nclose 9\n\
         child has []\ndup2 True True\nlowest True\ncloexec True\n",
        "{}",
        text(&o)
    );
    // A thousand opens and closes of a sealed file: no host call each.
    let err = String::from_utf8_lossy(&o.stderr);
    let opens: u64 = err
        .split("host calls by the stack: ")
        .nth(1)
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("open=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no open count in {err}"));
    assert!(opens < 100, "{opens} host opens and closes: {err}");
}

/// A write on a descriptor opened with O_SYNC or O_DSYNC, and a pwritev2 with
/// RWF_DSYNC, is durable when it returns: the program is killed (SIGKILL, no
/// exit commit) right after, and the image holds what it wrote. One run each
/// (any commit covers every file).
#[test]
fn sync_writes_survive_a_kill() {
    let dir = setup("16M", "");
    let d = dir.path();
    for (f, open_flags, write, want) in [
        (
            "/sync",
            "os.O_SYNC",
            "os.write(a, b'durable O_SYNC')",
            "durable O_SYNC",
        ),
        (
            "/dsync",
            "os.O_DSYNC",
            "os.write(a, b'durable O_DSYNC')",
            "durable O_DSYNC",
        ),
        (
            "/rwf",
            "0",
            "os.pwritev(a, [b'durable ', b'RWF_DSYNC'], 0, os.RWF_DSYNC)",
            "durable RWF_DSYNC",
        ),
    ] {
        let script = format!(
            "import os, fcntl\n\
             a = os.open('/data{f}', os.O_WRONLY | os.O_CREAT | {open_flags}, 0o644)\n\
             print('getfl', fcntl.fcntl(a, fcntl.F_GETFL) & {open_flags} == {open_flags})\n\
             {write}\n\
             print('written', flush=True)\n\
             os.kill(os.getpid(), 9)\n"
        );
        let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", &script], None);
        assert!(
            String::from_utf8_lossy(&o.stdout) == "getfl True\nwritten\n",
            "{f}: {}",
            text(&o)
        );
        let o = rktio(d, &["disk", "cat", "d.img", f, "--key-file", "k"], None);
        assert!(o.status.success(), "{f}: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{f}");
    }
}

/// What a program wrote without any sync is committed when it exits (after the
/// C library's own exit handlers ran: the commit must not need anything they
/// tear down, such as the crypto library's random generator), and the image
/// then holds it through the sealed disk's log and through a checkpoint.
#[test]
fn writes_without_a_sync_are_committed_at_exit() {
    let dir = setup("16M", "");
    let d = dir.path();
    let script = "import os\n\
                  open('/data/small', 'w').write('written, never synced')\n\
                  os.makedirs('/data/many')\n\
                  for i in range(300):\n\
                  \x20   open('/data/many/%d' % i, 'w').write('x' * 5000)\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", script], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = rktio(
        d,
        &["disk", "cat", "d.img", "/small", "--key-file", "k"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "written, never synced");
    // A second run appends (a small commit: the log), a third reads it all.
    let o = rktio(
        d,
        &[
            "run",
            "--",
            "/usr/bin/python3",
            "-c",
            "open('/data/small', 'a').write(', twice')",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let check = "import os\n\
                 print(open('/data/small').read())\n\
                 print(sum(len(open('/data/many/' + f).read()) for f in os.listdir('/data/many')))\n";
    let o = rktio(d, &["run", "--", "/usr/bin/python3", "-c", check], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "written, never synced, twice\n1500000\n"
    );
}
