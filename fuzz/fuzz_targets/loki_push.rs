//! Fuzz target `loki_push`: `mobius_monitor::fuzz::loki_push` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_monitor::fuzz::loki_push(data));
