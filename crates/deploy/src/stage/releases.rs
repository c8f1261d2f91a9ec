//! Releases: every successful run on the default branch that uploaded a service's
//! artifact becomes an immutable release with a digest, SLSA provenance and a changelog.

use super::Host;
use crate::DeliveryConfig;
use mobius_core::EventKind;
use mobius_core::{Annotation, AnnotationLevel, Conclusion};
use mobius_store::NewEvent;
use mobius_store::{NewRelease, Project, Release, Run};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a commit's `mobius.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The repository could not be read at that commit.
    #[error(transparent)]
    Read(#[from] mobius_code::git::GitError),
    /// The task reading it stopped.
    #[error("reading mobius.yaml stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
    /// The file is there and wrong: its diagnostics.
    #[error("{}", .0.render(false))]
    Invalid(mobius_config::FileErrors),
}

/// The delivery the project's `mobius.yaml` declares at a commit; `Ok(None)` when
/// there is none. The host reads the file once per commit for every stage
/// ([`Host::delivery_at`]); a read of git happens off the async runtime.
pub async fn delivery_at(
    app: &Arc<dyn Host>,
    project: &Project,
    commit: &str,
) -> Result<Option<Arc<DeliveryConfig>>, DeliveryError> {
    let (app, project, commit) = (Arc::clone(app), project.clone(), commit.to_string());
    tokio::task::spawn_blocking(move || app.delivery_at(&project, &commit)).await?
}

/// After a run: checks its commit's `mobius.yaml` (a check on the run, with an
/// annotation per problem and an audit entry when it is wrong), then makes the releases
/// a successful run brings and deploys them where `auto_deploy` asks. The run's
/// conclusion stays what its jobs said.
pub async fn after_run(app: &Arc<dyn Host>, run_id: i64) {
    let Ok(Some(run)) = app.store().run(run_id).await else { return };
    // A run that never started (an invalid workflow, cancelled while queued) ships nothing.
    if run.started_at.is_none() {
        return;
    }
    let Ok(Some(project)) = app.store().project_by_id(run.project_id).await else { return };
    let config = match check_delivery(app, &project, &run).await {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(run = run.id, error = %e, "cannot check mobius.yaml");
            return;
        }
    };
    // Each new release is deployed by the `auto-deploy` subscriber to the event log.
    make_releases(app, &project, &run, &config).await;
}

/// The `mobius.yaml` check of a run: recorded on the run whatever its outcome.
async fn check_delivery(
    app: &Arc<dyn Host>,
    project: &Project,
    run: &Run,
) -> Result<Option<Arc<DeliveryConfig>>, mobius_store::StoreError> {
    let name = crate::config::FILE_NAME;
    match delivery_at(app, project, &run.head_sha).await {
        Ok(None) => Ok(None),
        Ok(Some(config)) => {
            if let Err(conflict) = super::addresses::check(app, project, &config).await {
                let place = address_position(app, project, &run.head_sha, conflict.addr).await;
                let annotation = Annotation {
                    level: AnnotationLevel::Error,
                    message: conflict.to_string(),
                    title: Some(name.to_string()),
                    file: Some(name.to_string()),
                    line: place.map(|p| p.line as u64),
                    col: place.map(|p| p.col as u64),
                };
                let summary = format!("nothing released: {conflict}");
                tracing::warn!(run = run.id, project = %project.name, "{conflict}");
                app.store().set_check(run.id, name, Conclusion::Failure, &summary, &[annotation]).await?;
                app.store()
                    .append(
                        NewEvent::audit(EventKind::MobiusYamlRefused, "mobius", &project.name, "server")
                            .project(&project.name)
                            .run(run.id)
                            .data(json!({"run": run.id, "commit": run.head_sha, "address": conflict.addr.to_string(),
                               "holder": conflict.holder, "reason": conflict.to_string()})),
                    )
                    .await?;
                return Ok(None);
            }
            let summary = format!("{} service(s), {} environment(s)", config.services.len(), config.environments.len());
            app.store().set_check(run.id, name, Conclusion::Success, &summary, &[]).await?;
            Ok(Some(config))
        }
        Err(e @ (DeliveryError::Read(_) | DeliveryError::Stopped(_))) => {
            tracing::warn!(run = run.id, error = %e, "cannot read mobius.yaml");
            Ok(None)
        }
        Err(DeliveryError::Invalid(errors)) => {
            let annotations: Vec<Annotation> = errors
                .diagnostics
                .iter()
                .map(|d| Annotation {
                    level: AnnotationLevel::Error,
                    message: match &d.help {
                        Some(help) => format!("{} ({help})", d.message),
                        None => d.message.clone(),
                    },
                    title: Some(name.to_string()),
                    file: Some(name.to_string()),
                    line: Some(d.pos.line as u64),
                    col: Some(d.pos.col as u64),
                })
                .collect();
            let first = errors.diagnostics.first();
            let summary = format!(
                "{} problem(s), nothing released: {}",
                errors.diagnostics.len(),
                first.map(|d| format!("{name}:{}:{}: {}", d.pos.line, d.pos.col, d.message)).unwrap_or_default()
            );
            tracing::warn!(run = run.id, project = %project.name, "{}", errors.render(false));
            app.store().set_check(run.id, name, Conclusion::Failure, &summary, &annotations).await?;
            let diagnostics: Vec<String> = errors
                .diagnostics
                .iter()
                .map(|d| format!("{name}:{}:{}: {}", d.pos.line, d.pos.col, d.message))
                .collect();
            app.store()
                .append(
                    NewEvent::audit(EventKind::MobiusYamlInvalid, "mobius", &project.name, "server")
                        .project(&project.name)
                        .run(run.id)
                        .data(json!({"run": run.id, "commit": run.head_sha, "diagnostics": diagnostics})),
                )
                .await?;
            Ok(None)
        }
    }
}

/// Where a release's files are unpacked.
pub fn release_dir(app: &dyn Host, release: &Release) -> PathBuf {
    app.data_dir().join("releases").join(release.id.to_string())
}

/// Where `addr` is written in the commit's `mobius.yaml` (its first mention).
async fn address_position(
    app: &Arc<dyn Host>,
    project: &Project,
    commit: &str,
    addr: std::net::SocketAddr,
) -> Option<mobius_config::yaml::Pos> {
    let (dir, commit) = (app.repo_dir(project), commit.to_string());
    let text = tokio::task::spawn_blocking(move || {
        mobius_code::git::file_at(&dir, &commit, crate::config::FILE_NAME).ok().flatten()
    })
    .await
    .ok()
    .flatten()?;
    let file = mobius_config::SourceFile::new(crate::config::FILE_NAME, text);
    let offset = file.text.find(&addr.to_string()).or_else(|| {
        // Written another way (`0:8080`, a wildcard): the port after the first `listen`.
        let listen = file.text.find("listen")?;
        file.text[listen..].find(&format!(":{}", addr.port())).map(|i| listen + i)
    })?;
    Some(file.pos_of(offset))
}

/// Makes the releases a finished run brings, if it succeeded on the default branch.
async fn make_releases(app: &Arc<dyn Host>, project: &Project, run: &Run, config: &DeliveryConfig) -> Vec<Release> {
    match try_make_releases(app, project, run, config).await {
        Ok(releases) => releases,
        Err(e) => {
            tracing::warn!(run = run.id, error = %e, "no release made");
            Vec::new()
        }
    }
}

/// The record of a run that made no new release of `service` (`kind` says why).
fn no_release(kind: EventKind, project: &Project, run: &Run, service: &str, said: serde_json::Value) -> NewEvent {
    NewEvent::audit(kind, "mobius", &format!("{}/{service}", project.name), "server")
        .project(&project.name)
        .run(run.id)
        .data(said)
}

async fn try_make_releases(
    app: &Arc<dyn Host>,
    project: &Project,
    run: &Run,
    config: &DeliveryConfig,
) -> Result<Vec<Release>, String> {
    if run.conclusion != Some(mobius_core::Conclusion::Success)
        || run.ref_name != format!("refs/heads/{}", project.branch)
        || run.event == "pull_request"
    {
        return Ok(Vec::new());
    }
    let artifacts = app.store().artifacts(run.id).await.map_err(|e| e.to_string())?;
    let mut made = Vec::new();
    for service in config.services.values() {
        let mut files: Vec<(&str, &str)> = artifacts
            .iter()
            .filter(|a| a.name == service.artifact)
            .map(|a| (a.path.as_str(), a.blob.as_str()))
            .collect();
        // Released from this run already (the `releases` subscriber hands a run again
        // when a restart came between its reaction and its stored position).
        if files.is_empty()
            || app.store().release_of_run(run.id, &service.name).await.map_err(|e| e.to_string())?.is_some()
        {
            continue;
        }
        files.sort();
        let mut manifest: String = files.iter().map(|(path, blob)| format!("{blob}  {path}\n")).collect();
        // A `runtime: docker` service's image is part of the release: its id (what the
        // tag names now) is a line of the manifest, so a new image is a new release.
        let image = match &service.image {
            Some(reference) => match image_id(reference).await {
                Ok(id) => Some((id, reference.clone())),
                Err(reason) => {
                    tracing::warn!(project = %project.name, service = %service.name, run = run.id, %reason, "no release");
                    let said = json!({"run": run.id, "commit": run.head_sha, "image": reference, "reason": reason});
                    let event = no_release(EventKind::ReleaseSkip, project, run, &service.name, said);
                    app.store().append(event).await.map_err(|e| e.to_string())?;
                    continue;
                }
            },
            None => None,
        };
        if let Some((id, reference)) = &image {
            manifest.push_str(&format!("{IMAGE_LINE}{id}  {reference}\n"));
        }
        let digest = hex::encode(Sha256::digest(manifest.as_bytes()));
        let digest_name = format!("sha256:{digest}");
        // The same content is the same release: a re-run or dispatch of a released
        // commit (or a commit that changed nothing of the artifact) ships nothing new.
        if let Some(same) =
            app.store().release_by_digest(project.id, &service.name, &digest_name).await.map_err(|e| e.to_string())?
        {
            tracing::info!(project = %project.name, service = %service.name, run = run.id, version = %same.version, "release reused: same digest");
            let said = json!({"run": run.id, "commit": run.head_sha, "release": same.version, "digest": same.digest,
                              "reason": "the artifact has the digest of an existing release"});
            app.store()
                .append(no_release(EventKind::ReleaseReuse, project, run, &service.name, said))
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        let previous = app
            .store()
            .releases(Some(project.id), Some(&service.name), 1)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next();
        let repo = app.repo_dir(project);
        // A replayed or late push of an older commit must not release (and, with
        // auto_deploy, ship) older code; only a dispatch may do that on purpose.
        if let Some(previous) = previous.as_ref().filter(|_| run.event != "workflow_dispatch") {
            let (repo, newest, head) = (repo.clone(), previous.commit_sha.clone(), run.head_sha.clone());
            let older =
                tokio::task::spawn_blocking(move || mobius_code::git::is_ancestor(&repo, &head, &newest, 100_000))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            if older {
                tracing::warn!(project = %project.name, service = %service.name, run = run.id, "no release: the commit is older than the newest release");
                let said = json!({"run": run.id, "commit": run.head_sha, "newest_release": previous.version,
                                  "reason": "the commit is an ancestor of the newest release's commit"});
                let event = no_release(EventKind::ReleaseSkip, project, run, &service.name, said);
                app.store().append(event).await.map_err(|e| e.to_string())?;
                continue;
            }
        }
        let before = previous.as_ref().map(|p| p.commit_sha.clone());
        let head = run.head_sha.clone();
        let commits = tokio::task::spawn_blocking(move || {
            mobius_code::git::commits_between(&repo, before.as_deref(), &head, 100)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let changelog = json!(commits
            .iter()
            .rev()
            .map(|c| json!({ "sha": c.id, "author": c.author_name, "message": c.message.lines().next().unwrap_or("") }))
            .collect::<Vec<_>>());
        let new = NewRelease {
            project_id: project.id,
            service: service.name.clone(),
            run_id: run.id,
            commit_sha: run.head_sha.clone(),
            author: if run.author.is_empty() { run.actor.clone() } else { run.author.clone() },
            artifact: service.artifact.clone(),
            digest: digest_name,
            manifest,
            changelog,
        };
        let release = app
            .store()
            .create_release(&new, |_, version| {
                let mut statement = provenance(&**app, project, run, &service.artifact, version, &digest);
                if let (Some((id, reference)), Some(subjects)) =
                    (&image, statement.get_mut("subject").and_then(|s| s.as_array_mut()))
                {
                    subjects
                        .push(json!({ "name": reference, "digest": { "sha256": id.trim_start_matches("sha256:") } }));
                }
                statement
            })
            .await
            .map_err(|e| e.to_string())?;
        materialize(app, &release).await.map_err(|e| e.to_string())?;
        tracing::info!(project = %project.name, service = %service.name, version = %release.version, run = run.id, "release made");
        announce_to_waiting_rollouts(&**app, &release).await.map_err(|e| e.to_string())?;
        made.push(release);
    }
    Ok(made)
}

/// States a new release on the rollouts of its service that are still under way (a
/// paused one would otherwise hold it back unannounced): an event on each timeline.
async fn announce_to_waiting_rollouts(app: &dyn Host, release: &Release) -> Result<(), mobius_store::StoreError> {
    let filter = mobius_store::RolloutFilter {
        project_id: Some(release.project_id),
        service: Some(release.service.clone()),
        active: true,
        limit: 100,
        ..Default::default()
    };
    for rollout in app.store().rollouts(&filter).await? {
        let message = format!(
            "{} {} arrived while this rollout of {} is {}; it is not deployed to {} until this rollout ends",
            release.service, release.version, rollout.version, rollout.phase, rollout.environment
        );
        app.store().add_deploy_event(&rollout, mobius_core::DeployEventKind::NewerRelease, "mobius", &message).await?;
    }
    Ok(())
}

/// A manifest line naming the release's image: `image sha256:ID  REFERENCE`.
const IMAGE_LINE: &str = "image ";

/// The image a release recorded: its id and the reference it was made from.
pub fn release_image(manifest: &str) -> Option<(&str, &str)> {
    manifest.lines().find_map(|l| l.strip_prefix(IMAGE_LINE)).and_then(|rest| rest.split_once("  "))
}

/// The id of the image `reference` names on the local Docker Engine (`DOCKER_HOST`
/// honoured); the error says why there is none.
async fn image_id(reference: &str) -> Result<String, String> {
    let docker = crate::runtime::docker::connect().await?;
    let image = docker
        .inspect_image(reference)
        .await
        .map_err(|e| format!("the image {reference} is not on the Docker Engine: {e}"))?;
    image.id.ok_or_else(|| format!("the Docker Engine gave no id for {reference}"))
}

/// An in-toto v1 statement with an SLSA v1 provenance predicate for one release.
fn provenance(
    app: &dyn Host,
    project: &Project,
    run: &Run,
    artifact: &str,
    version: &str,
    digest: &str,
) -> serde_json::Value {
    let inputs: serde_json::Value = serde_json::from_str(&run.inputs).unwrap_or(json!({}));
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": format!("{}/{artifact}@{version}", project.name), "digest": { "sha256": digest } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://mobius.invalid/workflow/v1",
                "externalParameters": {
                    "workflow": { "repository": project.repo, "ref": run.ref_name, "path": run.workflow },
                    "inputs": inputs,
                    "event": run.event,
                },
                "resolvedDependencies": [{
                    "uri": format!("git+{}@{}", project.repo, run.ref_name),
                    "digest": { "gitCommit": run.head_sha },
                }],
            },
            "runDetails": {
                "builder": { "id": format!("mobius://{}", app.listen()) },
                "metadata": {
                    "invocationId": format!("run/{}/attempt/{}", run.id, run.attempt),
                    "startedOn": rfc3339(run.started_at),
                    "finishedOn": rfc3339(run.completed_at.or(Some(mobius_store::now_ms()))),
                },
            },
        },
    })
}

/// Why a release's files could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("the release's manifest does not match its digest")]
    DigestMismatch,
    #[error("unsafe path in the release: {0}")]
    UnsafePath(String),
    #[error("the release's file {path} is no longer stored: {source}")]
    Missing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unpacking the release stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

fn write_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> MaterializeError {
    let path = path.to_path_buf();
    move |source| MaterializeError::Write { path, source }
}

/// Unpacks a release's files from the blob store (once) and checks them against its manifest.
pub async fn materialize(app: &Arc<dyn Host>, release: &Release) -> Result<PathBuf, MaterializeError> {
    let dir = release_dir(&**app, release);
    if dir.join(MARKER).exists() {
        return Ok(dir);
    }
    let blobs = app.blobs();
    let (manifest, expected, target) = (release.manifest.clone(), release.digest.clone(), dir.clone());
    tokio::task::spawn_blocking(move || unpack(&*blobs, &manifest, &expected, &target)).await??;
    Ok(dir)
}

/// Written last into an unpacked release: its manifest, saying the folder is complete.
const MARKER: &str = ".mobius-release";

/// Serialises the last step of unpacking (is it there, else move ours in place).
static UNPACKED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Unpacks `manifest`'s files into `target`. Callers may race for one release (the run
/// that made it, auto-deploy, a deploy by hand): each writes a staging folder of its
/// own, and the first complete one is moved in place; a complete `target` is never
/// removed under an instance starting from it.
fn unpack(
    blobs: &dyn mobius_blob::BlobStore,
    manifest: &str,
    expected: &str,
    target: &std::path::Path,
) -> Result<(), MaterializeError> {
    if hex::encode(Sha256::digest(manifest.as_bytes())) != expected.trim_start_matches("sha256:") {
        return Err(MaterializeError::DigestMismatch);
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = target.with_extension(format!("partial-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| {
        for line in manifest.lines() {
            if line.starts_with(IMAGE_LINE) {
                continue;
            }
            let Some((blob, path)) = line.split_once("  ") else { continue };
            if path.starts_with('/') || path.split('/').any(|p| p == ".." || p.is_empty()) {
                return Err(MaterializeError::UnsafePath(path.to_string()));
            }
            let destination = staging.join(path);
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent).map_err(write_error(parent))?;
            }
            let mut source =
                blobs.open(blob).map_err(|source| MaterializeError::Missing { path: path.to_string(), source })?;
            let mut out = std::fs::File::create(&destination).map_err(write_error(&destination))?;
            std::io::copy(&mut source, &mut out).map_err(write_error(&destination))?;
        }
        let marker = staging.join(MARKER);
        std::fs::write(&marker, manifest).map_err(write_error(&marker))
    })();
    let moved = written.and_then(|()| {
        let _held = UNPACKED.lock().unwrap_or_else(|p| p.into_inner());
        if target.join(MARKER).exists() {
            return Ok(());
        }
        // What is there without the marker is an earlier attempt cut short.
        let _ = std::fs::remove_dir_all(target);
        std::fs::rename(&staging, target).map_err(write_error(target))
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// A time as provenance writes it (RFC 3339 in UTC, milliseconds), or null.
fn rfc3339(ms: Option<i64>) -> serde_json::Value {
    match ms.filter(|ms| *ms >= 0).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobius_blob::BlobStore as _;

    /// The run that made a release and auto-deploy unpack it at once: every caller
    /// succeeds and finds the complete files (two racing callers used to remove each
    /// other's staging folder: "releases/N: No such file or directory").
    #[test]
    fn callers_racing_to_unpack_one_release_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = mobius_blob::FsBlobStore::new(dir.path().join("blobs")).unwrap();
        let mut manifest = String::new();
        for i in 0..50 {
            let digest = blobs.put_bytes(format!("file {i}").as_bytes()).unwrap();
            manifest.push_str(&format!("{digest}  app/f{i}.txt\n"));
        }
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes())));
        let target = dir.path().join("releases").join("7");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| unpack(&blobs, &manifest, &expected, &target))).collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert_eq!(std::fs::read_to_string(target.join("app/f49.txt")).unwrap(), "file 49");
        assert!(target.join(MARKER).exists());
        let left: Vec<_> =
            std::fs::read_dir(dir.path().join("releases")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["7"], "staging folders left behind: {left:?}");
    }
}
