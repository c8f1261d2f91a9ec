//! Client commands against a running server: projects, secrets, variables, runs, logs,
//! dispatch, cancel, re-run, tokens, the event log and the audit log.

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use mobius_api as api;
use serde_json::{json, Value};
use std::io::IsTerminal as _;
use std::io::Read;
use std::process::ExitCode;

use crate::table::{state, Cell, Table};

/// Where the server is and who is asking (global options).
#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// The server's URL (http://HOST:PORT, or HOST:PORT for plain HTTP).
    #[arg(
        long = "server",
        global = true,
        env = "MOBIUS_SERVER",
        hide_env_values = true,
        default_value = "http://127.0.0.1:7300",
        value_parser = server_url
    )]
    server: String,
    /// An API token (default: ./mobius-data/admin-token when readable).
    #[arg(long = "token", global = true, env = "MOBIUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `--server`: a URL, or `HOST:PORT` meaning plain HTTP.
fn server_url(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let url = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| format!("`{text}` is not a server address ({e}); write http://HOST:PORT or HOST:PORT"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{text}` is not a server address; write http://HOST:PORT, https://HOST or HOST:PORT"));
    }
    Ok(url)
}

fn parse_executor(text: &str) -> Result<api::ExecutorKind, String> {
    match text {
        "host" => Ok(api::ExecutorKind::Host),
        "docker" => Ok(api::ExecutorKind::Docker),
        other => Err(format!("'{other}' is not an executor; expected host or docker")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// Add a git repository as a project; its push workflows run on the branch head at once.
    Add {
        /// The project's name (letters, digits, `-` and `_`).
        name: String,
        /// A local path to a git repository.
        #[arg(long = "repo", value_name = "PATH")]
        repo: String,
        /// The default branch (default: the repository's HEAD branch).
        #[arg(long = "branch")]
        branch: Option<String>,
        /// The webhook secret (default: generated and shown once).
        #[arg(long = "webhook-secret", value_name = "S")]
        webhook_secret: Option<String>,
        /// Where jobs without `container:` run: host (the job sandbox) or docker.
        #[arg(long = "executor", value_parser = parse_executor, value_name = "host|docker")]
        executor: Option<api::ExecutorKind>,
        /// The image jobs run in with --executor docker.
        #[arg(long = "image", value_name = "IMAGE")]
        image: Option<String>,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List projects.
    List {
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Set a secret; the value is read from standard input.
    Set {
        /// The secret's name (the `secrets` context's key).
        name: String,
        /// The project.
        #[arg(long = "project", value_name = "P")]
        project: String,
    },
    /// List secret names (values never leave the server).
    List {
        /// The project.
        #[arg(long = "project", value_name = "P")]
        project: String,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Delete {
        /// The secret's name.
        name: String,
        /// The project.
        #[arg(long = "project", value_name = "P")]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VarCmd {
    /// Set a configuration variable (the `vars` context).
    Set {
        /// The variable's name (the `vars` context's key).
        name: String,
        /// The value.
        value: String,
        /// The project.
        #[arg(long = "project", value_name = "P")]
        project: String,
    },
    /// List variables.
    List {
        /// The project.
        #[arg(long = "project", value_name = "P")]
        project: String,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is shown once.
    Create {
        /// What the token may do: viewer reads, developer runs, maintainer deploys, admin manages.
        #[arg(long = "role", value_name = "viewer|developer|maintainer|admin")]
        role: String,
        /// Limit the token to one project.
        #[arg(long = "project", value_name = "P")]
        project: Option<String>,
        /// Expire after this long (30d, 12h...).
        #[arg(long = "expires", value_name = "DURATION")]
        expires: Option<String>,
        /// A name to know the token by in `token list` and the audit log.
        #[arg(long = "name")]
        name: Option<String>,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their values).
    List {
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
    },
}

/// A client command.
#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Manage project secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Manage project variables.
    #[command(subcommand)]
    Var(VarCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// List runs, newest first.
    Runs {
        /// Only runs of this project.
        #[arg(long = "project", value_name = "P")]
        project: Option<String>,
        /// A status (queued, in_progress, completed) or a conclusion (success, failure, cancelled, skipped).
        #[arg(long = "status", value_name = "STATUS")]
        status: Option<String>,
        /// Only runs of this workflow file (ci.yml or its path).
        #[arg(long = "workflow", value_name = "FILE")]
        workflow: Option<String>,
        /// Only runs on this branch.
        #[arg(long = "branch", value_name = "B")]
        branch: Option<String>,
        /// Only runs triggered by this event (push, pull_request, workflow_dispatch, schedule…).
        #[arg(long = "event", value_name = "E")]
        event: Option<String>,
        /// Only runs started by this actor.
        #[arg(long = "actor", value_name = "NAME")]
        actor: Option<String>,
        /// At most this many, newest first.
        #[arg(long = "limit", default_value_t = 30)]
        limit: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: jobs, steps, status and test summary.
    Show {
        /// The run's id.
        run: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's logs (`-f` follows a running run to its end).
    Logs {
        /// The run's id.
        run: i64,
        /// Only this job (name or id).
        #[arg(long = "job", value_name = "J")]
        job: Option<String>,
        /// Follow a running run until it ends (exit status 1 unless it succeeded).
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dispatch a workflow (workflow_dispatch) by its file name.
    Dispatch {
        /// The project.
        project: String,
        /// The workflow file: ci.yml, or ci for ci.yml or ci.yaml.
        workflow: String,
        /// A branch or tag (default: the project's branch).
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// A workflow_dispatch input, NAME=VALUE (repeat for more).
        #[arg(long = "input", value_name = "K=V")]
        inputs: Vec<String>,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running run.
    Cancel {
        /// The run's id.
        run: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-run a completed run (all jobs, or with --failed only those that did not succeed).
    Rerun {
        /// The run's id.
        run: i64,
        /// Keep the jobs that succeeded (with their outputs); run the others again.
        #[arg(long)]
        failed: bool,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Deploy(crate::deploy_client::DeployCmd),
    #[command(flatten)]
    Monitor(crate::monitor_client::MonitorCmd),
    /// What happened, in order: runs, releases, rollouts, alerts, incidents, changes.
    Events(crate::events_client::EventsArgs),
    /// Read the audit log (admin).
    Audit {
        /// At most this many entries, newest first.
        #[arg(long = "limit", default_value_t = 50)]
        limit: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// An answer the user should see as an error.
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(conn: &Connection) -> Client {
        let token = conn
            .token
            .clone()
            .or_else(|| std::fs::read_to_string("mobius-data/admin-token").ok().map(|t| t.trim().to_string()));
        Client { base: conn.server.trim_end_matches('/').to_string(), token, http: reqwest::Client::new() }
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        // Paths of other APIs (Alertmanager's `/api/v2`, Loki's `/loki`) are given whole.
        let url = if path.starts_with("/api/") || path.starts_with("/loki/") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1{path}", self.base)
        };
        let builder = self.http.request(method, url);
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    pub(crate) async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let response = builder.send().await.map_err(|e| {
            Failure(format!(
                "cannot reach the server at {}: {e} (start one with `mobius serve`, or pass --server)",
                self.base
            ))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(text);
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            " (pass --token or set MOBIUS_TOKEN)"
        } else {
            ""
        };
        Err(Failure(format!("{} {message}{hint}", status.as_u16())))
    }

    pub(crate) async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut builder = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = self.send(builder).await?;
        // An empty body (204, or Alertmanager's 200 to a DELETE) is no answer, not an error.
        let body = response.bytes().await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

pub fn main(conn: Connection, command: ClientCmd) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mobius: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(Client::new(&conn), command)) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("mobius: {message}");
            ExitCode::FAILURE
        }
    }
}

/// An answer read into the API's type for it (`mobius_api`), naming the type when
/// the server's answer does not fit.
pub(crate) fn answer_as<T: serde::de::DeserializeOwned>(answer: &Value) -> Result<T, Failure> {
    serde_json::from_value(answer.clone()).map_err(|e| {
        Failure(format!(
            "the server's answer is not a {}: {e}",
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("value")
        ))
    })
}

/// A request body from the API's type for it.
fn body_of(value: &impl serde::Serialize) -> Result<Value, Failure> {
    Ok(serde_json::to_value(value)?)
}

/// Prints an array answer as JSON, or as a table under `headers` with a row per item
/// read into the API's type `T`.
pub(crate) fn print_typed_table<T: serde::de::DeserializeOwned>(
    answer: &Value,
    json: bool,
    headers: &[&'static str],
    row: impl Fn(&T) -> Vec<Cell>,
) -> Result<(), Failure> {
    if json {
        print_json(answer);
    } else {
        let items: Vec<T> = answer_as(answer)?;
        let mut table = Table::new(headers);
        items.iter().for_each(|item| table.row(row(item)));
        table.print();
    }
    Ok(())
}

/// Prints an array answer as JSON, or as a table under `headers` with a row per item.
pub(crate) fn print_table(answer: &Value, json: bool, headers: &[&'static str], row: impl Fn(&Value) -> Vec<Cell>) {
    if json {
        print_json(answer);
    } else {
        let mut table = Table::new(headers);
        answer.as_array().into_iter().flatten().for_each(|item| table.row(row(item)));
        table.print();
    }
}

pub(crate) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

const RUN_COLUMNS: [&str; 9] =
    ["ID", "STATE", "PROJECT", "WORKFLOW", "EVENT", "BRANCH", "SHA", "DURATION", "FAILED JOBS"];

fn run_row(run: &Value) -> Vec<Cell> {
    let duration = run["duration_ms"].as_i64().map_or_else(|| "-".to_string(), mobius_core::duration::human_signed);
    let failed: Vec<&str> = run["failed_jobs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let failed = if failed.is_empty() { "-".to_string() } else { failed.join(", ") };
    vec![
        run["id"].to_string().into(),
        state(run["conclusion"].as_str().unwrap_or(s(run, "status"))),
        s(run, "project").into(),
        s(run, "name").into(),
        s(run, "event").into(),
        s(run, "head_branch").into(),
        s(run, "head_sha").chars().take(7).collect::<String>().into(),
        duration.into(),
        failed.into(),
    ]
}

fn parse_pairs(pairs: &[String], what: &str) -> Result<serde_json::Map<String, Value>, Failure> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| Failure(format!("{what} '{pair}' is not K=V")))?;
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}

async fn dispatch(client: Client, command: ClientCmd) -> Result<ExitCode, Failure> {
    use reqwest::Method;
    match command {
        ClientCmd::Deploy(command) => return crate::deploy_client::dispatch(client, command).await,
        ClientCmd::Monitor(command) => return crate::monitor_client::dispatch(client, command).await,
        ClientCmd::Events(args) => return crate::events_client::events(&client, args).await,
        ClientCmd::Project(ProjectCmd::Add { name, repo, branch, webhook_secret, executor, image, json }) => {
            // A relative path means the caller's directory, not the server's.
            let repo = std::fs::canonicalize(&repo).map_or(repo, |p| p.display().to_string());
            let executor = match (executor, image) {
                (None, None) => None,
                (kind, image) => Some(api::Executor { kind: kind.unwrap_or(api::ExecutorKind::Docker), image }),
            };
            let body = body_of(&api::NewProject { name, repo, branch, webhook_secret, executor })?;
            let answer = client.json(Method::POST, "/projects", Some(body)).await?;
            if json {
                print_json(&answer);
            } else {
                let created: api::ProjectCreated = answer_as(&answer)?;
                let p = &created.project;
                println!("project {} added: {} (branch {})", p.name, p.repo, p.branch);
                if let Some(secret) = &created.webhook_secret {
                    println!("webhook secret (shown once): {secret}");
                }
                for run in &created.runs {
                    println!("queued run {} ({})", run.id, run.name);
                }
            }
        }
        ClientCmd::Project(ProjectCmd::List { json }) => {
            let answer = client.json(Method::GET, "/projects", None).await?;
            print_typed_table(&answer, json, &["NAME", "BRANCH", "REPOSITORY"], |p: &api::Project| {
                vec![p.name.clone().into(), p.branch.clone().into(), p.repo.clone().into()]
            })?;
        }
        ClientCmd::Secret(SecretCmd::Set { name, project }) => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value)?;
            // A trailing newline from `echo` or a terminal is not part of the secret.
            let value = value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value);
            client
                .json(
                    Method::PUT,
                    &format!("/projects/{project}/secrets/{name}"),
                    Some(body_of(&api::SetValue { value: value.to_string() })?),
                )
                .await?;
            println!("secret {name} set for {project}");
        }
        ClientCmd::Secret(SecretCmd::List { project, json }) => {
            let answer = client.json(Method::GET, &format!("/projects/{project}/secrets"), None).await?;
            print_typed_table(&answer, json, &["NAME", "UPDATED"], |v: &api::SecretEntry| {
                vec![v.name.clone().into(), v.updated_at.clone().unwrap_or_default().into()]
            })?;
        }
        ClientCmd::Secret(SecretCmd::Delete { name, project }) => {
            client.json(Method::DELETE, &format!("/projects/{project}/secrets/{name}"), None).await?;
            println!("secret {name} deleted from {project}");
        }
        ClientCmd::Var(VarCmd::Set { name, value, project }) => {
            client
                .json(
                    Method::PUT,
                    &format!("/projects/{project}/variables/{name}"),
                    Some(body_of(&api::SetValue { value })?),
                )
                .await?;
            println!("variable {name} set for {project}");
        }
        ClientCmd::Var(VarCmd::List { project, json }) => {
            let answer = client.json(Method::GET, &format!("/projects/{project}/variables"), None).await?;
            print_typed_table(&answer, json, &["NAME", "VALUE"], |v: &api::VariableEntry| {
                vec![v.name.clone().into(), v.value.clone().into()]
            })?;
        }
        ClientCmd::Token(TokenCmd::Create { role, project, expires, name, json }) => {
            let body = body_of(&api::NewToken { role, project, expires_in: expires, name })?;
            let answer = client.json(Method::POST, "/tokens", Some(body)).await?;
            if json {
                print_json(&answer);
            } else {
                let created: api::TokenCreated = answer_as(&answer)?;
                println!("{}", created.secret);
                let role = serde_json::to_value(created.token.role)?;
                eprintln!(
                    "token {} ({}) created; it is not shown again",
                    created.token.id,
                    role.as_str().unwrap_or("")
                );
            }
        }
        ClientCmd::Token(TokenCmd::List { json }) => {
            let answer = client.json(Method::GET, "/tokens", None).await?;
            print_typed_table(
                &answer,
                json,
                &["ID", "NAME", "ROLE", "PROJECT", "STATE", "EXPIRES"],
                |t: &api::Token| {
                    let role = serde_json::to_value(t.role).ok();
                    vec![
                        t.id.to_string().into(),
                        t.name.clone().into(),
                        role.as_ref().and_then(Value::as_str).unwrap_or_default().to_string().into(),
                        t.project.clone().unwrap_or_else(|| "*".into()).into(),
                        state(if t.revoked_at.is_some() { "revoked" } else { "live" }),
                        t.expires_at.clone().unwrap_or_else(|| "never".into()).into(),
                    ]
                },
            )?;
        }
        ClientCmd::Token(TokenCmd::Revoke { id }) => {
            client.json(Method::DELETE, &format!("/tokens/{id}"), None).await?;
            println!("token {id} revoked");
        }
        ClientCmd::Runs { project, status, workflow, branch, event, actor, limit, json } => {
            let mut query = vec![("limit", limit.to_string())];
            let filters = [
                ("project", project),
                ("status", status),
                ("workflow", workflow),
                ("branch", branch),
                ("event", event),
                ("actor", actor),
            ];
            query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            let response = client.send(client.request(Method::GET, "/runs").query(&query)).await?;
            let answer: Value = response.json().await?;
            print_table(&answer, json, &RUN_COLUMNS, run_row);
        }
        ClientCmd::Show { run, json } => {
            let answer = client.json(Method::GET, &format!("/runs/{run}"), None).await?;
            if json {
                print_json(&answer);
            } else {
                show(&answer);
            }
        }
        ClientCmd::Logs { run, job, follow, json } => return logs(&client, run, job, follow, json).await,
        ClientCmd::Dispatch { project, workflow, git_ref, inputs, json } => {
            let inputs = parse_pairs(&inputs, "input")?;
            let body = body_of(&api::Dispatch { git_ref, inputs })?;
            let answer = client
                .json(Method::POST, &format!("/projects/{project}/workflows/{workflow}/dispatches"), Some(body))
                .await?;
            if json {
                print_json(&answer["runs"]);
            } else {
                for run in answer_as::<api::RunList>(&answer)?.runs {
                    println!("queued run {} ({} on {})", run.id, run.name, run.head_branch);
                }
            }
        }
        ClientCmd::Cancel { run, json } => {
            let answer = client.json(Method::POST, &format!("/runs/{run}/cancel"), None).await?;
            if json {
                print_json(&answer);
            } else {
                let cancelled: api::Run = answer_as(&answer)?;
                println!("run {run} cancelling ({})", cancelled.status);
            }
        }
        ClientCmd::Rerun { run, failed, json } => {
            let body = body_of(&api::Rerun { failed_only: failed })?;
            let answer = client.json(Method::POST, &format!("/runs/{run}/rerun"), Some(body)).await?;
            if json {
                print_json(&answer["runs"]);
            } else {
                for new in answer_as::<api::RunList>(&answer)?.runs {
                    println!("queued run {} (attempt {} of run {run})", new.id, new.run_attempt);
                }
            }
        }
        ClientCmd::Audit { limit, json } => {
            let answer = client.json(Method::GET, &format!("/audit?limit={limit}"), None).await?;
            print_table(&answer, json, &["AT", "ACTOR", "ACTION", "TARGET", "FROM"], |e| {
                vec![
                    s(e, "at").into(),
                    s(e, "actor").into(),
                    s(e, "action").into(),
                    s(e, "target").into(),
                    s(e, "remote").into(),
                ]
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mark(conclusion: Option<&str>, status: &str) -> &'static str {
    match (conclusion, status) {
        (Some("success"), _) => "✓",
        (Some("failure"), _) => "✗",
        (Some("cancelled"), _) => "⊘",
        (Some("skipped"), _) => "-",
        (_, "in_progress") => "●",
        _ => "○",
    }
}

fn show(run: &Value) {
    println!(
        "run {} · {} #{} (attempt {}) · {}",
        run["id"],
        s(run, "name"),
        run["run_number"],
        run["run_attempt"],
        run["conclusion"].as_str().unwrap_or(s(run, "status"))
    );
    println!(
        "project {} · {} on {} · {} · by {}",
        s(run, "project"),
        s(run, "event"),
        s(run, "head_branch"),
        s(run, "head_sha"),
        s(run, "actor")
    );
    if let Some(reason) = run["reason"].as_str() {
        println!("reason: {reason}");
    }
    for job in run["jobs"].as_array().into_iter().flatten() {
        println!("{} {}", mark(job["conclusion"].as_str(), s(job, "status")), s(job, "name"));
        for step in job["steps"].as_array().into_iter().flatten() {
            println!("    {} {}", mark(step["conclusion"].as_str(), s(step, "status")), s(step, "name"));
        }
    }
    for check in run["checks"].as_array().into_iter().flatten() {
        println!(
            "{} check {}: {}",
            mark(check["conclusion"].as_str(), "completed"),
            s(check, "name"),
            s(check, "summary")
        );
    }
    let annotations = run["annotations"].as_array().cloned().unwrap_or_default();
    if !annotations.is_empty() {
        println!("Annotations:");
        for a in &annotations {
            let origin = if s(a, "job").is_empty() { s(a, "source").to_string() } else { s(a, "job").to_string() };
            let place = match (a["file"].as_str(), a["line"].as_u64(), a["col"].as_u64()) {
                (Some(f), Some(l), Some(c)) => format!(" {f}:{l}:{c}"),
                (Some(f), Some(l), None) => format!(" {f}:{l}"),
                (Some(f), None, _) => format!(" {f}"),
                _ => String::new(),
            };
            println!("  {} [{origin}]{place}: {}", s(a, "level"), s(a, "message"));
        }
    }
    let tests = &run["tests"];
    if tests["total"].as_i64().unwrap_or(0) > 0 {
        println!(
            "tests: {} total, {} passed, {} failed, {} errors, {} skipped",
            tests["total"], tests["passed"], tests["failures"], tests["errors"], tests["skipped"]
        );
        for report in tests["reports"].as_array().into_iter().flatten() {
            for case in report["cases"].as_array().into_iter().flatten() {
                println!("  ✗ {} {}: {}", s(case, "classname"), s(case, "name"), s(case, "message"));
            }
        }
    }
}

/// How `mobius logs` prints lines: colours and folded groups on a terminal; plain text
/// (no escape sequences, no `##[group]` markers) into a pipe or a file.
struct LogPrinter {
    terminal: bool,
    in_group: bool,
}

impl LogPrinter {
    fn new() -> LogPrinter {
        LogPrinter { terminal: std::io::stdout().is_terminal(), in_group: false }
    }

    /// One `job\tstep\tline` line as printed, or `None` for a marker that prints nothing.
    fn render(&mut self, job: &str, step: &str, line: &str) -> Option<String> {
        // Lines start with the time they were written (`2026-01-05T09:00:00.000Z `).
        let (stamp, line) = match line.split_once(' ') {
            Some((t, rest)) if t.len() >= 20 && t.as_bytes().get(4) == Some(&b'-') && t.ends_with('Z') => (t, rest),
            _ => ("", line),
        };
        let prefix = if stamp.is_empty() { format!("{job}\t{step}\t") } else { format!("{job}\t{step}\t{stamp} ") };
        if line.starts_with("##[endgroup]") {
            self.in_group = false;
            return None;
        }
        if let Some(name) = line.strip_prefix("##[group]") {
            self.in_group = true;
            return Some(if self.terminal {
                format!("{prefix}\x1b[1m▼ {name}\x1b[0m")
            } else {
                format!("{prefix}{}", strip_ansi_escapes::strip_str(name))
            });
        }
        let indent = if self.in_group { "  " } else { "" };
        Some(if self.terminal {
            format!("{prefix}{indent}{line}")
        } else {
            format!("{prefix}{indent}{}", strip_ansi_escapes::strip_str(line))
        })
    }
}

async fn logs(client: &Client, run: i64, job: Option<String>, follow: bool, json: bool) -> Result<ExitCode, Failure> {
    let mut query = Vec::new();
    if let Some(job) = &job {
        query.push(("job", job.clone()));
    }
    if !follow {
        let response =
            client.send(client.request(reqwest::Method::GET, &format!("/runs/{run}/logs")).query(&query)).await?;
        let text = response.text().await?;
        if json {
            let lines: Vec<Value> = text
                .lines()
                .map(|l| {
                    let mut parts = l.splitn(3, '\t');
                    json!({"job": parts.next(), "step": parts.next(), "line": parts.next()})
                })
                .collect();
            print_json(&Value::Array(lines));
        } else {
            let mut printer = LogPrinter::new();
            for l in text.lines() {
                let mut parts = l.splitn(3, '\t');
                let (job, step, line) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                if let Some(printed) = printer.render(job, step, line) {
                    println!("{printed}");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let response =
        client.send(client.request(reqwest::Method::GET, &format!("/runs/{run}/logs/stream")).query(&query)).await?;
    let mut stream = response.bytes_stream();
    let mut printer = LogPrinter::new();
    let mut buffer = String::new();
    let mut conclusion = None;
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in message.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            let Ok(value) = serde_json::from_str::<Value>(&data) else { continue };
            match event {
                "log" if json => {
                    for line in s(&value, "lines").lines() {
                        println!("{}", json!({"job": value["job"], "step": value["step"], "line": line}));
                    }
                }
                "log" => {
                    for line in s(&value, "lines").lines() {
                        if let Some(printed) = printer.render(s(&value, "job"), s(&value, "step"), line) {
                            println!("{printed}");
                        }
                    }
                }
                "end" => {
                    conclusion = value["conclusion"].as_str().map(str::to_string);
                    if json {
                        println!("{}", json!({"end": value}));
                    }
                }
                _ => {}
            }
        }
        if conclusion.is_some() {
            break;
        }
    }
    // Like `gh run watch --exit-status`: following a run that failed exits 1.
    Ok(match conclusion.as_deref() {
        Some("success") | Some("skipped") => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
