//! Steps that are containers: `uses: docker://IMAGE` and Docker container actions
//! (`runs.using: docker`, an image built from the action's Dockerfile and cached by
//! content, or `docker://`), with GitHub's `/github/*` paths, `INPUT_*` variables,
//! `args`, `entrypoint`, and pre and post entrypoints.

use crate::container::job::PathMap;
use crate::job::JobRun;
use crate::output::StepOutput;
use crate::step::{self, apply_files, StepExec, StepFiles};
use bollard::models::{ContainerCreateBody, HostConfig};
use mobius_workflow::expr::Contexts;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One container to run as a step.
#[derive(Debug, Clone)]
pub(crate) struct DockerRun {
    /// An image the engine has (pulled or built).
    pub image: String,
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    /// The step's environment (GitHub's variables, the step's layers, `INPUT_*`),
    /// with host paths; rewritten to the container's when it runs.
    pub env: Vec<(String, String)>,
}

/// The environment of a container step: GitHub's variables and the step's layers,
/// never the host's own.
pub(crate) fn step_env(
    run: &JobRun,
    contexts: &Contexts,
    layers: &[(String, String)],
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let github = contexts.get("github").cloned().unwrap_or(Value::Null);
    let runner = contexts.get("runner").cloned().unwrap_or(Value::Null);
    let mut env = crate::context::default_env(&github, &runner);
    step::merge(&mut env, layers);
    step::merge(&mut env, extra);
    // Values that name the job container's paths go back to the host's first.
    if let Some(c) = &run.container {
        for (_, v) in env.iter_mut() {
            if let Some(host) = c.paths.to_host(v) {
                *v = host.display().to_string();
            }
        }
    }
    env
}

/// Where a container step sees the job's directories, as GitHub mounts them.
fn step_paths(run: &JobRun, home: &Path) -> PathMap {
    let mut map = PathMap::default();
    map.add(&run.workspace, "/github/workspace");
    map.add(&run.files_dir, "/github/file_commands");
    map.add(home, "/github/home");
    map.add(&run.shared.event_path, "/github/workflow/event.json");
    map.add(&run.temp, "/github/runner_temp");
    map
}

/// Runs a container step with fresh environment files; returns its result and the
/// state it saved.
pub(crate) async fn run(
    run: &mut JobRun,
    out: StepOutput,
    number: usize,
    docker: &DockerRun,
    timeout: Option<Duration>,
) -> (StepExec, Vec<(String, String)>) {
    let mut out = out;
    let engine = match run.shared.engine().await {
        Ok(e) => e.clone(),
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.flush();
            return (StepExec::failure(), Vec::new());
        }
    };
    let files = match StepFiles::create(&run.files_dir, number, "-docker") {
        Ok(f) => f,
        Err(e) => {
            out.message(&format!("Error: cannot create the step's files: {e}"));
            out.flush();
            return (StepExec::failure(), Vec::new());
        }
    };
    let home = run.workspace.parent().map_or_else(|| run.temp.join("home"), |job| job.join("home"));
    if let Err(e) = std::fs::create_dir_all(&home) {
        out.message(&format!("Error: cannot create {}: {e}", home.display()));
        out.flush();
        return (StepExec::failure(), Vec::new());
    }
    let paths = step_paths(run, &home);
    let mut env = docker.env.clone();
    step::merge(&mut env, &files.variables());
    step::merge(&mut env, &[("HOME".to_string(), home.display().to_string())]);
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", paths.to_container(v))).collect();
    let binds: Vec<String> = paths.pairs().map(|(h, c)| format!("{h}:{c}")).collect();
    let job = run.workspace.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().to_string());
    let labels = engine.labels(&run.shared.run_id, job.as_deref().unwrap_or_default());
    let body = ContainerCreateBody {
        image: Some(docker.image.clone()),
        entrypoint: docker.entrypoint.as_ref().map(|e| vec![e.clone()]),
        cmd: if docker.args.is_empty() && docker.entrypoint.is_none() { None } else { Some(docker.args.clone()) },
        env: Some(env),
        working_dir: Some("/github/workspace".into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: run.docker_network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!(
        "mobius-{}-{}-step{number}",
        run.shared.run_id,
        job.unwrap_or_default().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>()
    );
    let sink = Arc::new(Mutex::new(out));
    let token = step::step_token(run);
    let exit = engine.run_to_end(&name, body, sink.clone(), timeout, &token, Duration::from_secs(5)).await;
    let mut out = match Arc::try_unwrap(sink) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => return (StepExec::failure(), Vec::new()),
    };
    let (outputs, state, files_ok) = apply_files(run, &files, &mut out);
    let outcome = step::outcome_of(exit, files_ok, &docker.image, &mut out);
    out.flush();
    (StepExec { outcome, outputs }, state)
}

/// Makes the image of a Docker action ready: `docker://IMAGE` pulled by the run's
/// policy, a Dockerfile (the action's `Dockerfile` or a path under it) built once per
/// content of the action's folder, as `mobius-action/NAME:HASH`.
pub(crate) async fn action_image(
    run: &JobRun,
    action_dir: &Path,
    image: &str,
    out: &mut StepOutput,
) -> Result<String, String> {
    let engine = run.shared.engine().await?;
    let mut say = |line: &str| out.message(line);
    if let Some(reference) = image.strip_prefix("docker://") {
        engine.ensure_image(reference, run.shared.options.pull, None, &mut say).await.map_err(|e| e.to_string())?;
        return Ok(reference.to_string());
    }
    let dockerfile = action_dir.join(image);
    if !dockerfile.is_file() {
        return Err(format!(
            "the action's image '{image}' is neither docker://IMAGE nor a file in {}",
            action_dir.display()
        ));
    }
    let dir = action_dir.to_path_buf();
    let hash = tokio::task::spawn_blocking(move || content_hash(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read {}: {e}", action_dir.display()))?;
    let name: String = action_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    let name = name.trim_matches(['-', '.', '_']).to_string();
    let tag = format!("mobius-action/{}:{}", if name.is_empty() { "action" } else { &name }, &hash[..16]);
    engine.build(action_dir, image, &tag, &mut say).await.map_err(|e| e.to_string())?;
    Ok(tag)
}

/// A hash of every file's path and bytes under `dir`, in a stable order.
fn content_hash(dir: &Path) -> std::io::Result<String> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        hasher.update(rel.display().to_string().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&f)?);
        hasher.update([0]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `with.args` of a `docker://` step or Docker action, split as a shell splits words.
pub(crate) fn split_args(args: &str) -> Result<Vec<String>, String> {
    shlex::split(args).ok_or_else(|| format!("args: a quote is not closed in '{args}'"))
}

/// The built-in `mobius/docker-build` step: builds an image through the executor, so a
/// job never needs the Docker socket. Inputs: `context` (default the workspace),
/// `file` (default `Dockerfile` in the context), `tags` and `build-args` (one per line
/// or comma-separated). Outputs: `image-id` and `tags`.
pub(crate) async fn docker_build(run: &JobRun, with: &[(String, String)], out: &mut StepOutput) -> StepExec {
    let input = |key: &str| with.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
    let list = |text: Option<String>| -> Vec<String> {
        text.unwrap_or_default()
            .split(['\n', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let inside = |p: &str| crate::builtin::resolve_path(&run.workspace, p);
    let context = inside(&input("context").unwrap_or_else(|| ".".into()));
    let file = input("file").map(|f| inside(&f)).unwrap_or_else(|| context.join("Dockerfile"));
    let Ok(dockerfile) = file.strip_prefix(&context).map(|p| p.display().to_string()) else {
        out.message(&format!("Error: file: {} is not inside the context {}", file.display(), context.display()));
        return StepExec::failure();
    };
    if !file.is_file() {
        out.message(&format!("Error: file: {} does not exist", file.display()));
        return StepExec::failure();
    }
    let tags = list(input("tags"));
    let mut build_args = std::collections::HashMap::new();
    for arg in list(input("build-args")) {
        match arg.split_once('=') {
            Some((k, v)) => build_args.insert(k.trim().to_string(), v.to_string()),
            None => {
                out.message(&format!("Error: build-args: '{arg}' is not NAME=VALUE"));
                return StepExec::failure();
            }
        };
    }
    let engine = match run.shared.engine().await {
        Ok(e) => e.clone(),
        Err(e) => {
            out.message(&format!("Error: {e}"));
            return StepExec::failure();
        }
    };
    let mut say = |line: &str| out.message(line);
    match engine.build_tagged(&context, &dockerfile, &tags, build_args, &mut say).await {
        Ok(id) => {
            let mut exec = StepExec::success();
            exec.outputs.insert("image-id".into(), Value::String(id));
            exec.outputs.insert("tags".into(), Value::String(tags.join(",")));
            exec
        }
        Err(e) => {
            out.message(&format!("Error: {e}"));
            StepExec::failure()
        }
    }
}
