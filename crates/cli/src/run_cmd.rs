//! `mobius run`: act-shaped arguments, validation before anything runs, exit codes 0/1/2.

use crate::render::{HumanReporter, JsonReporter};
use clap::Args;
use indexmap::IndexMap;
use mobius_core::Conclusion;
use mobius_runner::plan;
use mobius_runner::repo::RepoInfo;
use mobius_runner::{CancellationToken, Reporter, RunError, RunOptions};
use mobius_workflow::Workflow;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `mobius run`, shaped like act's.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The event that triggers the workflows.
    #[arg(default_value = "push")]
    event: String,
    /// The repository to run in (a copy is made; it is never modified).
    #[arg(short = 'C', long = "directory", value_name = "DIR", default_value = ".")]
    directory: PathBuf,
    /// A workflow file, or a folder whose .yml/.yaml files are the workflows.
    #[arg(short = 'W', long = "workflows", value_name = "PATH")]
    workflows: Option<PathBuf>,
    /// Run only this job, after the jobs it needs.
    #[arg(short = 'j', long = "job", value_name = "JOB")]
    job: Option<String>,
    /// A secret: NAME=VALUE, or NAME to read it from the environment.
    #[arg(short = 's', long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// A file of NAME=VALUE secrets (dotenv format).
    #[arg(long = "secret-file", value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// A configuration variable for the `vars` context.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// An input for workflow_dispatch or workflow_call.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// Workflow-level environment (visible to the `env` context).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A JSON file with the event payload.
    #[arg(short = 'e', long = "eventpath", value_name = "FILE")]
    eventpath: Option<PathBuf>,
    /// The user who triggered the run (github.actor).
    #[arg(long = "actor", value_name = "NAME")]
    actor: Option<String>,
    /// The repository name (github.repository), OWNER/NAME.
    #[arg(long = "repository", value_name = "OWNER/NAME")]
    repository: Option<String>,
    /// An extra host label for runs-on matching.
    #[arg(long = "label", value_name = "NAME")]
    labels: Vec<String>,
    /// act's platform flag: NAME=IMAGE runs the jobs whose runs-on names NAME in a
    /// container of IMAGE; NAME=-self-hosted runs them on this host (adds the label).
    #[arg(short = 'P', long = "platform", value_name = "NAME=IMAGE|-self-hosted")]
    platforms: Vec<String>,
    /// Where remote actions (owner/repo@ref) are fetched from: GitHub, a GitHub
    /// Enterprise or a mirror serving URL/owner/repo over git's HTTP protocol.
    #[arg(long = "actions-url", value_name = "URL", default_value = "https://github.com")]
    actions_url: String,
    /// A token for fetching actions (default: the GITHUB_TOKEN secret, when given).
    #[arg(long = "actions-token", value_name = "TOKEN")]
    actions_token: Option<String>,
    /// Use only actions already cached or vendored; fetch nothing.
    #[arg(long = "offline")]
    offline: bool,
    /// When images for container:, services: and docker:// steps are pulled.
    #[arg(long = "pull", value_name = "missing|always|never", default_value = "missing")]
    pull: mobius_runner::container::PullPolicy,
    /// Jobs running at once (default: the number of CPUs).
    #[arg(long = "parallel", value_name = "N")]
    parallel: Option<usize>,
    /// Where vendored actions live: owner/repo@ref resolves to DIR/owner/repo@ref.
    #[arg(long = "action-dir", value_name = "DIR")]
    action_dir: Option<PathBuf>,
    /// List the jobs that would run, and stop.
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// Plan the run without executing anything.
    #[arg(short = 'n', long = "dryrun")]
    dryrun: bool,
    /// Print one JSON object per event.
    #[arg(long = "json")]
    json: bool,
    /// Leave what .gitignore excludes out of the jobs' copies (`--use-gitignore=false` keeps it).
    #[arg(long = "use-gitignore", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    use_gitignore: bool,
    /// Keep the job workspaces of older runs too (by default only the newest run's stay).
    #[arg(long = "keep-workspaces")]
    keep_workspaces: bool,
    /// Accepted for act compatibility; Mobius never uses a cache server.
    #[arg(long = "no-cache-server", hide = true)]
    no_cache_server: bool,
}

const INVALID: u8 = 2;

fn invalid(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(INVALID)
}

fn parse_pairs(items: &[String], what: &str, from_env: bool) -> Result<IndexMap<String, String>, String> {
    let mut out = IndexMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.to_string());
            }
            None if from_env && !item.trim().is_empty() => {
                let v = std::env::var(item).map_err(|_| {
                    format!("{what} '{item}' has no value and no environment variable of that name is set")
                })?;
                out.insert(item.clone(), v);
            }
            _ => return Err(format!("invalid {what} '{item}': expected NAME=VALUE")),
        }
    }
    Ok(out)
}

/// Reads a dotenv-style file; errors name the file and line.
fn read_env_file(path: &Path) -> Result<IndexMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = IndexMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected NAME=VALUE", path.display(), index + 1));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(|s| s.replace("\\n", "\n"))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).map(str::to_string))
            .unwrap_or_else(|| v.to_string());
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

pub(crate) fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mobius");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/mobius")
}

pub fn main(args: RunArgs) -> ExitCode {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let directory = match std::fs::canonicalize(&args.directory) {
        Ok(d) if d.is_dir() => d,
        _ => return invalid(&format!("'{}' is not a directory", args.directory.display())),
    };
    let workflows_path = match &args.workflows {
        // Relative to the current directory as in act, else to DIR.
        Some(p) if p.is_relative() && !p.exists() => directory.join(p),
        Some(p) => p.clone(),
        None => directory.join(".github/workflows"),
    };
    let files = match plan::discover(&workflows_path) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => return invalid(&format!("no workflow files (.yml, .yaml) in {}", workflows_path.display())),
        Err(e) => return invalid(&format!("cannot read workflows at {}: {e}", workflows_path.display())),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let base = if files[0].starts_with(&directory) { directory.clone() } else { cwd };
    let workflows = match plan::load_all(&files, &base) {
        Ok(w) => w,
        Err(errors) => {
            let count: usize = errors.iter().map(|e| e.diagnostics.len()).sum();
            for e in &errors {
                eprint!("{}", e.render(std::io::stderr().is_terminal()));
            }
            eprintln!("error: {count} problem(s) in {} workflow file(s); nothing was run", errors.len());
            return ExitCode::from(INVALID);
        }
    };
    let mut options = RunOptions::new(directory.clone(), state_dir());
    options.event_name = args.event.clone();
    let pairs = (|| -> Result<(), String> {
        let mut secrets = match &args.secret_file {
            Some(f) => read_env_file(f)?,
            None => IndexMap::new(),
        };
        secrets.extend(parse_pairs(&args.secrets, "secret", true)?);
        options.secrets = secrets;
        options.vars = parse_pairs(&args.vars, "variable", false)?;
        options.inputs = parse_pairs(&args.inputs, "input", false)?;
        options.env = parse_pairs(&args.env, "env", false)?;
        options.pull = args.pull;
        options.actions.url = args.actions_url.clone();
        options.actions.offline = args.offline;
        options.actions.token = args.actions_token.clone().or_else(|| options.secrets.get("GITHUB_TOKEN").cloned());
        for p in &args.platforms {
            let (label, platform) = p.split_once('=').unwrap_or((p.as_str(), "-self-hosted"));
            if label.trim().is_empty() || platform.trim().is_empty() {
                return Err(format!("-P {p}: expected NAME=IMAGE or NAME=-self-hosted"));
            }
            if platform != "-self-hosted" {
                options.platforms.insert(label.to_string(), platform.to_string());
            }
            options.labels.push(label.to_string());
        }
        options.labels.extend(args.labels.iter().cloned());
        if let Some(path) = &args.eventpath {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            options.event_payload = serde_json::from_str(&text)
                .map_err(|e| format!("{}:{}:{}: invalid JSON: {e}", path.display(), e.line(), e.column()))?;
        }
        Ok(())
    })();
    if let Err(e) = pairs {
        return invalid(&e);
    }
    if let Some(n) = args.parallel {
        if n == 0 {
            return invalid("--parallel must be at least 1");
        }
        options.parallel = n;
    }
    options.actor = args.actor.clone();
    options.repository = args.repository.clone();
    if let Some(r) = &options.repository {
        if r.split('/').count() != 2 || r.split('/').any(str::is_empty) {
            return invalid(&format!("--repository must be OWNER/NAME, got '{r}'"));
        }
    }
    options.action_dir = args.action_dir.clone();
    options.use_gitignore = args.use_gitignore;
    options.keep_workspaces = args.keep_workspaces;
    options.job_filter = args.job.clone();
    let repo = RepoInfo::read(&directory);
    let event = plan::event_ref(&options, &repo);
    let with_event: Vec<String> =
        workflows.iter().filter(|w| w.triggers.contains_key(&args.event)).map(|w| w.file.path.clone()).collect();
    let selected = plan::select(workflows, &args.event, &event);
    if let Some(job) = &args.job {
        if !selected.iter().any(|w| w.jobs.contains_key(job)) {
            return invalid(&format!("no workflow triggered by '{}' has a job '{job}'", args.event));
        }
    }
    if selected.is_empty() {
        eprintln!("no workflow is triggered by '{}'; nothing to run", args.event);
        if !with_event.is_empty() {
            let place = match (&event.branch, &event.tag) {
                (_, Some(tag)) => format!("tag '{tag}'"),
                (Some(branch), _) => format!("branch '{branch}'"),
                _ => "this ref".to_string(),
            };
            let changed = event
                .changed_paths
                .as_ref()
                .map_or(String::new(), |p| format!(" and changed files [{}]", p.join(", ")));
            eprintln!(
                "note: {} listen to '{}', but their filters exclude {place}{changed}",
                with_event.join(", "),
                args.event
            );
        }
        return ExitCode::SUCCESS;
    }
    if args.list {
        print_list(&selected, &args.event, args.job.as_deref());
        return ExitCode::SUCCESS;
    }
    let problems = plan::preflight(&selected, &options);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("error: the run cannot start on the host; nothing was run");
        return ExitCode::from(INVALID);
    }
    if args.dryrun {
        print_plan(&selected, args.job.as_deref());
        return ExitCode::SUCCESS;
    }
    let reporter: Arc<dyn Reporter> =
        if args.json { Arc::new(JsonReporter::new()) } else { Arc::new(HumanReporter::new(color)) };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return invalid(&format!("cannot start the runtime: {e}")),
    };
    let cancel = CancellationToken::new();
    let result = runtime.block_on(async {
        let signal_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\nCancelling: stopping running steps, then always() and post steps run...");
            signal_cancel.cancel();
        });
        mobius_runner::execute(options, repo, selected, reporter, cancel).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(summary) if summary.conclusion == Conclusion::Success => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(RunError::Invalid(problems)) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            ExitCode::from(INVALID)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Stage of each job: 0 for no needs, else one more than its deepest need.
fn stages(wf: &Workflow) -> IndexMap<String, usize> {
    let mut stage: IndexMap<String, usize> = IndexMap::new();
    for _ in 0..=wf.jobs.len() {
        for (id, job) in &wf.jobs {
            let s = job.needs.iter().filter_map(|n| stage.get(n).map(|s| s + 1)).max().unwrap_or(0);
            stage.insert(id.clone(), s);
        }
    }
    stage
}

fn print_list(workflows: &[Workflow], event: &str, only: Option<&str>) {
    let mut rows = vec![[
        "Stage".to_string(),
        "Job ID".into(),
        "Job name".into(),
        "Workflow name".into(),
        "Workflow file".into(),
        "Events".into(),
    ]];
    for wf in workflows {
        let stage = stages(wf);
        let events: Vec<&str> = wf.triggers.keys().map(String::as_str).collect();
        let selected = mobius_runner::plan::selected_jobs(wf, only);
        for (id, job) in &wf.jobs {
            if !selected.contains(id) {
                continue;
            }
            let name = job.name.as_ref().and_then(|n| n.scalar_string()).unwrap_or_else(|| id.clone());
            rows.push([
                stage.get(id).copied().unwrap_or(0).to_string(),
                id.clone(),
                name,
                wf.display_name().to_string(),
                wf.file.path.clone(),
                events.join(","),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", line.join("  ").trim_end());
    }
    let _ = event;
}

fn print_plan(workflows: &[Workflow], only: Option<&str>) {
    for wf in workflows {
        println!("workflow {} ({})", wf.display_name(), wf.file.path);
        let stage = stages(wf);
        let selected = mobius_runner::plan::selected_jobs(wf, only);
        let mut ids: Vec<&String> = wf.jobs.keys().filter(|id| selected.contains(*id)).collect();
        ids.sort_by_key(|id| stage.get(*id).copied().unwrap_or(0));
        for id in ids {
            let job = &wf.jobs[id];
            let needs = if job.needs.is_empty() { String::new() } else { format!(" (needs {})", job.needs.join(", ")) };
            let matrix = if job.strategy.as_ref().is_some_and(|s| s.matrix.is_some()) { " [matrix]" } else { "" };
            println!("  stage {} job {id}{needs}{matrix}", stage.get(id).copied().unwrap_or(0));
            if let Some((uses, _)) = &job.uses {
                println!("    calls {uses}");
            }
            for step in &job.steps {
                let name = step.name.as_ref().and_then(|n| n.scalar_string()).unwrap_or_else(|| step.default_name());
                println!("    step {name}");
            }
        }
    }
    println!("dry run: nothing was executed");
}
