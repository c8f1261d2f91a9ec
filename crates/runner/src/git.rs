//! Checkout through gix, with no network: writing a commit's tree into a directory
//! (`actions/checkout` of another ref). Reading refs, files and history is the code
//! stage's (`mobius_code::git`, re-exported here for the runner's own use).

pub use mobius_code::git::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a checkout wrote.
#[derive(Debug)]
pub struct CheckedOut {
    pub commit: String,
    pub files: usize,
}

/// Writes the tree of `wanted` into `target` as a detached checkout: the work tree
/// (cleaned first when `clean`), `.git` (copied from the source repository when the
/// target has none), `HEAD` and an index matching the tree.
pub fn checkout(source: &Path, wanted: &str, target: &Path, clean: bool) -> Result<CheckedOut, String> {
    let repo = open(source).map_err(|e| e.to_string())?;
    let commit = resolve(&repo, wanted).map_err(|e| e.to_string())?;
    let files = listing(&repo, commit).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    if clean {
        for entry in std::fs::read_dir(target).map_err(|e| e.to_string())?.filter_map(Result::ok) {
            if entry.file_name() == ".git" {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("cannot clean {}: {e}", path.display()))?;
        }
    }
    for (path, (oid, mode)) in &files {
        if mode.is_commit() {
            // A submodule: GitHub leaves an empty folder unless submodules are fetched.
            let _ = std::fs::create_dir_all(target.join(path));
            continue;
        }
        let dest = safe_join(target, path)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let object = repo.find_object(*oid).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&dest);
        if mode.is_link() {
            let link = String::from_utf8_lossy(&object.data).to_string();
            std::os::unix::fs::symlink(link, &dest).map_err(|e| format!("cannot write {path}: {e}"))?;
        } else {
            std::fs::write(&dest, &object.data).map_err(|e| format!("cannot write {path}: {e}"))?;
            let perm = if mode.is_executable() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(perm)).map_err(|e| e.to_string())?;
        }
    }
    let git_dir = target.join(".git");
    if !git_dir.exists() {
        crate::repo::copy_git_dir(repo.git_dir(), &git_dir, crate::repo::GitObjects::HardLink)
            .map_err(|e| format!("cannot copy the repository: {e}"))?;
        if repo.is_bare() {
            // A checkout of a bare mirror has a work tree: its copy of the config must say so.
            let config = git_dir.join("config");
            let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
            let fixed: Vec<String> = text
                .lines()
                .map(|l| if l.trim() == "bare = true" { l.replace("true", "false") } else { l.to_string() })
                .collect();
            std::fs::write(&config, fixed.join("\n") + "\n").map_err(|e| e.to_string())?;
        }
    }
    std::fs::write(git_dir.join("HEAD"), format!("{commit}\n")).map_err(|e| e.to_string())?;
    // An index matching the tree, so `git status` in the checkout is clean.
    let target_repo = gix::open(target).map_err(|e| e.to_string())?;
    let tree_id = target_repo.find_commit(commit).and_then(|c| c.tree_id()).map_err(|e| e.to_string())?;
    let mut index = target_repo.index_from_tree(&tree_id).map_err(|e| e.to_string())?;
    index.write(Default::default()).map_err(|e| format!("cannot write the index: {e}"))?;
    Ok(CheckedOut { commit: commit.to_string(), files: files.len() })
}

/// Joins a path from a tree, refusing anything that would leave `root`.
fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute()
        || rel_path.components().any(|c| matches!(c, std::path::Component::ParentDir))
        || rel.split('/').any(|c| c == ".git")
    {
        return Err(format!("refusing to write '{rel}' outside the checkout"));
    }
    Ok(root.join(rel_path))
}
