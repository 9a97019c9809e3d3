//! The configuration validator on arbitrary text: it must return (never
//! panic), and every error must name a line of the file.
#![no_main]
use lbd::config::{Config, ConfigErrors, Environment, Machine};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

struct Host;
impl Environment for Host {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
    fn machine(&self) -> Option<Machine> {
        Some(Machine {
            memory_bytes: 8 << 30,
            cpus: 2,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(ConfigErrors(errors)) = Config::parse(text, Path::new("lb.toml"), &Host) {
        let lines = text.lines().count();
        for error in errors {
            assert!(
                (1..=lines + 1).contains(&error.line),
                "line {} of {lines}: {error}",
                error.line
            );
        }
    }
});
