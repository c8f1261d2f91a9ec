//! Fuzz target `request_head`: `mobius_router::fuzz::request_head` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_router::fuzz::request_head(data));
