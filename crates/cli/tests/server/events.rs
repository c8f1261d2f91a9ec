//! The event log (issue 17, item 5): one ordered record that every stage writes, read
//! over the API, live over SSE, with `mobius events` and on the activity page; the
//! reactions that follow it (release, auto-deploy) resume after `kill -9` and repeat
//! nothing.

use crate::deploy::{cli_ok, free_port, python_available, service_repo, wait_release};
use crate::support::{backends, Backend, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// The Python service, released on every green push and deployed by itself to staging.
fn auto_deployed(port: u16) -> String {
    crate::first_hour::listening("web", port)
        .replace("  production:", "  staging:")
        .replace("    strategy: blue-green", "    auto_deploy: true\n    strategy: blue-green")
}

fn events(server: &Server, query: &str) -> Vec<Value> {
    let (status, answer) = server.api("GET", &format!("/api/v1/events?limit=1000&{query}"), None);
    assert_eq!(status, 200, "{answer}");
    answer["events"].as_array().cloned().unwrap_or_default()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

/// Waits until an event of `kind` is in the project's log.
fn wait_event(server: &Server, project: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = events(server, &format!("project={project}&kind={kind}"));
        if let Some(e) = found.into_iter().next() {
            return e;
        }
        assert!(Instant::now() < deadline, "no {kind} event\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn position(events: &[Value], kind: &str) -> usize {
    events.iter().position(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(events)))
}

/// A push to a running service, as the log tells it: in order, each entry naming what it
/// is about, the same over the API, the CLI, the live stream and the activity page.
#[test]
fn a_push_to_a_running_service_is_told_in_order_by_the_event_log() {
    if !python_available() {
        return;
    }
    for backend in backends() {
        let port = free_port();
        let repo = service_repo(&auto_deployed(port));
        let server = Server::start(backend);
        server.add_project("shop", repo.path());
        wait_release(&server, "v1");
        let serving = wait_event(&server, "shop", "environment.serving");
        assert_eq!(serving["data"]["version"], "v1", "{serving}");
        assert_eq!(serving["environment"], "staging", "{serving}");

        let log = events(&server, "project=shop");
        assert!(log.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()), "ids not increasing");
        // Cause before effect: the push, its run, the release it made, the rollout of it.
        let order = [
            "project.create",
            "push.received",
            "run.queued",
            "run.started",
            "job.completed",
            "run.completed",
            "release.created",
            "rollout.started",
            "rollout.succeeded",
            "environment.serving",
        ];
        let at: Vec<usize> = order.iter().map(|k| position(&log, k)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", kinds(&log));
        let completed = &log[position(&log, "run.completed")];
        assert_eq!(completed["data"]["conclusion"], "success", "{completed}");
        let release = &log[position(&log, "release.created")];
        assert_eq!(
            (release["run"].clone(), release["data"]["version"].clone()),
            (completed["run"].clone(), "v1".into())
        );
        let started = &log[position(&log, "rollout.started")];
        assert_eq!(started["release"], release["release"], "{started}");

        // Filters: a family of kinds, and `after` the last id seen (nothing twice).
        let rollout_kinds = kinds(&events(&server, "project=shop&kind=rollout.*"));
        assert!(rollout_kinds.iter().all(|k| k.starts_with("rollout.")), "{rollout_kinds:?}");
        let last = log.last().unwrap()["id"].as_i64().unwrap();
        assert!(events(&server, &format!("project=shop&after={last}")).is_empty());
        let (status, refused) = server.api("GET", "/api/v1/events?kind=run.exploded", None);
        assert_eq!(status, 400, "{refused}");
        assert!(refused["error"].as_str().unwrap().contains("run.completed"), "the kinds are listed: {refused}");
        // A kind named again and again is one condition (it was one SQL parameter per
        // mention).
        // 1,100 mentions of every kind: 67,100 parameters, past both databases' limits.
        let many = vec!["*"; 1_100].join(",");
        let (status, answer) = server.api("GET", &format!("/api/v1/events?project=shop&kind={many}"), None);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(kinds(answer["events"].as_array().unwrap()), kinds(&log[..log.len().min(100)]));

        // The CLI: a table by default, JSON with --json, the same entries.
        let table = cli_ok(&server, &["events", "--project", "shop", "--kind", "run.*"]);
        assert!(table.starts_with("ID"), "{table}");
        assert!(table.contains("run.completed") && table.contains("success"), "{table}");
        let json: Value = serde_json::from_str(&cli_ok(&server, &["events", "--project", "shop", "--json"])).unwrap();
        assert_eq!(json.as_array().unwrap().last().unwrap()["id"], log.last().unwrap()["id"]);

        // The live stream resumes after Last-Event-ID, then tells what happens next.
        let resume = log[position(&log, "release.created")]["id"].as_i64().unwrap();
        let response = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/events/stream?project=shop", server.url))
            .bearer_auth(&server.token)
            .header("Last-Event-ID", resume.to_string())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(response).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut streamed = Vec::new();
        let next = |streamed: &mut Vec<i64>| {
            let line = lines.recv_timeout(Duration::from_secs(30)).expect("the stream went quiet");
            if let Some(id) = line.strip_prefix("id:") {
                streamed.push(id.trim().parse::<i64>().unwrap());
            }
        };
        while streamed.last() != Some(&last) {
            next(&mut streamed);
        }
        assert_eq!(streamed[0], resume + 1, "the stream resumes right after Last-Event-ID: {streamed:?}");
        assert!(streamed.windows(2).all(|w| w[0] < w[1]));
        // Something new: a variable set now arrives on the open stream.
        let (status, _) =
            server.api("PUT", "/api/v1/projects/shop/variables/REGION", Some(serde_json::json!({"value": "eu"})));
        assert_eq!(status, 204);
        let newest = events(&server, "project=shop&kind=variable.set")[0]["id"].as_i64().unwrap();
        while streamed.last() != Some(&newest) {
            next(&mut streamed);
        }

        // The activity page: each line links to what it is about.
        let page = server.page("/ui/activity?project=shop");
        let rollout = started["rollout"].as_i64().unwrap();
        let run = completed["run"].as_i64().unwrap();
        assert!(page.contains(&format!("href=\"/ui/rollouts/{rollout}\"")), "{page}");
        assert!(page.contains(&format!("href=\"/ui/runs/{run}\"")), "{page}");
        assert!(page.contains("environment.serving"), "{page}");
    }
}

/// The reactions to the log keep their position: after `kill -9` at the worst moment
/// (everything done, the position not yet stored: here, rewound to the start) the
/// restarted server reads the log again and makes no second release, deploys nothing
/// twice, and records nothing again; a push after the restart still ships.
#[test]
fn reactions_resume_after_kill_9_and_repeat_nothing() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let repo = service_repo(&auto_deployed(port));
    let mut server = Server::start(Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    wait_event(&server, "shop", "environment.serving");
    let before = events(&server, "project=shop");
    server.kill9();
    let db = server.data().join("mobius.db");
    let rewound = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); n=c.execute('UPDATE event_cursors SET position = 0').rowcount; c.commit(); print(n)"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(rewound.status.success(), "{}", String::from_utf8_lossy(&rewound.stderr));
    assert_eq!(String::from_utf8_lossy(&rewound.stdout).trim(), "2", "both subscribers had stored a position");
    server.restart();
    // Caught up: each subscriber's position is back at (or past) the last event of its kinds.
    let last_run = before.iter().rev().find(|e| e["kind"] == "run.completed").unwrap()["id"].as_i64().unwrap();
    let last_release = before.iter().rev().find(|e| e["kind"] == "release.created").unwrap()["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(dict(c.execute('SELECT name, position FROM event_cursors')))"])
            .arg(&db)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let caught_up = text.contains(&format!("'releases': {last_run}"))
            && text.contains(&format!("'auto-deploy': {last_release}"));
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "subscribers did not catch up: {text}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, releases) = server.api("GET", "/api/v1/releases?service=web", None);
    assert_eq!(releases.as_array().unwrap().len(), 1, "a second release: {releases}");
    let (_, rollouts) = server.api("GET", "/api/v1/rollouts?service=web", None);
    assert_eq!(rollouts.as_array().unwrap().len(), 1, "deployed twice: {rollouts}");
    let after: Vec<Value> = events(&server, "project=shop")
        .into_iter()
        .filter(|e| e["id"].as_i64() > before.last().unwrap()["id"].as_i64())
        .filter(|e| !e["kind"].as_str().unwrap().starts_with("rollout.") && e["kind"] != "environment.serving")
        .collect();
    assert!(after.is_empty(), "reactions repeated: {:?}", kinds(&after));

    // Nothing was lost either: the next push is released and deployed as before.
    repo.commit(&[("app/VERSION", "2")], "Second");
    wait_release(&server, "v2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(&server, "project=shop&kind=environment.serving").iter().any(|e| e["data"]["version"] == "v2") {
        assert!(Instant::now() < deadline, "v2 was not deployed\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
