//! Rule evaluation over the store, step by step: recorded series, an alert going
//! pending then firing after `for`, the `ALERTS` series, `keep_firing_for`, resolution
//! and staleness of what rules stop writing, as Prometheus' rule manager behaves.
#![allow(clippy::unwrap_used)]

use mobius_alerting::rules::{parse_rule_file, AlertState, EvalContext, GroupState};
use mobius_config::SourceFile;
use mobius_promql::{self as promql, Value};
use mobius_series::labels::Labels;
use mobius_tsdb::{Db, DbOptions};
use std::sync::Arc;
use std::time::Duration;

const S: i64 = 1000;

const RULES: &str = "groups:
  - name: api
    interval: 1s
    rules:
      - record: job:errors:sum
        expr: sum by (job) (errors)
      - alert: TooManyErrors
        expr: job:errors:sum > 5
        for: 2s
        keep_firing_for: 2s
        labels: { severity: page, team: '{{ $labels.job }}-team' }
        annotations:
          summary: '{{ $labels.job }} has {{ $value }} errors'
";

fn setup() -> (tempfile::TempDir, Arc<Db>, GroupState) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let mut groups = parse_rule_file(SourceFile::new("rules.yml", RULES), Duration::from_secs(60)).unwrap();
    (dir, db, GroupState::new(groups.remove(0)))
}

fn write_errors(db: &Db, t: i64, a: f64, b: f64) {
    let s = |i: &str| Labels::from_pairs(&[("__name__", "errors"), ("job", "api"), ("instance", i)]);
    db.append([(&s("a"), t, a), (&s("b"), t, b)]).unwrap();
}

fn query(db: &Db, q: &str, t: i64) -> Vec<(String, f64)> {
    match promql::instant(db, &promql::parse(q).unwrap(), t).unwrap() {
        Value::Vector(v) => v.into_iter().map(|(l, v)| (l.to_string(), v)).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_alert_goes_pending_fires_keeps_firing_then_resolves() {
    let (_dir, db, mut group) = setup();
    let ctx =
        EvalContext { external_labels: vec![("site".into(), "lab".into())], external_url: "http://mobius:8080".into() };
    let state = |g: &GroupState| g.rules[1].active.values().next().map(|a| a.state);
    // t=0: 4 errors, below the threshold; recorded sum is 4.
    write_errors(&db, 0, 1.0, 3.0);
    assert!(group.evaluate(&db, 0, &ctx).is_empty());
    assert_eq!(query(&db, "job:errors:sum", 0), [("job:errors:sum{job=\"api\"}".to_string(), 4.0)]);
    assert_eq!(state(&group), None);
    // t=1s: 6 errors: pending, not sent.
    write_errors(&db, S, 2.0, 4.0);
    assert!(group.evaluate(&db, S, &ctx).is_empty());
    assert_eq!(state(&group), Some(AlertState::Pending));
    assert_eq!(
        query(&db, "ALERTS", S),
        [("ALERTS{alertname=\"TooManyErrors\", alertstate=\"pending\", job=\"api\", severity=\"page\", team=\"api-team\"}".to_string(), 1.0)]
    );
    // t=2s: still pending (2s not yet held).
    write_errors(&db, 2 * S, 2.0, 5.0);
    assert!(group.evaluate(&db, 2 * S, &ctx).is_empty());
    // t=3s: held for 2s: firing, and sent with its templates expanded.
    write_errors(&db, 3 * S, 2.0, 6.0);
    let sent = group.evaluate(&db, 3 * S, &ctx);
    assert_eq!(state(&group), Some(AlertState::Firing));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].labels.get("site"), Some("lab"), "external labels are added");
    assert_eq!(sent[0].labels.get("team"), Some("api-team"));
    assert_eq!(sent[0].annotations, [("summary".to_string(), "api has 8 errors".to_string())]);
    assert_eq!((sent[0].starts_at, sent[0].ends_at), (3 * S, 3 * S + 4 * 60 * S));
    assert!(sent[0].generator_url.starts_with("http://mobius:8080/graph?g0.expr=job%3Aerrors%3Asum"));
    assert_eq!(query(&db, "ALERTS{alertstate=\"firing\"}", 3 * S).len(), 1);
    assert_eq!(query(&db, "ALERTS{alertstate=\"pending\"}", 3 * S), [], "the pending series ended");
    assert_eq!(query(&db, "ALERTS_FOR_STATE", 3 * S)[0].1, 1.0, "active since t=1s");
    // t=4s: still firing, not resent within a minute.
    write_errors(&db, 4 * S, 2.0, 6.0);
    assert!(group.evaluate(&db, 4 * S, &ctx).is_empty());
    // t=5s, 6s: below the threshold, but keep_firing_for 2s holds it.
    write_errors(&db, 5 * S, 0.0, 0.0);
    assert!(group.evaluate(&db, 5 * S, &ctx).is_empty());
    assert_eq!(state(&group), Some(AlertState::Firing));
    write_errors(&db, 6 * S, 0.0, 0.0);
    group.evaluate(&db, 6 * S, &ctx);
    assert_eq!(state(&group), Some(AlertState::Firing));
    // t=7s: kept 2s: resolved, sent once more with its end.
    write_errors(&db, 7 * S, 0.0, 0.0);
    let sent = group.evaluate(&db, 7 * S, &ctx);
    assert_eq!(state(&group), Some(AlertState::Inactive));
    assert_eq!((sent.len(), sent[0].ends_at), (1, 7 * S));
    assert_eq!(query(&db, "ALERTS", 7 * S), [], "ALERTS ended with a staleness marker");
    assert!(group.evaluate(&db, 8 * S, &ctx).is_empty(), "resolution is sent once");
    assert_eq!(group.rules[1].health, "ok");
}

#[test]
fn a_failing_rule_reports_its_error_and_the_group_goes_on() {
    let (_dir, db, mut group) = setup();
    group.group.limit = 1;
    group.rules[0].rule.expr = promql::parse("sum by (instance) (errors)").unwrap();
    write_errors(&db, 0, 9.0, 9.0);
    group.evaluate(&db, 0, &EvalContext::default());
    assert_eq!(group.rules[0].health, "err");
    assert_eq!(group.rules[0].last_error.as_deref(), Some("exceeded limit of 1 with 2 series"));
    assert_eq!(group.rules[1].health, "ok", "the next rule still runs");
}

#[test]
fn a_restart_keeps_how_long_an_alert_has_been_pending() {
    let (_dir, db, mut group) = setup();
    let ctx = EvalContext::default();
    write_errors(&db, S, 3.0, 4.0);
    group.evaluate(&db, S, &ctx);
    write_errors(&db, 2 * S, 3.0, 4.0);
    group.evaluate(&db, 2 * S, &ctx);
    assert_eq!(group.rules[1].active.values().next().map(|a| a.state), Some(AlertState::Pending));
    // The server restarts at 2.5 s (the last ALERTS_FOR_STATE is at 2 s): a new group
    // state, restored from ALERTS_FOR_STATE with a grace period.
    let restart = |grace_ms: u64| {
        let mut groups = parse_rule_file(SourceFile::new("rules.yml", RULES), Duration::from_secs(60)).unwrap();
        let mut restarted = GroupState::new(groups.remove(0));
        restarted.restore_for_state(&db, 2500, Duration::from_millis(grace_ms));
        restarted
    };
    let active = |group: &GroupState| group.rules[1].active.values().next().map(|a| (a.state, a.active_at));
    write_errors(&db, 3 * S, 3.0, 4.0);
    write_errors(&db, 4 * S, 3.0, 4.0);
    // No grace: pending since 1 s, 1 s of `for: 2s` left, and the 0.5 s down do not
    // count: active since 1.5 s, firing at 4 s.
    let mut restarted = restart(0);
    assert!(restarted.evaluate(&db, 3 * S, &ctx).is_empty());
    assert_eq!(active(&restarted), Some((AlertState::Pending, 1500)));
    assert_eq!(restarted.evaluate(&db, 4 * S, &ctx).len(), 1);
    assert_eq!(active(&restarted).map(|a| a.0), Some(AlertState::Firing));
    // 1 s left is less than a 1.5 s grace: it fires 1.5 s after the restart.
    let mut restarted = restart(1500);
    restarted.evaluate(&db, 3 * S, &ctx);
    assert_eq!(active(&restarted), Some((AlertState::Pending, 2000)));
    // A `for` shorter than the grace is not restored: it starts again.
    let mut restarted = restart(10_000);
    restarted.evaluate(&db, 3 * S, &ctx);
    assert_eq!(active(&restarted), Some((AlertState::Pending, 3 * S)));
}
