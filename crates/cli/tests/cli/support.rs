//! A fluent builder for `mobius run` tests: a throwaway repository, files, arguments, assertions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::rc::Rc;

pub struct Test {
    pub repo: Rc<tempfile::TempDir>,
    pub state: Rc<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Test {
    pub fn new() -> Self {
        let repo = Rc::new(tempfile::tempdir().expect("temp dir"));
        let state = Rc::new(tempfile::tempdir().expect("temp dir"));
        Test { repo, state, args: Vec::new(), env: Vec::new() }
    }

    pub fn dir(&self) -> &Path {
        self.repo.path()
    }

    /// Writes `.github/workflows/<name>`.
    pub fn workflow(self, name: &str, text: &str) -> Self {
        self.file(&format!(".github/workflows/{name}"), text)
    }

    pub fn file(self, path: &str, text: &str) -> Self {
        let full = self.repo.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
        self
    }

    /// Makes the repository a git repository with one commit on `main`.
    pub fn git(self) -> Self {
        self.git_cmd(&["init", "-q", "-b", "main"]).commit("initial")
    }

    /// Commits everything in the repository.
    pub fn commit(self, message: &str) -> Self {
        self.git_cmd(&["add", "-A"]).git_cmd(&["commit", "-q", "-m", message])
    }

    /// Runs git in the repository.
    pub fn git_cmd(self, args: &[&str]) -> Self {
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .args(args)
                .current_dir(self.repo.path())
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?}");
        };
        git(args);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Sets a variable in mobius's environment.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mobius"));
        cmd.arg("run")
            .args(&self.args)
            .arg("-C")
            .arg(self.repo.path())
            .env("XDG_STATE_HOME", self.state.path())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn run(&self) -> Outcome {
        let output = self.command().output().expect("mobius runs");
        Outcome { output, state: self.state.path().to_path_buf(), _dirs: (self.repo.clone(), self.state.clone()) }
    }
}

pub struct Outcome {
    pub output: Output,
    pub state: PathBuf,
    /// Keeps the directories alive as long as the outcome is inspected.
    _dirs: (Rc<tempfile::TempDir>, Rc<tempfile::TempDir>),
}

impl Outcome {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).to_string()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).to_string()
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout().contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(!self.stdout().contains(text), "stdout has {text:?}\n--- stdout\n{}", self.stdout());
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr().contains(text),
            "stderr lacks {text:?}\n--- stderr\n{}\n--- stdout\n{}",
            self.stderr(),
            self.stdout()
        );
        self
    }

    /// The single run directory created under the state directory.
    pub fn run_dir(&self) -> PathBuf {
        let runs = self.state.join("mobius/runs");
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(&runs).expect("runs dir").filter_map(Result::ok).map(|e| e.path()).collect();
        dirs.sort();
        dirs.pop().expect("a run directory")
    }

    /// Every step log of the run, concatenated.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        for entry in walk(&self.run_dir().join("logs")) {
            text.push_str(&std::fs::read_to_string(entry).unwrap_or_default());
        }
        text
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Whether a program is on PATH; under CI a missing one fails instead of skipping.
pub fn require(program: &str) -> bool {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{program} is required under CI=true but is not installed");
        }
        eprintln!("skipping: {program} is not installed");
    }
    found
}

/// The test images `.ci/images` builds from Debian's packages.
pub const BUSYBOX: &str = "mobius-test/busybox:1";
pub const DEBIAN: &str = "mobius-test/debian:12-1";
pub const POSTGRES: &str = "mobius-test/postgres:15-1";

/// Whether the Docker Engine answers and has the test images, building them with
/// `.ci/images` once if it lacks them. Skips with a reason when Docker is absent;
/// under CI=true that fails instead.
pub fn require_docker() -> bool {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let ready = READY.get_or_init(|| {
        let answers = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !answers {
            return Err("the Docker Engine does not answer".into());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/images");
        let built =
            Command::new(&script).stdout(Stdio::null()).output().map_err(|e| format!("{}: {e}", script.display()))?;
        if !built.status.success() {
            return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&built.stderr)));
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Docker is required under CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping: {reason}");
            false
        }
    }
}

/// Docker objects (containers, networks, volumes) whose owner label names process `pid`.
pub fn docker_objects_of(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for (kind, name) in
        [(&["ps", "-a"][..], "Names"), (&["network", "ls"][..], "Name"), (&["volume", "ls"][..], "Name")]
    {
        let format = format!("{{{{.Label \"dev.mobius.owner\"}}}} {{{{.{name}}}}}");
        let out = Command::new("docker")
            .args(kind)
            .args(["--filter", "label=dev.mobius.managed", "--format", &format])
            .output()
            .expect("docker runs");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.split(' ').next().is_some_and(|owner| owner.split(':').nth(1) == Some(&pid.to_string())) {
                found.push(format!("{} {line}", kind[0]));
            }
        }
    }
    found
}
