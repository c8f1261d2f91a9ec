//! Client commands of the monitor: PromQL queries, alerts, incidents, acknowledging and
//! resolving.

use crate::client::{print_json, s, Client, Failure};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Evaluate a PromQL expression now, or over a range with --range.
    Query {
        expr: String,
        /// Evaluate over the last DURATION (1h, 30m...) instead of at one instant.
        #[arg(long = "range", value_name = "DURATION", value_parser = humantime::parse_duration)]
        range: Option<std::time::Duration>,
        /// The resolution of a range query (default: the range / 60).
        #[arg(long = "step", value_name = "DURATION", value_parser = humantime::parse_duration)]
        step: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Alerts the alert manager holds: firing, silenced, inhibited.
    Alerts {
        #[arg(long)]
        json: bool,
    },
    /// Incidents, newest first.
    Incidents {
        #[arg(long = "status", value_name = "open|acknowledged|resolved|unresolved")]
        status: Option<String>,
        #[arg(long = "limit", default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident: its escalation stops.
    Ack {
        incident: i64,
        #[arg(long)]
        json: bool,
    },
    /// Resolve an incident.
    Resolve {
        incident: i64,
        #[arg(long)]
        json: bool,
    },
}

fn labels(metric: &Value) -> String {
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let pairs: Vec<String> = metric
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", pairs.join(", "))
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn incident_line(i: &Value) -> String {
    let place = match (i["service"].as_str(), i["environment"].as_str()) {
        (Some(svc), Some(env)) => format!("{svc}/{env}"),
        (Some(svc), None) => svc.to_string(),
        _ => "-".into(),
    };
    let restore =
        i["time_to_restore_ms"].as_i64().map_or_else(|| "-".into(), |ms| format!("{:.0}s", ms as f64 / 1000.0));
    format!(
        "{:<5} {:<13} {:<20} {} {:<8} {}",
        i["id"].to_string(),
        s(i, "status"),
        place,
        when(i["opened_at"].as_i64()),
        restore,
        s(i, "title")
    )
}

pub(crate) async fn dispatch(client: Client, command: MonitorCmd) -> Result<ExitCode, Failure> {
    match command {
        MonitorCmd::Query { expr, range, step, json } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
            let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let path = match range {
                Some(range) => {
                    let step = step.unwrap_or(range / 60).as_secs_f64().max(0.001);
                    format!(
                        "/query_range?query={}&start={}&end={now}&step={step}",
                        enc(&expr),
                        now - range.as_secs_f64()
                    )
                }
                None => format!("/query?query={}&time={now}", enc(&expr)),
            };
            let answer = client.json(Method::GET, &path, None).await?;
            if json {
                print_json(&answer);
                return Ok(ExitCode::SUCCESS);
            }
            let data = &answer["data"];
            match data["resultType"].as_str() {
                Some("scalar") | Some("string") => println!("{}", data["result"][1].as_str().unwrap_or("")),
                Some("vector") => {
                    for r in data["result"].as_array().into_iter().flatten() {
                        println!("{} {}", labels(&r["metric"]), r["value"][1].as_str().unwrap_or(""));
                    }
                }
                _ => {
                    for r in data["result"].as_array().into_iter().flatten() {
                        println!("{}", labels(&r["metric"]));
                        for v in r["values"].as_array().into_iter().flatten() {
                            let at = v[0].as_f64().map(|t| (t * 1000.0) as i64);
                            println!("  {} {}", when(at), v[1].as_str().unwrap_or(""));
                        }
                    }
                }
            }
        }
        MonitorCmd::Alerts { json } => {
            let answer = client.json(Method::GET, "/api/v2/alerts", None).await?;
            if json {
                print_json(&answer);
            } else {
                for a in answer.as_array().into_iter().flatten() {
                    let receivers: Vec<&str> =
                        a["receivers"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
                    println!(
                        "{:<10} {:<24} since {} → {} {}",
                        s(&a["status"], "state"),
                        a["labels"]["alertname"].as_str().unwrap_or("-"),
                        s(a, "startsAt"),
                        receivers.join(","),
                        labels(&a["labels"])
                    );
                }
            }
        }
        MonitorCmd::Incidents { status, limit, json } => {
            let mut path = format!("/incidents?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let answer = client.json(Method::GET, &path, None).await?;
            if json {
                print_json(&answer["incidents"]);
            } else {
                answer["incidents"].as_array().into_iter().flatten().for_each(|i| println!("{}", incident_line(i)));
            }
        }
        MonitorCmd::Ack { incident, json } => change(&client, incident, "acknowledge", json).await?,
        MonitorCmd::Resolve { incident, json } => change(&client, incident, "resolve", json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn change(client: &Client, incident: i64, verb: &str, json: bool) -> Result<(), Failure> {
    let answer = client.json(Method::POST, &format!("/incidents/{incident}/{verb}"), None).await?;
    if json {
        print_json(&answer["incident"]);
    } else {
        println!("{}", incident_line(&answer["incident"]));
    }
    Ok(())
}
