//! Checkout through gix, with no network: writing a commit's tree into a directory
//! (`actions/checkout` of another ref). Reading refs, files and history is the code
//! stage's (`mobius_code::git`, re-exported here for the runner's own use).

pub use mobius_code::git::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The source repository, the commit or its tree could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A file of the work tree could not be written or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A path in the tree would be written outside the checkout.
    #[error("refusing to write '{0}' outside the checkout")]
    Outside(String),
    /// gix could not read an object or write the checkout's index.
    #[error("cannot {action}: {source}")]
    Index {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckoutError {
    let path = path.to_path_buf();
    move |source| CheckoutError::Io { action, path, source }
}

fn gix_error<E: std::error::Error + Send + Sync + 'static>(action: &'static str) -> impl FnOnce(E) -> CheckoutError {
    move |e| CheckoutError::Index { action, source: Box::new(e) }
}

/// What a checkout wrote.
#[derive(Debug)]
pub struct CheckedOut {
    pub commit: String,
    pub files: usize,
}

/// Writes the tree of `wanted` into `target` as a detached checkout: the work tree
/// (cleaned first when `clean`), `.git` (copied from the source repository when the
/// target has none), `HEAD` and an index matching the tree.
pub fn checkout(source: &Path, wanted: &str, target: &Path, clean: bool) -> Result<CheckedOut, CheckoutError> {
    let repo = open(source)?;
    let commit = resolve(&repo, wanted)?;
    let files = listing(&repo, commit)?;
    std::fs::create_dir_all(target).map_err(io("create", target))?;
    if clean {
        for entry in std::fs::read_dir(target).map_err(io("read", target))?.filter_map(Result::ok) {
            if entry.file_name() == ".git" {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io("clean", &path))?;
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
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        let object = repo.find_object(*oid).map_err(gix_error("read an object of the tree"))?;
        let _ = std::fs::remove_file(&dest);
        if mode.is_link() {
            let link = String::from_utf8_lossy(&object.data).to_string();
            std::os::unix::fs::symlink(link, &dest).map_err(io("write", &dest))?;
        } else {
            std::fs::write(&dest, &object.data).map_err(io("write", &dest))?;
            let perm = if mode.is_executable() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(perm))
                .map_err(io("set the mode of", &dest))?;
        }
    }
    let git_dir = target.join(".git");
    if !git_dir.exists() {
        crate::repo::copy_git_dir(repo.git_dir(), &git_dir, crate::repo::GitObjects::HardLink)
            .map_err(io("copy the repository into", &git_dir))?;
        if repo.is_bare() {
            // A checkout of a bare mirror has a work tree: its copy of the config must say so.
            let config = git_dir.join("config");
            let text = std::fs::read_to_string(&config).map_err(io("read", &config))?;
            let fixed: Vec<String> = text
                .lines()
                .map(|l| if l.trim() == "bare = true" { l.replace("true", "false") } else { l.to_string() })
                .collect();
            std::fs::write(&config, fixed.join("\n") + "\n").map_err(io("write", &config))?;
        }
    }
    let head = git_dir.join("HEAD");
    std::fs::write(&head, format!("{commit}\n")).map_err(io("write", &head))?;
    // An index matching the tree, so `git status` in the checkout is clean.
    let target_repo = gix::open(target).map_err(gix_error("open the checkout"))?;
    let tree_id =
        target_repo.find_commit(commit).and_then(|c| c.tree_id()).map_err(gix_error("read the commit's tree"))?;
    let mut index = target_repo.index_from_tree(&tree_id).map_err(gix_error("build the index"))?;
    index.write(Default::default()).map_err(gix_error("write the index"))?;
    Ok(CheckedOut { commit: commit.to_string(), files: files.len() })
}

/// Joins a path from a tree, refusing anything that would leave `root`.
fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, CheckoutError> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute()
        || rel_path.components().any(|c| matches!(c, std::path::Component::ParentDir))
        || rel.split('/').any(|c| c == ".git")
    {
        return Err(CheckoutError::Outside(rel.to_string()));
    }
    Ok(root.join(rel_path))
}
