//! Fuzz target `exposition`: `mobius_monitor::fuzz::exposition` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_monitor::fuzz::exposition(data));
