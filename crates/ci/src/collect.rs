//! After a run: its artifacts into the blob store, and the JUnit reports its jobs left in
//! their workspaces or uploaded as artifacts, parsed into test reports.

use crate::Host;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default report patterns.
const REPORT_PATTERNS: &[&str] = &["**/TEST-*.xml", "**/junit*.xml", "**/*.junit.xml"];
/// Larger files are not parsed as reports.
const REPORT_LIMIT: u64 = 50 * 1024 * 1024;

fn report_globs() -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for pattern in REPORT_PATTERNS {
        if let Ok(glob) = Glob::new(pattern) {
            builder.add(glob);
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Files under `root` (not following links, skipping `.git`), relative paths with `/`.
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_string_lossy().replace('\\', "/");
            Some((rel, e.path().to_path_buf()))
        })
        .collect()
}

pub async fn artifacts_and_reports(
    app: &Arc<dyn Host>,
    run_id: i64,
    run_dir: &Path,
    jobs: &[(String, PathBuf)],
    masker: &mobius_runner::mask::Masker,
) {
    let (app2, run_dir, jobs) = (app.clone(), run_dir.to_path_buf(), jobs.to_vec());
    let found = tokio::task::spawn_blocking(move || {
        let globs = report_globs();
        let mut artifacts = Vec::new();
        let mut reports = Vec::new();
        let artifact_root = run_dir.join("artifacts");
        if let Ok(entries) = std::fs::read_dir(&artifact_root) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().to_string();
                for (rel, path) in files_under(&entry.path()) {
                    match app2.blobs().put_file(&path) {
                        Ok((digest, size)) => artifacts.push((name.clone(), rel.clone(), digest, size)),
                        Err(e) => tracing::error!(run = run_id, file = %path.display(), error = %e, "cannot store an artifact file"),
                    }
                    if globs.is_match(&rel) {
                        reports.push((format!("artifact {name}"), rel, path));
                    }
                }
            }
        }
        for (job, workspace) in &jobs {
            for (rel, path) in files_under(workspace) {
                if globs.is_match(&rel) {
                    reports.push((job.clone(), rel, path));
                }
            }
        }
        let parsed: Vec<_> = reports
            .into_iter()
            .filter(|(_, _, path)| std::fs::metadata(path).is_ok_and(|m| m.len() <= REPORT_LIMIT))
            .filter_map(|(job, rel, path)| {
                let text = std::fs::read_to_string(&path).ok()?;
                match crate::junit::parse(&text) {
                    Ok(summary) => Some((job, rel, summary)),
                    Err(e) => {
                        tracing::warn!(run = run_id, file = %rel, error = %e, "not a JUnit report");
                        None
                    }
                }
            })
            .collect();
        (artifacts, parsed)
    })
    .await;
    let Ok((artifacts, reports)) = found else { return };
    for (name, path, digest, size) in artifacts {
        if let Err(e) = app.store().add_artifact(run_id, &name, &path, &digest, size as i64).await {
            tracing::error!(run = run_id, error = %e, "cannot record an artifact");
        }
    }
    for (job, file, s) in reports {
        let counts = [s.tests, s.failures, s.errors, s.skipped];
        // Test names and messages are the job's output: a secret in them is masked
        // before it is stored, as it is in the log.
        let mut failed = serde_json::Value::Array(s.failed);
        masker.mask_json(&mut failed);
        let file = masker.mask(&file).into_owned();
        if let Err(e) = app.store().add_test_report(run_id, &job, &file, counts, &failed).await {
            tracing::error!(run = run_id, error = %e, "cannot record a test report");
        }
    }
}
