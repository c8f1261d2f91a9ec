//! Secrets and `::add-mask::` values never reach the terminal or the log files.

use crate::support::Test;

#[test]
fn secrets_are_masked_in_every_form_and_in_log_files() {
    let t = Test::new().file(".secrets", "MULTI=\"first-line-secret\\nsecond-line-secret\"\n").workflow(
        "w.yml",
        r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - name: uses ${{ secrets.TOKEN }} in its name
        run: |
          echo "plain ${{ secrets.TOKEN }}"
          echo "b64 $(printf %s "$TOKEN" | base64)"
          echo "url ${{ secrets.URLISH }}" | sed 's/ /%20/g; s/!/%21/g'
          echo "second line: second-line-secret"
          echo "::add-mask::dynamic-value-42"
          echo "later dynamic-value-42"
        env:
          TOKEN: ${{ secrets.TOKEN }}
"#,
    );
    let secrets = t.dir().join(".secrets");
    let out = t
        .args(&["-s", "TOKEN=hunter2-very-secret", "-s", "URLISH=a b!c", "--secret-file", secrets.to_str().unwrap()])
        .run();
    out.code(0);
    let logs = out.all_logs();
    for text in [out.stdout(), logs.clone()] {
        for leaked in
            ["hunter2-very-secret", "aHVudGVyMi12ZXJ5LXNlY3JldA", "a%20b%21c", "second-line-secret", "dynamic-value-42"]
        {
            assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
        }
    }
    assert!(out.stdout().contains("plain ***"), "{}", out.stdout());
    assert!(logs.contains("later ***"), "{logs}");
}

#[test]
fn outputs_holding_secrets_are_not_passed_between_jobs() {
    Test::new()
        .workflow(
            "w.yml",
            r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      leak: ${{ steps.s.outputs.v }}
    steps:
      - id: s
        run: echo "v=${{ secrets.KEY }}" >> "$GITHUB_OUTPUT"
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo "got=[${{ needs.a.outputs.leak }}]"
"#,
        )
        .args(&["-s", "KEY=topsecretvalue"])
        .run()
        .code(0)
        .stdout_has("got=[]")
        .stderr_has("holds a secret");
}

/// Issue 15, item 5: masking's cost does not grow with repetition. A 40 KB secret of
/// one repeated letter used to take over 30 s to build a masker for; a one-`echo`
/// run with it now ends within a second of the same run without it, and it is masked.
#[test]
fn a_large_repetitive_secret_costs_no_more_than_its_size() {
    let workflow = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"value ${{ secrets.BIG }}\"\n";
    let big = "a".repeat(40 * 1024);
    let timed = |args: &[&str]| {
        let started = std::time::Instant::now();
        let out = Test::new().workflow("w.yml", workflow).args(args).run();
        out.code(0);
        (started.elapsed(), out.stdout())
    };
    let (without, _) = timed(&[]);
    let (with, stdout) = timed(&["-s", &format!("BIG={big}")]);
    assert!(stdout.contains("value ***"), "{}", &stdout[..stdout.len().min(500)]);
    assert!(!stdout.contains("aaaaaaaaaa"), "the secret leaked");
    assert!(with < without + std::time::Duration::from_secs(1), "with the secret {with:?}, without {without:?}");
}
