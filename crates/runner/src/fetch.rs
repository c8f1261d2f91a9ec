//! Remote actions: `owner/repo[/path]@ref` fetched with gix over HTTP(S) (its
//! reqwest/rustls transport) from `--actions-url`, with a token when given, and kept
//! by resolved commit in the user's cache, so a later run, or `--offline`, uses it
//! without the network.

use std::path::{Path, PathBuf};

/// `owner/repo[/path]@ref` as a reference to a repository at a ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionRef {
    pub owner: String,
    pub repo: String,
    /// The action's folder (or the reusable workflow's file) inside the repository.
    pub path: String,
    pub reference: String,
}

impl ActionRef {
    /// Reads `owner/repo@ref` or `owner/repo/path@ref`; `None` for anything else.
    pub fn parse(uses: &str) -> Option<ActionRef> {
        let (name, reference) = uses.split_once('@')?;
        let mut parts = name.splitn(3, '/');
        let (owner, repo) = (parts.next()?, parts.next()?);
        let path = parts.next().unwrap_or_default().trim_end_matches('/');
        let valid = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', ':']);
        if !valid(owner) || !valid(repo) || reference.is_empty() || path.split('/').any(|p| p == "..") {
            return None;
        }
        Some(ActionRef { owner: owner.into(), repo: repo.into(), path: path.into(), reference: reference.into() })
    }

    /// `owner/repo@ref`: the folder a vendored or cached copy of the repository has.
    pub fn repository_at_ref(&self) -> String {
        format!("{}/{}@{}", self.owner, self.repo, self.reference)
    }

    /// Where a vendored copy is: the repository at `DIR/owner/repo@ref`, the action at
    /// `path` inside it.
    pub fn vendored(&self, dir: &Path) -> PathBuf {
        let root = dir.join(&self.owner).join(format!("{}@{}", self.repo, self.reference));
        if self.path.is_empty() {
            root
        } else {
            root.join(&self.path)
        }
    }
}

/// Where remote actions come from.
#[derive(Debug, Clone)]
pub struct ActionSource {
    /// `https://github.com`, a GitHub Enterprise, or a mirror: repositories are at `URL/owner/repo`.
    pub url: String,
    /// Sent as HTTP basic credentials (`x-access-token`), as GitHub accepts a token.
    pub token: Option<String>,
    /// Use only the cache.
    pub offline: bool,
    /// `$XDG_CACHE_HOME/mobius/actions`.
    pub cache: PathBuf,
    /// How long one repository's fetch may take before the run stops waiting for it.
    pub timeout: std::time::Duration,
}

impl ActionSource {
    pub fn new(cache: PathBuf) -> Self {
        ActionSource {
            url: "https://github.com".into(),
            token: None,
            offline: false,
            cache,
            timeout: std::time::Duration::from_secs(120),
        }
    }

    /// The user's cache directory for actions: `$XDG_CACHE_HOME/mobius/actions`, else
    /// `~/.cache/mobius/actions`.
    pub fn default_cache() -> PathBuf {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("mobius").join("actions")
    }
}

/// Why an action could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "the action '{uses}' is not in the cache and --offline forbids fetching it; run once without --offline, or vendor it with --action-dir DIR (as DIR/{repository})"
    )]
    NotCached { uses: String, repository: String },
    #[error("cannot fetch the action '{uses}' from {url}: {message}; vendor it with --action-dir DIR (as DIR/{repository}), or use --offline once it is cached")]
    Fetch { uses: String, url: String, repository: String, message: String },
    #[error("the action '{uses}': '{reference}' is not a branch, tag or commit of {url}")]
    UnknownRef { uses: String, reference: String, url: String },
    #[error("the action cache {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("fetching the action '{uses}' took longer than {} s; vendor it with --action-dir DIR, or use --offline once it is cached", .after.as_secs())]
    TimedOut { uses: String, after: std::time::Duration },
    #[error("the action '{uses}': cannot write its files: {source}")]
    Checkout { uses: String, source: crate::git::CheckoutError },
}

/// [`fetch`] on a thread of its own (gix's blocking HTTP transport runs a runtime of
/// its own, which must not start inside an async one), waited for at most the
/// source's `timeout`: a server that never answers cannot hold the run. Blocks the
/// caller: from async code, call it through `spawn_blocking`.
pub fn fetch_on_thread(source: &ActionSource, action: &ActionRef, uses: &str) -> Result<Fetched, FetchError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (owned, action, name) = (source.clone(), action.clone(), uses.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(fetch(&owned, &action, &name));
    });
    match rx.recv_timeout(source.timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(FetchError::TimedOut { uses: uses.to_string(), after: source.timeout })
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(FetchError::Io { path: PathBuf::new(), source: std::io::Error::other("the fetch thread panicked") })
        }
    }
}

/// A repository at a commit, ready in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The repository's files at the commit.
    pub dir: PathBuf,
    pub commit: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io { path: path.to_path_buf(), source }
}

/// A ref as a file name.
fn ref_file(reference: &str) -> String {
    percent_encoding::utf8_percent_encode(reference, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn is_full_sha(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Makes the repository of `action` at its ref ready in the cache: fetched (every
/// branch and tag, forced, so a moved tag is followed) unless offline, the ref
/// resolved to a commit, and that commit's files written once.
pub fn fetch(source: &ActionSource, action: &ActionRef, uses: &str) -> Result<Fetched, FetchError> {
    let (owner, repo) = (&action.owner, &action.repo);
    let trees = source.cache.join("trees").join(owner).join(repo);
    let refs = source.cache.join("refs").join(owner).join(repo);
    let mirror = source.cache.join("git").join(owner).join(format!("{repo}.git"));
    let repository = action.repository_at_ref();
    let url = format!("{}/{owner}/{repo}", source.url.trim_end_matches('/'));
    // A full commit id already written needs nothing else.
    if is_full_sha(&action.reference) && trees.join(action.reference.to_ascii_lowercase()).is_dir() {
        let commit = action.reference.to_ascii_lowercase();
        return Ok(Fetched { dir: trees.join(&commit), commit });
    }
    let ref_path = refs.join(ref_file(&action.reference));
    if source.offline {
        let commit = std::fs::read_to_string(&ref_path).map(|c| c.trim().to_string()).ok();
        return match commit.filter(|c| trees.join(c).is_dir()) {
            Some(commit) => Ok(Fetched { dir: trees.join(&commit), commit }),
            None => Err(FetchError::NotCached { uses: uses.to_string(), repository }),
        };
    }
    mirror_fetch(&url, &mirror, source.token.as_deref()).map_err(|message| FetchError::Fetch {
        uses: uses.to_string(),
        url: url.clone(),
        repository: repository.clone(),
        message,
    })?;
    let git = mobius_code::git::open(&mirror).map_err(|e| FetchError::Fetch {
        uses: uses.to_string(),
        url: url.clone(),
        repository: repository.clone(),
        message: e.to_string(),
    })?;
    let commit = mobius_code::git::resolve(&git, &action.reference)
        .map_err(|_| FetchError::UnknownRef {
            uses: uses.into(),
            reference: action.reference.clone(),
            url: url.clone(),
        })?
        .to_string();
    std::fs::create_dir_all(&refs).map_err(io(&refs))?;
    let tmp = refs.join(format!(".{}.{}", ref_file(&action.reference), std::process::id()));
    std::fs::write(&tmp, format!("{commit}\n")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &ref_path).map_err(io(&ref_path))?;
    let dir = trees.join(&commit);
    if !dir.is_dir() {
        std::fs::create_dir_all(&trees).map_err(io(&trees))?;
        let partial = trees.join(format!(".{commit}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        crate::git::checkout(&mirror, &commit, &partial, false)
            .map_err(|source| FetchError::Checkout { uses: uses.to_string(), source })?;
        // Another process may have written it meanwhile: the first complete copy stays.
        if std::fs::rename(&partial, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    Ok(Fetched { dir, commit })
}

/// Whether an `http://` URL names this machine (a token to it never leaves the host).
fn is_loopback(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error with its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Fetches every branch and tag of `url` into the bare repository `dir`, with a token
/// as basic credentials when given (and when the server asks for them).
fn mirror_fetch(url: &str, dir: &Path, token: Option<&str>) -> Result<(), String> {
    if token.is_some() && url.starts_with("http://") && !is_loopback(url) {
        return Err(format!("refusing to send the token over plain HTTP to {url}; use https"));
    }
    let repo = if dir.join("HEAD").exists() {
        gix::open(dir).map_err(|e| e.to_string())?
    } else {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        gix::init_bare(dir).map_err(|e| e.to_string())?
    };
    let remote = repo
        .remote_at(url)
        .map_err(|e| e.to_string())?
        .with_refspecs(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], gix::remote::Direction::Fetch)
        .map_err(|e| e.to_string())?;
    let connection = remote.connect(gix::remote::Direction::Fetch).map_err(|e| e.to_string())?;
    let token = token.map(str::to_string);
    // Never a prompt or the user's credential helpers: the token, or nothing.
    let connection = connection.with_credentials(move |action| match (&token, action) {
        (Some(token), gix::credentials::helper::Action::Get(ctx)) => Ok(Some(gix::credentials::protocol::Outcome {
            identity: gix::sec::identity::Account {
                username: "x-access-token".into(),
                password: token.clone(),
                oauth_refresh_token: None,
            },
            next: ctx.into(),
        })),
        _ => Ok(None),
    });
    connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| chain(&e))?
        .receive(gix::progress::Discard, &std::sync::atomic::AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_repository_a_path_and_a_ref() {
        let a = ActionRef::parse("actions/setup-python@v5").expect("valid");
        assert_eq!(
            (a.owner.as_str(), a.repo.as_str(), a.path.as_str(), a.reference.as_str()),
            ("actions", "setup-python", "", "v5")
        );
        let a = ActionRef::parse("github/codeql-action/init@v3").expect("valid");
        assert_eq!((a.path.as_str(), a.repository_at_ref()), ("init", "github/codeql-action@v3".to_string()));
        assert_eq!(a.vendored(Path::new("/v")), PathBuf::from("/v/github/codeql-action@v3/init"));
        assert!(ActionRef::parse("actions/checkout").is_none());
        assert!(ActionRef::parse("a/../b@v1").is_none());
        assert!(ActionRef::parse("owner@v1").is_none());
    }

    #[test]
    fn a_server_that_never_answers_cannot_hold_the_run() {
        // Accepts connections and says nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cache = std::env::temp_dir().join(format!("mobius-fetch-timeout-{}", std::process::id()));
        let mut source = ActionSource::new(cache.clone());
        source.url = format!("http://127.0.0.1:{port}");
        source.timeout = std::time::Duration::from_millis(500);
        let action = ActionRef::parse("acme/silent@v1").expect("valid");
        let started = std::time::Instant::now();
        let e = fetch_on_thread(&source, &action, "acme/silent@v1").expect_err("it times out");
        assert!(matches!(e, FetchError::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("took longer than 0 s"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(cache);
        drop(listener);
    }

    #[test]
    fn a_token_goes_over_plain_http_only_to_this_machine() {
        assert!(is_loopback("http://127.0.0.1:8080/git"));
        assert!(is_loopback("http://localhost/git"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("http://example.com/git"));
        assert!(!is_loopback("http://127.0.0.1.example.com/git"));
        let e = mirror_fetch("http://example.com/a/b", &std::env::temp_dir().join("never-made"), Some("t"))
            .expect_err("refused");
        assert!(e.contains("refusing to send the token over plain HTTP"), "{e}");
    }
}
