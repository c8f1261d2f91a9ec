//! The contexts and default variables a step sees: github, runner, strategy, job, vars, env, inputs.

use crate::support::Test;

#[test]
fn default_variables_and_contexts_match_github() {
    Test::new()
        .workflow(
            "w.yml",
            r#"name: Ctx
on: push
jobs:
  show:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [1, 2]
    steps:
      - id: first
        run: |
          for v in CI GITHUB_ACTIONS GITHUB_WORKSPACE GITHUB_SHA GITHUB_REF GITHUB_REPOSITORY GITHUB_ACTOR \
                   GITHUB_RUN_ID GITHUB_RUN_NUMBER GITHUB_JOB GITHUB_EVENT_NAME GITHUB_EVENT_PATH GITHUB_WORKFLOW \
                   RUNNER_OS RUNNER_ARCH RUNNER_TEMP RUNNER_TOOL_CACHE GITHUB_ENV GITHUB_OUTPUT GITHUB_PATH \
                   GITHUB_STATE GITHUB_STEP_SUMMARY; do
            [ -n "${!v}" ] || { echo "missing $v"; exit 1; }
          done
          test "$GITHUB_WORKSPACE" = "$PWD" && test -f "$GITHUB_EVENT_PATH" && test -d "$RUNNER_TEMP"
          echo "all-defaults-present"
      - run: |
          echo "leg=${{ strategy.job-index }}/${{ strategy.job-total }} ff=${{ strategy.fail-fast }}"
          echo "status=${{ job.status }} os=${{ runner.os }} wf=${{ github.workflow }} job=${{ github.job }}"
          echo "var=${{ vars.REGION }} cli-env=${{ env.FROM_CLI }} actor=${{ github.actor }} repo=${{ github.repository }}"
          echo "first=${{ steps.first.outcome }} json=${{ toJSON(matrix) == format('{{{0}  "n": {1}{0}}}', fromJSON('"\n"'), matrix.n) }}"
"#,
        )
        .args(&["--var", "REGION=eu", "--env", "FROM_CLI=yes", "--actor", "mona", "--repository", "octo/ctx"])
        .run()
        .code(0)
        .stdout_has("all-defaults-present")
        .stdout_has("leg=0/2 ff=true")
        .stdout_has("leg=1/2 ff=true")
        .stdout_has("status=success os=Linux wf=Ctx job=show")
        .stdout_has("var=eu cli-env=yes actor=mona repo=octo/ctx")
        .stdout_has("first=success json=true");
}

#[test]
fn workflow_call_can_be_fired_from_the_command_line() {
    Test::new()
        .workflow(
            "w.yml",
            "on:\n  workflow_call:\n    inputs:\n      n:\n        type: number\n        default: 1\n      who:\n        type: string\n        required: true\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"n-plus=${{ inputs.n > 3 }} who=${{ inputs.who }}\"\n",
        )
        .args(&["workflow_call", "--input", "who=cli", "--input", "n=4"])
        .run()
        .code(0)
        .stdout_has("n-plus=true who=cli");
}

#[test]
fn the_repository_name_comes_from_the_origin_remote() {
    if !crate::support::require("git") {
        return;
    }
    Test::new()
        .workflow("w.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"repo=${{ github.repository }} owner=${{ github.repository_owner }} ref=${{ github.ref_name }}\"\n")
        .git()
        .git_cmd(&["remote", "add", "origin", "git@github.com:octo/from-remote.git"])
        .run()
        .code(0)
        .stdout_has("repo=octo/from-remote owner=octo ref=main");
}
