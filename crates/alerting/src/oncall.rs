//! On-call: people, schedules (rotations with overrides) and escalation policies
//! (levels with delays and targets, repeated), read from the server's on-call file.
//! Alertmanager has no escalation; an incident follows the policy of its alert group
//! (by receiver or matchers) until someone acknowledges or it resolves.

use crate::config::{matches, parse_matchers};
use mobius_config::yaml::{self, Node};
use mobius_config::{parse_duration, Checker};
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use mobius_series::labels::{Labels, Matcher};
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct OnCallConfig {
    pub people: Vec<Person>,
    pub schedules: Vec<Schedule>,
    pub policies: Vec<Policy>,
    /// Receivers whose alert groups open no incident (chat-only routes, say).
    pub without_incidents: Vec<String>,
}

/// Someone who can be paged, through an Alertmanager receiver.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub receiver: String,
}

/// A rotation: `people` take turns of `shift`, counted from `start`; overrides win.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub start: i64,
    pub shift: Duration,
    pub people: Vec<String>,
    pub overrides: Vec<Override>,
}

#[derive(Clone, Debug)]
pub struct Override {
    pub person: String,
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Receiver(String),
    Person(String),
    Schedule(String),
}

#[derive(Clone, Debug)]
pub struct Level {
    /// How long after the previous level (or the incident's opening) this one is paged.
    pub delay: Duration,
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    /// Incidents of groups routed to this receiver follow the policy...
    pub receiver: Option<String>,
    /// ...or those whose group labels match every matcher.
    pub matchers: Vec<Matcher>,
    pub levels: Vec<Level>,
    /// How many times the levels run again after the last one.
    pub repeat: u32,
}

impl Schedule {
    /// Who is on call at `at` (milliseconds): an override covering it, else the rotation.
    pub fn on_call(&self, at: i64) -> Option<&str> {
        if let Some(o) = self.overrides.iter().rev().find(|o| o.start <= at && at < o.end) {
            return Some(&o.person);
        }
        if self.people.is_empty() || at < self.start {
            return self.people.first().map(String::as_str);
        }
        let shift = (self.shift.as_millis() as i64).max(1);
        let turn = ((at - self.start) / shift) as usize % self.people.len();
        Some(&self.people[turn])
    }
}

impl OnCallConfig {
    /// The policy an alert group follows: the first naming its receiver or matching its labels.
    pub fn policy_for(&self, receiver: &str, labels: &Labels) -> Option<&Policy> {
        self.policies.iter().find(|p| match &p.receiver {
            Some(r) => r == receiver && matches(&p.matchers, labels),
            None => !p.matchers.is_empty() && matches(&p.matchers, labels),
        })
    }

    /// The receivers a level pages at `at`, with whom each reaches (when a person).
    pub fn resolve(&self, level: &Level, at: i64) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for target in &level.targets {
            let person = match target {
                Target::Receiver(r) => {
                    out.push((r.clone(), None));
                    continue;
                }
                Target::Person(p) => Some(p.as_str()),
                Target::Schedule(s) => self.schedules.iter().find(|x| &x.name == s).and_then(|s| s.on_call(at)),
            };
            if let Some(p) = person.and_then(|p| self.people.iter().find(|x| x.name == p)) {
                out.push((p.receiver.clone(), Some(p.name.clone())));
            }
        }
        out
    }
}

fn time(c: &mut Checker, node: &Node, what: &str) -> Option<i64> {
    let text = c.string(node, what)?;
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.timestamp_millis()),
        Err(_) => {
            c.error(node.pos, format!("{what} must be an RFC 3339 time such as 2026-01-05T09:00:00Z"));
            None
        }
    }
}

/// Reads the on-call file; `receivers` are the Alertmanager receivers targets may name.
pub fn parse_oncall_config(file: SourceFile, receivers: &[String]) -> Result<OnCallConfig, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut c = Checker { diagnostics: Vec::new() };
    let config = oncall_config(&mut c, &root, receivers);
    c.finish(file, config)
}

/// An on-call configuration's content at `root` (the file itself, or a project's
/// `monitoring.oncall`); `receivers` are the ones it may name.
pub fn oncall_config(c: &mut Checker, root: &Node, receivers: &[String]) -> OnCallConfig {
    let mut config = OnCallConfig::default();
    let entries =
        c.entries(root, "the on-call configuration", &["people", "schedules", "policies", "without_incidents"], &[]);
    let find = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let known_receiver = |c: &mut Checker, node: &Node, name: &str| {
        if !receivers.iter().any(|r| r == name) {
            c.error(node.pos, format!("receiver `{name}` is not defined in the Alertmanager configuration"));
        }
    };
    for item in find("people").and_then(Node::as_seq).unwrap_or(&[]) {
        let mut person = Person { name: String::new(), receiver: String::new() };
        for (key, value) in c.entries(item, "a person", &["name", "receiver"], &[]) {
            let text = c.string(value, &format!("`{key}`")).unwrap_or_default();
            if key == "name" {
                person.name = text;
            } else {
                known_receiver(c, value, &text);
                person.receiver = text;
            }
        }
        if person.name.is_empty() || person.receiver.is_empty() {
            c.error(item.pos, "a person needs a `name` and a `receiver`");
        }
        config.people.push(person);
    }
    if let Some(node) = find("without_incidents") {
        for (i, r) in c.strings(node, "`without_incidents`").into_iter().enumerate() {
            let pos = node.as_seq().and_then(|v| v.get(i)).unwrap_or(node);
            known_receiver(c, pos, &r);
            config.without_incidents.push(r);
        }
    }
    let people: Vec<String> = config.people.iter().map(|p| p.name.clone()).collect();
    let known_person = |c: &mut Checker, node: &Node, name: &str| {
        if !people.iter().any(|p| p == name) {
            c.error(node.pos, format!("person `{name}` is not defined in `people`"));
        }
    };
    for item in find("schedules").and_then(Node::as_seq).unwrap_or(&[]) {
        let mut s = Schedule {
            name: String::new(),
            start: 0,
            shift: Duration::from_secs(7 * 86_400),
            people: Vec::new(),
            overrides: Vec::new(),
        };
        for (key, value) in c.entries(item, "a schedule", &["name", "start", "shift", "people", "overrides"], &[]) {
            match key {
                "name" => s.name = c.string(value, "`name`").unwrap_or_default(),
                "start" => s.start = time(c, value, "`start`").unwrap_or(0),
                "shift" => s.shift = c.duration(value, "`shift`").unwrap_or(s.shift),
                "people" => {
                    for (i, p) in c.strings(value, "`people`").into_iter().enumerate() {
                        let pos = value.as_seq().and_then(|v| v.get(i)).unwrap_or(value);
                        known_person(c, pos, &p);
                        s.people.push(p);
                    }
                }
                _ => {
                    for o in value.as_seq().unwrap_or(&[]) {
                        let mut ov = Override { person: String::new(), start: 0, end: 0 };
                        for (key, value) in c.entries(o, "an override", &["person", "start", "end"], &[]) {
                            match key {
                                "person" => {
                                    ov.person = c.string(value, "`person`").unwrap_or_default();
                                    known_person(c, value, &ov.person);
                                }
                                "start" => ov.start = time(c, value, "`start`").unwrap_or(0),
                                _ => ov.end = time(c, value, "`end`").unwrap_or(0),
                            }
                        }
                        if ov.end <= ov.start {
                            c.error(o.pos, "an override's `end` must be after its `start`");
                        }
                        s.overrides.push(ov);
                    }
                }
            }
        }
        if s.name.is_empty() || s.people.is_empty() {
            c.error(item.pos, "a schedule needs a `name` and `people`");
        }
        config.schedules.push(s);
    }
    let schedules: Vec<String> = config.schedules.iter().map(|s| s.name.clone()).collect();
    for item in find("policies").and_then(Node::as_seq).unwrap_or(&[]) {
        let mut p = Policy { name: String::new(), receiver: None, matchers: Vec::new(), levels: Vec::new(), repeat: 0 };
        for (key, value) in c.entries(item, "a policy", &["name", "receiver", "matchers", "levels", "repeat"], &[]) {
            match key {
                "name" => p.name = c.string(value, "`name`").unwrap_or_default(),
                "receiver" => {
                    let r = c.string(value, "`receiver`").unwrap_or_default();
                    known_receiver(c, value, &r);
                    p.receiver = Some(r);
                }
                "matchers" => {
                    for m in value.as_seq().unwrap_or(&[]) {
                        match m.scalar_string().map(|s| parse_matchers(&s)) {
                            Some(Ok(ms)) => p.matchers.extend(ms),
                            Some(Err(e)) => c.error(m.pos, format!("`matchers`: {e}")),
                            None => c.error(m.pos, "`matchers` must be strings such as `service=\"api\"`"),
                        }
                    }
                }
                "repeat" => match value.scalar_string().and_then(|s| s.parse().ok()) {
                    Some(n) => p.repeat = n,
                    None => c.error(value.pos, "`repeat` must be a whole number"),
                },
                _ => {
                    for l in value.as_seq().unwrap_or(&[]) {
                        let mut level = Level { delay: Duration::ZERO, targets: Vec::new() };
                        for (key, value) in c.entries(l, "a level", &["delay", "targets"], &[]) {
                            if key == "delay" {
                                match value.scalar_string().as_deref().and_then(parse_duration) {
                                    Some(d) => level.delay = d,
                                    None => c.error(value.pos, "`delay` must be a duration such as `5m` or `0s`"),
                                }
                                continue;
                            }
                            for t in value.as_seq().unwrap_or(&[]) {
                                for (kind, v) in c.entries(t, "a target", &["receiver", "person", "schedule"], &[]) {
                                    let name = c.string(v, &format!("`{kind}`")).unwrap_or_default();
                                    match kind {
                                        "receiver" => {
                                            known_receiver(c, v, &name);
                                            level.targets.push(Target::Receiver(name));
                                        }
                                        "person" => {
                                            known_person(c, v, &name);
                                            level.targets.push(Target::Person(name));
                                        }
                                        _ => {
                                            if !schedules.contains(&name) {
                                                c.error(
                                                    v.pos,
                                                    format!("schedule `{name}` is not defined in `schedules`"),
                                                );
                                            }
                                            level.targets.push(Target::Schedule(name));
                                        }
                                    }
                                }
                            }
                        }
                        if level.targets.is_empty() {
                            c.error(l.pos, "a level needs `targets`");
                        }
                        p.levels.push(level);
                    }
                }
            }
        }
        if p.name.is_empty() || p.levels.is_empty() {
            c.error(item.pos, "a policy needs a `name` and `levels`");
        }
        if p.receiver.is_none() && p.matchers.is_empty() {
            c.error(item.pos, "a policy needs a `receiver` or `matchers` saying which alerts it takes");
        }
        config.policies.push(p);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "people:
  - { name: alice, receiver: alice-phone }
  - { name: bob, receiver: bob-phone }
  - { name: carol, receiver: carol-phone }
schedules:
  - name: primary
    start: 2026-11-02T09:00:00Z
    shift: 1w
    people: [alice, bob]
    overrides:
      - { person: carol, start: '2026-11-20T00:00:00Z', end: '2026-11-21T00:00:00Z' }
policies:
  - name: api
    receiver: team
    levels:
      - { delay: 0s, targets: [{ schedule: primary }] }
      - { delay: 5m, targets: [{ person: carol }, { receiver: lead }] }
    repeat: 1
";

    fn receivers() -> Vec<String> {
        ["alice-phone", "bob-phone", "carol-phone", "team", "lead"].map(String::from).to_vec()
    }

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    #[test]
    fn rotations_turn_weekly_and_overrides_win() {
        let config = parse_oncall_config(SourceFile::new("oncall.yml", CONFIG), &receivers()).unwrap();
        let s = &config.schedules[0];
        assert_eq!(s.on_call(at("2026-11-03T00:00:00Z")), Some("alice"));
        assert_eq!(s.on_call(at("2026-11-09T09:00:00Z")), Some("bob"));
        assert_eq!(s.on_call(at("2026-11-16T09:00:00Z")), Some("alice"));
        assert_eq!(s.on_call(at("2026-11-20T12:00:00Z")), Some("carol"));
        let policy = config.policy_for("team", &Labels::default()).unwrap();
        assert_eq!(
            config.resolve(&policy.levels[0], at("2026-11-10T00:00:00Z")),
            [("bob-phone".to_string(), Some("bob".to_string()))]
        );
        assert_eq!(
            config.resolve(&policy.levels[1], 0),
            [("carol-phone".to_string(), Some("carol".to_string())), ("lead".to_string(), None)]
        );
        assert!(config.policy_for("other", &Labels::default()).is_none());
    }

    #[test]
    fn unknown_names_are_refused_with_positions() {
        let errors = parse_oncall_config(
            SourceFile::new("oncall.yml", "people:\n  - { name: dave, receiver: nowhere }\npolicies:\n  - name: p\n    matchers: ['a=\"b\"']\n    levels:\n      - { delay: soon, targets: [{ person: erin }] }\n"),
            &receivers(),
        )
        .unwrap_err();
        let got: Vec<String> = errors.diagnostics.iter().map(|d| d.short()).collect();
        assert_eq!(
            got,
            [
                "2:29 receiver `nowhere` is not defined in the Alertmanager configuration",
                "7:18 `delay` must be a duration such as `5m` or `0s`",
                "7:44 person `erin` is not defined in `people`",
            ]
        );
    }
}
