//! `actions/checkout`: the job's workspace already holds a private copy of the
//! source directory (uncommitted files included), so checkout verifies and places it.

use crate::job::JobRun;
use crate::output::StepOutput;
use crate::repo::copy_tree;
use crate::step::StepExec;

pub(crate) fn run(run: &mut JobRun, input: &dyn Fn(&str) -> Option<String>, out: &mut StepOutput) -> StepExec {
    let shared = run.shared.clone();
    if let Some(repository) = input("repository").filter(|r| !r.is_empty()) {
        if !repository.eq_ignore_ascii_case(&shared.repository) {
            out.message(&format!(
                "Error: checking out another repository ('{repository}') needs the network; this run only has '{}'",
                shared.repository
            ));
            return StepExec::failure();
        }
    }
    let path = input("path").filter(|p| !p.trim().is_empty() && p.trim() != ".");
    let target = match &path {
        Some(p) => {
            let target = run.workspace.join(p.trim());
            if !target.starts_with(&run.workspace) || p.split('/').any(|c| c == "..") {
                out.message(&format!("Error: the checkout path '{p}' leaves the workspace"));
                return StepExec::failure();
            }
            target
        }
        None => run.workspace.clone(),
    };
    if let Some(wanted) = input("ref").filter(|r| !r.is_empty()) {
        let repo = &shared.repo;
        let same = wanted == repo.sha
            || wanted == repo.git_ref
            || wanted == repo.ref_name()
            || (wanted.len() >= 7 && repo.sha.starts_with(&wanted));
        if !same {
            // Another ref: write its tree from the local repository's objects.
            let clean = input("clean").is_none_or(|c| c != "false");
            return match crate::git::checkout(&shared.options.source_dir, &wanted, &target, clean) {
                Ok(done) => {
                    out.message(&format!(
                        "Checked out '{wanted}' ({}, {} files) into {}",
                        done.commit,
                        done.files,
                        target.display()
                    ));
                    if let Some(depth) = input("fetch-depth").filter(|d| d != "0") {
                        out.message(&format!("fetch-depth {depth}: the local checkout keeps the complete history"));
                    }
                    StepExec::success()
                }
                Err(e) => {
                    out.message(&format!("Error: {e}"));
                    StepExec::failure()
                }
            };
        }
    }
    match path {
        Some(path) => {
            if target.exists() {
                let _ = std::fs::remove_dir_all(&target);
            }
            if let Err(e) = copy_tree(&shared.snapshot, &target) {
                out.message(&format!("Error: cannot copy the repository to {}: {e}", target.display()));
                return StepExec::failure();
            }
            out.message(&format!("Checked out {} at {} into {}", shared.repository, shared.repo.sha, path.trim()));
        }
        None => out.message(&format!(
            "The workspace is a private copy of {} at {} (uncommitted changes included)",
            shared.options.source_dir.display(),
            shared.repo.sha
        )),
    }
    StepExec::success()
}
