//! `mobius events`: the server's event log, what happened in order, as a table, as
//! JSON, or followed live (`--follow`, over Server-Sent Events, resuming after a drop).

use crate::client::{print_json, s, Client, Failure};
use crate::table::{toned, Cell, Table};
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only this project's events.
    #[arg(long = "project", value_name = "NAME")]
    project: Option<String>,
    /// Only events of this kind (run.completed) or family (rollout.*); repeat for more.
    #[arg(long = "kind", value_name = "K")]
    kinds: Vec<String>,
    /// Only events after this id (default: the newest LIMIT).
    #[arg(long = "after", value_name = "ID")]
    after: Option<i64>,
    /// At most this many events.
    #[arg(long = "limit", default_value_t = 50)]
    limit: i64,
    /// Keep printing events as they happen, until interrupted.
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// Print JSON: an array, or one object per line with --follow.
    #[arg(long)]
    json: bool,
}

fn query(args: &EventsArgs, after: Option<i64>) -> Vec<(&'static str, String)> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(project) = &args.project {
        query.push(("project", project.clone()));
    }
    if !args.kinds.is_empty() {
        query.push(("kind", args.kinds.join(",")));
    }
    match after {
        Some(after) => query.push(("after", after.to_string())),
        None => query.push(("newest", "true".into())),
    }
    query
}

const COLUMNS: [&str; 6] = ["ID", "TIME", "KIND", "PROJECT", "ACTOR", "WHAT"];

fn row(e: &Value) -> Vec<Cell> {
    let kind = s(e, "kind");
    // Conclusions and outcomes in their colours; other kinds plain.
    let kind_cell = match e["data"]["conclusion"].as_str() {
        Some(conclusion) => toned(kind, conclusion),
        None => Cell::from(kind),
    };
    vec![
        e["id"].to_string().into(),
        s(e, "time").into(),
        kind_cell,
        e["project"].as_str().unwrap_or("-").into(),
        s(e, "actor").into(),
        s(e, "summary").into(),
    ]
}

pub(crate) async fn events(client: &Client, args: EventsArgs) -> Result<ExitCode, Failure> {
    if !args.follow {
        let request = client.request(Method::GET, "/events").query(&query(&args, args.after));
        let answer: Value = client.send(request).await?.json().await?;
        if args.json {
            print_json(&answer["events"]);
        } else {
            let mut table = Table::new(&COLUMNS);
            answer["events"].as_array().into_iter().flatten().for_each(|e| table.row(row(e)));
            table.print();
        }
        return Ok(ExitCode::SUCCESS);
    }
    // From where the reader asked, or from now; after a dropped connection, from the last
    // event printed (the server resumes after `Last-Event-ID`).
    let mut last = match args.after {
        Some(after) => after,
        None => {
            let request = client.request(Method::GET, "/events").query(&[("limit", "1"), ("newest", "true")]);
            let answer: Value = client.send(request).await?.json().await?;
            answer["last_id"].as_i64().unwrap_or(0)
        }
    };
    let colour = Table::colour();
    loop {
        let request = client
            .request(Method::GET, "/events/stream")
            .query(&query(&args, Some(last)))
            .header("Last-Event-ID", last.to_string());
        let response = client.send(request).await?;
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                let data: String = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                let Ok(event) = serde_json::from_str::<Value>(&data) else { continue };
                let Some(id) = event["id"].as_i64() else { continue };
                last = id;
                if args.json {
                    println!("{event}");
                } else {
                    // One line per event as it comes: no header, columns as in the table.
                    let mut table = Table::new(&[""; 6]);
                    table.row(row(&event));
                    let text = table.render(colour);
                    println!("{}", text.lines().last().unwrap_or_default());
                }
            }
        }
        // The server went away: try again from the last event printed.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
