//! Workflow validation as data: each case is a workflow and the diagnostics it must produce.

use mobius_workflow::{parse_workflow, SourceFile, Workflow};

#[track_caller]
fn check_ok(text: &str) -> Workflow {
    match parse_workflow(SourceFile::new("w.yml", text)) {
        Ok(w) => w,
        Err(e) => panic!("expected a valid workflow, got:\n{e}"),
    }
}

/// Every expected `line:col: fragment` must appear, and nothing else.
#[track_caller]
fn check_errors(text: &str, expected: &[&str]) {
    let errors = parse_workflow(SourceFile::new("w.yml", text)).expect_err("expected errors");
    let got: Vec<String> =
        errors.diagnostics.iter().map(|d| format!("{}:{}: {}", d.pos.line, d.pos.col, d.message)).collect();
    for want in expected {
        let (at, fragment) = want.split_once(": ").unwrap_or((want, ""));
        let found = got.iter().any(|g| g.starts_with(&format!("{at}: ")) && g.contains(fragment));
        assert!(found, "missing {want:?} in {got:#?}");
    }
    assert_eq!(got.len(), expected.len(), "unexpected diagnostics: {got:#?}");
}

const JOB: &str = "jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n";

#[test]
fn on_in_all_its_forms() {
    assert_eq!(check_ok(&format!("on: push\n{JOB}")).triggers.keys().collect::<Vec<_>>(), ["push"]);
    assert_eq!(check_ok(&format!("on: [push, pull_request]\n{JOB}")).triggers.len(), 2);
    let w = check_ok(&format!(
        "on:\n  push:\n    branches: [main]\n    paths-ignore: ['docs/**']\n  pull_request:\n    types: [opened]\n  workflow_dispatch:\n    inputs:\n      level:\n        type: choice\n        options: [low, high]\n  schedule:\n    - cron: '0 3 * * *'\n{JOB}"
    ));
    assert_eq!(w.triggers["push"].branches.as_deref(), Some(&["main".to_string()][..]));
    assert_eq!(w.triggers["pull_request"].types, ["opened"]);
    assert_eq!(w.triggers["schedule"].crons, ["0 3 * * *"]);
    assert!(matches!(w.triggers["workflow_dispatch"].inputs["level"].kind, mobius_workflow::InputType::Choice(_)));
}

#[test]
fn structural_errors_are_all_reported() {
    check_errors(
        "on: pushh\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n        uses: x/y@v1\n      - name: nothing\n",
        &["1:5: unknown event 'pushh'", "7:15: both 'run' and 'uses'", "8:9: needs 'run' or 'uses'"],
    );
    check_errors(
        "jobs:\n  1bad:\n    runs-on: x\n    steps: [{run: a}]\n",
        &["1:1: no 'on' key", "2:3: invalid job id '1bad'"],
    );
    check_errors(
        "on: push\njobs:\n  a:\n    steps: [{run: a}]\n  b:\n    runs-on: x\n    steps: []\n",
        &["3:3: needs 'runs-on'", "7:12: empty 'steps'"],
    );
}

#[test]
fn matrix_and_inputs_are_checked() {
    check_errors(
        "on:\n  workflow_dispatch:\n    inputs:\n      f:\n        type: boolean\n        default: maybe\n      g:\n        type: colour\njobs:\n  a:\n    runs-on: x\n    strategy:\n      matrix:\n        os: linux\n        n: []\n    steps: [{run: a}]\n",
        &[
            "6:18: default of a boolean input",
            "8:15: invalid input type 'colour'",
            "14:13: matrix 'os' must be a sequence",
            "15:12: matrix 'n' is empty",
        ],
    );
}

#[test]
fn expression_errors_point_into_the_expression() {
    check_errors(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.ref == }} and ${{ fromJSON( }}\n      - if: github.ref = 'x'\n        run: a\n",
        &["6:37: invalid expression 'github.ref ==': unexpected end", "6:58: invalid expression 'fromJSON('", "7:24: invalid expression in 'if'"],
    );
}

#[test]
fn step_ids_are_unique_and_defaults_parse() {
    check_errors(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: s\n        run: a\n      - id: s\n        run: b\n",
        &["8:13: the step id 's' is used twice"],
    );
    let w = check_ok(&format!("on: push\ndefaults:\n  run:\n    shell: bash\n    working-directory: src\n{JOB}"));
    assert_eq!(w.defaults.shell.as_deref(), Some("bash"));
    assert_eq!(w.defaults.working_directory.as_deref(), Some("src"));
}
