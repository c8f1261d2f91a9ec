//! What the run needs to know about the source repository (head commit, ref and
//! name, read with gix) and the copies of it that runs and jobs work in.

use std::fs;
use std::io;
use std::path::Path;

/// The repository's state at the start of the run.
#[derive(Debug, Clone, Default)]
pub struct RepoInfo {
    /// Head commit, or 40 zeros outside a git repository.
    pub sha: String,
    /// `refs/heads/<branch>` or `refs/tags/<tag>`; empty on a detached head.
    pub git_ref: String,
    /// `owner/name` from the `origin` remote, when it has one.
    pub remote_repository: Option<String>,
}

impl RepoInfo {
    /// Reads the repository holding `dir` (searching upwards, as git does).
    pub fn read(dir: &Path) -> RepoInfo {
        match gix::discover(dir) {
            Ok(repo) => RepoInfo {
                sha: repo.head_id().map_or_else(|_| "0".repeat(40), |id| id.to_string()),
                git_ref: repo.head_name().ok().flatten().map(|name| name.as_bstr().to_string()).unwrap_or_default(),
                remote_repository: repo
                    .find_remote("origin")
                    .ok()
                    .and_then(|remote| {
                        remote.url(gix::remote::Direction::Fetch).map(|url| url.to_bstring().to_string())
                    })
                    .and_then(|url| repository_from_url(&url)),
            },
            // Outside git there is no branch; GitHub always has one, so the default branch stands in.
            Err(_) => RepoInfo { sha: "0".repeat(40), git_ref: "refs/heads/main".into(), remote_repository: None },
        }
    }

    /// The branch or tag name of the ref.
    pub fn ref_name(&self) -> String {
        short_ref(&self.git_ref).to_string()
    }
}

/// `main` for `refs/heads/main`, `v1` for `refs/tags/v1`; other refs as they are.
pub fn short_ref(git_ref: &str) -> &str {
    git_ref.strip_prefix("refs/heads/").or_else(|| git_ref.strip_prefix("refs/tags/")).unwrap_or(git_ref)
}

/// `owner/name` from `https://host/owner/name(.git)` or `git@host:owner/name(.git)`.
pub fn repository_from_url(url: &str) -> Option<String> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit(['/', ':']);
    let name = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

/// How a copy gets a repository's object store. Git never modifies an object file in
/// place (objects are written once, read-only, and replaced rather than changed), so
/// copies may share them instead of duplicating a repository's whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitObjects {
    /// Hard-link each object file (copied where the file system refuses).
    HardLink,
    /// Borrow the source's object store through git's alternates, as `git clone --shared` does.
    Alternates,
}

/// Copies a directory tree (files, symlinks, permissions); a `.git` inside it gets
/// its objects hard-linked.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    copy_dir(from, to, GitObjects::HardLink)
}

/// A job's workspace from the run's snapshot, borrowing the snapshot's git objects.
pub fn copy_workspace(snapshot: &Path, to: &Path) -> io::Result<()> {
    copy_dir(snapshot, to, GitObjects::Alternates)
}

fn copy_dir(from: &Path, to: &Path, objects: GitObjects) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() == ".git" {
                copy_git_dir(&entry.path(), &target, objects)?;
            } else {
                copy_dir(&entry.path(), &target, objects)?;
            }
        } else {
            copy_entry(&entry, &target)?;
        }
    }
    Ok(())
}

/// Copies a file or symlink.
fn copy_entry(entry: &fs::DirEntry, target: &Path) -> io::Result<()> {
    if entry.file_type()?.is_symlink() {
        let _ = fs::remove_file(target);
        std::os::unix::fs::symlink(fs::read_link(entry.path())?, target)
    } else {
        fs::copy(entry.path(), target).map(|_| ())
    }
}

/// Copies a `.git` directory: objects shared as `objects` says, git's inert example
/// hooks (`hooks/*.sample`, a third of a fresh repository's files) left out.
pub(crate) fn copy_git_dir(from: &Path, to: &Path, objects: GitObjects) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let target = to.join(&name);
        let is_dir = entry.file_type()?.is_dir();
        // A job's repository is like a fresh shared clone: no reflogs, commit-message
        // draft or description to carry over (each is a file written per job).
        if objects == GitObjects::Alternates
            && ["logs", "COMMIT_EDITMSG", "description", "branches"].iter().any(|n| name == *n)
        {
            continue;
        }
        if is_dir && name == "objects" {
            match objects {
                GitObjects::HardLink => link_dir(&entry.path(), &target)?,
                GitObjects::Alternates => borrow_objects(&entry.path(), &target)?,
            }
        } else if is_dir && name == "hooks" {
            fs::create_dir_all(&target)?;
            for hook in fs::read_dir(entry.path())? {
                let hook = hook?;
                if !hook.file_name().to_string_lossy().ends_with(".sample") {
                    copy_entry(&hook, &target.join(hook.file_name()))?;
                }
            }
        } else if is_dir {
            copy_dir(&entry.path(), &target, objects)?;
        } else {
            copy_entry(&entry, &target)?;
        }
    }
    Ok(())
}

fn link_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_dir(&entry.path(), &target)?;
        } else if fs::hard_link(entry.path(), &target).is_err() {
            copy_entry(&entry, &target)?;
        }
    }
    Ok(())
}

/// An empty object store whose `info/alternates` names `source` (and whatever
/// `source` itself borrows from).
fn borrow_objects(source: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to.join("info"))?;
    fs::create_dir_all(to.join("pack"))?;
    let mut alternates = source.display().to_string();
    if let Ok(inherited) = fs::read_to_string(source.join("info/alternates")) {
        alternates.push('\n');
        alternates.push_str(inherited.trim_end());
    }
    alternates.push('\n');
    fs::write(to.join("info/alternates"), alternates)
}

/// Copies the source directory into a run's snapshot: the work tree (uncommitted and
/// untracked files included, and, when `use_gitignore`, without what `.gitignore`
/// excludes, as act does) plus the repository's `.git` so steps can use git.
pub fn copy_source(from: &Path, to: &Path, use_gitignore: bool) -> io::Result<()> {
    fs::create_dir_all(to)?;
    let walker = ignore::WalkBuilder::new(from)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(use_gitignore)
        .git_ignore(use_gitignore)
        .git_exclude(use_gitignore)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        let Ok(rel) = entry.path().strip_prefix(from) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = to.join(rel);
        let Some(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(entry.path())?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
        } else {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(entry.path(), &target)?;
        }
    }
    let dot_git = from.join(".git");
    if dot_git.is_dir() {
        copy_git_dir(&dot_git, &to.join(".git"), GitObjects::HardLink)?;
    } else if dot_git.is_file() {
        // A worktree's `.git` file points at the real repository; copy it as it is.
        fs::copy(&dot_git, to.join(".git"))?;
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
    fn source_copies_skip_ignored_files_but_keep_untracked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("target/debug")).unwrap();
        fs::create_dir_all(src.join(".git/objects")).unwrap();
        fs::write(src.join(".gitignore"), "target/\n*.log\n").unwrap();
        fs::write(src.join("target/debug/big"), "huge").unwrap();
        fs::write(src.join("run.log"), "log").unwrap();
        fs::write(src.join("untracked.rs"), "new").unwrap();
        fs::write(src.join(".env.example"), "hidden files count").unwrap();
        fs::write(src.join(".git/HEAD"), "ref: refs/heads/main").unwrap();
        let dst = dir.path().join("dst");
        copy_source(&src, &dst, true).unwrap();
        assert!(dst.join("untracked.rs").is_file());
        assert!(dst.join(".env.example").is_file());
        assert!(dst.join(".gitignore").is_file());
        assert!(dst.join(".git/HEAD").is_file());
        assert!(!dst.join("target").exists());
        assert!(!dst.join("run.log").exists());
        let all = dir.path().join("all");
        copy_source(&src, &all, false).unwrap();
        assert!(all.join("target/debug/big").is_file());
    }

    #[test]
    fn workspaces_borrow_objects_and_leave_sample_hooks_out() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("snapshot");
        fs::create_dir_all(snapshot.join(".git/objects/ab")).unwrap();
        fs::create_dir_all(snapshot.join(".git/hooks")).unwrap();
        fs::write(snapshot.join(".git/objects/ab/cdef"), "object").unwrap();
        fs::write(snapshot.join(".git/hooks/pre-commit.sample"), "#!/bin/sh").unwrap();
        fs::write(snapshot.join(".git/hooks/pre-push"), "#!/bin/sh").unwrap();
        fs::write(snapshot.join("main.rs"), "fn main() {}").unwrap();
        fs::create_dir_all(snapshot.join(".git/logs")).unwrap();
        fs::write(snapshot.join(".git/logs/HEAD"), "reflog").unwrap();
        let ws = dir.path().join("ws");
        copy_workspace(&snapshot, &ws).unwrap();
        assert!(ws.join("main.rs").is_file());
        assert!(!ws.join(".git/objects/ab").exists(), "objects are borrowed, not copied");
        let alternates = fs::read_to_string(ws.join(".git/objects/info/alternates")).unwrap();
        assert_eq!(alternates.trim(), snapshot.join(".git/objects").display().to_string());
        assert!(ws.join(".git/hooks/pre-push").is_file());
        assert!(!ws.join(".git/logs").exists(), "a job's repository starts without reflogs");
        assert!(!ws.join(".git/hooks/pre-commit.sample").exists());
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
