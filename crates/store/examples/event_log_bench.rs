//! The event log's benchmark (docs/benchmarks.md, "Event log"): appends in batches,
//! state changes with their event at one transaction each, and reads of pages after an
//! id with a million events stored, on SQLite (the server's settings: WAL, synchronous
//! commits) and, with `--postgres URL`, on PostgreSQL.
//!
//! `cargo run --release -p mobius-store --example event_log_bench -- [--events N] [--postgres URL] [--no-sqlite] [--dir DIR]`
#![allow(clippy::unwrap_used, clippy::print_stdout)] // reason: a benchmark fails loudly and prints its table

use mobius_core::EventKind;
use mobius_store::{EventFilter, NewEvent, Store};
use std::time::{Duration, Instant};

const PROJECTS: usize = 20;

fn event(i: usize) -> NewEvent {
    NewEvent::new(EventKind::RunCompleted, "bench")
        .project(&format!("p{}", i % PROJECTS))
        .run(i as i64)
        .data(serde_json::json!({"conclusion": "success", "number": i, "workflow": ".github/workflows/ci.yml"}))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A cheap deterministic sequence for the ids asked for.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

async fn bench(name: &str, store: Store, total: usize) {
    // 1. Appends in batches of 100, one transaction each.
    let batch = 100;
    let started = Instant::now();
    let mut i = 0;
    while i < total {
        let events: Vec<NewEvent> = (i..(i + batch).min(total)).map(event).collect();
        store.append_all(&events).await.unwrap();
        i += batch;
    }
    let batched = total as f64 / started.elapsed().as_secs_f64();

    // 2. State changes, each with its event, one transaction each (a variable set).
    let project = store
        .create_project(
            "bench",
            "/src/bench",
            "main",
            b"sealed",
            10_000,
            None,
            NewEvent::new(EventKind::ProjectCreate, "bench"),
        )
        .await
        .unwrap();
    let changes = 5_000;
    let started = Instant::now();
    for n in 0..changes {
        let event = NewEvent::audit(EventKind::VariableSet, "bench", "bench/V", "127.0.0.1").project("bench");
        store.set_variable(project.id, &format!("V{}", n % 50), &n.to_string(), event).await.unwrap();
    }
    let single = changes as f64 / started.elapsed().as_secs_f64();

    // 3. Pages of 500 after a random id, of everything and of one project.
    let last = store.last_event_id().await.unwrap();
    let mut lcg = Lcg(42);
    let read = |filter: EventFilter| {
        let store = store.clone();
        async move {
            let started = Instant::now();
            let page = store.events(&filter).await.unwrap();
            (started.elapsed(), page.len())
        }
    };
    let mut all = Vec::new();
    let mut per_project = Vec::new();
    for _ in 0..2_000 {
        let after = lcg.next(last as u64 - 10_000) as i64;
        let (took, n) = read(EventFilter { after, limit: 500, ..Default::default() }).await;
        assert_eq!(n, 500);
        all.push(took);
        let project = format!("p{}", lcg.next(PROJECTS as u64));
        let after = lcg.next(last as u64 - 200_000) as i64;
        let (took, n) = read(EventFilter { after, project: Some(project), limit: 500, ..Default::default() }).await;
        assert_eq!(n, 500);
        per_project.push(took);
    }
    all.sort();
    per_project.sort();
    println!(
        "| {name} | {total} | {batched:.0} | {single:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&per_project, 0.5),
        percentile(&per_project, 0.99),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let total: usize = value("--events").map_or(1_000_000, |v| v.parse().unwrap());
    let dir = match value("--dir") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!("| store | events stored | appended/s, batches of 100 | state changes/s, one transaction each | page of 500 after an id, p50 / p99 ms | one project's page of 500, p50 / p99 ms |");
    println!("|---|---|---|---|---|---|");
    if !args.iter().any(|a| a == "--no-sqlite") {
        let sqlite = Store::open(&Store::sqlite_url(&dir.path().join("mobius.db"))).await.unwrap();
        bench("SQLite (WAL, synchronous=FULL)", sqlite, total).await;
    }
    if let Some(url) = value("--postgres") {
        let postgres = Store::open(&url).await.unwrap();
        bench("PostgreSQL 15", postgres, total).await;
    }
}
