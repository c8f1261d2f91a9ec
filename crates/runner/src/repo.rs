//! What the run needs to know about the source repository: head commit, ref and name,
//! read from `.git` directly (refs, packed-refs, config), and the private copy jobs run in.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The repository's state at the start of the run.
#[derive(Debug, Clone, Default)]
pub struct RepoInfo {
    /// Head commit, or 40 zeros outside a git repository.
    pub sha: String,
    /// `refs/heads/<branch>` or `refs/tags/<tag>`; empty on a detached head.
    pub git_ref: String,
    /// `owner/name` from the `origin` remote, when it has one.
    pub remote_repository: Option<String>,
    pub is_git: bool,
}

impl RepoInfo {
    pub fn read(dir: &Path) -> RepoInfo {
        let Some(git_dir) = git_dir(dir) else {
            // Outside git there is no branch; GitHub always has one, so the default branch stands in.
            return RepoInfo { sha: "0".repeat(40), git_ref: "refs/heads/main".into(), ..RepoInfo::default() };
        };
        let head = fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
        let head = head.trim();
        let (git_ref, sha) = match head.strip_prefix("ref: ") {
            Some(r) => (r.to_string(), resolve_ref(&git_dir, r).unwrap_or_else(|| "0".repeat(40))),
            None => (String::new(), head.to_string()),
        };
        RepoInfo { sha, git_ref, remote_repository: origin_repository(&git_dir), is_git: true }
    }

    /// The branch or tag name of the ref.
    pub fn ref_name(&self) -> String {
        self.git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| self.git_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&self.git_ref)
            .to_string()
    }

    pub fn ref_type(&self) -> &'static str {
        if self.git_ref.starts_with("refs/tags/") {
            "tag"
        } else {
            "branch"
        }
    }
}

/// The `.git` directory of the work tree holding `dir` (searching upwards, as git
/// does, and following a `gitdir:` file for worktrees).
pub fn git_dir(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(git_dir_here)
}

fn git_dir_here(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir: ")?;
    let path = dir.join(target);
    path.is_dir().then_some(path)
}

fn resolve_ref(git_dir: &Path, name: &str) -> Option<String> {
    let common = fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    for base in [git_dir, common.as_path()] {
        if let Ok(text) = fs::read_to_string(base.join(name)) {
            let text = text.trim();
            if let Some(target) = text.strip_prefix("ref: ") {
                return resolve_ref(git_dir, target);
            }
            return Some(text.to_string());
        }
        if let Ok(packed) = fs::read_to_string(base.join("packed-refs")) {
            for line in packed.lines() {
                if let Some((sha, r)) = line.split_once(' ') {
                    if r == name {
                        return Some(sha.to_string());
                    }
                }
            }
        }
    }
    None
}

fn origin_repository(git_dir: &Path) -> Option<String> {
    let config = fs::read_to_string(git_dir.join("config")).ok()?;
    let mut in_origin = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_origin = line == "[remote \"origin\"]";
            continue;
        }
        if in_origin {
            if let Some(url) = line.strip_prefix("url").map(str::trim_start).and_then(|l| l.strip_prefix('=')) {
                return repository_from_url(url.trim());
            }
        }
    }
    None
}

/// `owner/name` from `https://host/owner/name(.git)` or `git@host:owner/name(.git)`.
pub fn repository_from_url(url: &str) -> Option<String> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit(['/', ':']);
    let name = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

/// Copies a directory tree (files, symlinks, permissions), uncommitted files included.
///
/// Git's object files are never modified in place (they are written once, read-only,
/// and replaced rather than changed), so under `.git/objects` they are hard-linked
/// when the file system allows it: a job's copy of a large repository then costs one
/// link per object instead of a copy of its history.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    copy_tree_inner(from, to, false)
}

fn copy_tree_inner(from: &Path, to: &Path, in_objects: bool) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            let objects =
                in_objects || (entry.file_name() == "objects" && from.file_name().is_some_and(|n| n == ".git"));
            copy_tree_inner(&entry.path(), &target, objects)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(entry.path())?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
        } else if in_objects && fs::hard_link(entry.path(), &target).is_ok() {
            continue;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_from_remote_urls() {
        assert_eq!(repository_from_url("https://github.com/nektos/act.git").as_deref(), Some("nektos/act"));
        assert_eq!(repository_from_url("git@github.com:owner/repo.git").as_deref(), Some("owner/repo"));
        assert_eq!(repository_from_url("https://gitea.local/o/r/").as_deref(), Some("o/r"));
    }

    #[test]
    fn copies_files_and_links_git_objects() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join(".git/objects/ab")).unwrap();
        fs::write(src.join(".git/objects/ab/cdef"), "object").unwrap();
        fs::write(src.join(".git/HEAD"), "ref: refs/heads/main").unwrap();
        fs::write(src.join("file.txt"), "work tree").unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("file.txt")).unwrap(), "work tree");
        let (a, b) = (
            fs::metadata(src.join(".git/objects/ab/cdef")).unwrap(),
            fs::metadata(dst.join(".git/objects/ab/cdef")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "objects are hard-linked");
        let (a, b) = (fs::metadata(src.join("file.txt")).unwrap(), fs::metadata(dst.join("file.txt")).unwrap());
        assert_ne!(a.ino(), b.ino(), "work-tree files are copied");
        fs::write(dst.join("file.txt"), "changed").unwrap();
        assert_eq!(fs::read_to_string(src.join("file.txt")).unwrap(), "work tree");
    }
}
