//! `actions/checkout`: the job's workspace already holds a private copy of the
//! source directory (uncommitted files included), so checkout verifies and places it.

use crate::job::JobRun;
use crate::output::StepOutput;
use crate::repo::copy_tree;
use crate::step::StepExec;

pub(crate) fn run(
    run: &mut JobRun,
    input: &dyn Fn(&str) -> Option<String>,
    out: &mut StepOutput,
) -> StepExec {
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
    if let Some(wanted) = input("ref").filter(|r| !r.is_empty()) {
        let repo = &shared.repo;
        let same = wanted == repo.sha
            || wanted == repo.git_ref
            || wanted == repo.ref_name()
            || (wanted.len() >= 7 && repo.sha.starts_with(&wanted));
        if !same {
            out.message(&format!(
                "Error: checkout of ref '{wanted}' is not supported on the host runner yet; the workspace holds {} at {}",
                if repo.git_ref.is_empty() { "a detached head" } else { &repo.git_ref },
                repo.sha
            ));
            return StepExec::failure();
        }
    }
    match input("path").filter(|p| !p.trim().is_empty() && p.trim() != ".") {
        Some(path) => {
            let target = run.workspace.join(path.trim());
            if target.starts_with(&run.workspace) && target != run.workspace {
                if target.exists() {
                    let _ = std::fs::remove_dir_all(&target);
                }
                if let Err(e) = copy_tree(&shared.snapshot, &target) {
                    out.message(&format!(
                        "Error: cannot copy the repository to {}: {e}",
                        target.display()
                    ));
                    return StepExec::failure();
                }
                out.message(&format!(
                    "Checked out {} at {} into {}",
                    shared.repository,
                    shared.repo.sha,
                    path.trim()
                ));
            }
        }
        None => out.message(&format!(
            "The workspace is a private copy of {} at {} (uncommitted changes included)",
            shared.options.source_dir.display(),
            shared.repo.sha
        )),
    }
    StepExec::success()
}
