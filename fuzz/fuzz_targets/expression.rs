//! Fuzz target `expression`: `mobius_workflow::fuzz::expression` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_workflow::fuzz::expression(data));
