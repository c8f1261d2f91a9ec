//! Git through gix: resolving refs, a commit's files and history, the files a commit
//! changed (path filters), and mirrors of remote repositories fetched over HTTPS
//! (gix's reqwest/rustls transport).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a repository could not be read or fetched; each carries what failed beneath.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{} is not in a git repository: {source}", dir.display())]
    NotARepository {
        dir: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the ref '{0}' does not exist in the repository")]
    UnknownRef(String),
    #[error("the repository has no branch '{0}'")]
    NoBranch(String),
    #[error("cannot open '{path}': {source}")]
    Path {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading objects, refs or history of a repository that opened.
    #[error("{what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Creating, connecting to or fetching into a mirror.
    #[error("{what}: {source}")]
    Remote {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A reading error, said as `what` failed.
fn read<E: std::error::Error + Send + Sync + 'static>(what: &'static str) -> impl FnOnce(E) -> GitError {
    move |e| GitError::Read { what, source: Box::new(e) }
}

/// A fetching error, said as `what` failed.
fn remote<E: std::error::Error + Send + Sync + 'static>(what: String) -> impl FnOnce(E) -> GitError {
    move |e| GitError::Remote { what, source: Box::new(e) }
}

/// A commit's files: path to (object id, mode flags).
pub type Listing = BTreeMap<String, (gix::ObjectId, gix::object::tree::EntryMode)>;

pub fn open(dir: &Path) -> Result<gix::Repository, GitError> {
    gix::discover(dir).map_err(|e| GitError::NotARepository { dir: dir.to_path_buf(), source: Box::new(e) })
}

/// Resolves a branch, tag, remote branch or (abbreviated) commit id to a commit id.
pub fn resolve(repo: &gix::Repository, wanted: &str) -> Result<gix::ObjectId, GitError> {
    let candidates = [
        wanted.to_string(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}"),
        format!("refs/remotes/origin/{wanted}"),
    ];
    for spec in &candidates {
        if let Ok(id) = repo.rev_parse_single(spec.as_str()) {
            if let Ok(commit) = id.object().and_then(|o| o.peel_to_commit()) {
                return Ok(commit.id);
            }
        }
    }
    Err(GitError::UnknownRef(wanted.to_string()))
}

pub fn listing(repo: &gix::Repository, commit: gix::ObjectId) -> Result<Listing, GitError> {
    let commit = repo.find_commit(commit).map_err(read("cannot read the commit"))?;
    let tree = commit.tree().map_err(read("cannot read the commit's tree"))?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(read("cannot walk the commit's tree"))?;
    Ok(recorder
        .records
        .into_iter()
        .filter(|e| !e.mode.is_tree())
        .map(|e| (e.filepath.to_string(), (e.oid, e.mode)))
        .collect())
}

/// Files added, removed or modified by the commit at `dir`'s HEAD, against its first parent
/// (every file, for a root commit). `None` outside a git repository.
pub fn changed_paths(dir: &Path) -> Option<Vec<String>> {
    let repo = open(dir).ok()?;
    let head = repo.head_commit().ok()?;
    let now = listing(&repo, head.id).ok()?;
    let before = match head.parent_ids().next() {
        Some(parent) => listing(&repo, parent.detach()).ok()?,
        None => Listing::new(),
    };
    let mut changed: Vec<String> = now
        .iter()
        .filter(|(path, entry)| before.get(*path) != Some(entry))
        .map(|(path, _)| path.clone())
        .chain(before.keys().filter(|p| !now.contains_key(*p)).cloned())
        .collect();
    changed.sort();
    Some(changed)
}

/// The head commit as GitHub's push payload describes it (`head_commit`).
#[derive(Debug, Clone)]
pub struct HeadCommit {
    pub id: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Its first parent; `None` for a root commit.
    pub parent: Option<String>,
}

/// The head commit of the repository holding `dir`.
pub fn head_commit(dir: &Path) -> Option<HeadCommit> {
    let repo = open(dir).ok()?;
    let commit = repo.head_commit().ok()?;
    let author = commit.author().ok()?;
    let parent = commit.parent_ids().next().map(|id| id.to_string());
    Some(HeadCommit {
        id: commit.id.to_string(),
        message: commit.message_raw_sloppy().to_string().trim_end().to_string(),
        author_name: author.name.to_string().trim().to_string(),
        author_email: author.email.to_string().trim().to_string(),
        time: commit.time().map(|t| t.seconds).unwrap_or(0),
        parent,
    })
}

/// The branches and tags of a repository, each peeled to its commit: `(full ref name, commit id)`.
pub fn refs(dir: &Path) -> Result<Vec<(String, String)>, GitError> {
    let repo = open(dir)?;
    let platform = repo.references().map_err(read("cannot read the refs"))?;
    let mut out = Vec::new();
    for reference in platform.all().map_err(read("cannot list the refs"))?.filter_map(Result::ok) {
        let name = reference.name().as_bstr().to_string();
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            continue;
        }
        let mut reference = reference;
        if let Ok(id) = reference.peel_to_id() {
            if let Ok(commit) = id.object().and_then(|o| o.peel_to_commit()) {
                out.push((name, commit.id.to_string()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A commit as GitHub's push payload describes it (`commits[]`).
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Seconds since the epoch.
    pub time: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

fn commit_info(repo: &gix::Repository, id: gix::ObjectId) -> Result<(CommitInfo, Option<gix::ObjectId>), GitError> {
    let commit = repo.find_commit(id).map_err(read("cannot read the commit"))?;
    let author = commit.author().map_err(read("cannot read the commit's author"))?;
    let parent = commit.parent_ids().next().map(|p| p.detach());
    let now = listing(repo, id)?;
    let before = match parent {
        Some(p) => listing(repo, p)?,
        None => Listing::new(),
    };
    let mut info = CommitInfo {
        id: id.to_string(),
        message: commit.message_raw_sloppy().to_string().trim_end().to_string(),
        author_name: author.name.to_string().trim().to_string(),
        author_email: author.email.to_string().trim().to_string(),
        time: commit.time().map(|t| t.seconds).unwrap_or(0),
        added: Vec::new(),
        removed: before.keys().filter(|p| !now.contains_key(*p)).cloned().collect(),
        modified: Vec::new(),
    };
    for (path, entry) in &now {
        match before.get(path) {
            None => info.added.push(path.clone()),
            Some(old) if old != entry => info.modified.push(path.clone()),
            Some(_) => {}
        }
    }
    Ok((info, parent))
}

/// The commits a push brought, newest last: from `after` back along first parents to
/// `before` (exclusive), at most `limit` (GitHub's payload lists at most 20). Without
/// `before` (a new branch), only the head commit.
pub fn commits_between(
    dir: &Path,
    before: Option<&str>,
    after: &str,
    limit: usize,
) -> Result<Vec<CommitInfo>, GitError> {
    let repo = open(dir)?;
    let mut next = Some(resolve(&repo, after)?);
    let stop = before.and_then(|b| gix::ObjectId::from_hex(b.as_bytes()).ok());
    let mut out = Vec::new();
    while let Some(id) = next {
        if Some(id) == stop || out.len() >= limit {
            break;
        }
        let (info, parent) = commit_info(&repo, id)?;
        out.push(info);
        next = if stop.is_some() { parent } else { None };
    }
    out.reverse();
    Ok(out)
}

/// Whether `ancestor` is a strict ancestor of `descendant`, looking at most `limit`
/// commits back from `descendant` (beyond that, `false`).
pub fn is_ancestor(dir: &Path, ancestor: &str, descendant: &str, limit: usize) -> Result<bool, GitError> {
    let repo = open(dir)?;
    let target = resolve(&repo, ancestor)?;
    let start = resolve(&repo, descendant)?;
    if target == start {
        return Ok(false);
    }
    let walk = repo.rev_walk([start]).all().map_err(read("cannot walk the history"))?;
    for info in walk.take(limit) {
        if info.map_err(read("cannot walk the history"))?.id == target {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The workflow files (`.github/workflows/*.yml|yaml`) in a commit: `(path, text)`.
pub fn workflow_files(dir: &Path, commit: &str) -> Result<Vec<(String, String)>, GitError> {
    let repo = open(dir)?;
    let id = resolve(&repo, commit)?;
    let files = listing(&repo, id)?;
    let mut out = Vec::new();
    for (path, (oid, mode)) in files {
        let Some(name) = path.strip_prefix(".github/workflows/") else { continue };
        if name.contains('/') || !(name.ends_with(".yml") || name.ends_with(".yaml")) || !mode.is_blob() {
            continue;
        }
        let object = repo.find_object(oid).map_err(read("cannot read a workflow file"))?;
        out.push((path.clone(), String::from_utf8_lossy(&object.data).to_string()));
    }
    Ok(out)
}

/// The text of one file in a commit, `None` when the commit has no such file.
pub fn file_at(dir: &Path, commit: &str, path: &str) -> Result<Option<String>, GitError> {
    let repo = open(dir)?;
    let id = resolve(&repo, commit)?;
    let files = listing(&repo, id)?;
    let Some((oid, mode)) = files.get(path) else { return Ok(None) };
    if !mode.is_blob() {
        return Ok(None);
    }
    let object = repo.find_object(*oid).map_err(read("cannot read the file"))?;
    Ok(Some(String::from_utf8_lossy(&object.data).to_string()))
}

/// Whether a project's repository is a URL to fetch from (rather than a local path).
pub fn is_remote_url(repo: &str) -> bool {
    let scp_like = !repo.contains("://")
        && repo.split_once(':').is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
    ["http://", "https://", "git://", "ssh://", "file://"].iter().any(|s| repo.starts_with(s)) || scp_like
}

/// Keeps a bare mirror of `url` in `dir`: created on first use, then every branch and tag
/// fetched (forced, as a mirror follows the remote). Returns how many refs changed.
pub fn mirror(url: &str, dir: &Path) -> Result<usize, GitError> {
    let repo = if dir.join("HEAD").exists() {
        gix::open(dir).map_err(remote(format!("cannot open the mirror {}", dir.display())))?
    } else {
        std::fs::create_dir_all(dir).map_err(remote(format!("cannot create the mirror {}", dir.display())))?;
        gix::init_bare(dir).map_err(remote(format!("cannot create the mirror {}", dir.display())))?
    };
    let remote_repo = repo
        .remote_at(url)
        .map_err(remote(format!("invalid repository URL '{url}'")))?
        .with_refspecs(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], gix::remote::Direction::Fetch)
        .map_err(remote(format!("invalid refspecs for {url}")))?;
    let connection =
        remote_repo.connect(gix::remote::Direction::Fetch).map_err(remote(format!("cannot connect to {url}")))?;
    let outcome = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(remote(format!("cannot list the refs of {url}")))?
        .receive(gix::progress::Discard, &std::sync::atomic::AtomicBool::new(false))
        .map_err(remote(format!("cannot fetch from {url}")))?;
    let changed = outcome.ref_map.mappings.len();
    Ok(changed)
}

/// A repository a project is added with.
#[derive(Debug)]
pub struct Adopted {
    /// The repository as the project records it (a URL, or the canonical path).
    pub repo: String,
    /// Where to read it: the mirror, or the path itself.
    pub dir: PathBuf,
    pub refs: Vec<(String, String)>,
}

/// A URL is mirrored into `mirror` (fetched again before each poll); a path is read
/// in place.
pub fn adopt(repo: &str, mirror: &Path) -> Result<Adopted, GitError> {
    let (text, dir) = if is_remote_url(repo) {
        let _ = std::fs::remove_dir_all(mirror);
        if let Err(e) = self::mirror(repo, mirror) {
            let _ = std::fs::remove_dir_all(mirror);
            return Err(e);
        }
        (repo.to_string(), mirror.to_path_buf())
    } else {
        let path =
            Path::new(repo).canonicalize().map_err(|source| GitError::Path { path: repo.to_string(), source })?;
        (path.display().to_string(), path)
    };
    let refs = refs(&dir)?;
    Ok(Adopted { repo: text, dir, refs })
}

/// The branch a project follows: the one asked for, else the branch `HEAD` names,
/// else `main`, `master`, or the first branch; an error when the repository does not
/// have it.
pub fn default_branch(refs: &[(String, String)], head: &str, wanted: Option<&str>) -> Result<String, GitError> {
    let has = |b: &str| refs.iter().any(|(name, _)| *name == format!("refs/heads/{b}"));
    let branch = wanted.map(str::to_string).unwrap_or_else(|| {
        let from_head = head.strip_prefix("refs/heads/").filter(|b| has(b)).map(str::to_string);
        from_head
            .or_else(|| ["main", "master"].iter().find(|b| has(b)).map(|b| b.to_string()))
            .or_else(|| refs.iter().find_map(|(n, _)| n.strip_prefix("refs/heads/").map(str::to_string)))
            .unwrap_or_else(|| "main".to_string())
    });
    if has(&branch) {
        Ok(branch)
    } else {
        Err(GitError::NoBranch(branch))
    }
}
