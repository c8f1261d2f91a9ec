//! GitHub's documented behaviour of jobs, steps, expressions, shells and environment files.

use crate::support::Test;

#[test]
fn exit_status_follows_job_results() {
    Test::new()
        .workflow("ok.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n")
        .run()
        .code(0);
    Test::new()
        .workflow("bad.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'exit 3'}]\n")
        .run()
        .code(1)
        .stdout_has("exit code 3");
}

#[test]
fn outputs_flow_through_needs_and_failures_skip_dependents() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  produce:
    runs-on: ubuntu-latest
    outputs:
      list: ${{ steps.s.outputs.list }}
    steps:
      - id: s
        run: echo 'list=["x","y"]' >> "$GITHUB_OUTPUT"
  consume:
    needs: produce
    runs-on: ubuntu-latest
    strategy:
      matrix:
        item: ${{ fromJSON(needs.produce.outputs.list) }}
    steps:
      - run: echo "got ${{ matrix.item }} from ${{ needs.produce.result }}"
  broken:
    runs-on: ubuntu-latest
    continue-on-error: false
    steps: [{run: 'exit 1'}]
  after-broken:
    needs: broken
    runs-on: ubuntu-latest
    steps: [{run: echo should-not-run}]
  cleanup:
    needs: broken
    if: always() && needs.broken.result == 'failure'
    runs-on: ubuntu-latest
    steps: [{run: echo cleanup-ran}]
"#,
        )
        .run()
        .code(1)
        .stdout_has("got x from success")
        .stdout_has("got y from success")
        .stdout_has("cleanup-ran")
        .stdout_lacks("should-not-run")
        .stdout_has("consume (x)");
}

#[test]
fn shells_follow_github_templates() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - name: default bash -e ignores pipe failures
        run: false | true
      - name: bash adds pipefail
        id: pf
        continue-on-error: true
        shell: bash
        run: false | true
      - run: test "${{ steps.pf.outcome }}" = failure && echo pipefail-ok
      - shell: python
        run: print("from", "python")
      - shell: sh
        run: echo "sh $0" | grep -q .sh && echo sh-ok
      - shell: cat {0}
        run: custom-shell-body
"#,
        )
        .run()
        .code(0)
        .stdout_has("pipefail-ok")
        .stdout_has("from python")
        .stdout_has("sh-ok")
        .stdout_has("custom-shell-body");
}

/// Issue 18: a custom shell's quoted argument stays one word (bats-core's CI runs its
/// steps under `script -q -e -c "bash {0}"`); it was split on spaces, and bash failed
/// with "unexpected EOF while looking for matching".
#[test]
fn a_custom_shell_keeps_a_quoted_argument_whole() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - shell: 'bash -c "bash -e {0}"'
        run: echo "quoted-shell-ran"
      - id: bad
        continue-on-error: true
        shell: 'bash -c "bash {0}'
        run: echo ran-un""closed
      - run: test "${{ steps.bad.outcome }}" = failure && echo unclosed-refused
"#,
        )
        .run()
        .code(0)
        .stdout_has("quoted-shell-ran")
        .stdout_has("has a quote that is not closed")
        .stdout_has("unclosed-refused")
        .stdout_lacks("ran-unclosed");
}

#[test]
fn environment_files_and_precedence() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
env:
  LEVEL: workflow
  KEEP: wf
jobs:
  a:
    runs-on: ubuntu-latest
    env:
      LEVEL: job
    steps:
      - run: |
          echo "FROM_FILE<<EOF" >> "$GITHUB_ENV"
          echo "line1" >> "$GITHUB_ENV"
          echo "line2" >> "$GITHUB_ENV"
          echo "EOF" >> "$GITHUB_ENV"
          mkdir -p tools && printf '#!/bin/sh\necho tool-ran\n' > tools/mytool && chmod +x tools/mytool
          echo "$PWD/tools" >> "$GITHUB_PATH"
          echo "summary-line" >> "$GITHUB_STEP_SUMMARY"
      - env:
          LEVEL: step
        run: |
          echo "level=$LEVEL keep=$KEEP ci=$CI"
          echo "file=$(echo "$FROM_FILE" | tr '\n' ',')"
          mytool
      - if: env.LEVEL == 'job' && env.FROM_FILE != ''
        run: echo condition-saw-env
"#,
        )
        .run()
        .code(0)
        .stdout_has("level=step keep=wf ci=true")
        .stdout_has("file=line1,line2,")
        .stdout_has("tool-ran")
        .stdout_has("condition-saw-env");
}

#[test]
fn dispatch_inputs_are_coerced_by_type() {
    let wf = r#"on:
  workflow_dispatch:
    inputs:
      flag:
        type: boolean
        default: true
      count:
        type: number
        default: 2
      name:
        default: world
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - if: inputs.flag
        run: echo flag-is-true
      - if: ${{ !inputs.flag }}
        run: echo flag-is-false
      - run: echo "count+1 is big=${{ inputs.count > 2 }} name=${{ inputs.name }} via-event=${{ github.event.inputs.name }}"
"#;
    Test::new()
        .workflow("w.yml", wf)
        .args(&["workflow_dispatch", "--input", "flag=false", "--input", "count=5"])
        .run()
        .code(0)
        .stdout_has("| flag-is-false")
        .stdout_lacks("| flag-is-true")
        .stdout_has("count+1 is big=true name=world via-event=world");
    Test::new()
        .workflow("w.yml", wf)
        .args(&["workflow_dispatch"])
        .run()
        .code(0)
        .stdout_has("| flag-is-true")
        .stdout_lacks("| flag-is-false")
        .stdout_has("big=false");
    Test::new()
        .workflow("w.yml", wf)
        .args(&["workflow_dispatch", "--input", "flag=maybe"])
        .run()
        .code(2)
        .stderr_has("must be true or false");
}

#[test]
fn branch_filters_decide_what_runs() {
    let t = Test::new()
        .workflow("rel.yml", "on:\n  push:\n    branches: [release/**]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo release-ran}]\n")
        .workflow("main.yml", "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo main-ran}]\n")
        .git();
    t.run().code(0).stdout_has("main-ran").stdout_lacks("release-ran");
}

#[test]
fn runs_on_labels_are_matched_against_host_labels() {
    let wf = "on: push\njobs:\n  mac:\n    runs-on: macos-latest\n    steps: [{run: echo mac-ran}]\n  linux:\n    runs-on: [self-hosted, linux]\n    steps: [{run: echo linux-ran}]\n";
    Test::new()
        .workflow("w.yml", wf)
        .run()
        .code(0)
        .stdout_has("linux-ran")
        .stdout_lacks("mac-ran")
        .stderr_has("runs-on label 'macos-latest'");
    Test::new().workflow("w.yml", wf).args(&["-P", "macos-latest=-self-hosted"]).run().code(0).stdout_has("mac-ran");
}

#[test]
fn working_directory_defaults_and_hash_files() {
    Test::new()
        .file("sub/dir/a.txt", "alpha")
        .workflow(
            "w.yml",
            r#"on: push
defaults:
  run:
    working-directory: sub
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: test "$(basename "$PWD")" = sub && echo in-sub
      - working-directory: sub/dir
        run: cat a.txt
      - run: echo "hash=${{ hashFiles('sub/**/*.txt') }} none=[${{ hashFiles('*.nothing') }}]"
"#,
        )
        .run()
        .code(0)
        .stdout_has("in-sub")
        .stdout_has("alpha")
        .stdout_has("none=[]")
        .stdout_lacks("hash= ");
}

#[test]
fn the_source_directory_is_never_modified() {
    let t = Test::new().file("keep.txt", "original").workflow(
        "w.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo changed > keep.txt && touch new-file && cat keep.txt\n",
    );
    t.run().code(0).stdout_has("changed");
    assert_eq!(std::fs::read_to_string(t.dir().join("keep.txt")).unwrap(), "original");
    assert!(!t.dir().join("new-file").exists());
}

#[test]
fn workflow_commands_are_applied() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: |
          echo "::set-output name=legacy::old-style"
          echo "::group::My group"
          echo "::error file=app.js,line=3,col=5::broken thing"
          echo "::set-env name=BLOCKED::x"
          echo "::stop-commands::tok"
          echo "::set-output name=ignored::x"
          echo "::tok::"
      - run: echo "legacy=${{ steps.s.outputs.legacy }} ignored=[${{ steps.s.outputs.ignored }}] blocked=[$BLOCKED]"
"#,
        )
        .run()
        .code(0)
        .stdout_has("legacy=old-style ignored=[] blocked=[]")
        .stdout_has("▼ My group")
        .stdout_has("Error: broken thing (app.js:3:5)")
        .stdout_has("Annotations:\n  error [a] app.js:3: broken thing")
        .stdout_has("::set-output name=ignored::x")
        .stdout_has("`set-env` command is disabled");
}

#[test]
fn path_filters_use_the_head_commits_changes() {
    let t = Test::new()
        .file("src/main.rs", "fn main() {}")
        .file("docs/a.md", "v1")
        .workflow("src.yml", "on:\n  push:\n    paths: ['src/**']\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo src-workflow-ran}]\n")
        .workflow("docs.yml", "on:\n  push:\n    paths: ['docs/**']\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo docs-workflow-ran}]\n")
        .workflow("notdocs.yml", "on:\n  push:\n    paths-ignore: ['docs/**']\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ignore-workflow-ran}]\n")
        .git()
        .file("docs/a.md", "v2")
        .commit("docs only");
    t.run()
        .code(0)
        .stdout_has("docs-workflow-ran")
        .stdout_lacks("src-workflow-ran")
        .stdout_lacks("ignore-workflow-ran");
}

#[test]
fn a_push_without_payload_describes_the_head_commit() {
    if !crate::support::require("git") {
        return;
    }
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"msg=${{ github.event.head_commit.message }} repo=${{ github.event.repository.full_name }} after=${{ github.event.after == github.sha }} ref=${{ github.ref }}\"\n",
        )
        .git()
        .args(&["--repository", "octo/app"])
        .run()
        .code(0)
        .stdout_has("msg=initial repo=octo/app after=true ref=refs/heads/main");
}

/// Issue 18: the synthesized push names the ref's previous commit as `before`, and
/// forty zeros with `created: true` only for a first commit (it always sent zeros
/// with `created: false`).
#[test]
fn a_push_payload_names_the_previous_commit_as_before() {
    if !crate::support::require("git") {
        return;
    }
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"before=${{ github.event.before }} created=${{ github.event.created }}\"\n";
    let t = Test::new().workflow("w.yml", wf).git();
    t.run().code(0).stdout_has(&format!("before={} created=true", "0".repeat(40)));
    let t = t.file("more.txt", "x").commit("second");
    let parent = std::process::Command::new("git")
        .args(["rev-parse", "HEAD~1"])
        .current_dir(t.dir())
        .output()
        .expect("git runs");
    let parent = String::from_utf8_lossy(&parent.stdout).trim().to_string();
    assert_eq!(parent.len(), 40, "{parent}");
    t.run().code(0).stdout_has(&format!("before={parent} created=false"));
}

/// Issue 18: a second `mobius run` on the same state directory leaves a run still in
/// progress alone (retention kept the workspaces of the newest run only, and moved the
/// running one's away).
#[test]
fn retention_never_touches_a_run_still_in_progress() {
    use std::time::{Duration, Instant};
    let marks = tempfile::tempdir().unwrap();
    let (hold, started, go) = (marks.path().join("hold"), marks.path().join("started"), marks.path().join("go"));
    let wf = format!(
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo mine > kept.txt && touch {started}\n      - run: if [ -f {hold} ]; then while [ ! -f {go} ]; do sleep 0.05; done; fi\n      - run: cat kept.txt\n",
        started = started.display(),
        hold = hold.display(),
        go = go.display()
    );
    let t = Test::new().workflow("w.yml", &wf);
    std::fs::write(&hold, "").unwrap();
    let first = t.command().stdout(std::process::Stdio::piped()).spawn().expect("mobius runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the first run never started its job");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&hold).unwrap();
    t.run().code(0).stdout_has("mine");
    std::fs::write(&go, "").unwrap();
    let first = first.wait_with_output().expect("the first run ends");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("mine"), "{stdout}");
}

/// Issue 18: `-j JOB` runs the jobs it needs first, as act does (they were counted as
/// succeeded without outputs, so `needs.X.outputs` were empty); jobs it does not need
/// stay out.
#[test]
fn a_selected_job_runs_the_jobs_it_needs_first() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      version: ${{ steps.v.outputs.version }}
    steps:
      - id: v
        run: echo "version=4.2" >> "$GITHUB_OUTPUT"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "tested-${{ needs.build.outputs.version }}"
  deploy:
    needs: test
    runs-on: ubuntu-latest
    steps:
      - run: echo "deploying-${{ needs.build.outputs.version }}-after-${{ needs.test.result }}"
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo "lint-ran"
"#,
        )
        .args(&["-j", "deploy"])
        .run()
        .code(0)
        .stdout_has("tested-4.2")
        .stdout_has("deploying--after-success")
        .stdout_lacks("lint-ran");
    let listed = Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [ { run: 'true' } ]\n  deploy:\n    needs: build\n    runs-on: ubuntu-latest\n    steps: [ { run: 'true' } ]\n  lint:\n    runs-on: ubuntu-latest\n    steps: [ { run: 'true' } ]\n",
        )
        .args(&["-j", "deploy", "-n"])
        .run();
    listed.code(0).stdout_has("job build").stdout_has("job deploy (needs build)").stdout_lacks("job lint");
}

/// Issue 18: each job of a run has its own `RUNNER_TEMP` (docs/compatibility.md says
/// what jobs share), and the host's `MOBIUS_` variables never reach a job.
#[test]
fn each_job_has_its_own_runner_temp() {
    let t = Test::new().workflow(
        "w.yml",
        r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      temp: ${{ steps.t.outputs.temp }}
    steps:
      - id: t
        run: |
          touch "$RUNNER_TEMP/from-a"
          echo "temp=$RUNNER_TEMP" >> "$GITHUB_OUTPUT"
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: test "$RUNNER_TEMP" != "${{ needs.a.outputs.temp }}" && test ! -e "$RUNNER_TEMP/from-a" && echo own-te""mp
      - run: echo "mobius-var=[${MOBIUS_PRIVATE_SETTING:-}]"
"#,
    );
    let mut command = t.command();
    let out = command.env("MOBIUS_PRIVATE_SETTING", "leaked").output().expect("mobius runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("own-temp"), "{stdout}");
    assert!(stdout.contains("mobius-var=[]"), "{stdout}");
}

#[test]
fn ignored_files_stay_out_of_the_jobs_copies_unless_asked() {
    let wf =
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: ls -a; test -f untracked.txt\n";
    let t = Test::new()
        .workflow("w.yml", wf)
        .file(".gitignore", "build/\n")
        .file("build/huge.bin", "x")
        .git()
        .file("untracked.txt", "new");
    t.run().code(0).stdout_lacks("| build").stdout_has("| untracked.txt");
    let t = Test::new()
        .workflow("w.yml", wf)
        .file(".gitignore", "build/\n")
        .file("build/huge.bin", "x")
        .file("untracked.txt", "new");
    t.args(&["--use-gitignore=false"]).run().code(0).stdout_has("| build");
}

#[test]
fn a_malformed_environment_file_fails_the_step_and_names_the_line() {
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo 'GOOD=1' >> \"$GITHUB_ENV\"\n          echo 'no equals sign here' >> \"$GITHUB_ENV\"\n      - if: always()\n        run: echo \"good=[$GOOD]\"\n",
        )
        .run()
        .code(1)
        .stdout_has("line 2: expected NAME=value or NAME<<DELIMITER, found 'no equals sign here'")
        .stdout_has("good=[]");
}
