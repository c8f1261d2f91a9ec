//! The store's behaviour, the same on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

use mobius_store::{MasterKey, NewRun, RunFilter, Store};

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
    let project = store.create_project("web", "/src/web", "main", b"sealed", 10_000).await.unwrap();
    assert!(store.create_project("web", "/x", "main", b"s", 1).await.is_err(), "names are unique");
    assert_eq!(store.project_by_name("web").await.unwrap().unwrap().id, project.id);

    let first = store.create_run(&new_run(project.id, ".github/workflows/ci.yml")).await.unwrap();
    let second = store.create_run(&new_run(project.id, ".github/workflows/ci.yml")).await.unwrap();
    assert_eq!((first.number, second.number), (1, 2));
    assert_eq!(first.status, "queued");
    assert_eq!(first.project, "web");
    assert!(first.cancel_in_progress);
    let rerun = store.create_run(&NewRun { rerun_of: Some(first.id), attempt: 2, ..new_run(project.id, "ci") }).await;
    assert_eq!(rerun.unwrap().number, 1, "a re-run keeps the run number");

    assert!(store.start_run(first.id).await.unwrap());
    assert!(!store.start_run(first.id).await.unwrap(), "only a queued run starts");
    let job = store.create_job(first.id, "build", "in_progress", 1).await.unwrap();
    let step = store.create_step(job, 1, "Run make", "spool/1/1/1.log", 2).await.unwrap();
    assert_eq!(store.steps_without_log(first.id).await.unwrap().len(), 1);
    store.set_step_log(step, &"b".repeat(64), 12).await.unwrap();
    store.finish_step(step, "success", 3).await.unwrap();
    store.finish_job(job, "success", None, "{\"tag\":\"v1\"}", 4).await.unwrap();
    assert!(store.finish_run(first.id, "success", None).await.unwrap());
    assert!(!store.finish_run(first.id, "failure", None).await.unwrap(), "a completed run keeps its conclusion");
    let done = store.run(first.id).await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.conclusion.as_deref()), ("completed", Some("success")));
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert_eq!(store.steps(job).await.unwrap()[0].log_size, 12);
    assert_eq!(store.jobs(first.id).await.unwrap()[0].outputs, r#"{"tag":"v1"}"#);

    let listed = store.runs(&RunFilter { project_id: Some(project.id), limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].id > listed[1].id, "newest first");
    let queued =
        store.runs(&RunFilter { status: Some("queued".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 2);

    let token = store.create_token("ci", &"c".repeat(64), "developer", Some(project.id), "admin", None).await.unwrap();
    assert!(store.token_by_hash(&"c".repeat(64)).await.unwrap().is_some());
    store.create_token("old", &"d".repeat(64), "viewer", None, "admin", Some(1)).await.unwrap();
    assert!(store.token_by_hash(&"d".repeat(64)).await.unwrap().is_none(), "expired tokens do not authenticate");
    assert!(store.revoke_token(token.id).await.unwrap());
    assert!(store.token_by_hash(&"c".repeat(64)).await.unwrap().is_none(), "revoked tokens do not authenticate");

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
    let sealed = key.seal("secret:1:API", b"s3cr3t").unwrap();
    store.set_secret(project.id, "API", &sealed).await.unwrap();
    store.set_secret(project.id, "API", &sealed).await.unwrap();
    let secrets = store.secrets(project.id).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(key.open("secret:1:API", &secrets[0].1).unwrap(), b"s3cr3t");
    store.set_variable(project.id, "REGION", "eu").await.unwrap();
    assert_eq!(store.variables(project.id).await.unwrap(), vec![("REGION".to_string(), "eu".to_string())]);

    store.audit("admin", "project.create", "web", serde_json::json!({"repo": "/src/web"}), "127.0.0.1").await.unwrap();
    let log = store.audit_log(10, None).await.unwrap();
    assert_eq!(log[0].action, "project.create");
    assert_eq!(log[0].detail["repo"], "/src/web");

    store.add_artifact(first.id, "dist", "app.tar", &"e".repeat(64), 100).await.unwrap();
    assert!(store.blob_in_use(&"e".repeat(64)).await.unwrap());
    let expired = store.expire_before(i64::MAX).await.unwrap();
    assert!(expired.contains(&"b".repeat(64)) && expired.contains(&"e".repeat(64)));
    assert!(!store.blob_in_use(&"e".repeat(64)).await.unwrap());
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("mobius.db"))).await.unwrap();
    exercise(store).await;
    // WAL mode is on: the write-ahead log sits beside the database.
    assert!(dir.path().join("mobius.db-wal").exists());
}

#[tokio::test]
async fn postgres() {
    let Some(url) = mobius_store::testing::fresh_postgres().await else { return };
    exercise(Store::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let err = Store::open("mysql://localhost/x").await.unwrap_err().to_string();
    assert!(err.contains("mysql://localhost/x") && err.contains("sqlite://"), "{err}");
}
