//! The store's behaviour, the same on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

use mobius_core::{Conclusion, EventKind, Status};
use mobius_store::{EventFilter, MasterKey, NewEvent, NewRun, RunFilter, Store};

/// An audit entry as a request of `admin` from 127.0.0.1 makes it.
fn made(kind: EventKind) -> NewEvent {
    NewEvent::audit(kind, "admin", "web", "127.0.0.1")
}

fn new_run(project_id: i64, workflow: &str) -> NewRun {
    NewRun {
        project_id,
        workflow: workflow.into(),
        workflow_name: "CI".into(),
        event: "push".into(),
        ref_name: "refs/heads/main".into(),
        head_sha: "a".repeat(40),
        actor: "alice".into(),
        author: "Alice".into(),
        message: "first".into(),
        payload: "{}".into(),
        inputs: "{}".into(),
        concurrency_group: Some("ci-main".into()),
        cancel_in_progress: true,
        rerun_of: None,
        attempt: 1,
        reuse: "{}".into(),
        finished: None,
    }
}

async fn exercise(store: Store) {
    let project = store
        .create_project("web", "/src/web", "main", b"sealed", 10_000, None, made(EventKind::ProjectCreate))
        .await
        .unwrap();
    assert!(
        store.create_project("web", "/x", "main", b"s", 1, None, made(EventKind::ProjectCreate)).await.is_err(),
        "names are unique"
    );
    assert_eq!(store.project_by_name("web").await.unwrap().unwrap().id, project.id);

    let first = store.create_run(&new_run(project.id, ".github/workflows/ci.yml")).await.unwrap();
    let second = store.create_run(&new_run(project.id, ".github/workflows/ci.yml")).await.unwrap();
    assert_eq!((first.number, second.number), (1, 2));
    assert_eq!(first.status, Status::Queued);
    assert_eq!(first.project, "web");
    assert!(first.cancel_in_progress);
    let rerun = store.create_run(&NewRun { rerun_of: Some(first.id), attempt: 2, ..new_run(project.id, "ci") }).await;
    assert_eq!(rerun.unwrap().number, 1, "a re-run keeps the run number");
    let other = store.create_run(&new_run(project.id, ".github/workflows/nightly.yml")).await.unwrap();
    assert_eq!(other.number, 1, "each workflow counts its own runs");

    assert!(store.start_run(first.id).await.unwrap());
    assert!(!store.start_run(first.id).await.unwrap(), "only a queued run starts");
    let job = store.create_job(first.id, "build", Status::InProgress, 1).await.unwrap();
    let step = store.create_step(job, 1, "Run make", "spool/1/1/1.log", 2).await.unwrap();
    assert_eq!(store.steps_without_log(first.id).await.unwrap().len(), 1);
    store.set_step_log(step, &"b".repeat(64), 12).await.unwrap();
    store.finish_step(step, Conclusion::Success, 3).await.unwrap();
    store.finish_job(job, Conclusion::Success, None, "{\"tag\":\"v1\"}", 4).await.unwrap();
    assert!(store.finish_run(first.id, Conclusion::Success, None).await.unwrap());
    assert!(
        !store.finish_run(first.id, Conclusion::Failure, None).await.unwrap(),
        "a completed run keeps its conclusion"
    );
    let done = store.run(first.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.conclusion), (Status::Completed, Some(Conclusion::Success)));
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert_eq!(store.steps(job).await.unwrap()[0].log_size, 12);
    assert_eq!(store.jobs(first.id).await.unwrap()[0].outputs, r#"{"tag":"v1"}"#);

    let listed = store.runs(&RunFilter { project_id: Some(project.id), limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].id > listed[1].id, "newest first");
    let queued =
        store.runs(&RunFilter { status: Some(Status::Queued), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(queued.len(), 3);
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 3);

    let token = store
        .create_token("ci", &"c".repeat(64), "developer", Some(project.id), "admin", None, made(EventKind::TokenCreate))
        .await
        .unwrap();
    assert!(store.token_by_hash(&"c".repeat(64)).await.unwrap().is_some());
    store
        .create_token("old", &"d".repeat(64), "viewer", None, "admin", Some(1), made(EventKind::TokenCreate))
        .await
        .unwrap();
    assert!(store.token_by_hash(&"d".repeat(64)).await.unwrap().is_none(), "expired tokens do not authenticate");
    assert!(store.revoke_token(token.id, made(EventKind::TokenRevoke)).await.unwrap());
    assert!(store.token_by_hash(&"c".repeat(64)).await.unwrap().is_none(), "revoked tokens do not authenticate");

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
    let sealed = key.seal("secret:1:API", b"s3cr3t").unwrap();
    store.set_secret(project.id, "API", &sealed, made(EventKind::SecretSet)).await.unwrap();
    store.set_secret(project.id, "API", &sealed, made(EventKind::SecretSet)).await.unwrap();
    let secrets = store.secrets(project.id).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(key.open("secret:1:API", &secrets[0].1).unwrap(), b"s3cr3t");
    store.set_variable(project.id, "REGION", "eu", made(EventKind::VariableSet)).await.unwrap();
    assert_eq!(store.variables(project.id).await.unwrap(), vec![("REGION".to_string(), "eu".to_string())]);

    store.append(made(EventKind::MonitorReload).data(serde_json::json!({"repo": "/src/web"}))).await.unwrap();
    let log = store.audit_log(10, None).await.unwrap();
    assert_eq!(log[0].action, EventKind::MonitorReload);
    assert_eq!(log[0].detail["repo"], "/src/web");
    // Every change above was recorded with it, in order; only requests' entries are audit.
    let actions: Vec<EventKind> = log.iter().rev().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            EventKind::ProjectCreate,
            EventKind::TokenCreate,
            EventKind::TokenCreate,
            EventKind::TokenRevoke,
            EventKind::SecretSet,
            EventKind::SecretSet,
            EventKind::VariableSet,
            EventKind::MonitorReload
        ]
    );
    let runs_log = store
        .events(&EventFilter { project: Some("web".into()), run: Some(first.id), limit: 100, ..Default::default() })
        .await
        .unwrap();
    let kinds: Vec<EventKind> = runs_log.iter().map(|e| e.kind).collect();
    assert!(kinds.starts_with(&[EventKind::RunQueued, EventKind::RunStarted]), "{kinds:?}");
    assert_eq!(runs_log.iter().filter(|e| e.kind == EventKind::RunCompleted).count(), 1, "{kinds:?}");
    let completed = runs_log.iter().find(|e| e.kind == EventKind::RunCompleted).expect("run.completed");
    assert!(completed.data()["conclusion"].is_string(), "{:?}", completed.data);
    assert!(runs_log.windows(2).all(|w| w[0].id < w[1].id));
    // Jobs a cancelled run leaves open are completed with their event too.
    let open_job = store.create_job(second.id, "deploy", Status::InProgress, 5).await.unwrap();
    store.finish_open_jobs(second.id, Conclusion::Cancelled, "cancelled by alice").await.unwrap();
    let closed = store
        .events(&EventFilter {
            run: Some(second.id),
            kinds: vec![EventKind::JobCompleted],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].refs.job, Some(open_job));
    assert_eq!(closed[0].data()["conclusion"], "cancelled");

    // Annotations: at most 50 per job, texts cut at 4 KiB; a check replaces its earlier result.
    let warning = |message: String| mobius_core::Annotation {
        level: mobius_core::AnnotationLevel::Warning,
        message,
        title: None,
        file: Some("a.py".into()),
        line: Some(3),
        col: None,
    };
    for i in 0..60 {
        let kept = store.add_annotation(first.id, "build", "Run make", &warning(format!("w{i}"))).await.unwrap();
        assert_eq!(kept, i < 50, "annotation {i}");
    }
    assert!(store.add_annotation(first.id, "test", "Run tests", &warning("x".repeat(10_000))).await.unwrap());
    let kept = store.annotations(first.id).await.unwrap();
    assert_eq!(kept.len(), 51);
    assert_eq!(kept[50].annotation.message.len(), mobius_store::checks::ANNOTATION_TEXT_BYTES);
    assert_eq!((kept[0].annotation.line, kept[0].annotation.col), (Some(3), None));
    let failed = mobius_core::Conclusion::Failure;
    store.set_check(first.id, "mobius.yaml", failed, "1 problem", &[warning("bad".into())]).await.unwrap();
    store.set_check(first.id, "mobius.yaml", failed, "2 problems", &[warning("worse".into())]).await.unwrap();
    let checks = store.checks(first.id).await.unwrap();
    assert_eq!((checks.len(), checks[0].summary.as_str(), checks[0].conclusion), (1, "2 problems", failed));
    let all = store.annotations(first.id).await.unwrap();
    assert_eq!(all.iter().filter(|a| a.source == "mobius.yaml").count(), 1, "the check's annotations are replaced");

    store.add_artifact(first.id, "dist", "app.tar", &"e".repeat(64), 100).await.unwrap();
    assert!(store.blob_in_use(&"e".repeat(64)).await.unwrap());
    let expired = store.expire_before(i64::MAX).await.unwrap();
    assert!(expired.contains(&"b".repeat(64)) && expired.contains(&"e".repeat(64)));
    assert!(!store.blob_in_use(&"e".repeat(64)).await.unwrap());
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

/// Issue 17, item 5: ids are visible in order. Writers append concurrently (several
/// events per transaction, some transactions slow to commit) while a reader pages with
/// `after = the last id it saw`, as a subscriber and the API's `after=` do. A reader that
/// ever misses an event (a smaller id committed after a larger one was read) ends with
/// fewer events than the log holds. A change that fails records nothing.
async fn events_are_read_in_id_order_and_none_is_missed(store: Store) {
    let before = store.last_event_id().await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let batch: Vec<NewEvent> = (0..1 + (i % 3))
                        .map(|n| made(EventKind::MonitorReload).data(serde_json::json!({"writer": w, "i": i, "n": n})))
                        .collect();
                    store.append_all(&batch).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = before;
            let mut wake = store.subscribe();
            let mut quiet = 0;
            while quiet < 20 {
                let page = store.events(&EventFilter { after, limit: 50, ..Default::default() }).await.unwrap();
                if page.is_empty() {
                    quiet += 1;
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), wake.changed()).await;
                    continue;
                }
                quiet = 0;
                for e in page {
                    assert!(e.id > after, "id {} after {after}", e.id);
                    after = e.id;
                    seen.push(e.id);
                }
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let all = store.events(&EventFilter { after: before, limit: 10_000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 8 * 79, "every append is stored");
    assert_eq!(seen.len(), all.len(), "the reader missed events that committed out of id order");

    // A change that fails leaves no event behind.
    let last = store.last_event_id().await.unwrap();
    let refused = store.set_secret(999_999, "NOPE", b"x", made(EventKind::SecretSet)).await;
    assert!(refused.is_err(), "a secret of no project was stored");
    assert_eq!(store.last_event_id().await.unwrap(), last, "an event without its change");
}

/// Issue 17, item 4: the database itself refuses a state name none of the enums has
/// (a check constraint on PostgreSQL, triggers on SQLite), whoever writes it.
async fn unknown_states_are_refused_by_the_database(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    // `exercise` leaves runs, jobs and steps behind; an incident is written here.
    for (sql, what) in [
        ("UPDATE runs SET status = 'done'", "runs.status"),
        ("UPDATE runs SET conclusion = 'passed'", "runs.conclusion"),
        ("UPDATE jobs SET status = 'done'", "jobs.status"),
        ("UPDATE steps SET conclusion = 'ok'", "steps.conclusion"),
        (
            "INSERT INTO incidents (group_key, title, status, receiver, labels, level, rounds, opened_at)
             VALUES ('g', 't', 'closed', 'r', '{}', 0, 0, 1)",
            "incidents.status",
        ),
        ("INSERT INTO events (at, kind, doc) VALUES (1, 'exploded', '{}')", "events.kind"),
        (
            "INSERT INTO rollouts (project_id, service, environment, release_id, strategy, phase, message, status,
                 created_by, created_at, updated_at)
             VALUES (1, 'web', 'production', 1, 'yolo', 'progressing', '', '{}', 'ci', 1, 1)",
            "rollouts.strategy",
        ),
    ] {
        let result = sqlx::query(sql).execute(&pool).await;
        assert!(result.as_ref().is_err_and(|e| e.to_string().contains("_known")), "{what} was accepted: {result:?}");
    }
    let fine = sqlx::query("UPDATE runs SET conclusion = 'failure' WHERE conclusion = 'failure'").execute(&pool).await;
    assert!(fine.is_ok(), "{fine:?}");
    // The log is append-only: no entry can be changed.
    let changed = sqlx::query("UPDATE events SET doc = '{}'").execute(&pool).await;
    assert!(changed.as_ref().is_err_and(|e| e.to_string().contains("append-only")), "{changed:?}");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("mobius.db"));
    let store = Store::open(&url).await.unwrap();
    exercise(store).await;
    // WAL mode is on: the write-ahead log sits beside the database.
    assert!(dir.path().join("mobius.db-wal").exists());
    unknown_states_are_refused_by_the_database(&url).await;
}

#[tokio::test]
async fn postgres() {
    let Some(url) = mobius_store::testing::fresh_postgres().await else { return };
    exercise(Store::open(&url).await.unwrap()).await;
    unknown_states_are_refused_by_the_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_events_are_read_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("mobius.db"))).await.unwrap();
    events_are_read_in_id_order_and_none_is_missed(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_events_are_read_in_id_order() {
    let Some(url) = mobius_store::testing::fresh_postgres().await else { return };
    events_are_read_in_id_order_and_none_is_missed(Store::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let err = Store::open("mysql://localhost/x").await.unwrap_err().to_string();
    assert!(err.contains("mysql://localhost/x") && err.contains("sqlite://"), "{err}");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with the reason printed) when this machine cannot mount one; under
    /// `CI=true` that fails the test instead.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(SmallDisk { dir }),
            other => {
                let reason = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must be able to mount a tmpfs: {reason}");
                eprintln!("skipped: cannot mount a tmpfs ({reason})");
                None
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes zeros into `filler` until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
        // Then byte by byte what is left of the last block.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Issue 15, item 6: after the disk filled up and emptied again, every write
/// succeeds. A transaction whose commit failed for lack of space used to go back to
/// the pool still open ("attempted to call begin_with at non-zero transaction
/// depth"), and half the writes failed until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn writes_succeed_again_after_the_disk_was_full() {
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let store = Store::open(&Store::sqlite_url(&disk.path().join("mobius.db"))).await.unwrap();
    let project = store
        .create_project("web", "/src/web", "main", b"sealed", 10_000, None, made(EventKind::ProjectCreate))
        .await
        .unwrap();
    for _ in 0..5 {
        store.create_run(&new_run(project.id, "ci")).await.unwrap();
    }
    let filler = disk.fill();
    let mut failed = 0;
    for _ in 0..40 {
        let big = NewRun { payload: "x".repeat(64 * 1024), ..new_run(project.id, "ci") };
        if store.create_run(&big).await.is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk was never full");
    std::fs::remove_file(filler).unwrap();
    for i in 0..20 {
        if let Err(e) = store.create_run(&new_run(project.id, "ci")).await {
            panic!("write {i} after the disk emptied failed: {e}");
        }
        store.append(made(EventKind::MonitorReload).data(serde_json::json!({"i": i}))).await.unwrap();
    }
}

/// Stops the private PostgreSQL cluster of a test when dropped.
struct Cluster {
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin/pg_ctl")).max());
        if let Some(pg_ctl) = bin {
            let data = self.dir.join("data");
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&pg_ctl).arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
            let _ = command.output();
        }
    }
}

/// Issue 15, item 6, on PostgreSQL: its data directory on a small tmpfs that fills
/// up and empties again; once the server accepts connections again, every write
/// through the same store succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_writes_succeed_again_after_its_disk_was_full() {
    if mobius_store::testing::fresh_postgres().await.is_none() {
        eprintln!("skipped: no PostgreSQL (MOBIUS_TEST_POSTGRES)");
        return;
    }
    let Some(disk) = SmallDisk::mount("96m") else { return };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres");
    let dir = disk.path().join("pg");
    let started =
        std::process::Command::new(&script).env("MOBIUS_PG_PORT", "55499").env("MOBIUS_PG_DIR", &dir).output().unwrap();
    let _cluster = Cluster { dir: dir.clone() };
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let url = String::from_utf8_lossy(&started.stdout).trim().to_string();
    let store = Store::open(&url).await.unwrap();
    let project = store
        .create_project("web", "/src/web", "main", b"sealed", 10_000, None, made(EventKind::ProjectCreate))
        .await
        .unwrap();
    let filler = disk.fill();
    let mut failed = 0;
    for _ in 0..200 {
        let big = NewRun { payload: "x".repeat(256 * 1024), ..new_run(project.id, "ci") };
        if store.create_run(&big).await.is_err() {
            failed += 1;
            if failed > 10 {
                break;
            }
        }
    }
    assert!(failed > 0, "the disk was never full");
    std::fs::remove_file(filler).unwrap();
    // PostgreSQL may have restarted after failing to write its log: wait until it answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.append(made(EventKind::MonitorReload)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "PostgreSQL never came back");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    for i in 0..20 {
        if let Err(e) = store.create_run(&new_run(project.id, "ci")).await {
            panic!("write {i} after the disk emptied failed: {e}");
        }
    }
}

/// Issue 17, item 5: a subscriber stores its position after each reaction; stopped in
/// the middle of one (as by `kill -9`), it starts again at that event, so every event's
/// reaction completes once: none is missed and none completed is handed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_where_it_stopped_and_completes_each_reaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("mobius.db"))).await.unwrap();
    let batch: Vec<NewEvent> =
        (0..50).map(|i| made(EventKind::MonitorReload).data(serde_json::json!({"i": i}))).collect();
    store.append_all(&batch).await.unwrap();
    // Other kinds are not handed to it.
    store.append(made(EventKind::SecretSet)).await.unwrap();
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let kinds = [EventKind::MonitorReload];

    // The first process hangs in its 21st reaction and is killed there.
    let first = {
        let (store, completed) = (store.clone(), completed.clone());
        tokio::spawn(async move {
            mobius_store::follow(&store, "test", &kinds, std::future::pending(), |event| {
                let completed = completed.clone();
                async move {
                    if completed.lock().unwrap().len() == 20 {
                        std::future::pending::<()>().await;
                    }
                    completed.lock().unwrap().push(event.id);
                    Ok::<(), String>(())
                }
            })
            .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while completed.lock().unwrap().len() < 20 {
        assert!(std::time::Instant::now() < deadline, "the subscriber did not start");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    first.abort();
    let _ = first.await;
    assert_eq!(completed.lock().unwrap().len(), 20);

    // The second starts where the first stopped, and is woken by what comes next.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = {
        let (store, completed) = (store.clone(), completed.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            mobius_store::follow(&store, "test", &kinds, stopped, |event| {
                let completed = completed.clone();
                async move {
                    completed.lock().unwrap().push(event.id);
                    Ok::<(), String>(())
                }
            })
            .await
        })
    };
    store.append(made(EventKind::MonitorReload)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while completed.lock().unwrap().len() < 51 {
        assert!(std::time::Instant::now() < deadline, "missed: {:?}", completed.lock().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    second.await.unwrap().unwrap();
    let ids = completed.lock().unwrap().clone();
    let all = store.events(&EventFilter { kinds: kinds.to_vec(), limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(ids, all.iter().map(|e| e.id).collect::<Vec<_>>(), "each reaction completes once, in order");
    assert_eq!(store.cursor("test").await.unwrap(), *ids.last().unwrap());
}

/// Issue 17, item 5: a database written before the event log keeps its audit trail and
/// its rollout and incident timelines: the rows move into the log in time order and
/// read back through the same calls (`audit_log`, `deploy_events`, `incident_events`).
async fn rows_written_before_the_event_log_read_back_from_it(url: &str, backend: &str) {
    sqlx::any::install_default_drivers();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    migrator.migrations =
        std::borrow::Cow::Owned(migrator.migrations.iter().filter(|m| m.version <= 8).cloned().collect());
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO projects (name, repo, branch, webhook_secret, poll_interval_ms, created_at)
         VALUES ('shop', '/src/shop', 'main', 'x', 1000, 1)",
        "INSERT INTO releases (project_id, service, number, version, run_id, commit_sha, author, artifact, digest,
             manifest, provenance, changelog, created_at)
         VALUES (1, 'web', 1, 'v1', 1, 'abc', 'alice', 'web', 'sha256:0', '', '{}', '[]', 2)",
        "INSERT INTO rollouts (project_id, service, environment, release_id, strategy, phase, message, status,
             created_by, created_at, updated_at, finished_at)
         VALUES (1, 'web', 'production', 1, 'canary', 'succeeded', 'done', '{}', 'alice', 3, 5, 5)",
        "INSERT INTO deploy_events (project_id, rollout_id, service, environment, version, kind, actor, message, at)
         VALUES (1, 1, 'web', 'production', 'v1', 'started', 'alice', 'deploy web v1 to production', 3)",
        "INSERT INTO deploy_events (project_id, rollout_id, service, environment, version, kind, actor, message, at)
         VALUES (1, 1, 'web', 'production', 'v1', 'succeeded', 'mobius', 'v1 serves all traffic', 5)",
        "INSERT INTO incidents (group_key, title, status, receiver, labels, service, environment, rollout_id, level,
             rounds, opened_at, resolved_at, resolved_by)
         VALUES ('g', 'High error rate', 'resolved', 'team', '{}', 'web', 'production', 1, 0, 0, 6, 8, 'alertmanager')",
        "INSERT INTO incident_events (incident_id, kind, actor, message, at) VALUES (1, 'opened', 'alertmanager', 'High error rate', 6)",
        "INSERT INTO incident_events (incident_id, kind, actor, message, at) VALUES (1, 'resolved', 'alertmanager', 'every alert resolved', 8)",
        "INSERT INTO audit (at, actor, action, target, detail, remote) VALUES (4, 'token:1:admin', 'deploy', 'shop/production/web', '{\"rollout\": 1}', '127.0.0.1')",
        "INSERT INTO audit (at, actor, action, target, detail, remote) VALUES (1, 'token:1:admin', 'project.create', 'shop', '{}', '127.0.0.1')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    pool.close().await;

    let store = Store::open(url).await.unwrap();
    let audit = store.audit_log(10, None).await.unwrap();
    let actions: Vec<EventKind> = audit.iter().map(|e| e.action).collect();
    assert_eq!(actions, [EventKind::Deploy, EventKind::ProjectCreate], "newest first");
    assert_eq!((audit[0].target.as_str(), audit[0].remote.as_str()), ("shop/production/web", "127.0.0.1"));
    assert_eq!(audit[0].detail["rollout"], 1);
    let timeline = store.deploy_events(Some(1), 10).await.unwrap();
    let kinds: Vec<_> = timeline.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [mobius_core::DeployEventKind::Succeeded, mobius_core::DeployEventKind::Started]);
    assert_eq!((timeline[1].service.as_str(), timeline[1].version.as_str()), ("web", "v1"));
    assert_eq!(timeline[1].message, "deploy web v1 to production");
    assert_eq!(timeline[1].project, "shop");
    let incident = store.incident_events(1).await.unwrap();
    assert_eq!(incident.len(), 2);
    assert_eq!(
        (incident[0].kind, incident[0].message.as_str()),
        (mobius_core::IncidentEventKind::Opened, "High error rate")
    );
    // One log, in the order things happened.
    let all = store.events(&EventFilter { limit: 100, ..Default::default() }).await.unwrap();
    let times: Vec<i64> = all.iter().map(|e| e.at).collect();
    assert_eq!(times, [1, 3, 4, 5, 6, 8]);
    assert_eq!(all[1].refs.rollout, Some(1));
    assert_eq!(all[4].refs.incident, Some(1));
    assert_eq!(all[4].refs.environment.as_deref(), Some("production"));
}

#[tokio::test]
async fn sqlite_rows_written_before_the_event_log_read_back_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("mobius.db"));
    rows_written_before_the_event_log_read_back_from_it(&url, "sqlite").await;
}

#[tokio::test]
async fn postgres_rows_written_before_the_event_log_read_back_from_it() {
    let Some(url) = mobius_store::testing::fresh_postgres().await else { return };
    rows_written_before_the_event_log_read_back_from_it(&url, "postgres").await;
}
