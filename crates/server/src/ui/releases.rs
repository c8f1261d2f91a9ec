//! Release pages: every release of the caller's projects (filtered by project and
//! service), and one release with its changelog, the places it runs, its manifest and
//! its SLSA provenance.

use super::{error_page, render, when, Session};
use crate::api;
use crate::app::App;
use crate::auth::Role;
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use mobius_store::{Release, RolloutFilter};
use serde::Deserialize;
use std::sync::Arc;

pub(super) struct ReleaseRow {
    id: i64,
    project: String,
    service: String,
    version: String,
    commit: String,
    author: String,
    run_id: i64,
    digest: String,
    created: String,
    changes: usize,
}

fn row(r: &Release) -> ReleaseRow {
    ReleaseRow {
        id: r.id,
        project: r.project.clone(),
        service: r.service.clone(),
        version: r.version.clone(),
        commit: r.commit_sha.chars().take(7).collect(),
        author: r.author.clone(),
        run_id: r.run_id,
        digest: r.digest.chars().take(19).collect(),
        created: when(r.created_at),
        changes: r.changelog.as_array().map_or(0, Vec::len),
    }
}

#[derive(Template)]
#[template(path = "releases.html")]
pub(super) struct ReleasesPage {
    user: String,
    project: String,
    service: String,
    releases: Vec<ReleaseRow>,
}

#[derive(Deserialize, Default)]
pub(super) struct ReleasesQuery {
    project: Option<String>,
    service: Option<String>,
}

/// `GET /ui/releases`: newest first, optionally of one project and service.
pub(super) async fn releases_page(State(app): State<Arc<App>>, s: Session, Query(q): Query<ReleasesQuery>) -> Response {
    let project = q.project.filter(|p| !p.is_empty());
    let service = q.service.filter(|p| !p.is_empty());
    let project_id = match &project {
        Some(name) => match api::projects::find(&app, &s.caller, name, Role::Viewer).await {
            Ok(p) => Some(p.id),
            Err(e) => return error_page(e),
        },
        None => s.caller.project_id,
    };
    match app.store.releases(project_id, service.as_deref(), 100).await {
        Ok(releases) => render(ReleasesPage {
            user: s.caller.name.clone(),
            project: project.unwrap_or_default(),
            service: service.unwrap_or_default(),
            releases: releases.iter().filter(|r| s.caller.sees(r.project_id)).map(row).collect(),
        }),
        Err(e) => error_page(e.into()),
    }
}

pub(super) struct ChangeView {
    sha: String,
    author: String,
    message: String,
}

pub(super) struct PlaceView {
    environment: String,
    rollout: i64,
    phase: String,
    at: String,
}

#[derive(Template)]
#[template(path = "release.html")]
pub(super) struct ReleasePage {
    user: String,
    release: ReleaseRow,
    full_commit: String,
    artifact: String,
    full_digest: String,
    changelog: Vec<ChangeView>,
    places: Vec<PlaceView>,
    manifest: String,
    provenance: String,
    builder: String,
}

/// `GET /ui/releases/{id}`.
pub(super) async fn release_page(State(app): State<Arc<App>>, s: Session, Path(id): Path<i64>) -> Response {
    let release = match app.store.release(id).await {
        Ok(Some(r)) if s.caller.sees(r.project_id) => r,
        Ok(_) => return error_page(ApiError::not_found(format!("no release {id}"))),
        Err(e) => return error_page(e.into()),
    };
    let filter = RolloutFilter {
        project_id: Some(release.project_id),
        service: Some(release.service.clone()),
        limit: 500,
        ..RolloutFilter::default()
    };
    let places = match app.store.rollouts(&filter).await {
        Ok(rollouts) => rollouts
            .iter()
            .filter(|r| r.release_id == release.id)
            .map(|r| PlaceView {
                environment: r.environment.clone(),
                rollout: r.id,
                phase: r.phase.as_str().to_string(),
                at: when(r.created_at),
            })
            .collect(),
        Err(e) => return error_page(e.into()),
    };
    let changelog = release
        .changelog
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| ChangeView {
            sha: c["sha"].as_str().unwrap_or_default().chars().take(7).collect(),
            author: c["author"].as_str().unwrap_or_default().to_string(),
            message: c["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default().to_string(),
        })
        .collect();
    let builder = release.provenance["predicate"]["runDetails"]["builder"]["id"].as_str().unwrap_or("-").to_string();
    render(ReleasePage {
        user: s.caller.name.clone(),
        full_commit: release.commit_sha.clone(),
        artifact: release.artifact.clone(),
        full_digest: release.digest.clone(),
        changelog,
        places,
        manifest: release.manifest.clone(),
        provenance: serde_json::to_string_pretty(&release.provenance).unwrap_or_default(),
        builder,
        release: row(&release),
    })
}
