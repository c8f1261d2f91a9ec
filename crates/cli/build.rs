//! Links the `mobius` binary with packed relative relocations (DT_RELR) on Linux.
//!
//! A position-independent Rust binary carries one 24-byte relocation per pointer in its
//! read-only data (vtables, string tables): 2.4 MB for `mobius`, all of it read by the
//! loader at every start and kept resident. Packed, the same relocations take 34 kB;
//! the server's idle resident memory drops by about 5 MB (docs/benchmarks.md). GNU ld
//! 2.38+ and lld pack them when the C library (glibc 2.36+) can read them; older
//! linkers ignore the option with a warning.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=mobius=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
