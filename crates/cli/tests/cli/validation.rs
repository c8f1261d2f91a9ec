//! Bad workflows and arguments: every problem reported at once with file:line:col, exit 2, nothing run.

use crate::support::Test;

#[test]
fn all_problems_are_reported_with_positions_before_anything_runs() {
    let t = Test::new().workflow(
        "bad.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n    steps:\n      - run: echo ${{ github.sha == }}\n  b:\n    needs: [a, nope]\n    runs-on: ubuntu-latest\n    steps:\n      - run: touch ran\n",
    );
    let out = t.run();
    out.code(2)
        .stderr_has("bad.yml:5:5")
        .stderr_has("unknown key `stepz`")
        .stderr_has("bad.yml:7:")
        .stderr_has("invalid expression")
        .stderr_has("bad.yml:9:16")
        .stderr_has("needs 'nope'")
        .stderr_has("nothing was run");
    assert!(!t.state.path().join("mobius/runs").exists(), "no run may start");
}

#[test]
fn cycles_and_yaml_errors_are_located() {
    Test::new()
        .workflow(
            "cycle.yml",
            "on: push\njobs:\n  a:\n    needs: b\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n",
        )
        .workflow("syntax.yml", "on: push\njobs:\n  a: [1, 2\n")
        .run()
        .code(2)
        .stderr_has("cycle")
        .stderr_has("syntax.yml:")
        .stderr_has("invalid YAML")
        .stderr_has("2 workflow file(s)");
}

#[test]
fn a_caret_snippet_points_at_the_problem() {
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n        shel: bash\n",
        )
        .run()
        .code(2)
        .stderr_has("shel: bash")
        .stderr_has("did you mean `shell`?");
}

#[test]
fn actions_that_cannot_be_fetched_stop_the_run() {
    let cache = tempfile::tempdir().unwrap();
    Test::new()
        .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
        .args(&["--actions-url", "http://127.0.0.1:9"])
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo first-step-r\"\"an\n      - uses: actions/setup-node@v4\n",
        )
        .run()
        .code(2)
        .stdout_lacks("first-step-ran")
        .stderr_has("actions/setup-node@v4")
        .stderr_has("--action-dir")
        .stderr_has("w.yml:7:9");
}

/// Issue 18: a job its `runs-on` labels skip on this host does not stop the run because
/// one of its steps uses an action that is not available here (a macOS leg's action).
#[test]
fn a_job_skipped_by_its_runs_on_does_not_stop_the_run_for_its_actions() {
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  mac:\n    runs-on: [macos-latest]\n    steps:\n      - uses: someone/mac-only@v1\n  linux:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo linux-ran\n",
        )
        .run()
        .code(0)
        .stdout_has("linux-ran")
        .stderr_has("job 'mac' skipped");
    // The same with the labels under `runs-on: { group, labels }`.
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  win:\n    runs-on: { group: big, labels: windows-latest }\n    steps:\n      - uses: someone/win-only@v1\n  linux:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo linux-ran\n",
        )
        .run()
        .code(0)
        .stdout_has("linux-ran")
        .stderr_has("job 'win' skipped");
    // A label from an expression is only known per leg: such a job is still checked.
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  m:\n    runs-on: ${{ matrix.os }}\n    strategy: { matrix: { os: [ubuntu-latest] } }\n    steps:\n      - uses: someone/missing@v1\n",
        )
        .run()
        .code(2)
        .stderr_has("someone/missing@v1");
}

#[test]
fn bad_arguments_exit_2() {
    let t = Test::new()
        .workflow("w.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n");
    t.args(&["--input", "novalue"]).run().code(2).stderr_has("expected NAME=VALUE");
    Test::new()
        .workflow("w.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n")
        .args(&["-j", "missing"])
        .run()
        .code(2)
        .stderr_has("no workflow triggered by 'push' has a job 'missing'");
}

#[test]
fn a_missing_required_dispatch_input_is_an_invalid_invocation() {
    Test::new()
        .workflow(
            "w.yml",
            "on:\n  workflow_dispatch:\n    inputs:\n      who:\n        required: true\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n",
        )
        .args(&["workflow_dispatch"])
        .run()
        .code(2)
        .stderr_has("input 'who' is required");
}

#[test]
fn called_workflows_are_checked_before_the_run() {
    Test::new()
        .workflow("callee.yml", "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: someone/thing@v1\n")
        .workflow("bad-callee.yml", "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope.x }}\n")
        .workflow(
            "caller.yml",
            "on: push\njobs:\n  a:\n    uses: ./.github/workflows/callee.yml\n  b:\n    uses: ./.github/workflows/bad-callee.yml\n  c:\n    uses: octo/repo/.github/workflows/w.yml@v1\n",
        )
        .args(&["-W", ".github/workflows/caller.yml", "--actions-url", "http://127.0.0.1:9", "--offline"])
        .run()
        .code(2)
        .stderr_has("unrecognized named-value: 'nope'")
        .stderr_has("caller.yml:8:11: the action 'octo/repo/.github/workflows/w.yml@v1' is not in the cache and --offline forbids fetching it");
}

#[test]
fn contexts_are_checked_against_where_github_makes_them_available() {
    Test::new()
        .workflow(
            "w.yml",
            "on: push\nenv:\n  A: ${{ matrix.x }}\njobs:\n  a:\n    if: steps.s.outputs.x\n    runs-on: ubuntu-latest\n    outputs:\n      ok: ${{ steps.s.outputs.x }}\n    steps:\n      - id: s\n        run: echo ${{ jobs.x }}\n",
        )
        .run()
        .code(2)
        .stderr_has("w.yml:3:6")
        .stderr_has("the 'matrix' context is not available here")
        .stderr_has("w.yml:6:9")
        .stderr_has("the 'steps' context is not available here")
        .stderr_has("the 'jobs' context is not available here")
        .stderr_has("3 problem(s)");
}

/// Issue 18 (also fix): an action that asks for a newer node than the host's says so
/// before the run, naming both versions (it failed in the middle of the job before).
#[test]
fn an_action_asking_for_a_newer_node_than_the_hosts_stops_the_run_naming_both() {
    if !crate::support::require("node") {
        return;
    }
    let t = Test::new()
        .file("vendor/acme/future@v1/action.yml", "name: future\nruns:\n  using: node99\n  main: index.js\n")
        .file("vendor/acme/future@v1/index.js", "console.log('ran')\n")
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo first-step-r\"\"an\n      - uses: acme/future@v1\n",
        );
    let vendor = t.dir().join("vendor").display().to_string();
    let host = std::process::Command::new("node").arg("--version").output().expect("node runs");
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    t.args(&["--action-dir", &vendor])
        .run()
        .code(2)
        .stdout_lacks("first-step-ran")
        .stderr_has(&format!("w.yml:7:9: the action 'acme/future@v1' asks for node99 and this host's node is {host}"));
}
