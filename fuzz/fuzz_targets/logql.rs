//! Fuzz target `logql`: `mobius_monitor::fuzz::logql` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_monitor::fuzz::logql(data));
