//! Remote actions fetched with gix over HTTP from a git server on loopback
//! (`--actions-url`): tags, branches, commits, a moved tag, an unknown ref, a private
//! repository with a token, the cache and `--offline`, and actions that use files
//! outside their folder.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

use crate::http_git::HttpGit;
use crate::support::Test;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository `owner/name` served from `root` (bare, as a forge keeps it), with a
/// working copy to commit into.
struct Remote {
    work: PathBuf,
    bare: PathBuf,
}

impl Remote {
    fn new(root: &Path, owner_name: &str, files: &[(&str, &str)]) -> Remote {
        let work = root.join("work").join(owner_name);
        let bare = root.join("srv").join(owner_name);
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        let remote = Remote { work, bare };
        remote.commit(files, "first");
        std::fs::create_dir_all(remote.bare.parent().unwrap()).unwrap();
        git(root, &["clone", "-q", "--bare", remote.work.to_str().unwrap(), remote.bare.to_str().unwrap()]);
        remote
    }

    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let full = self.work.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the branch and every tag to the served repository (moved tags forced).
    fn publish(&self) {
        git(&self.work, &["push", "-q", "--force", self.bare.to_str().unwrap(), "main", "--tags"]);
    }
}

fn greeting(word: &str) -> String {
    format!("name: hello\nruns:\n  using: composite\n  steps:\n    - run: echo \"{word} from the remote action\"\n      shell: sh\n")
}

const USES: &str = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: acme/hello@REF\n";

struct Setup {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
    remote: Remote,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let remote = Remote::new(root.path(), "acme/hello", &[("action.yml", &greeting("first"))]);
    git(&remote.work, &["tag", "v1"]);
    remote.publish();
    Setup { root, cache: tempfile::tempdir().unwrap(), remote }
}

impl Setup {
    fn run(&self, http: &HttpGit, reference: &str, extra: &[&str]) -> crate::support::Outcome {
        let url = http.url();
        let mut args = vec!["--actions-url", url.as_str()];
        args.extend_from_slice(extra);
        Test::new()
            .workflow("r.yml", &USES.replace("REF", reference))
            .env("XDG_CACHE_HOME", self.cache.path().to_str().unwrap())
            .args(&args)
            .run()
    }
}

#[test]
fn tags_branches_and_commits_are_fetched_and_a_moved_tag_is_followed() {
    let s = setup();
    let Some(http) = HttpGit::start(&s.root.path().join("srv"), None) else { return };
    let first = git(&s.remote.work, &["rev-parse", "HEAD"]);
    s.run(&http, "v1", &[])
        .code(0)
        .stdout_has("first from the remote action")
        .stdout_has(&format!("at commit {first}"));
    // The tag moves to a new commit: the next run follows it.
    let second = s.remote.commit(&[("action.yml", &greeting("second"))], "second");
    git(&s.remote.work, &["tag", "-f", "v1"]);
    s.remote.publish();
    s.run(&http, "v1", &[])
        .code(0)
        .stdout_has("second from the remote action")
        .stdout_has(&format!("at commit {second}"));
    s.run(&http, "main", &[]).code(0).stdout_has("second from the remote action");
    s.run(&http, &first, &[]).code(0).stdout_has("first from the remote action");
}

#[test]
fn an_unknown_ref_stops_the_run_before_it_starts() {
    let s = setup();
    let Some(http) = HttpGit::start(&s.root.path().join("srv"), None) else { return };
    let out = s.run(&http, "v9", &[]);
    out.code(2).stderr_has("r.yml:6:9: the action 'acme/hello@v9': 'v9' is not a branch, tag or commit");
    let out = Test::new()
        .workflow("r.yml", &USES.replace("REF", "v1"))
        .env("XDG_CACHE_HOME", s.cache.path().to_str().unwrap())
        .args(&["--actions-url", "http://127.0.0.1:9"])
        .run();
    out.code(2)
        .stderr_has("cannot fetch the action 'acme/hello@v1' from http://127.0.0.1:9/acme/hello")
        .stderr_has("--action-dir");
}

#[test]
fn offline_runs_use_the_cache_and_name_what_is_missing() {
    let s = setup();
    let Some(http) = HttpGit::start(&s.root.path().join("srv"), None) else { return };
    s.run(&http, "v1", &[]).code(0);
    drop(http);
    // The server is gone: the cached commit still runs.
    let url = "http://127.0.0.1:9";
    let offline = |reference: &str| {
        Test::new()
            .workflow("r.yml", &USES.replace("REF", reference))
            .env("XDG_CACHE_HOME", s.cache.path().to_str().unwrap())
            .args(&["--offline", "--actions-url", url])
            .run()
    };
    offline("v1").code(0).stdout_has("first from the remote action");
    offline("main").code(2).stderr_has("'acme/hello@main' is not in the cache and --offline forbids fetching it");
}

#[test]
fn a_private_repository_needs_the_token() {
    let s = setup();
    let Some(http) = HttpGit::start(&s.root.path().join("srv"), Some("s3cret")) else { return };
    s.run(&http, "v1", &[]).code(2).stderr_has("cannot fetch the action 'acme/hello@v1'");
    s.run(&http, "v1", &["--actions-token", "s3cret"]).code(0).stdout_has("first from the remote action");
    // GITHUB_TOKEN given as a secret is the token too.
    let fresh = tempfile::tempdir().unwrap();
    let url = http.url();
    Test::new()
        .workflow("r.yml", &USES.replace("REF", "v1"))
        .env("XDG_CACHE_HOME", fresh.path().to_str().unwrap())
        .args(&["--actions-url", &url, "-s", "GITHUB_TOKEN=s3cret"])
        .run()
        .code(0)
        .stdout_has("first from the remote action");
}

/// Issue 18 (also fix): an action in a folder of its repository may use files outside
/// it (`main: '../lib/index.js'`, as codeql-action does); fetched or vendored, the
/// repository is whole at `owner/repo@ref` and the action at `path` inside it.
#[test]
fn an_action_in_a_folder_reaches_files_of_its_repository() {
    if !crate::support::require("node") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let action = "name: init\nruns:\n  using: node20\n  main: '../lib/index.js'\n";
    let remote = Remote::new(
        root.path(),
        "acme/multi",
        &[("init/action.yml", action), ("lib/index.js", "console.log('shared lib ran')\n")],
    );
    git(&remote.work, &["tag", "v3"]);
    remote.publish();
    let Some(http) = HttpGit::start(&root.path().join("srv"), None) else { return };
    let wf = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: acme/multi/init@v3\n";
    let cache = tempfile::tempdir().unwrap();
    let url = http.url();
    Test::new()
        .workflow("m.yml", wf)
        .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
        .args(&["--actions-url", &url])
        .run()
        .code(0)
        .stdout_has("shared lib ran");
    // The same layout vendored: DIR/acme/multi@v3 holds the repository.
    let vendor = tempfile::tempdir().unwrap();
    let dest = vendor.path().join("acme").join("multi@v3");
    git(root.path(), &["clone", "-q", remote.bare.to_str().unwrap(), dest.to_str().unwrap()]);
    Test::new()
        .workflow("m.yml", wf)
        .args(&["--offline", "--action-dir", vendor.path().to_str().unwrap()])
        .run()
        .code(0)
        .stdout_has("shared lib ran");
}

#[test]
fn a_remote_reusable_workflow_is_fetched_and_called() {
    let root = tempfile::tempdir().unwrap();
    let callee = "on:\n  workflow_call:\n    inputs:\n      who: { type: string }\njobs:\n  inner:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"called for ${{ inputs.who }}\"\n";
    let remote = Remote::new(root.path(), "acme/flows", &[(".github/workflows/w.yml", callee)]);
    git(&remote.work, &["tag", "v1"]);
    remote.publish();
    let Some(http) = HttpGit::start(&root.path().join("srv"), None) else { return };
    let caller =
        "on: push\njobs:\n  call:\n    uses: acme/flows/.github/workflows/w.yml@v1\n    with: { who: mobius }\n";
    let cache = tempfile::tempdir().unwrap();
    let url = http.url();
    Test::new()
        .workflow("c.yml", caller)
        .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
        .args(&["--actions-url", &url])
        .run()
        .code(0)
        .stdout_has("called for mobius");
}

/// Issue 18 acceptance: the real `actions/setup-python@v5` (the copy in
/// `../shared/actions`), served by the loopback git server, finds the host's Python in
/// the tool cache `mobius toolcache add python` filled, and runs again with `--offline`.
#[test]
fn setup_python_finds_the_hosts_python_in_the_tool_cache_and_runs_offline() {
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/actions/actions/setup-python@v5");
    if !copy.join("action.yml").is_file() {
        assert!(std::env::var("CI").is_err(), "{} is required under CI", copy.display());
        eprintln!("skipping: {} is missing", copy.display());
        return;
    }
    if !crate::support::require("node") || !crate::support::require("python3") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let remote = Remote::new(root.path(), "actions/setup-python", &[("LICENSE", "(replaced by the copy)\n")]);
    let status = Command::new("cp").arg("-R").arg(format!("{}/.", copy.display())).arg(&remote.work).status().unwrap();
    assert!(status.success());
    remote.commit(&[], "setup-python v5");
    git(&remote.work, &["tag", "v5"]);
    remote.publish();
    let http = HttpGit::start(&root.path().join("srv"), None);
    let Some(http) = http else { return };
    let version =
        Command::new("python3").args(["-c", "import platform; print(platform.python_version())"]).output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let wf = format!(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/setup-python@v5\n        id: py\n        with:\n          python-version: '{minor}'\n      - run: |\n          python --version\n          echo \"found=${{{{ steps.py.outputs.python-version }}}} at $pythonLocation\"\n"
    );
    let cache = tempfile::tempdir().unwrap();
    let t = Test::new().workflow("py.yml", &wf).env("XDG_CACHE_HOME", cache.path().to_str().unwrap());
    let added = Command::new(env!("CARGO_BIN_EXE_mobius"))
        .args(["toolcache", "add", "python"])
        .env("XDG_STATE_HOME", t.state.path())
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(String::from_utf8_lossy(&added.stdout).contains(&format!("added Python {version}")));
    let url = http.url();
    let online = t.args(&["--actions-url", &url]);
    online
        .run()
        .code(0)
        .stdout_has(&format!("Python {version}"))
        .stdout_has(&format!("found={version} at "))
        .stdout_has("Using actions/setup-python@v5 at commit");
    drop(http);
    online.args(&["--offline"]).run().code(0).stdout_has(&format!("Python {version}"));
}

/// `git daemon` serving the same repositories over git://: the actions URL may name it.
#[test]
fn actions_are_fetched_from_a_git_daemon_too() {
    let s = setup();
    let srv = s.root.path().join("srv");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // `git daemon` runs `git-daemon` as a child that outlives a killed `git`: start it directly.
    let exec_path = git(s.root.path(), &["--exec-path"]);
    let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
        .arg(format!("--base-path={}", srv.display()))
        .arg(&srv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _daemon = Stop(daemon);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "git daemon never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let first = git(&s.remote.work, &["rev-parse", "HEAD"]);
    let url = format!("git://127.0.0.1:{port}");
    Test::new()
        .workflow("r.yml", &USES.replace("REF", "v1"))
        .env("XDG_CACHE_HOME", s.cache.path().to_str().unwrap())
        .args(&["--actions-url", &url])
        .run()
        .code(0)
        .stdout_has("first from the remote action")
        .stdout_has(&format!("at commit {first}"));
}
