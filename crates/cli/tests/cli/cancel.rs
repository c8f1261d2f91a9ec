//! SIGTERM (or Ctrl-C) stops every process group, runs always() and post steps, exits 1, leaves no orphans.

use crate::support::Test;
use std::time::{Duration, Instant};

fn processes_matching(pattern: &str) -> usize {
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.filter_map(Result::ok) {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if text.contains(pattern) {
                    count += 1;
                }
            }
        }
    }
    count
}

#[test]
fn termination_kills_process_groups_and_runs_always_steps() {
    let marker = format!("mobius-orphan-check-{}", std::process::id());
    let done = tempfile::tempdir().unwrap();
    let always_file = done.path().join("always-ran");
    let wf = format!(
        r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    steps:
      - run: |
          bash -c 'exec -a {marker} sleep 300' &
          bash -c 'exec -a {marker} sleep 300'
      - if: always()
        run: echo always > {always}
"#,
        always = always_file.display()
    );
    let t = Test::new().workflow("w.yml", &wf);
    let mut child =
        t.command().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_matching(&marker) < 2 {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "mobius did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    assert!(always_file.exists(), "the always() step must run after cancellation");
    assert_eq!(processes_matching(&marker), 0, "processes were left behind");
}
