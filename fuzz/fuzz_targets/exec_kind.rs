//! The first bytes of a program file (from the host) that exec is asked to run:
//! any bytes give a kind, never a panic, and a script's interpreter comes from
//! its first line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_posix::exec::{ExecKind, exec_kind};

fuzz_target!(|data: &[u8]| {
    match exec_kind(data) {
        ExecKind::Script(i) => {
            assert!(data.starts_with(b"#!") && !i.is_empty() && !i.contains(&b'\n'))
        }
        ExecKind::Dynamic | ExecKind::Static => assert!(data.starts_with(b"\x7fELF")),
        ExecKind::Foreign | ExecKind::Unknown => {}
    }
});
