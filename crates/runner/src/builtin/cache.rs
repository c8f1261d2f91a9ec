//! `actions/cache` (restore, then save in a post step), `cache/restore` and `cache/save`:
//! entries (manifests) per repository in the state directory, file contents in a
//! content-addressed blob store (`mobius_blob::BlobStore`) shared by every run.

use crate::builtin::{glob_root, has_glob, lines, resolve_path};
use crate::job::{JobRun, PostKind, PostStep};
use crate::output::StepOutput;
use crate::step::{Prepared, StepExec};
use mobius_core::Conclusion;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where this run's cache entries live: the namespace the caller gave (the server's
/// project id), else the repository's name.
fn cache_root(run: &JobRun) -> PathBuf {
    let name = run.shared.options.cache_namespace.as_deref().unwrap_or(&run.shared.repository);
    let folder: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    run.shared.options.state_dir.join("cache").join(folder)
}

/// Caches are namespaced by their path list, as GitHub's are.
fn version(paths: &[String]) -> String {
    sha256_hex(paths.join("\n").as_bytes())
}

fn entry_path(root: &Path, version: &str, key: &str) -> PathBuf {
    root.join("entries").join(format!("{}.json", sha256_hex(format!("{version}\n{key}").as_bytes())))
}

/// The entry for the exact key, else the newest whose key starts with a restore key (in order).
fn lookup(root: &Path, version: &str, key: &str, restore_keys: &[String]) -> Option<(Value, bool)> {
    let exact = entry_path(root, version, key);
    if let Some(v) = std::fs::read(&exact).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        return Some((v, true));
    }
    let entries: Vec<Value> = std::fs::read_dir(root.join("entries"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v.get("version").and_then(Value::as_str) == Some(version))
        .collect();
    for prefix in restore_keys {
        let best = entries
            .iter()
            .filter(|v| v.get("key").and_then(Value::as_str).is_some_and(|k| k.starts_with(prefix.as_str())))
            .max_by_key(|v| v.get("created").and_then(Value::as_u64).unwrap_or(0));
        if let Some(best) = best {
            return Some((best.clone(), false));
        }
    }
    None
}

pub(crate) fn restore(
    run: &mut JobRun,
    input: &dyn Fn(&str) -> Option<String>,
    prepared: &Prepared,
    out: &mut StepOutput,
    save_after: bool,
) -> StepExec {
    let Some(key) = input("key").filter(|k| !k.trim().is_empty()) else {
        out.message("Error: input required and not supplied: key");
        return StepExec::failure();
    };
    let paths = lines(&input("path").unwrap_or_default());
    if paths.is_empty() {
        out.message("Error: input required and not supplied: path");
        return StepExec::failure();
    }
    let restore_keys = lines(&input("restore-keys").unwrap_or_default());
    let root = cache_root(run);
    let version = version(&paths);
    let lookup_only = input("lookup-only").is_some_and(|v| v == "true");
    let mut outputs = Map::new();
    outputs.insert("cache-primary-key".into(), Value::String(key.clone()));
    let found = lookup(&root, &version, &key, &restore_keys);
    let exact = found.as_ref().is_some_and(|(_, exact)| *exact);
    match &found {
        Some((entry, exact)) => {
            let matched = entry.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
            if !lookup_only {
                if let Err(e) = unpack(run, entry, &paths) {
                    out.message(&format!("Warning: failed to restore the cache: {e}"));
                }
            }
            out.message(&format!("Cache restored from key: {matched}{}", if *exact { "" } else { " (restore key)" }));
            outputs.insert("cache-hit".into(), Value::String(exact.to_string()));
            outputs.insert("cache-matched-key".into(), Value::String(matched));
        }
        None => {
            if input("fail-on-cache-miss").is_some_and(|v| v == "true") {
                out.message(&format!(
                    "Error: Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {key}"
                ));
                return StepExec::failure();
            }
            out.message(&format!(
                "Cache not found for input keys: {}",
                std::iter::once(key.clone()).chain(restore_keys.clone()).collect::<Vec<_>>().join(", ")
            ));
            outputs.insert("cache-hit".into(), Value::String("false".into()));
        }
    }
    if save_after && !exact {
        run.post_steps.push(PostStep {
            name: format!("Post {}", prepared.name),
            condition: None,
            kind: PostKind::CacheSave { key, paths },
        });
    }
    StepExec { outcome: Conclusion::Success, outputs }
}

fn unpack(run: &JobRun, entry: &Value, paths: &[String]) -> std::io::Result<()> {
    let files = entry.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
    for file in files {
        let index = file.get("path").and_then(Value::as_u64).unwrap_or(0) as usize;
        let Some(base) = paths.get(index) else {
            continue;
        };
        let rel = file.get("rel").and_then(Value::as_str).unwrap_or_default();
        if rel.split('/').any(|c| c == "..") {
            continue;
        }
        let base = path_root(&run.workspace, base);
        let target = if rel.is_empty() { base } else { base.join(rel) };
        let blob = file.get("blob").and_then(Value::as_str).unwrap_or_default();
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut content = run.shared.cache_blobs.open(blob)?;
        let _ = std::fs::remove_file(&target);
        std::io::copy(&mut content, &mut std::fs::File::create(&target)?)?;
        if let Some(mode) = file.get("mode").and_then(Value::as_u64) {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode as u32))?;
        }
    }
    Ok(())
}

pub(crate) fn save(run: &mut JobRun, key: &str, paths: &[String], out: &mut StepOutput) -> StepExec {
    if key.trim().is_empty() || paths.is_empty() {
        out.message("Error: cache save needs 'key' and 'path'");
        return StepExec::failure();
    }
    if !run.shared.options.cache_writes {
        out.message(&format!(
            "Cache not saved for key: {key}; a pull request from a fork cannot write the project's caches"
        ));
        return StepExec::success();
    }
    let root = cache_root(run);
    let version = version(paths);
    let entry = entry_path(&root, &version, key);
    if entry.exists() {
        out.message(&format!("Cache already exists for key: {key}; entries are immutable, not saving"));
        return StepExec::success();
    }
    let result = (|| -> std::io::Result<(usize, u64)> {
        std::fs::create_dir_all(root.join("entries"))?;
        let mut files = Vec::new();
        let mut bytes = 0u64;
        let mut excludes = globset::GlobSetBuilder::new();
        for line in paths.iter().filter_map(|l| l.strip_prefix('!')) {
            let pattern = resolve_path(&run.workspace, line).display().to_string();
            if let Ok(glob) = globset::Glob::new(&pattern) {
                excludes.add(glob);
            }
        }
        let excludes = excludes.build().unwrap_or_else(|_| globset::GlobSet::empty());
        for (index, line) in paths.iter().enumerate() {
            if line.starts_with('!') {
                continue;
            }
            let walk = cache_files(&run.workspace, line, &excludes);
            for (path, rel) in walk {
                let (blob, size) = run.shared.cache_blobs.put_file(&path)?;
                bytes += size;
                let mode = std::fs::metadata(&path)?.permissions().mode();
                files.push(json!({"path": index, "rel": rel, "blob": blob, "mode": mode}));
            }
        }
        let count = files.len();
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let manifest = json!({"key": key, "version": version, "created": created, "paths": paths, "files": files});
        let tmp = entry.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&manifest).unwrap_or_default())?;
        std::fs::rename(&tmp, &entry)?;
        Ok((count, bytes))
    })();
    match result {
        Ok((0, _)) => {
            out.message("Warning: Path Validation Error: no files found in the cache paths; nothing saved");
            let _ = std::fs::remove_file(&entry);
            StepExec::success()
        }
        Ok((count, bytes)) => {
            out.message(&format!("Cache saved with key: {key} ({count} files, {bytes} bytes)"));
            StepExec::success()
        }
        Err(e) => {
            out.message(&format!("Warning: failed to save the cache: {e}"));
            StepExec::success()
        }
    }
}

/// Where a cache path's files are stored relative to: the path itself, or a glob's root.
fn path_root(workspace: &Path, line: &str) -> PathBuf {
    let resolved = resolve_path(workspace, line);
    if has_glob(line) {
        glob_root(&resolved.display().to_string())
    } else {
        resolved
    }
}

/// The files one cache path names (a file, a directory's files, or a glob's matches),
/// each with its path relative to the path's root; `!` patterns excluded.
fn cache_files(workspace: &Path, line: &str, excludes: &globset::GlobSet) -> Vec<(PathBuf, String)> {
    let resolved = resolve_path(workspace, line);
    let root = path_root(workspace, line);
    let keep = |p: &Path| !excludes.is_match(p);
    let rel = |p: &Path| p.strip_prefix(&root).map(|r| r.display().to_string()).unwrap_or_default();
    if has_glob(line) {
        let Ok(matcher) = globset::GlobBuilder::new(&resolved.display().to_string()).literal_separator(true).build()
        else {
            return Vec::new();
        };
        let matcher = matcher.compile_matcher();
        return walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter(|e| e.path().ancestors().any(|a| matcher.is_match(a)) && keep(e.path()))
            .map(|e| (e.path().to_path_buf(), rel(e.path())))
            .collect();
    }
    if resolved.is_file() {
        return if keep(&resolved) { vec![(resolved, String::new())] } else { Vec::new() };
    }
    walkdir::WalkDir::new(&resolved)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && keep(e.path()))
        .map(|e| (e.path().to_path_buf(), rel(e.path())))
        .collect()
}
