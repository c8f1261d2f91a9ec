//! A project's own monitoring, declared in its `mobius.yaml` under `monitoring`, each
//! part in the format of the file users already have:
//!
//! ```yaml
//! monitoring:
//!   prometheus:   { global: …, scrape_configs: [ … ] }   # a prometheus.yml
//!   rules:        { groups: [ … ] }                       # a Prometheus rule file
//!   alertmanager: { route: …, receivers: [ … ] }          # an alertmanager.yml
//!   oncall:       { people: …, schedules: …, policies: … }
//! ```
//!
//! Everything a project declares is scoped to it: its targets, recorded series and
//! alerts carry `project="NAME"`; its route only takes alerts with that label; its
//! receivers, people, schedules and policies are named `NAME/…`, so two projects (or
//! a project and the server's own files) never collide. A project cannot make the
//! server read files: `rule_files` and `file_sd_configs` stay in the server's files.

use crate::config::{prometheus_config, ScrapeConfig};
use mobius_alerting::config::{alertmanager_config, AlertmanagerConfig, Route};
use mobius_alerting::oncall::{oncall_config, OnCallConfig, Target};
use mobius_alerting::rules::{rule_groups, RuleGroup};
use mobius_config::yaml::{self, Node};
use mobius_config::Checker;
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use mobius_series::labels::Matcher;
use std::time::Duration;

/// The label every part of a project's monitoring carries.
pub const PROJECT_LABEL: &str = "project";

/// What a project's `mobius.yaml` declares under `monitoring`, scoped to the project.
#[derive(Clone, Debug, Default)]
pub struct ProjectMonitoring {
    pub project: String,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub groups: Vec<RuleGroup>,
    /// The project's route (under the server's root route) and its receivers.
    pub alertmanager: Option<AlertmanagerConfig>,
    pub oncall: OnCallConfig,
}

fn scoped(project: &str, name: &str) -> String {
    format!("{project}/{name}")
}

/// Reads the `monitoring` section of a project's `mobius.yaml` on its own (`Ok(None)`
/// without one); every problem is reported with its line and column in that file. The
/// server reads the whole file once with `mobius_project`, which calls [`monitoring`].
pub fn parse_project_monitoring(file: SourceFile, project: &str) -> Result<Option<ProjectMonitoring>, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let Some(section) = root.get("monitoring") else { return Ok(None) };
    let mut c = Checker { diagnostics: Vec::new() };
    let out = monitoring(&mut c, section, project);
    c.finish(file, Some(out))
}

/// The monitoring a `monitoring` section declares, scoped to `project`, with every
/// problem added to the checker.
pub fn monitoring(checker: &mut Checker, section: &Node, project: &str) -> ProjectMonitoring {
    let mut c = std::mem::take(checker);
    let mut out = ProjectMonitoring { project: project.to_string(), ..ProjectMonitoring::default() };
    let entries = c.entries(section, "`monitoring`", &["prometheus", "rules", "alertmanager", "oncall"], &[]);
    let find = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let mut evaluation_interval = Duration::from_secs(60);
    if let Some(node) = find("prometheus") {
        if let Some(key) = node.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("rule_files"))) {
            c.error(key.0.pos, "a project's rules go under `monitoring.rules`, not in files");
        }
        for job in node.get("scrape_configs").and_then(Node::as_seq).unwrap_or(&[]) {
            if let Some((key, _)) =
                job.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("file_sd_configs")))
            {
                c.error(key.pos, "`file_sd_configs` are read only from the server's prometheus.yml");
            }
        }
        let config = prometheus_config(&mut c, node);
        evaluation_interval = config.evaluation_interval;
        out.scrape_configs = config
            .scrape_configs
            .into_iter()
            .map(|mut job| {
                for group in &mut job.static_configs {
                    group.labels.retain(|(k, _)| k != PROJECT_LABEL);
                    group.labels.push((PROJECT_LABEL.into(), project.into()));
                }
                job
            })
            .collect();
    }
    if let Some(node) = find("rules") {
        out.groups = rule_groups(&mut c, node, &format!("{project}/mobius.yaml"), evaluation_interval);
        for rule in out.groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
            rule.labels.retain(|(k, _)| k != PROJECT_LABEL);
            rule.labels.push((PROJECT_LABEL.into(), project.into()));
        }
    }
    let mut receivers = Vec::new();
    if let Some(node) = find("alertmanager") {
        let (checked, mut config) = alertmanager_config(c, node, None);
        c = checked;
        receivers = config.receivers.iter().map(|r| r.name.clone()).collect();
        for receiver in &mut config.receivers {
            receiver.name = scoped(project, &receiver.name);
        }
        scope_route(&mut config.route, project);
        config.route.matchers.insert(0, Matcher::equal(PROJECT_LABEL, project));
        for rule in &mut config.inhibit_rules {
            rule.source.push(Matcher::equal(PROJECT_LABEL, project));
            rule.target.push(Matcher::equal(PROJECT_LABEL, project));
        }
        out.alertmanager = Some(config);
    }
    if let Some(node) = find("oncall") {
        let mut config = oncall_config(&mut c, node, &receivers);
        for person in &mut config.people {
            person.name = scoped(project, &person.name);
            person.receiver = scoped(project, &person.receiver);
        }
        for schedule in &mut config.schedules {
            schedule.name = scoped(project, &schedule.name);
            for person in schedule.people.iter_mut().chain(schedule.overrides.iter_mut().map(|o| &mut o.person)) {
                *person = scoped(project, person);
            }
        }
        for policy in &mut config.policies {
            policy.name = scoped(project, &policy.name);
            if let Some(r) = &mut policy.receiver {
                *r = scoped(project, r);
            }
            // A project's policy only takes its own alerts.
            policy.matchers.push(Matcher::equal(PROJECT_LABEL, project));
            for target in policy.levels.iter_mut().flat_map(|l| l.targets.iter_mut()) {
                match target {
                    Target::Receiver(name) | Target::Person(name) | Target::Schedule(name) => {
                        *name = scoped(project, name);
                    }
                }
            }
        }
        config.without_incidents = config.without_incidents.iter().map(|r| scoped(project, r)).collect();
        out.oncall = config;
    }
    *checker = c;
    out
}

/// Receivers renamed into the project, route ids made unique across projects.
fn scope_route(route: &mut Route, project: &str) {
    route.id = scoped(project, &route.id);
    route.receiver = scoped(project, &route.receiver);
    for child in &mut route.routes {
        scope_route(child, project);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "services: {}
monitoring:
  prometheus:
    global:
      scrape_interval: 5s
    scrape_configs:
      - job_name: api
        static_configs:
          - targets: ['127.0.0.1:9100']
  rules:
    groups:
      - name: api
        rules:
          - alert: Down
            expr: up == 0
            for: 10s
  alertmanager:
    route:
      receiver: team
      routes:
        - matchers: ['severity=\"page\"']
          receiver: pager
    receivers:
      - name: team
      - name: pager
        webhook_configs:
          - url: http://127.0.0.1:1/hook
  oncall:
    people:
      - name: ann
        receiver: pager
    policies:
      - name: page
        receiver: pager
        levels:
          - delay: 0s
            targets: [person: ann]
";

    #[test]
    fn everything_a_project_declares_is_scoped_to_it() {
        let m = parse_project_monitoring(SourceFile::new("mobius.yaml", FILE), "shop").unwrap().unwrap();
        assert_eq!(m.scrape_configs[0].scrape_interval, Duration::from_secs(5));
        assert!(m.scrape_configs[0].static_configs[0].labels.contains(&("project".into(), "shop".into())));
        let rule = &m.groups[0].rules[0];
        assert!(rule.labels.contains(&("project".into(), "shop".into())), "{:?}", rule.labels);
        assert_eq!(m.groups[0].file, "shop/mobius.yaml");
        let am = m.alertmanager.unwrap();
        assert_eq!(am.route.receiver, "shop/team");
        assert_eq!(am.route.routes[0].receiver, "shop/pager");
        assert_eq!(am.route.matchers[0].name, "project");
        assert_eq!(am.receivers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["shop/team", "shop/pager"]);
        assert_eq!(m.oncall.people[0].name, "shop/ann");
        assert_eq!(m.oncall.people[0].receiver, "shop/pager");
        let policy = &m.oncall.policies[0];
        assert_eq!(policy.receiver.as_deref(), Some("shop/pager"));
        assert_eq!(policy.levels[0].targets, [Target::Person("shop/ann".into())]);
        assert!(policy.matchers.iter().any(|m| m.name == "project" && m.matches("shop")));
    }

    #[test]
    fn no_section_is_no_monitoring_and_problems_name_line_and_column() {
        assert!(parse_project_monitoring(SourceFile::new("mobius.yaml", "services: {}\n"), "shop").unwrap().is_none());
        let text = "monitoring:
  prometheus:
    rule_files: [x.yml]
    scrape_configs:
      - job_name: a
        file_sd_configs: [{files: [/etc/passwd]}]
  oncall:
    people:
      - name: ann
        receiver: nobody
";
        let err = parse_project_monitoring(SourceFile::new("mobius.yaml", text), "shop").unwrap_err();
        let found: Vec<String> = err.diagnostics.iter().map(|d| d.short()).collect();
        assert!(found.iter().any(|d| d.starts_with("3:5 ") && d.contains("monitoring.rules")), "{found:?}");
        assert!(found.iter().any(|d| d.starts_with("6:9 ") && d.contains("file_sd_configs")), "{found:?}");
        assert!(found.iter().any(|d| d.starts_with("10:19 ") && d.contains("nobody")), "{found:?}");
    }
}
