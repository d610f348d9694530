//! The first bytes of a program file (from the host) that exec is asked to run:
//! any bytes give a kind, never a panic, and a script's interpreter comes from
//! its first line. The loader's reading of a static program's headers gives an
//! image whose segments are in order, inside the file and below user space's
//! top, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rktio_posix::exec::{ExecKind, exec_kind, parse_image};

fuzz_target!(|data: &[u8]| {
    match exec_kind(data) {
        ExecKind::Script(i) => {
            assert!(data.starts_with(b"#!") && !i.is_empty() && !i.contains(&b'\n'))
        }
        ExecKind::Dynamic | ExecKind::Static => assert!(data.starts_with(b"\x7fELF")),
        ExecKind::Foreign | ExecKind::Unknown => {}
    }
    let len = data.len() as u64;
    if let Ok(img) = parse_image(data, len) {
        let (first, end) = img.span();
        assert!(first < end && end <= 0x7f00_0000_0000);
        assert!((first..end).contains(&img.entry));
        let mut prev_end = 0;
        for s in &img.segments {
            assert!(s.filesz <= s.memsz && s.offset + s.filesz <= len);
            assert!(s.vaddr & !4095 >= prev_end);
            prev_end = (s.vaddr + s.memsz + 4095) & !4095;
        }
    }
});
