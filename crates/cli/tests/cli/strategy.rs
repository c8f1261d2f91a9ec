//! Matrix strategy, fail-fast, max-parallel, and job and step timeouts.

use crate::support::Test;
use std::time::{Duration, Instant};

#[test]
fn fail_fast_cancels_the_other_legs() {
    let started = Instant::now();
    let out = Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [fast-fail, slow]
    steps:
      - run: |
          if [ "${{ matrix.n }}" = fast-fail ]; then exit 1; fi
          sleep 30
"#,
        )
        .run();
    out.code(1);
    assert!(started.elapsed() < Duration::from_secs(20), "the slow leg should be cancelled");
}

#[test]
fn without_fail_fast_every_leg_finishes() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2]
        include:
          - n: 2
            extra: yes
    steps:
      - run: sleep 0.3; echo "leg ${{ matrix.n }} extra=${{ matrix.extra }}"; test ${{ matrix.n }} = 2
"#,
        )
        .run()
        .code(1)
        .stdout_has("leg 1 extra=")
        .stdout_has("leg 2 extra=yes");
}

/// `max-parallel: 1` runs one leg at a time (each ends before the next starts), and
/// (issue 18) in the matrix's order (the last leg used to start second); fail-fast
/// cancels the legs not yet started, shown as cancelled.
#[test]
fn max_parallel_starts_legs_in_the_matrix_order_and_fail_fast_cancels_the_rest() {
    let marks = tempfile::tempdir().unwrap();
    let workflow = |file: &std::path::Path, legs: &str, fail: &str| {
        format!(
            r#"on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        n: [{legs}]
    steps:
      - run: |
          echo "start ${{{{ matrix.n }}}}" >> {f}
          sleep 0.1
          test "${{{{ matrix.n }}}}" != "{fail}"
          echo "end ${{{{ matrix.n }}}}" >> {f}
"#,
            f = file.display()
        )
    };
    let ordered = marks.path().join("ordered");
    Test::new().workflow("w.yml", &workflow(&ordered, "a, b, c, d, e", "none")).run().code(0);
    let text = std::fs::read_to_string(&ordered).unwrap();
    let serial: Vec<String> =
        ["a", "b", "c", "d", "e"].iter().flat_map(|n| [format!("start {n}"), format!("end {n}")]).collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), serial, "legs overlapped or started out of order");

    let failing = marks.path().join("failing");
    Test::new().workflow("w.yml", &workflow(&failing, "a, b, c", "a")).run().code(1).stdout_has("cancelled: fail-fast");
    let text = std::fs::read_to_string(&failing).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), ["start a"], "legs started after the first failed");
}

#[test]
fn step_and_job_timeouts_stop_long_steps() {
    let started = Instant::now();
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  step-timeout:
    runs-on: ubuntu-latest
    steps:
      - timeout-minutes: 0.02
        run: sleep 60
      - if: failure()
        run: echo after-step-timeout
  job-timeout:
    runs-on: ubuntu-latest
    timeout-minutes: 0.03
    steps:
      - run: sleep 60
      - if: always()
        run: echo always-after-job-timeout
"#,
        )
        .run()
        .code(1)
        .stdout_has("exceeded its timeout")
        .stdout_has("after-step-timeout")
        .stdout_has("always-after-job-timeout")
        .stderr_has("exceeded its timeout");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn continue_on_error_per_leg_neither_fails_the_run_nor_cancels_siblings() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  m:
    runs-on: ubuntu-latest
    continue-on-error: ${{ matrix.experimental }}
    strategy:
      matrix:
        version: [stable]
        experimental: [false]
        include:
          - version: nightly
            experimental: true
    steps:
      - run: |
          if [ "${{ matrix.version }}" = nightly ]; then exit 1; fi
          sleep 0.5
          echo "stable leg finished"
  after:
    needs: m
    runs-on: ubuntu-latest
    steps:
      - run: echo "after ran, m=${{ needs.m.result }}"
"#,
        )
        .run()
        .code(0)
        .stdout_has("stable leg finished")
        .stdout_has("after ran, m=failure");
}

#[test]
fn job_concurrency_groups_serialise_and_supersede_pending_jobs() {
    let marks = tempfile::tempdir().unwrap();
    let file = marks.path().join("marks");
    // Three jobs of one group arrive together: one runs, one waits, and the last to
    // arrive replaces the waiting one, which ends cancelled; the two that run never overlap.
    let job = |name: &str, group: &str| {
        format!(
            "  {name}:\n    runs-on: ubuntu-latest\n    concurrency: {group}\n    steps:\n      - run: echo \"start {name}\" >> {f}; sleep 0.3; echo \"end {name}\" >> {f}\n",
            f = file.display()
        )
    };
    let wf = format!(
        "on: push\njobs:\n{}{}{}",
        job("a", "deploy"),
        job("b", "\"${{ 'dep' }}loy\""),
        job("c", "\n      group: deploy")
    );
    let out = Test::new().workflow("w.yml", &wf).args(&["--json"]).run();
    out.code(1);
    assert_eq!(out.stdout().matches("replaced it").count(), 1, "{}", out.stdout());
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "two of the three ran: {lines:?}");
    for pair in lines.chunks(2) {
        assert_eq!(pair[0].replace("start", ""), pair[1].replace("end", ""), "members overlapped: {lines:?}");
    }
}
