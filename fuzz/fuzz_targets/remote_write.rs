//! Fuzz target `remote_write`: `mobius_monitor::fuzz::remote_write` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_monitor::fuzz::remote_write(data));
