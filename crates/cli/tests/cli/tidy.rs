//! Repository hygiene, as rust-analyzer's tidy test: every Rust file says what it is for.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 20, "found only {} files under {}", files.len(), crates.display());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` line:\n{}", missing.join("\n"));
}

/// The `mobius-*` crates a crate's `[dependencies]` name (dev-dependencies do not count).
fn mobius_dependencies(manifest: &str) -> std::collections::BTreeSet<String> {
    let mut section = "";
    let mut out = std::collections::BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[dependencies]" && line.starts_with("mobius-") {
            out.insert(line.split([' ', '=']).next().unwrap_or_default().to_string());
        }
    }
    out
}

/// The edges ARCHITECTURE.md documents, from its "Crate edges" list:
/// ``- `mobius-a` → `mobius-b`, `mobius-c`: why``.
fn documented_edges(architecture: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeMap::new();
    let section = architecture.split("## Crate edges").nth(1).unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    for line in section.lines().filter(|l| l.starts_with("- `mobius-")) {
        // The first code span names the crate; those between `→` and `:` its dependencies.
        let from = line.split('`').nth(1).unwrap_or_default().to_string();
        let targets = line.split_once('→').map_or("", |(_, rest)| rest.split(':').next().unwrap_or_default());
        let to: std::collections::BTreeSet<String> =
            targets.split(',').map(|t| t.trim().trim_matches('`').to_string()).filter(|t| !t.is_empty()).collect();
        out.insert(from, to);
    }
    out
}

/// Issue 17, item 3: stage crates depend on each other only along the edges
/// ARCHITECTURE.md names, and the document names every edge there is.
#[test]
fn crates_depend_only_along_documented_edges() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let documented = documented_edges(&architecture);
    let mut actual = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/").filter_map(Result::ok) {
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else { continue };
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|n| n.strip_suffix('"'))
            .expect("a package name")
            .to_string();
        actual.insert(name, mobius_dependencies(&manifest));
    }
    assert!(actual.len() >= 10, "found {} crates", actual.len());
    assert_eq!(actual, documented, "Cargo.toml files (left) and ARCHITECTURE.md's \"Crate edges\" (right) differ");
}

/// Issue 17, item 3: the pipeline engine links no database driver and no libcurl.
#[test]
fn the_pipeline_engine_links_no_database_or_libcurl() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", "mobius-runner", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && tree.contains("gix"), "{}", String::from_utf8_lossy(&out.stderr));
    let linked: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| ["sqlx", "sqlx-core", "mobius-store", "curl", "curl-sys", "openssl-sys"].contains(name))
        .collect();
    assert!(linked.is_empty(), "mobius-runner links {linked:?}");
}

/// Issue 17, item 2: no crate's `src/` holds more than a quarter of the `.rs` lines
/// in all crates' `src/` folders, so no stage grows back into one crate of everything.
#[test]
fn no_crate_holds_more_than_a_quarter_of_the_source() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut lines = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/").filter_map(Result::ok) {
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files);
        let count: usize = files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default().lines().count()).sum();
        lines.insert(entry.file_name().to_string_lossy().into_owned(), count);
    }
    let total: usize = lines.values().sum();
    assert!(lines.len() >= 10 && total > 10_000, "found {} crates, {total} lines", lines.len());
    let over: Vec<String> = lines
        .iter()
        .filter(|(_, n)| **n * 4 > total)
        .map(|(name, n)| format!("{name}: {n} of {total} lines ({:.1}%)", 100.0 * *n as f64 / total as f64))
        .collect();
    assert!(over.is_empty(), "crates over 25% of the source:\n{}", over.join("\n"));
}

/// The `mobius` binary is linked with packed relative relocations (crates/cli/build.rs):
/// without them its loader reads 2.4 MB of relocations at every start and the server's
/// idle memory grows by about 5 MB.
#[test]
fn the_mobius_binary_packs_its_relative_relocations() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || !crate::support::require("readelf") {
        return;
    }
    let out = std::process::Command::new("readelf")
        .args(["--dynamic", "--wide", env!("CARGO_BIN_EXE_mobius")])
        .output()
        .expect("readelf runs");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("(RELR)"), "no DT_RELR entry in the binary's dynamic section:\n{dynamic}");
    let relative = dynamic
        .lines()
        .find(|l| l.contains("(RELACOUNT)"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(relative < 1_000, "{relative} relative relocations left unpacked");
}
