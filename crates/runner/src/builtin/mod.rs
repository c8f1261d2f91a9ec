//! Actions that run natively, with no network: checkout, artifacts and cache.

pub(crate) mod artifact;
pub(crate) mod cache;
pub(crate) mod checkout;

use crate::job::JobRun;
use crate::output::StepOutput;
use crate::step::{Prepared, StepExec};
use std::path::{Path, PathBuf};

/// Runs a built-in action by its bare name (`actions/checkout`).
pub(crate) fn run(
    run: &mut JobRun,
    name: &str,
    with: &[(String, String)],
    prepared: &Prepared,
    out: &mut StepOutput,
) -> StepExec {
    let input = |key: &str| with.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
    match name {
        "actions/checkout" => checkout::run(run, &input, out),
        "actions/upload-artifact" => artifact::upload(run, &input, out),
        "actions/download-artifact" => artifact::download(run, &input, out),
        "actions/cache" => cache::restore(run, &input, prepared, out, true),
        "actions/cache/restore" => cache::restore(run, &input, prepared, out, false),
        "actions/cache/save" => {
            let key = input("key").unwrap_or_default();
            let paths = lines(&input("path").unwrap_or_default());
            cache::save(run, &key, &paths, out)
        }
        other => {
            out.message(&format!("Error: '{other}' is not a built-in action"));
            StepExec::failure()
        }
    }
}

/// Non-empty trimmed lines of a multi-line input.
pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Resolves a path input: `~` is the home directory, relative paths start at the workspace.
pub(crate) fn resolve_path(workspace: &Path, path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace.join(p)
    }
}

/// Whether a path input is a glob pattern.
pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The non-glob leading directories of a pattern: where a search for it starts.
pub(crate) fn glob_root(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for part in Path::new(pattern).components() {
        if has_glob(&part.as_os_str().to_string_lossy()) {
            break;
        }
        root.push(part);
    }
    root
}
