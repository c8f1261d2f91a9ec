//! Built-in actions (artifacts, cache, checkout), vendored and composite actions, reusable workflows.

use crate::support::{require, Test};

#[test]
fn artifacts_pass_between_jobs_relative_to_the_common_ancestor() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: mkdir -p app/lib && echo 'print(1)' > app/app.py && echo lib > app/lib/x.txt
      - uses: actions/upload-artifact@v4
        with:
          name: web
          path: app/
  deploy:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: web
          path: out
      - run: cat out/app.py out/lib/x.txt
      - uses: actions/download-artifact@v4
        id: missing
        continue-on-error: true
        with:
          name: nope
      - run: echo "missing=${{ steps.missing.outcome }}"
"#,
        )
        .run()
        .code(0)
        .stdout_has("print(1)")
        .stdout_has("lib")
        .stdout_has("missing=failure");
}

#[test]
fn cache_restores_on_the_next_run() {
    let t = Test::new().workflow(
        "w.yml",
        r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        id: c
        with:
          path: deps
          key: deps-${{ hashFiles('lock.txt') }}
          restore-keys: deps-
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }}"
          if [ -f deps/built ]; then echo "restored=$(cat deps/built)"; else mkdir -p deps && echo first > deps/built; fi
"#,
    )
    .file("lock.txt", "v1");
    t.run().code(0).stdout_has("hit=false").stdout_has("Cache saved with key");
    t.run().code(0).stdout_has("hit=true").stdout_has("restored=first");
}

#[test]
fn reusable_workflows_get_inputs_and_inherited_secrets_and_return_outputs() {
    Test::new()
        .workflow(
            "callee.yml",
            r#"on:
  workflow_call:
    inputs:
      who:
        type: string
        required: true
      loud:
        type: boolean
        default: false
    outputs:
      greeting:
        value: ${{ jobs.greet.outputs.text }}
jobs:
  greet:
    runs-on: ubuntu-latest
    outputs:
      text: ${{ steps.g.outputs.text }}
    steps:
      - id: g
        run: |
          echo "loud=${{ inputs.loud }} token-set=${{ secrets.TOKEN != '' }}"
          echo "text=hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
"#,
        )
        .workflow(
            "caller.yml",
            r#"on: push
jobs:
  call:
    uses: ./.github/workflows/callee.yml
    with:
      who: mona
    secrets: inherit
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo "caller got '${{ needs.call.outputs.greeting }}'"
"#,
        )
        .args(&["-s", "TOKEN=abc123secret"])
        .run()
        .code(0)
        .stdout_has("loud=false token-set=true")
        .stdout_has("caller got 'hello mona'")
        .stdout_has("[call / greet]");
}

#[test]
fn vendored_actions_resolve_from_the_action_dir() {
    let vendor = tempfile::tempdir().unwrap();
    let action = vendor.path().join("acme/greet@v1");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::write(
        action.join("action.yml"),
        "inputs:\n  name:\n    default: you\noutputs:\n  said:\n    value: ${{ steps.s.outputs.said }}\nruns:\n  using: composite\n  steps:\n    - id: s\n      shell: bash\n      run: |\n        echo \"said=hi ${{ inputs.name }}\" >> \"$GITHUB_OUTPUT\"\n        echo \"action path ok: $(test -f $GITHUB_ACTION_PATH/action.yml && echo yes)\"\n",
    )
    .unwrap();
    Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: acme/greet@v1\n        id: g\n        with:\n          name: bob\n      - run: echo \"${{ steps.g.outputs.said }}\"\n",
        )
        .args(&["--action-dir", vendor.path().to_str().unwrap()])
        .run()
        .code(0)
        .stdout_has("hi bob")
        .stdout_has("action path ok: yes");
}

#[test]
fn javascript_actions_run_with_node_including_post_steps() {
    if !require("node") {
        return;
    }
    Test::new()
        .file("act/action.yml", "inputs:\n  who: {default: world}\nruns:\n  using: node20\n  main: main.js\n  post: post.js\n")
        .file(
            "act/main.js",
            "const fs=require('fs');console.log('main '+process.env.INPUT_WHO);fs.appendFileSync(process.env.GITHUB_STATE,'phase=main-saw-'+process.env.INPUT_WHO+'\\n');fs.appendFileSync(process.env.GITHUB_OUTPUT,'out=from-js\\n');",
        )
        .file("act/post.js", "console.log('post state='+process.env.STATE_phase);")
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./act\n        id: js\n        with:\n          who: mona\n      - run: echo \"output=${{ steps.js.outputs.out }}\"\n",
        )
        .run()
        .code(0)
        .stdout_has("main mona")
        .stdout_has("output=from-js")
        .stdout_has("post state=main-saw-mona");
}

#[test]
fn checkout_into_a_path_copies_the_repository() {
    Test::new()
        .file("hello.txt", "hi from repo")
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          path: nested\n      - run: cat nested/hello.txt\n",
        )
        .git()
        .run()
        .code(0)
        .stdout_has("hi from repo");
}

#[test]
fn checkout_of_another_ref_writes_that_commits_tree() {
    if !require("git") {
        return;
    }
    Test::new()
        .file("version.txt", "one")
        .file("old-only.txt", "gone later")
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "current=$(cat version.txt)"
      - uses: actions/checkout@v4
        with:
          ref: v1
          path: old
      - run: |
          echo "old=$(cat old/version.txt) extra=$(cat old/old-only.txt)"
          cd old && echo "status=[$(git status --porcelain)] head=$(git rev-parse --short HEAD)"
      - uses: actions/checkout@v4
        id: bad
        continue-on-error: true
        with:
          ref: no-such-branch
      - run: echo "bad=${{ steps.bad.outcome }}"
"#,
        )
        .git()
        .git_cmd(&["tag", "v1"])
        .file("version.txt", "two")
        .git_cmd(&["rm", "-q", "old-only.txt"])
        .commit("second")
        .run()
        .code(0)
        .stdout_has("current=two")
        .stdout_has("old=one extra=gone later")
        .stdout_has("status=[]")
        .stdout_has("does not exist")
        .stdout_has("bad=failure");
}

#[test]
fn vendored_javascript_actions_run_pre_main_and_post_with_shared_state() {
    if !require("node") {
        return;
    }
    let vendor = tempfile::tempdir().unwrap();
    let action = vendor.path().join("acme/lifecycle@v2");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::write(
        action.join("action.yml"),
        "inputs:\n  tag: {required: true}\nruns:\n  using: node20\n  pre: pre.js\n  main: main.js\n  post: post.js\n",
    )
    .unwrap();
    std::fs::write(
        action.join("pre.js"),
        "require('fs').appendFileSync(process.env.GITHUB_STATE, 'from_pre=' + process.env.INPUT_TAG + '\\n'); console.log('pre ran');",
    )
    .unwrap();
    std::fs::write(action.join("main.js"), "console.log('main sees ' + process.env.STATE_from_pre);").unwrap();
    std::fs::write(action.join("post.js"), "console.log('post sees ' + process.env.STATE_from_pre);").unwrap();
    let out = Test::new()
        .workflow(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo first-step\n      - uses: acme/lifecycle@v2\n        with:\n          tag: t1\n",
        )
        .args(&["--action-dir", vendor.path().to_str().unwrap()])
        .run();
    out.code(0).stdout_has("pre ran").stdout_has("main sees t1").stdout_has("post sees t1");
    let stdout = out.stdout();
    let (pre, first, post) = (stdout.find("pre ran"), stdout.find("| first-step"), stdout.find("post sees"));
    assert!(pre < first && first < post, "pre runs at job start, post at the end:\n{stdout}");
}

#[test]
fn a_composite_action_using_itself_fails_instead_of_recursing_forever() {
    Test::new()
        .file("loop/action.yml", "runs:\n  using: composite\n  steps:\n    - uses: ./loop\n")
        .workflow("w.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./loop\n")
        .run()
        .code(1)
        .stdout_has("nest more than 10 levels");
}

#[test]
fn cache_paths_may_be_globs_with_exclusions() {
    let t = Test::new().workflow(
        "w.yml",
        r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        id: c
        with:
          key: objs-v1
          path: |
            build/**/*.o
            !build/skip/**
      - run: |
          if [ "${{ steps.c.outputs.cache-hit }}" = true ]; then
            echo "restored: $(find build -type f | sort | tr '\n' ' ')"
          else
            mkdir -p build/a/b build/skip && echo 1 > build/a/one.o && echo 2 > build/a/b/two.o && echo 3 > build/a/note.txt && echo 4 > build/skip/x.o
          fi
"#,
    );
    t.run().code(0).stdout_has("Cache saved with key: objs-v1 (2 files");
    t.run().code(0).stdout_has("restored: build/a/b/two.o build/a/one.o ");
}

#[test]
fn a_remote_action_inside_a_composite_that_cannot_be_fetched_fails_its_step_with_the_vendoring_hint() {
    let cache = tempfile::tempdir().unwrap();
    Test::new()
        .file("wrap/action.yml", "runs:\n  using: composite\n  steps:\n    - uses: someone/thing@v1\n")
        .workflow("w.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./wrap\n")
        .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
        .args(&["--actions-url", "http://127.0.0.1:9"])
        .run()
        .code(1)
        .stdout_has("cannot fetch the action 'someone/thing@v1' from http://127.0.0.1:9/someone/thing")
        .stdout_has("--action-dir");
}
