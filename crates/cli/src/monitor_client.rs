//! Client commands of the monitor: PromQL queries, alerts, incidents, acknowledging and
//! resolving.

use crate::client::{print_json, print_table, s, Client, Failure};
use crate::table::{state, Cell, Table};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Evaluate a PromQL expression now, or over a range with --range.
    Query {
        /// The PromQL expression.
        expr: String,
        /// Evaluate over the last DURATION (1h, 30m...) instead of at one instant.
        #[arg(long = "range", value_name = "DURATION", value_parser = humantime::parse_duration)]
        range: Option<std::time::Duration>,
        /// The resolution of a range query (default: the range / 60).
        #[arg(long = "step", value_name = "DURATION", value_parser = humantime::parse_duration)]
        step: Option<std::time::Duration>,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Alerts the alert manager holds: firing, silenced, inhibited.
    Alerts {
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Incidents, newest first.
    Incidents {
        /// Only incidents in this state.
        #[arg(long = "status", value_name = "open|acknowledged|resolved|unresolved")]
        status: Option<String>,
        /// At most this many, newest first.
        #[arg(long = "limit", default_value_t = 50)]
        limit: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident: its escalation stops.
    Ack {
        /// The incident's id.
        incident: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve an incident.
    Resolve {
        /// The incident's id.
        incident: i64,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A service's logs: what its instances wrote.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Silences: alerts that match are not notified for a while (Alertmanager's, as amtool).
    #[command(subcommand)]
    Silence(SilenceCmd),
}

#[derive(Debug, Subcommand)]
pub enum SilenceCmd {
    /// Silence alerts whose labels match every matcher, from now for --duration.
    Add {
        /// Matchers as Alertmanager writes them: alertname=QueueTooDeep env!=staging severity=~"crit.*".
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long the silence lasts (30m, 2h, 1d).
        #[arg(short = 'd', long = "duration", value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why the alerts are silenced (required, as amtool requires it).
        #[arg(short = 'c', long = "comment")]
        comment: String,
        /// Who silences (default: the token's name).
        #[arg(short = 'a', long = "author")]
        author: Option<String>,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List active and pending silences (with --expired, expired ones too).
    List {
        /// Only silences whose matchers match these (alertname=QueueTooDeep).
        #[arg(value_name = "MATCHER")]
        matchers: Vec<String>,
        /// Show expired silences too.
        #[arg(long)]
        expired: bool,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Expire silences now, by id.
    Expire {
        /// The silences' ids (from `silence list`).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// Matchers in Alertmanager's syntax (`alertname=X`, `env!="staging"`, `{a=~"b.*", c="d"}`),
/// read by the monitor's own parser, as the v2 API's `{name, value, isRegex, isEqual}`.
fn matcher_json(text: &str) -> Result<Vec<Value>, Failure> {
    let matchers = mobius_alerting::config::parse_matchers(text).map_err(|e| Failure(format!("matcher {e}")))?;
    Ok(matchers
        .iter()
        .map(|m| serde_json::json!({"name": m.name, "value": m.value, "isRegex": m.op.is_regex(), "isEqual": m.op.is_equal()}))
        .collect())
}

/// A silence's matchers as Alertmanager prints them: `alertname="QueueTooDeep", env!="staging"`.
fn matchers_text(silence: &Value) -> String {
    silence["matchers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let op = mobius_series::MatchOp::from_flags(
                m["isEqual"].as_bool().unwrap_or(true),
                m["isRegex"].as_bool().unwrap_or(false),
            );
            format!("{}{}\"{}\"", s(m, "name"), op.as_str(), s(m, "value"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn silences(client: &Client, command: SilenceCmd) -> Result<(), Failure> {
    match command {
        SilenceCmd::Add { matchers, duration, comment, author, json } => {
            if comment.trim().is_empty() {
                return Err(Failure("--comment: say why the alerts are silenced".into()));
            }
            let matchers: Vec<Value> =
                matchers.iter().map(|m| matcher_json(m)).collect::<Result<Vec<_>, _>>()?.concat();
            let now = chrono::Utc::now();
            let ends = now + chrono::Duration::from_std(duration).map_err(|e| Failure(format!("--duration: {e}")))?;
            let body = serde_json::json!({
                "matchers": matchers,
                "startsAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "createdBy": author.unwrap_or_default(),
                "comment": comment,
            });
            let answer = client.json(Method::POST, "/api/v2/silences", Some(body)).await?;
            if json {
                print_json(&answer);
            } else {
                println!("{}", s(&answer, "silenceID"));
            }
        }
        SilenceCmd::List { matchers, expired, json } => {
            let query: Vec<(&str, &String)> = matchers.iter().map(|m| ("filter", m)).collect();
            let response = client.send(client.request(Method::GET, "/api/v2/silences").query(&query)).await?;
            let answer: Value = response.json().await?;
            let mut kept: Vec<Value> = answer
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| {
                    expired
                        || mobius_alerting::SilenceState::parse(s(&x["status"], "state"))
                            != Some(mobius_alerting::SilenceState::Expired)
                })
                .cloned()
                .collect();
            kept.sort_by(|a, b| s(b, "endsAt").cmp(s(a, "endsAt")));
            print_table(
                &Value::Array(kept),
                json,
                &["ID", "MATCHERS", "STATE", "ENDS", "CREATED BY", "COMMENT"],
                |x| {
                    vec![
                        s(x, "id").into(),
                        matchers_text(x).into(),
                        state(s(&x["status"], "state")),
                        s(x, "endsAt").get(..19).unwrap_or_default().replace('T', " ").into(),
                        s(x, "createdBy").rsplit(':').next().unwrap_or_default().into(),
                        s(x, "comment").into(),
                    ]
                },
            );
        }
        SilenceCmd::Expire { ids } => {
            for id in ids {
                client.json(Method::DELETE, &format!("/api/v2/silence/{id}"), None).await?;
                println!("silence {id} expired");
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Print a service's instance logs in an environment (`-f` follows new lines).
    Logs {
        /// The service (from mobius.yaml).
        service: String,
        /// The environment.
        #[arg(long = "env", value_name = "ENV")]
        env: String,
        /// Only lines containing this text.
        #[arg(long = "grep", value_name = "TEXT")]
        grep: Option<String>,
        /// How far back to start (default 1h).
        #[arg(long = "since", value_name = "DURATION", default_value = "1h")]
        since: String,
        /// At most this many lines.
        #[arg(long = "limit", default_value_t = 1000)]
        limit: usize,
        /// Keep printing new lines as they are written.
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Print the answer as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn print_line(ts: &str, labels: &Value, line: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({"ts": ts, "labels": labels, "line": line}));
    } else {
        let at = ts.parse::<i64>().ok().map(|ns| ns / 1_000_000);
        println!("{} {} {line}", when(at), labels["instance"].as_str().unwrap_or("-"));
    }
}

async fn service_logs(client: &Client, command: ServiceCmd) -> Result<(), Failure> {
    use futures_util::StreamExt;
    let ServiceCmd::Logs { service, env, grep, since, limit, follow, json } = command;
    // An environment the service was never deployed to is a mistake, not an empty log.
    let places = client.json(Method::GET, "/environments", None).await?;
    let mut known: Vec<&str> = places
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["service"].as_str() == Some(service.as_str()))
        .filter_map(|p| p["environment"].as_str())
        .collect();
    known.sort_unstable();
    known.dedup();
    if !known.contains(&env.as_str()) {
        return Err(Failure(if known.is_empty() {
            format!("service `{service}` was never deployed, so it has no logs in `{env}`")
        } else {
            format!("service `{service}` has no environment `{env}`; it runs in {}", known.join(", "))
        }));
    }
    let mut query = format!("{{service={},env={}}}", quote(&service), quote(&env));
    if let Some(text) = &grep {
        query.push_str(&format!(" |= {}", quote(text)));
    }
    let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let path = format!(
        "/loki/api/v1/query_range?query={}&since={}&limit={limit}&direction=backward",
        enc(&query),
        enc(&since)
    );
    let answer = client.json(Method::GET, &path, None).await?;
    let mut lines: Vec<(String, Value, String)> = Vec::new();
    for stream in answer["data"]["result"].as_array().into_iter().flatten() {
        for v in stream["values"].as_array().into_iter().flatten() {
            let ts = v[0].as_str().unwrap_or("0").to_string();
            lines.push((ts, stream["stream"].clone(), v[1].as_str().unwrap_or("").to_string()));
        }
    }
    lines.sort_by_key(|(ts, _, _)| ts.parse::<i64>().unwrap_or(0));
    for (ts, labels, line) in &lines {
        print_line(ts, labels, line, json);
    }
    if !follow {
        return Ok(());
    }
    let response = client.send(client.request(Method::GET, "/logs/tail").query(&[("query", &query)])).await?;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let data: String = message.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if !message.contains("event: line") && !message.contains("event:line") {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&data) else { continue };
            print_line(s(&value, "ts"), &value["labels"], s(&value, "line"), json);
        }
    }
    Ok(())
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

const INCIDENT_COLUMNS: [&str; 6] = ["ID", "STATUS", "WHERE", "OPENED", "RESTORED IN", "TITLE"];

fn incident_row(i: &Value) -> Vec<Cell> {
    let place = match (i["service"].as_str(), i["environment"].as_str()) {
        (Some(svc), Some(env)) => format!("{svc}/{env}"),
        (Some(svc), None) => svc.to_string(),
        _ => "-".into(),
    };
    vec![
        i["id"].to_string().into(),
        state(s(i, "status")),
        place.into(),
        i["opened_at"].as_str().map_or_else(|| "-".to_string(), |t| t.get(..19).unwrap_or(t).replace('T', " ")).into(),
        i["time_to_restore_ms"].as_i64().map_or_else(|| "-".into(), mobius_core::duration::human_signed).into(),
        s(i, "title").into(),
    ]
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
            print_table(&answer, json, &["STATE", "ALERT", "SINCE", "RECEIVERS", "LABELS"], |a| {
                let receivers: Vec<&str> =
                    a["receivers"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
                vec![
                    state(s(&a["status"], "state")),
                    a["labels"]["alertname"].as_str().unwrap_or("-").into(),
                    s(a, "startsAt").into(),
                    receivers.join(",").into(),
                    labels(&a["labels"]).into(),
                ]
            });
        }
        MonitorCmd::Incidents { status, limit, json } => {
            let mut path = format!("/incidents?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let answer = client.json(Method::GET, &path, None).await?;
            print_table(&answer["incidents"], json, &INCIDENT_COLUMNS, incident_row);
        }
        MonitorCmd::Ack { incident, json } => change(&client, incident, "acknowledge", json).await?,
        MonitorCmd::Resolve { incident, json } => change(&client, incident, "resolve", json).await?,
        MonitorCmd::Service(command) => service_logs(&client, command).await?,
        MonitorCmd::Silence(command) => silences(&client, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn change(client: &Client, incident: i64, verb: &str, json: bool) -> Result<(), Failure> {
    let answer = client.json(Method::POST, &format!("/incidents/{incident}/{verb}"), None).await?;
    if json {
        print_json(&answer["incident"]);
    } else {
        let mut table = Table::new(&INCIDENT_COLUMNS);
        table.row(incident_row(&answer["incident"]));
        table.print();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::matcher_json;
    use serde_json::json;

    #[test]
    fn matchers_are_read_as_amtool_reads_them() {
        let m = |t: &str| matcher_json(t).map_err(|e| e.0);
        assert_eq!(
            m("alertname=Foo"),
            Ok(vec![json!({"name": "alertname", "value": "Foo", "isRegex": false, "isEqual": true})])
        );
        assert_eq!(
            m("env!=\"staging\""),
            Ok(vec![json!({"name": "env", "value": "staging", "isRegex": false, "isEqual": false})])
        );
        assert_eq!(
            m("severity=~\"crit.*\""),
            Ok(vec![json!({"name": "severity", "value": "crit.*", "isRegex": true, "isEqual": true})])
        );
        assert_eq!(m("job!~a|b"), Ok(vec![json!({"name": "job", "value": "a|b", "isRegex": true, "isEqual": false})]));
        let wrong = m("9lives=1").unwrap_err();
        assert!(wrong.contains("`9lives=1`") && wrong.contains("expected a label name"), "{wrong}");
        let wrong = m("alertname").unwrap_err();
        assert!(wrong.contains("expected `=`, `!=`, `=~` or `!~`"), "{wrong}");
        let wrong = m("job=~\"(\"").unwrap_err();
        assert!(wrong.contains("invalid regular expression"), "{wrong}");
    }
}
