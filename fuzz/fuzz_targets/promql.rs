//! Fuzz target `promql`: `mobius_monitor::fuzz::promql` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_monitor::fuzz::promql(data));
