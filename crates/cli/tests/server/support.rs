//! A real `mobius serve` process on a free loopback port, with a throwaway data directory
//! and git repositories, on SQLite or on the PostgreSQL named by MOBIUS_TEST_POSTGRES.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mobius");

/// Where the server keeps its state.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// SQLite always; PostgreSQL too when a server is configured (required under CI).
pub fn backends() -> Vec<Backend> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut out = vec![Backend::Sqlite];
    if let Some(url) = runtime.block_on(mobius_store::testing::fresh_postgres()) {
        out.push(Backend::Postgres(url));
    }
    out
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    backend: Backend,
    args: Vec<String>,
    child: Option<Child>,
    http: reqwest::blocking::Client,
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[])
    }

    /// Starts a server with extra `mobius serve` arguments (polling every 200 ms).
    pub fn start_with(backend: Backend, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            dir,
            url: String::new(),
            token: String::new(),
            backend,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        };
        server.spawn();
        server.token =
            std::fs::read_to_string(server.data().join("admin-token")).expect("admin token").trim().to_string();
        server
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data")
            .arg(self.data())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("MOBIUS_LOG", "info")
            .env_remove("MOBIUS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.path().join("server.log")).map_or(Stdio::null(), Stdio::from));
        if !self.args.iter().any(|a| a == "--poll-interval") {
            cmd.args(["--poll-interval", "200ms"]);
        }
        if let Backend::Postgres(url) = &self.backend {
            cmd.arg("--database").arg(url);
        }
        let mut child = cmd.spawn().expect("mobius serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
                panic!(
                    "the server did not start:\n{}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                )
            });
            if let Some(url) = line.strip_prefix("mobius: listening on ") {
                self.url = url.to_string();
                break;
            }
        }
        self.child = Some(child);
    }

    /// `kill -9`, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Restarts with other extra arguments.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// An API call with the admin token: status and JSON (or text as a JSON string).
    /// The server process' id (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.token.clone(), method, path, body)
    }

    pub fn api_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method_name = method.to_string();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        if status == 500 {
            eprintln!("500 from the server; its log:\n{}", self.log());
        }
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.check_schema(&method_name, path, status, &answer);
        (status, answer)
    }

    /// Issue 17, item 6: every JSON answer of a documented operation and status is
    /// valid against the schema the server's OpenAPI document gives it.
    fn check_schema(&self, method: &str, path: &str, status: u16, answer: &Value) {
        let schemas = SCHEMAS.get_or_init(|| {
            let response = self
                .http
                .get(format!("{}/api/v1/openapi.json", self.url))
                .bearer_auth(&self.token)
                .send()
                .expect("the OpenAPI document");
            Schemas::new(response.json().expect("the OpenAPI document is JSON"))
        });
        if let Err(problems) = schemas.check(method, path, status, answer) {
            panic!("{method} {path} answered {status} outside its documented schema:\n{problems}\nanswer: {answer}");
        }
    }

    /// Raw POST with headers (webhooks).
    pub fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A UI page as the admin sees it.
    pub fn page(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("mobius_token={}", self.token))
            .send()
            .expect("the UI answers")
            .text()
            .expect("a page")
    }

    /// The `mobius` client against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("MOBIUS_SERVER", &self.url)
            .env("MOBIUS_TOKEN", &self.token)
            .current_dir(self.dir.path())
            .output()
            .expect("mobius runs")
    }

    pub fn run(&self, id: i64) -> Value {
        let (status, run) = self.api("GET", &format!("/api/v1/runs/{id}"), None);
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Waits for a run to reach `status`.
    pub fn wait_run(&self, id: i64, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.run(id);
            if run["status"] == status {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never reached {status}: {run}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `count` runs exist in the project; returns them, oldest first.
    pub fn wait_runs(&self, project: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, runs) = self.api("GET", &format!("/api/v1/runs?project={project}"), None);
            let mut runs = runs.as_array().cloned().unwrap_or_default();
            if runs.len() >= count {
                runs.reverse();
                return runs;
            }
            assert!(Instant::now() < deadline, "{project} never had {count} runs: {runs:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds a project; returns the answer (project, runs, webhook secret).
    pub fn add_project(&self, name: &str, repo: &Path) -> Value {
        let body = serde_json::json!({"name": name, "repo": repo.display().to_string()});
        let (status, answer) = self.api("POST", "/api/v1/projects", Some(body));
        assert_eq!(status, 201, "{answer}");
        answer
    }
}

static SCHEMAS: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();

/// The response schemas of the served OpenAPI document, by path template, method
/// and status.
pub struct Schemas {
    document: Value,
    /// Each response schema compiled once, by template, method and status.
    compiled: std::sync::Mutex<std::collections::HashMap<(String, String, u16), std::sync::Arc<jsonschema::Validator>>>,
}

impl Schemas {
    fn new(document: Value) -> Schemas {
        Schemas { document, compiled: Default::default() }
    }

    /// The documented template a concrete path matches (`/api/v1/runs/7` →
    /// `/api/v1/runs/{id}`), literal segments winning over parameters.
    fn template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for template in self.document["paths"].as_object()?.keys() {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let fits = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') {
                    true
                } else {
                    literal += 1;
                    t == s
                }
            });
            if fits && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((literal, template.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    fn check(&self, method: &str, path: &str, status: u16, answer: &Value) -> Result<(), String> {
        let Some(template) = self.template(path) else { return Ok(()) };
        let response = &self.document["paths"][&template][method.to_lowercase()]["responses"][status.to_string()];
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Ok(());
        }
        let key = (template.clone(), method.to_lowercase(), status);
        let cached = self.compiled.lock().unwrap().get(&key).cloned();
        let validator = match cached {
            Some(validator) => validator,
            None => {
                let mut root = serde_json::json!({ "components": self.document["components"].clone() });
                if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
                    root.extend(schema.clone());
                }
                let validator = std::sync::Arc::new(
                    jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft202012)
                        .build(&root)
                        .map_err(|e| format!("the schema of {method} {template} {status} does not compile: {e}"))?,
                );
                self.compiled.lock().unwrap().insert(key, validator.clone());
                validator
            }
        };
        let problems: Vec<String> =
            validator.iter_errors(answer).map(|e| format!("  at {}: {e}", e.instance_path())).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A git repository on `main` holding the given files, committed.
pub struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    pub fn new(files: &[(&str, &str)]) -> Repo {
        Repo::at("", files)
    }

    /// A repository at `relative` inside a fresh temporary directory (so two
    /// repositories' paths can end alike).
    pub fn at(relative: &str, files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join(relative);
        std::fs::create_dir_all(&root).expect("mkdir");
        let repo = Repo { _dir: dir, root };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.commit(files, "initial");
        repo
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.root)
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes the files and commits them; returns the new commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let full = self.root.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// An exporter on loopback serving the text format: `body()` is called for every scrape.
pub fn exporter(body: impl Fn() -> String + Send + 'static) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = body();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The schema check that every `Server::api` call makes does catch an answer
/// outside its schema (and passes the real one).
#[test]
fn the_schema_check_catches_an_answer_outside_its_schema() {
    let server = Server::start(Backend::Sqlite);
    let (_, projects) = server.api("GET", "/api/v1/projects", None);
    let schemas = SCHEMAS.get().expect("the document, read by the first call");
    assert!(schemas.check("GET", "/api/v1/projects", 200, &projects).is_ok());
    let wrong = serde_json::json!([{"id": "one", "name": "shop"}]);
    let problems = schemas.check("GET", "/api/v1/projects", 200, &wrong).expect_err("a wrong answer passed");
    assert!(problems.contains("/0/id"), "{problems}");
    let status = serde_json::json!({"id": 1, "status": "sleeping"});
    assert!(schemas.check("GET", "/api/v1/runs/1", 200, &status).is_err(), "an unknown status passed");
}

/// Whether the Docker Engine answers; the test images (`.ci/images`) are built once
/// if it does. Skips with a reason when it does not; under CI=true that fails.
pub fn docker_with_test_images() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let answers = Command::new("docker").arg("version").output().is_ok_and(|o| o.status.success());
        if !answers {
            assert!(std::env::var("CI").is_err(), "the Docker Engine is required under CI");
            eprintln!("skipped: the Docker Engine does not answer");
            return false;
        }
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/images");
        let built = Command::new(&images).output().unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        true
    })
}

/// The instance containers of the agent of the server whose data directory is `data`
/// (their `dev.mobius.agent` label names the agent's directory inside it).
pub fn instance_containers(data: &Path) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", "label=dev.mobius.agent", "--format", "{{.ID}} {{.Label \"dev.mobius.agent\"}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, agent)| Path::new(agent).starts_with(data))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Waits until the agent of `data` (stopping with its server) has removed its containers.
pub fn wait_for_no_instance_containers(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !instance_containers(data).is_empty() {
        assert!(Instant::now() < deadline, "the stopped agent left its containers");
        std::thread::sleep(Duration::from_millis(200));
    }
}
