//! Configuration text from the user: rktio.toml and wg-quick files. Any bytes give
//! a configuration or a clear error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rktio_posix::Config::parse(text, std::path::Path::new("/etc/rktio")) {
        // What parses is valid by the same rules.
        Ok(c) => assert!(c.validate().is_ok()),
        Err(e) => assert!(!e.0.is_empty()),
    }
    let _ = rktio_net::WgConfig::parse(text);
});
