//! `on:` in its forms: schedules, permissions and concurrency validation, tag and pull request filters.

use crate::support::Test;

#[test]
fn schedules_permissions_and_concurrency_are_validated() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on:
  schedule:
    - cron: '61 * * * *'
    - cron: '0 0 * * *'
  push:
    branches: [main]
    branches-ignore: [dev]
permissions:
  contents: write
  pull-requests: admin
  nonsense: read
concurrency:
  cancel-in-progress: true
jobs:
  a:
    runs-on: ubuntu-latest
    steps: [{run: 'true'}]
"#,
        )
        .run()
        .code(2)
        .stderr_has("invalid cron expression '61 * * * *'")
        .stderr_has("cannot both be used")
        .stderr_has("invalid level 'admin' for permission 'pull-requests'")
        .stderr_has("unknown permission scope 'nonsense'")
        .stderr_has("'concurrency' needs a 'group'");
}

#[test]
fn valid_schedules_permissions_and_concurrency_run() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on:
  push:
  schedule:
    - cron: '*/15 9-17 * * 1-5'
permissions: read-all
concurrency:
  group: ${{ github.workflow }}-${{ github.ref }}
  cancel-in-progress: true
jobs:
  a:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      id-token: write
    concurrency: deploy
    steps: [{run: echo ran}]
"#,
        )
        .run()
        .code(0)
        .stdout_has("| ran");
}

#[test]
fn tag_and_pull_request_filters_follow_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let tag = dir.path().join("tag.json");
    std::fs::write(&tag, r#"{"ref": "refs/tags/v1.2.0"}"#).unwrap();
    let pr = dir.path().join("pr.json");
    std::fs::write(
        &pr,
        r#"{"action": "opened", "number": 7, "pull_request": {"base": {"ref": "main"}, "head": {"ref": "feature"}}}"#,
    )
    .unwrap();
    let closed = dir.path().join("closed.json");
    std::fs::write(
        &closed,
        r#"{"action": "closed", "pull_request": {"base": {"ref": "main"}, "head": {"ref": "feature"}}}"#,
    )
    .unwrap();
    let t = Test::new()
        .workflow("tags.yml", "on:\n  push:\n    tags: ['v1.*']\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo tag=${{ github.ref_name }} type=${{ github.ref_type }}'}]\n")
        .workflow("pr.yml", "on:\n  pull_request:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo pr=${{ github.event.number }} head=${{ github.head_ref }} base=${{ github.base_ref }}'}]\n");
    t.args(&["push", "--eventpath", tag.to_str().unwrap()]).run().code(0).stdout_has("tag=v1.2.0 type=tag");
    let t = Test::new()
        .workflow("pr.yml", "on:\n  pull_request:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo pr=${{ github.event.number }} head=${{ github.head_ref }} base=${{ github.base_ref }}'}]\n");
    t.args(&["pull_request", "--eventpath", pr.to_str().unwrap()])
        .run()
        .code(0)
        .stdout_has("pr=7 head=feature base=main");
    Test::new()
        .workflow("pr.yml", "on:\n  pull_request:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo should-not-run}]\n")
        .args(&["pull_request", "--eventpath", closed.to_str().unwrap()])
        .run()
        .code(0)
        .stdout_lacks("should-not-run")
        .stderr_has("no workflow is triggered");
}
