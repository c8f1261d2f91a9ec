//! Client commands of release and deploy: releases, deploy, rollout status, promote,
//! abort, approve and rollback.

use crate::client::{print_json, print_table, s, Client, Failure};
use clap::{Args, Subcommand};
use mobius_core::Phase;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// A service in an environment.
#[derive(Debug, Args)]
pub struct Target {
    /// The service (from mobius.yaml).
    service: String,
    /// The environment.
    #[arg(long = "env", value_name = "ENV")]
    env: String,
    /// The project (may be left out when the service name is unique).
    #[arg(long = "project", value_name = "P")]
    project: Option<String>,
    /// Print the answer as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// The latest rollout of a service in an environment: phase, releases, weights.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print every change until the rollout ends.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeployCmd {
    /// List a service's releases, newest first.
    Releases {
        /// The service (from mobius.yaml).
        service: String,
        /// The project (may be left out when the service name is unique).
        #[arg(long = "project", value_name = "P")]
        project: Option<String>,
        /// At most this many, newest first.
        #[arg(long = "limit", default_value_t = 30)]
        limit: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Deploy a release (default: the latest) to an environment with its strategy.
    Deploy {
        #[command(flatten)]
        target: Target,
        /// A release id, a version (v3), a commit, or `latest`.
        #[arg(long = "release", value_name = "R")]
        release: Option<String>,
        /// Wait until the rollout ends; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Rollouts of a service in an environment.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Go past the current pause of the rollout in progress.
    Promote(Target),
    /// Roll the rollout in progress back now.
    Abort(Target),
    /// Approve the rollout waiting for it (not by the release's author or deployer).
    Approve(Target),
    /// Go back to the previous release (or --to R): abort a rollout in progress, or switch back.
    Rollback {
        #[command(flatten)]
        target: Target,
        /// The release to go back to: an id, a version (v3) or a commit (default: the one before).
        #[arg(long = "to", value_name = "R")]
        to: Option<String>,
        /// Wait until the rollback ends; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
}

fn query(target: &Target) -> String {
    let mut q = format!("service={}&environment={}", target.service, target.env);
    if let Some(p) = &target.project {
        q.push_str(&format!("&project={p}"));
    }
    q
}

fn weights(rollout: &Value) -> String {
    rollout["weights"]
        .as_object()
        .map(|w| w.iter().map(|(v, pct)| format!("{v} {pct}%")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn rollout_line(r: &Value) -> String {
    let mut line = format!(
        "rollout {} {} {} → {}: {} ({}) [{}] {}",
        r["id"],
        s(r, "service"),
        s(&r["release"], "version"),
        s(r, "environment"),
        s(r, "phase"),
        s(r, "strategy"),
        weights(r),
        s(r, "message")
    );
    if let (Some(step), Some(plan)) = (r["step"].as_u64(), r["plan"].as_array()) {
        let steps: Vec<String> = plan
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mark = if i as u64 + 1 == step { "▶" } else { "" };
                format!("{mark}{}%", s["weight"])
            })
            .collect();
        line.push_str(&format!("\n  step {step} of {}: {}", plan.len(), steps.join(" → ")));
    }
    if let Some(preview) = r["preview"].as_str() {
        line.push_str(&format!("\n  preview: {} answers at {preview}", s(&r["release"], "version")));
    }
    if let Some(newer) = r["newer_release"].as_str() {
        line.push_str(&format!("\n  {newer} is newer and waits until this rollout ends"));
    }
    line
}

async fn latest(client: &Client, target: &Target) -> Result<Value, Failure> {
    let list = client.json(Method::GET, &format!("/rollouts?{}&limit=1", query(target)), None).await?;
    list.as_array()
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| Failure(format!("no rollout of `{}` to `{}` yet", target.service, target.env)))
}

/// A rollout's phase as the server answers it (an unknown one is not final: keep watching).
fn phase(rollout: &Value) -> Option<Phase> {
    Phase::parse(s(rollout, "phase"))
}

/// Polls a rollout until it ends, printing each change; exit 0 only for `succeeded`.
async fn watch(client: &Client, id: &Value, json_lines: bool) -> Result<ExitCode, Failure> {
    let mut last = String::new();
    loop {
        let r = client.json(Method::GET, &format!("/rollouts/{id}"), None).await?;
        let line = rollout_line(&r);
        if line != last {
            if json_lines {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!("{line}");
            }
            last = line;
        }
        if let Some(ended) = phase(&r).filter(|p| p.is_final()) {
            return Ok(if ended == Phase::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn dispatch(client: Client, command: DeployCmd) -> Result<ExitCode, Failure> {
    match command {
        DeployCmd::Releases { service, project, limit, json } => {
            let mut path = format!("/releases?service={service}&limit={limit}");
            if let Some(p) = project {
                path.push_str(&format!("&project={p}"));
            }
            let answer = client.json(Method::GET, &path, None).await?;
            print_table(&answer, json, &["ID", "VERSION", "PROJECT", "COMMIT", "CREATED", "DIGEST"], |r| {
                vec![
                    r["id"].to_string().into(),
                    s(r, "version").into(),
                    s(r, "project").into(),
                    s(r, "commit").chars().take(8).collect::<String>().into(),
                    s(r, "created_at").into(),
                    s(r, "digest").chars().take(19).collect::<String>().into(),
                ]
            });
        }
        DeployCmd::Deploy { target, release, wait } => {
            let body = json!({
                "project": target.project, "service": target.service,
                "environment": target.env, "release": release,
            });
            let r = client.json(Method::POST, "/deployments", Some(body)).await?;
            if target.json && !wait {
                print_json(&r);
            } else {
                println!(
                    "rollout {} started: {} {} to {} ({})",
                    r["id"],
                    s(&r, "service"),
                    s(&r["release"], "version"),
                    s(&r, "environment"),
                    s(&r, "strategy")
                );
            }
            if wait {
                return watch(&client, &r["id"], target.json).await;
            }
        }
        DeployCmd::Rollout(RolloutCmd::Status { target, watch: follow }) => {
            let r = latest(&client, &target).await?;
            if follow {
                return watch(&client, &r["id"], target.json).await;
            }
            if target.json {
                print_json(&r);
            } else {
                println!("{}", rollout_line(&r));
            }
        }
        DeployCmd::Promote(target) => return send_command(&client, &target, "promote").await,
        DeployCmd::Abort(target) => return send_command(&client, &target, "abort").await,
        DeployCmd::Approve(target) => return send_command(&client, &target, "approve").await,
        DeployCmd::Rollback { target, to, wait } => {
            let body = json!({
                "project": target.project, "service": target.service,
                "environment": target.env, "to": to,
            });
            let r = client.json(Method::POST, "/rollbacks", Some(body)).await?;
            if target.json && !wait {
                print_json(&r);
            } else {
                println!("rollout {} rolls {} in {} back", r["id"], s(&r, "service"), s(&r, "environment"));
            }
            if wait {
                return watch(&client, &r["id"], target.json).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn send_command(client: &Client, target: &Target, which: &str) -> Result<ExitCode, Failure> {
    let r = latest(client, target).await?;
    if phase(&r).is_some_and(Phase::is_final) {
        return Err(Failure(format!(
            "the latest rollout of `{}` to `{}` ({}) has ended: {}",
            target.service,
            target.env,
            r["id"],
            s(&r, "phase")
        )));
    }
    let answer = client.json(Method::POST, &format!("/rollouts/{}/{which}", r["id"]), None).await?;
    if target.json {
        print_json(&answer);
    } else {
        println!("rollout {}: {which} sent", r["id"]);
    }
    Ok(ExitCode::SUCCESS)
}
