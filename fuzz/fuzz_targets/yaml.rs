//! Fuzz target `yaml`: `mobius_workflow::fuzz::yaml` on arbitrary bytes (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mobius_workflow::fuzz::yaml(data));
