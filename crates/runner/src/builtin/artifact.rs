//! `actions/upload-artifact` and `actions/download-artifact` against the run's local artifact store.

use crate::builtin::{glob_root, has_glob, lines, resolve_path};
use crate::job::JobRun;
use crate::output::StepOutput;
use crate::repo::copy_tree;
use crate::step::StepExec;
use serde_json::{Map, Value};
use std::path::{Component, Path, PathBuf};

fn is_hidden(path: &Path, root: &Path) -> bool {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .any(|c| matches!(c, Component::Normal(n) if n.to_string_lossy().starts_with('.')))
}

fn common_ancestor(paths: &[PathBuf]) -> PathBuf {
    let mut iter = paths.iter();
    let Some(first) = iter.next() else {
        return PathBuf::new();
    };
    let mut common: Vec<Component> = first.components().collect();
    for p in iter {
        let comps: Vec<Component> = p.components().collect();
        let n = common.iter().zip(comps.iter()).take_while(|(a, b)| a == b).count();
        common.truncate(n);
    }
    common.iter().collect()
}

/// Files selected by the `path` lines (globs and `!` exclusions), and the root they are stored relative to.
fn collect(workspace: &Path, patterns: &[String], include_hidden: bool) -> Result<(Vec<PathBuf>, PathBuf), String> {
    let mut search_roots = Vec::new();
    let mut files = Vec::new();
    let mut excludes = globset::GlobSetBuilder::new();
    for line in patterns {
        if let Some(ex) = line.strip_prefix('!') {
            let abs = resolve_path(workspace, ex);
            let glob = globset::GlobBuilder::new(&abs.display().to_string())
                .literal_separator(false)
                .build()
                .map_err(|e| format!("invalid pattern '{line}': {e}"))?;
            excludes.add(glob);
            continue;
        }
        let abs = resolve_path(workspace, line);
        let text = abs.display().to_string();
        if has_glob(&text) {
            let root = glob_root(&text);
            let matcher = globset::GlobBuilder::new(&text)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid pattern '{line}': {e}"))?
                .compile_matcher();
            for entry in walkdir::WalkDir::new(&root).into_iter().filter_map(Result::ok) {
                if entry.file_type().is_file() && matcher.is_match(entry.path()) {
                    files.push(entry.path().to_path_buf());
                }
                if entry.file_type().is_dir() && matcher.is_match(entry.path()) {
                    for inner in walkdir::WalkDir::new(entry.path()).into_iter().filter_map(Result::ok) {
                        if inner.file_type().is_file() {
                            files.push(inner.path().to_path_buf());
                        }
                    }
                }
            }
            search_roots.push(root);
        } else if abs.is_dir() {
            for entry in walkdir::WalkDir::new(&abs).into_iter().filter_map(Result::ok) {
                if entry.file_type().is_file() {
                    files.push(entry.path().to_path_buf());
                }
            }
            search_roots.push(abs);
        } else if abs.is_file() {
            search_roots.push(abs.parent().map(Path::to_path_buf).unwrap_or_default());
            files.push(abs);
        }
    }
    let excludes = excludes.build().map_err(|e| e.to_string())?;
    let root = common_ancestor(&search_roots);
    files.retain(|f| !excludes.is_match(f) && (include_hidden || !is_hidden(f, &root)));
    files.sort();
    files.dedup();
    Ok((files, root))
}

fn artifact_dir(run: &JobRun, name: &str) -> PathBuf {
    run.shared.run_dir.join("artifacts").join(name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(['/', '\\', ':', '<', '>', '|', '*', '?', '"', '\r', '\n'])
        && name != "."
        && name != ".."
}

pub(crate) fn upload(run: &mut JobRun, input: &dyn Fn(&str) -> Option<String>, out: &mut StepOutput) -> StepExec {
    let name = input("name").filter(|n| !n.is_empty()).unwrap_or_else(|| "artifact".into());
    if !valid_name(&name) {
        out.message(&format!("Error: invalid artifact name '{name}'"));
        return StepExec::failure();
    }
    let Some(path) = input("path").filter(|p| !p.trim().is_empty()) else {
        out.message("Error: input required and not supplied: path");
        return StepExec::failure();
    };
    let include_hidden = input("include-hidden-files").is_some_and(|v| v == "true");
    let (files, root) = match collect(&run.workspace, &lines(&path), include_hidden) {
        Ok(r) => r,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            return StepExec::failure();
        }
    };
    if files.is_empty() {
        let mode = input("if-no-files-found").unwrap_or_else(|| "warn".into());
        let message =
            format!("No files were found with the provided path: {}. No artifacts will be uploaded.", path.trim());
        return match mode.as_str() {
            "error" => {
                out.message(&format!("Error: {message}"));
                StepExec::failure()
            }
            "ignore" => {
                out.message(&message);
                StepExec::success()
            }
            _ => {
                out.message(&format!("Warning: {message}"));
                StepExec::success()
            }
        };
    }
    let target = artifact_dir(run, &name);
    if target.exists() {
        if input("overwrite").is_some_and(|v| v == "true") {
            let _ = std::fs::remove_dir_all(&target);
        } else {
            out.message(&format!(
                "Error: an artifact named '{name}' already exists in this run; use a different name or overwrite: true"
            ));
            return StepExec::failure();
        }
    }
    let mut bytes = 0u64;
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap_or(file);
        let dest = target.join(rel);
        let copied = dest.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::copy(file, &dest));
        match copied {
            Ok(n) => bytes += n,
            Err(e) => {
                out.message(&format!("Error: cannot store {}: {e}", file.display()));
                return StepExec::failure();
            }
        }
    }
    out.message(&format!("Uploaded artifact '{name}': {} file(s), {bytes} bytes", files.len()));
    let mut outputs = Map::new();
    outputs.insert("artifact-id".into(), Value::String(name.clone()));
    outputs.insert("artifact-url".into(), Value::String(format!("file://{}", target.display())));
    StepExec { outcome: mobius_core::Conclusion::Success, outputs }
}

pub(crate) fn download(run: &mut JobRun, input: &dyn Fn(&str) -> Option<String>, out: &mut StepOutput) -> StepExec {
    let dest = resolve_path(&run.workspace, &input("path").filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into()));
    let store = run.shared.run_dir.join("artifacts");
    let mut outputs = Map::new();
    outputs.insert("download-path".into(), Value::String(dest.display().to_string()));
    if let Some(name) = input("name").filter(|n| !n.is_empty()) {
        let dir = artifact_dir(run, &name);
        if !dir.is_dir() {
            out.message(&format!("Error: Artifact not found for name: {name}. Artifacts are shared within a run; was it uploaded by a job this one needs?"));
            return StepExec::failure();
        }
        if let Err(e) = copy_tree(&dir, &dest) {
            out.message(&format!("Error: cannot download '{name}': {e}"));
            return StepExec::failure();
        }
        out.message(&format!("Downloaded artifact '{name}' to {}", dest.display()));
        return StepExec { outcome: mobius_core::Conclusion::Success, outputs };
    }
    let pattern = input("pattern").filter(|p| !p.is_empty());
    let matcher = match pattern.as_deref().map(|p| globset::Glob::new(p).map(|g| g.compile_matcher())) {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            out.message(&format!("Error: invalid pattern: {e}"));
            return StepExec::failure();
        }
        None => None,
    };
    let merge = input("merge-multiple").is_some_and(|v| v == "true");
    let mut names: Vec<String> = std::fs::read_dir(&store)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names.retain(|n| matcher.as_ref().is_none_or(|m| m.is_match(n)));
    for name in &names {
        let target = if merge { dest.clone() } else { dest.join(name) };
        if let Err(e) = copy_tree(&store.join(name), &target) {
            out.message(&format!("Error: cannot download '{name}': {e}"));
            return StepExec::failure();
        }
    }
    out.message(&format!("Downloaded {} artifact(s) to {}", names.len(), dest.display()));
    StepExec { outcome: mobius_core::Conclusion::Success, outputs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_root_is_the_least_common_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("app/sub")).unwrap();
        std::fs::write(ws.join("app/app.py"), "x").unwrap();
        std::fs::write(ws.join("app/sub/b.txt"), "x").unwrap();
        std::fs::write(ws.join("app/.hidden"), "x").unwrap();
        let (files, root) = collect(ws, &["app/".to_string()], false).unwrap();
        assert_eq!(root, ws.join("app"));
        assert_eq!(files.len(), 2);
        let (files, root) = collect(ws, &["app/**/*.txt".to_string(), "app/app.py".to_string()], false).unwrap();
        assert_eq!(root, ws.join("app"));
        assert_eq!(files.len(), 2);
        let (files, _) = collect(ws, &["app/".to_string(), "!app/sub/**".to_string()], false).unwrap();
        assert_eq!(files, vec![ws.join("app/app.py")]);
    }
}
