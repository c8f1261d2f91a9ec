//! From a YAML tree to a validated [`Workflow`], collecting every problem at once.

use crate::expr::{self, split_template, Segment};
use crate::model::*;
use indexmap::IndexMap;
use mobius_config::diagnostic::{Diagnostic, FileErrors, SourceFile};
use mobius_config::yaml::{self, Node, NodeValue, Pos};
use std::collections::{HashMap, HashSet};

const WORKFLOW_KEYS: &[&str] = &["name", "run-name", "on", "env", "defaults", "concurrency", "permissions", "jobs"];
const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "runs-on",
    "strategy",
    "env",
    "defaults",
    "steps",
    "outputs",
    "timeout-minutes",
    "continue-on-error",
    "uses",
    "with",
    "secrets",
    "container",
    "services",
    "concurrency",
    "permissions",
    "environment",
    "snapshot",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "run",
    "uses",
    "with",
    "env",
    "shell",
    "working-directory",
    "continue-on-error",
    "timeout-minutes",
];
const KNOWN_EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
    "image_version",
];
const PERMISSION_SCOPES: &[&str] = &[
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];

/// The contexts GitHub makes available to each kind of field (its "context availability" table).
pub(crate) mod available {
    pub const ALL: &[&str] = super::expr::CONTEXTS;
    pub const RUN_NAME: &[&str] = &["github", "inputs", "vars"];
    pub const WORKFLOW_ENV: &[&str] = &["github", "secrets", "inputs", "vars"];
    pub const WORKFLOW_LEVEL: &[&str] = &["github", "inputs", "vars"];
    pub const JOB_IF: &[&str] = &["github", "needs", "vars", "inputs"];
    pub const JOB_STRATEGY: &[&str] = &["github", "needs", "vars", "inputs"];
    pub const JOB_LEVEL: &[&str] = &["github", "needs", "strategy", "matrix", "vars", "inputs"];
    pub const JOB_ENV: &[&str] = &["github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"];
    pub const JOB_DEFAULTS: &[&str] = &["github", "needs", "strategy", "matrix", "env", "vars", "inputs"];
    pub const JOB_OUTPUTS: &[&str] =
        &["github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "steps", "inputs"];
    pub const STEP: &[&str] = JOB_OUTPUTS;
    pub const CALL_OUTPUTS: &[&str] = &["github", "jobs", "vars", "inputs"];
    /// `container.credentials` and a service's.
    pub const CONTAINER_CREDENTIALS: &[&str] =
        &["github", "needs", "strategy", "matrix", "env", "vars", "secrets", "inputs"];
    /// `container.env` and a service's.
    pub const CONTAINER_ENV: &[&str] =
        &["github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "inputs"];
}

/// Collects diagnostics while walking one file.
pub(crate) struct Ctx<'a> {
    pub file: &'a SourceFile,
    pub diagnostics: Vec<Diagnostic>,
    /// Contexts the expressions being checked may name.
    pub allowed: &'static [&'static str],
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a SourceFile) -> Self {
        Ctx { file, diagnostics: Vec::new(), allowed: available::ALL }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(pos, message));
    }

    pub fn finish<T>(self, value: T) -> Result<T, FileErrors> {
        if self.diagnostics.is_empty() {
            Ok(value)
        } else {
            let mut diagnostics = self.diagnostics;
            diagnostics.sort_by_key(|d| d.pos);
            diagnostics.dedup();
            Err(FileErrors { file: self.file.clone(), diagnostics })
        }
    }

    /// Checks a mapping's keys against the allowed set, reporting unknown ones.
    pub fn check_keys(&mut self, node: &Node, allowed: &[&str], what: &str) {
        let Some(map) = node.as_map() else { return };
        for (key, _) in map {
            let Some(name) = key.as_str() else {
                self.error(key.pos, format!("{what} keys must be strings, found a {}", key.kind()));
                continue;
            };
            if !allowed.contains(&name) {
                self.diagnostics.push(mobius_config::unknown_key(key.pos, name, what, allowed));
            }
        }
    }

    pub fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            NodeValue::Map(m) => Some(m),
            _ => {
                self.error(node.pos, format!("{what} must be a mapping, found a {}", node.kind()));
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            NodeValue::String(s) => Some(s.clone()),
            NodeValue::Number(_) | NodeValue::Bool(_) => node.scalar_string(),
            _ => {
                self.error(node.pos, format!("{what} must be a string, found a {}", node.kind()));
                None
            }
        }
    }

    /// A string or a sequence of strings.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            NodeValue::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            NodeValue::Null => Vec::new(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    /// Parses every `${{ }}` inside a node, reporting syntax errors at their exact position.
    pub fn check_expressions(&mut self, node: &Node) {
        match &node.value {
            NodeValue::String(text) => self.check_template(node.pos, text),
            NodeValue::Seq(items) => items.iter().for_each(|i| self.check_expressions(i)),
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    if let Some(key) = k.as_str() {
                        if key.trim().starts_with("${{") && is_insert(key) {
                            self.check_expressions(v);
                            continue;
                        }
                    }
                    self.check_expressions(k);
                    self.check_expressions(v);
                }
            }
            _ => {}
        }
    }

    fn check_template(&mut self, pos: Pos, text: &str) {
        if !text.contains("${{") {
            return;
        }
        match split_template(text) {
            Err(e) => {
                let at = self.file.locate(pos, &text[e.offset..text.len().min(e.offset + 3)], 0);
                self.error(at, format!("invalid expression: {}", e.message));
            }
            Ok(segments) => {
                for segment in segments {
                    if let Segment::Expr { expr, offset } = segment {
                        let parsed = expr::parse(&expr);
                        if let Ok(parsed) = &parsed {
                            if let Some(name) = self.unavailable(parsed) {
                                let open = offset.saturating_sub(3);
                                let needle = &text[open..(offset + expr.len() + 2).min(text.len())];
                                let at = self.file.locate(pos, needle, 0);
                                self.diagnostics.push(self.unavailable_diagnostic(at, &name));
                            }
                        }
                        if let Err(e) = parsed {
                            let open = offset.saturating_sub(3);
                            let needle = &text[open..(offset + expr.len() + 2).min(text.len())];
                            let at = self.file.locate(pos, needle, 3 + e.offset);
                            self.diagnostics.push(
                                Diagnostic::new(at, format!("invalid expression '{}': {}", expr.trim(), e.message))
                                    .with_len(expr.len().saturating_sub(e.offset).max(1)),
                            );
                        }
                    }
                }
            }
        }
    }

    /// The first context an expression names that is not available here.
    fn unavailable(&self, parsed: &expr::Expr) -> Option<String> {
        let mut names = Vec::new();
        parsed.contexts(&mut names);
        names.into_iter().find(|n| !self.allowed.contains(&n.as_str()))
    }

    fn unavailable_diagnostic(&self, at: Pos, name: &str) -> Diagnostic {
        Diagnostic::new(at, format!("the '{name}' context is not available here"))
            .with_help(format!("available here: {}", self.allowed.join(", ")))
    }

    /// Parses an `if:` value.
    pub fn condition(&mut self, node: &Node) -> Option<Condition> {
        let source = match &node.value {
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Number(_) => node.scalar_string().unwrap_or_default(),
            NodeValue::String(s) => s.clone(),
            NodeValue::Null => return None,
            _ => {
                self.error(node.pos, format!("'if' must be a string, found a {}", node.kind()));
                return None;
            }
        };
        let trimmed = source.trim();
        let single = trimmed.starts_with("${{")
            && trimmed.ends_with("}}")
            && split_template(trimmed).is_ok_and(|s| s.len() == 1);
        let (text, inner_offset) = if single {
            let start = source.find("${{").unwrap_or(0) + 3;
            (&trimmed[3..trimmed.len() - 2], start)
        } else if trimmed.contains("${{") {
            self.check_template(node.pos, &source);
            return Some(Condition { source: source.clone(), pos: node.pos, kind: ConditionKind::Template(source) });
        } else {
            (trimmed, source.find(trimmed).unwrap_or(0))
        };
        match expr::parse(text) {
            Ok(e) => {
                if let Some(name) = self.unavailable(&e) {
                    let d = self.unavailable_diagnostic(node.pos, &name);
                    self.diagnostics.push(d);
                }
                Some(Condition { source: source.clone(), pos: node.pos, kind: ConditionKind::Expr(e) })
            }
            Err(e) => {
                let at = self.file.locate(node.pos, text, e.offset);
                let at = if at == node.pos && inner_offset + e.offset > 0 && !source.contains('\n') {
                    Pos { line: node.pos.line, col: node.pos.col + inner_offset + e.offset }
                } else {
                    at
                };
                self.error(at, format!("invalid expression in 'if' '{}': {}", text.trim(), e.message));
                None
            }
        }
    }
}

/// Whether a mapping key is GitHub's `${{ insert }}` directive.
pub fn is_insert(key: &str) -> bool {
    let t = key.trim();
    t.starts_with("${{") && t.ends_with("}}") && t[3..t.len() - 2].trim() == "insert"
}

/// Parses and validates a workflow file's text.
pub fn parse_workflow(file: SourceFile) -> Result<Workflow, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => {
            return Err(FileErrors {
                file: file.clone(),
                diagnostics: vec![Diagnostic::new(e.pos, format!("invalid YAML: {}", e.message))],
            })
        }
    };
    let mut ctx = Ctx::new(&file);
    let workflow = workflow_from(&mut ctx, &root);
    let workflow = ctx.finish(workflow)?;
    Ok(workflow)
}

fn workflow_from(ctx: &mut Ctx, root: &Node) -> Workflow {
    let mut wf = Workflow {
        file: ctx.file.clone(),
        name: None,
        run_name: None,
        triggers: IndexMap::new(),
        env: None,
        defaults: RunDefaults::default(),
        concurrency: None,
        permissions: None,
        jobs: IndexMap::new(),
    };
    if ctx.expect_map(root, "a workflow").is_none() {
        return wf;
    }
    ctx.check_keys(root, WORKFLOW_KEYS, "the workflow");
    wf.name = root.get("name").and_then(|n| ctx.string(n, "'name'"));
    if let Some(n) = root.get("run-name") {
        ctx.allowed = available::RUN_NAME;
        ctx.check_expressions(n);
        wf.run_name = Some(n.clone());
    }
    match root.get("on") {
        Some(on) => wf.triggers = triggers(ctx, on),
        None => ctx.error(root.pos, "the workflow has no 'on' key: say which events trigger it"),
    }
    if let Some(env) = root.get("env") {
        ctx.allowed = available::WORKFLOW_ENV;
        env_node(ctx, env);
        wf.env = Some(env.clone());
    }
    ctx.allowed = available::WORKFLOW_LEVEL;
    if let Some(d) = root.get("defaults") {
        wf.defaults = defaults(ctx, d);
    }
    if let Some(c) = root.get("concurrency") {
        concurrency(ctx, c);
        wf.concurrency = Some(c.clone());
    }
    wf.permissions = root.get("permissions").and_then(|p| permissions(ctx, p));
    match root.get("jobs") {
        None => ctx.error(root.pos, "the workflow has no 'jobs'"),
        Some(jobs) => {
            if let Some(entries) = ctx.expect_map(jobs, "'jobs'") {
                if entries.is_empty() {
                    ctx.error(jobs.pos, "'jobs' is empty");
                }
                for (key, value) in entries {
                    let Some(id) = ctx.string(key, "a job id") else {
                        continue;
                    };
                    if !valid_job_id(&id) {
                        ctx.error(
                            key.pos,
                            format!("invalid job id '{id}': it must start with a letter or '_' and contain only letters, digits, '-' and '_'"),
                        );
                    }
                    if let Some(job) = job(ctx, &id, key.pos, value) {
                        wf.jobs.insert(id, job);
                    }
                }
            }
        }
    }
    check_needs(ctx, root, &wf.jobs);
    wf
}

fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn env_node(ctx: &mut Ctx, node: &Node) {
    match &node.value {
        NodeValue::Map(entries) => {
            for (_, v) in entries {
                if matches!(v.value, NodeValue::Seq(_) | NodeValue::Map(_)) {
                    ctx.error(v.pos, format!("environment values must be scalars, found a {}", v.kind()));
                }
            }
            ctx.check_expressions(node);
        }
        NodeValue::String(_) => ctx.check_expressions(node),
        _ => ctx.error(node.pos, format!("'env' must be a mapping, found a {}", node.kind())),
    }
}

fn concurrency(ctx: &mut Ctx, node: &Node) {
    match &node.value {
        NodeValue::String(_) => ctx.check_expressions(node),
        NodeValue::Map(_) => {
            ctx.check_keys(node, &["group", "cancel-in-progress"], "'concurrency'");
            if node.get("group").is_none() {
                ctx.error(node.pos, "'concurrency' needs a 'group'");
            }
            ctx.check_expressions(node);
        }
        _ => ctx.error(node.pos, "'concurrency' must be a string or a mapping with 'group'"),
    }
}

fn permissions(ctx: &mut Ctx, node: &Node) -> Option<Permissions> {
    match &node.value {
        NodeValue::String(s) => match s.as_str() {
            "read-all" => Some(Permissions::ReadAll),
            "write-all" => Some(Permissions::WriteAll),
            other => {
                ctx.error(
                    node.pos,
                    format!("invalid permissions '{other}': expected read-all, write-all or a mapping"),
                );
                None
            }
        },
        NodeValue::Map(entries) if entries.is_empty() => Some(Permissions::None),
        NodeValue::Map(entries) => {
            let mut scopes = IndexMap::new();
            for (k, v) in entries {
                let Some(scope) = k.as_str() else { continue };
                if !PERMISSION_SCOPES.contains(&scope) {
                    ctx.diagnostics.push(
                        Diagnostic::new(k.pos, format!("unknown permission scope '{scope}'"))
                            .with_help(format!("scopes: {}", PERMISSION_SCOPES.join(", "))),
                    );
                    continue;
                }
                let level = v.as_str().unwrap_or_default();
                let allowed: &[&str] = if scope == "id-token" || scope == "models" {
                    &["write", "read", "none"]
                } else {
                    &["read", "write", "none"]
                };
                if !allowed.contains(&level) {
                    ctx.error(
                        v.pos,
                        format!("invalid level '{level}' for permission '{scope}': expected read, write or none"),
                    );
                    continue;
                }
                scopes.insert(scope.to_string(), level.to_string());
            }
            Some(Permissions::Scopes(scopes))
        }
        _ => {
            ctx.error(node.pos, "'permissions' must be read-all, write-all or a mapping");
            None
        }
    }
}

fn defaults(ctx: &mut Ctx, node: &Node) -> RunDefaults {
    let mut out = RunDefaults::default();
    if ctx.expect_map(node, "'defaults'").is_none() {
        return out;
    }
    ctx.check_keys(node, &["run"], "'defaults'");
    if let Some(run) = node.get("run") {
        if ctx.expect_map(run, "'defaults.run'").is_some() {
            ctx.check_keys(run, &["shell", "working-directory"], "'defaults.run'");
            ctx.check_expressions(run);
            out.shell = run.get("shell").and_then(|s| ctx.string(s, "'shell'"));
            out.working_directory = run.get("working-directory").and_then(|s| ctx.string(s, "'working-directory'"));
        }
    }
    out
}

fn triggers(ctx: &mut Ctx, on: &Node) -> IndexMap<String, Trigger> {
    let mut out = IndexMap::new();
    let add = |ctx: &mut Ctx, name: &str, pos: Pos| {
        if !KNOWN_EVENTS.contains(&name) {
            ctx.diagnostics.push(Diagnostic::new(pos, format!("unknown event '{name}' in 'on'")).with_len(name.len()));
        }
    };
    match &on.value {
        NodeValue::String(name) => {
            add(ctx, name, on.pos);
            out.insert(name.clone(), Trigger::default());
        }
        NodeValue::Seq(items) => {
            for item in items {
                if let Some(name) = ctx.string(item, "an event name") {
                    add(ctx, &name, item.pos);
                    out.insert(name, Trigger::default());
                }
            }
        }
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let Some(name) = ctx.string(k, "an event name") else {
                    continue;
                };
                add(ctx, &name, k.pos);
                let trigger = trigger(ctx, &name, v);
                out.insert(name, trigger);
            }
        }
        _ => ctx.error(on.pos, "'on' must be an event name, a list of events or a mapping"),
    }
    out
}

fn trigger(ctx: &mut Ctx, event: &str, node: &Node) -> Trigger {
    let mut t = Trigger::default();
    if event == "schedule" {
        let Some(items) = node.as_seq() else {
            ctx.error(node.pos, "'schedule' must be a sequence of '- cron: ...' entries");
            return t;
        };
        for item in items {
            ctx.check_keys(item, &["cron", "timezone"], "a schedule");
            match item.get("cron").and_then(|c| c.as_str().map(|s| (c.pos, s.to_string()))) {
                Some((pos, cron)) => {
                    if let Err(e) = cron.parse::<croner::Cron>() {
                        ctx.error(pos, format!("invalid cron expression '{cron}': {e}"));
                    } else if cron.split_whitespace().count() != 5 {
                        ctx.error(
                            pos,
                            format!("invalid cron expression '{cron}': GitHub schedules have exactly 5 fields"),
                        );
                    }
                    t.crons.push(cron);
                }
                None => ctx.error(item.pos, "a schedule entry needs 'cron'"),
            }
        }
        return t;
    }
    match &node.value {
        NodeValue::Null => return t,
        NodeValue::Map(_) => {}
        _ => {
            ctx.error(node.pos, format!("the configuration of '{event}' must be a mapping"));
            return t;
        }
    }
    let allowed: &[&str] = match event {
        "push" => &["branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore"],
        "pull_request" | "pull_request_target" => &["types", "branches", "branches-ignore", "paths", "paths-ignore"],
        "workflow_dispatch" => &["inputs"],
        "workflow_call" => &["inputs", "outputs", "secrets"],
        "workflow_run" => &["types", "workflows", "branches", "branches-ignore"],
        _ => &["types"],
    };
    ctx.check_keys(node, allowed, &format!("'on.{event}'"));
    let list = |ctx: &mut Ctx, key: &str| node.get(key).map(|n| ctx.string_list(n, &format!("'{key}'")));
    t.types = list(ctx, "types").unwrap_or_default();
    t.branches = list(ctx, "branches");
    t.branches_ignore = list(ctx, "branches-ignore");
    t.tags = list(ctx, "tags");
    t.tags_ignore = list(ctx, "tags-ignore");
    t.paths = list(ctx, "paths");
    t.paths_ignore = list(ctx, "paths-ignore");
    for (a, b, an, bn) in [
        (&t.branches, &t.branches_ignore, "branches", "branches-ignore"),
        (&t.tags, &t.tags_ignore, "tags", "tags-ignore"),
        (&t.paths, &t.paths_ignore, "paths", "paths-ignore"),
    ] {
        if a.is_some() && b.is_some() {
            let pos = node.get(bn).map_or(node.pos, |n| n.pos);
            ctx.error(pos, format!("'{an}' and '{bn}' cannot both be used for the same event"));
        }
    }
    for patterns in
        [&t.branches, &t.branches_ignore, &t.tags, &t.tags_ignore, &t.paths, &t.paths_ignore].into_iter().flatten()
    {
        for p in patterns {
            if let Err(e) = crate::filter::compile(p) {
                ctx.error(node.pos, format!("invalid filter pattern '{p}': {e}"));
            }
        }
    }
    if let Some(inputs) = node.get("inputs") {
        if let Some(entries) = ctx.expect_map(inputs, "'inputs'") {
            for (k, v) in entries {
                let Some(name) = ctx.string(k, "an input name") else {
                    continue;
                };
                t.inputs.insert(name, input_spec(ctx, event, v, k.pos));
            }
        }
    }
    if let Some(outputs) = node.get("outputs") {
        if let Some(entries) = ctx.expect_map(outputs, "'outputs'") {
            for (k, v) in entries {
                let Some(name) = ctx.string(k, "an output name") else {
                    continue;
                };
                ctx.check_keys(v, &["description", "value"], &format!("output '{name}'"));
                match v.get("value") {
                    Some(value) => {
                        ctx.allowed = available::CALL_OUTPUTS;
                        ctx.check_expressions(value);
                        ctx.allowed = available::ALL;
                        t.outputs.insert(name, value.clone());
                    }
                    None => ctx.error(v.pos, format!("workflow_call output '{name}' needs a 'value'")),
                }
            }
        }
    }
    if let Some(secrets) = node.get("secrets") {
        if let Some(entries) = ctx.expect_map(secrets, "'secrets'") {
            for (k, v) in entries {
                let Some(name) = ctx.string(k, "a secret name") else {
                    continue;
                };
                ctx.check_keys(v, &["description", "required"], &format!("secret '{name}'"));
                let required = v.get("required").is_some_and(|r| r.value == NodeValue::Bool(true));
                t.secrets.insert(name, required);
            }
        }
    }
    t
}

fn input_spec(ctx: &mut Ctx, event: &str, node: &Node, pos: Pos) -> InputSpec {
    let mut spec = InputSpec { description: None, required: false, default: None, kind: InputType::String, pos };
    if node.is_null() {
        return spec;
    }
    if ctx.expect_map(node, "an input").is_none() {
        return spec;
    }
    ctx.check_keys(node, &["description", "required", "default", "type", "options", "deprecationMessage"], "an input");
    spec.description = node.get("description").and_then(|d| d.scalar_string());
    spec.required = match node.get("required").map(|r| &r.value) {
        Some(NodeValue::Bool(b)) => *b,
        Some(NodeValue::Null) | None => false,
        Some(_) => {
            ctx.error(node.get("required").map_or(node.pos, |r| r.pos), "'required' must be true or false");
            false
        }
    };
    spec.default = node.get("default").cloned();
    if let Some(kind) = node.get("type") {
        let name = kind.as_str().unwrap_or_default();
        spec.kind = match (name, event) {
            ("string", _) => InputType::String,
            ("boolean", _) => InputType::Boolean,
            ("number", _) => InputType::Number,
            ("choice", "workflow_dispatch") => {
                let options = node.get("options").map(|o| ctx.string_list(o, "'options'")).unwrap_or_default();
                if options.is_empty() {
                    ctx.error(kind.pos, "a 'choice' input needs 'options'");
                }
                InputType::Choice(options)
            }
            ("environment", "workflow_dispatch") => InputType::Environment,
            _ => {
                let allowed = if event == "workflow_dispatch" {
                    "string, boolean, number, choice or environment"
                } else {
                    "string, boolean or number"
                };
                ctx.error(kind.pos, format!("invalid input type '{name}': expected {allowed}"));
                InputType::String
            }
        };
    }
    if let (Some(default), InputType::Boolean) = (&spec.default, &spec.kind) {
        if !matches!(default.value, NodeValue::Bool(_)) && !default.as_str().is_some_and(expr::contains_expression) {
            ctx.error(default.pos, "the default of a boolean input must be true or false");
        }
    }
    spec
}

fn job(ctx: &mut Ctx, id: &str, pos: Pos, node: &Node) -> Option<Job> {
    ctx.expect_map(node, &format!("job '{id}'"))?;
    ctx.check_keys(node, JOB_KEYS, &format!("job '{id}'"));
    ctx.allowed = available::JOB_IF;
    let condition = node.get("if").and_then(|c| ctx.condition(c));
    ctx.allowed = available::JOB_DEFAULTS;
    let job_defaults = node.get("defaults").map(|d| defaults(ctx, d)).unwrap_or_default();
    ctx.allowed = available::JOB_LEVEL;
    let mut job = Job {
        id: id.to_string(),
        pos,
        name: node.get("name").cloned(),
        needs: Vec::new(),
        condition,
        runs_on: node.get("runs-on").cloned(),
        strategy: None,
        env: None,
        defaults: job_defaults,
        steps: Vec::new(),
        outputs: Vec::new(),
        timeout_minutes: node.get("timeout-minutes").cloned(),
        continue_on_error: node.get("continue-on-error").cloned(),
        uses: None,
        with: node.get("with").cloned(),
        secrets: None,
        container: node.get("container").cloned(),
        services: node.get("services").cloned(),
        concurrency: node.get("concurrency").cloned(),
        permissions: node.get("permissions").and_then(|p| permissions(ctx, p)),
        environment: node.get("environment").cloned(),
    };
    for key in ["name", "runs-on", "timeout-minutes", "continue-on-error", "with", "environment"] {
        if let Some(n) = node.get(key) {
            ctx.check_expressions(n);
        }
    }
    if let Some(c) = node.get("container") {
        check_container(ctx, c);
    }
    if let Some(services) = node.get("services") {
        match services.as_map() {
            Some(map) => map.iter().for_each(|(_, service)| check_container(ctx, service)),
            None => ctx.check_expressions(services),
        }
    }
    if let Some(c) = node.get("concurrency") {
        concurrency(ctx, c);
    }
    if let Some(needs) = node.get("needs") {
        for item in match &needs.value {
            NodeValue::Seq(items) => items.iter().collect::<Vec<_>>(),
            _ => vec![needs],
        } {
            if let Some(name) = ctx.string(item, "'needs'") {
                job.needs.push(name);
            }
        }
    }
    if let Some(env) = node.get("env") {
        ctx.allowed = available::JOB_ENV;
        env_node(ctx, env);
        ctx.allowed = available::JOB_LEVEL;
        job.env = Some(env.clone());
    }
    if let Some(strategy) = node.get("strategy") {
        if ctx.expect_map(strategy, "'strategy'").is_some() {
            ctx.check_keys(strategy, &["matrix", "fail-fast", "max-parallel"], "'strategy'");
            ctx.allowed = available::JOB_STRATEGY;
            ctx.check_expressions(strategy);
            ctx.allowed = available::JOB_LEVEL;
            if let Some(matrix) = strategy.get("matrix") {
                match &matrix.value {
                    NodeValue::Map(entries) => {
                        for (k, v) in entries {
                            let key = k.as_str().unwrap_or_default();
                            let is_expr = key.contains("${{");
                            match key {
                                "include" | "exclude" => {
                                    if !matches!(v.value, NodeValue::Seq(_))
                                        && !v.as_str().is_some_and(expr::contains_expression)
                                    {
                                        ctx.error(v.pos, format!("matrix '{key}' must be a sequence of mappings"));
                                    }
                                }
                                _ if is_expr => {}
                                _ => {
                                    if !matches!(v.value, NodeValue::Seq(_))
                                        && !v.as_str().is_some_and(expr::contains_expression)
                                    {
                                        ctx.error(
                                            v.pos,
                                            format!(
                                                "matrix '{key}' must be a sequence of values, found a {}",
                                                v.kind()
                                            ),
                                        );
                                    } else if v.as_seq().is_some_and(<[Node]>::is_empty) {
                                        ctx.error(v.pos, format!("matrix '{key}' is empty"));
                                    }
                                }
                            }
                        }
                    }
                    NodeValue::String(s) if expr::contains_expression(s) => {}
                    _ => ctx.error(matrix.pos, "'matrix' must be a mapping or an expression"),
                }
            }
            job.strategy = Some(Strategy {
                matrix: strategy.get("matrix").cloned(),
                fail_fast: strategy.get("fail-fast").cloned(),
                max_parallel: strategy.get("max-parallel").cloned(),
            });
        }
    }
    if let Some(outputs) = node.get("outputs") {
        if let Some(entries) = ctx.expect_map(outputs, "'outputs'") {
            for (k, v) in entries {
                if let Some(name) = ctx.string(k, "an output name") {
                    ctx.allowed = available::JOB_OUTPUTS;
                    ctx.check_expressions(v);
                    ctx.allowed = available::JOB_LEVEL;
                    job.outputs.push((name, v.clone()));
                }
            }
        }
    }
    if let Some(uses) = node.get("uses") {
        if let Some(u) = ctx.string(uses, "'uses'") {
            job.uses = Some((u, uses.pos));
        }
        for key in ["steps", "runs-on", "container", "services", "defaults", "timeout-minutes", "env"] {
            if let Some(n) = node.get(key) {
                ctx.error(n.pos, format!("job '{id}' calls a reusable workflow, so it cannot have '{key}'"));
            }
        }
        job.secrets = node.get("secrets").map(|s| match s.as_str() {
            Some("inherit") => JobSecrets::Inherit,
            _ => {
                ctx.allowed = available::JOB_ENV;
                ctx.check_expressions(s);
                ctx.allowed = available::JOB_LEVEL;
                JobSecrets::Map(s.clone())
            }
        });
    } else {
        if node.get("runs-on").is_none() {
            ctx.error(pos, format!("job '{id}' needs 'runs-on' (or 'uses' to call a reusable workflow)"));
        }
        if let Some(n) = node.get("with").or(node.get("secrets")) {
            ctx.error(n.pos, format!("job '{id}' has 'with'/'secrets' but no 'uses'"));
        }
        match node.get("steps") {
            None => ctx.error(pos, format!("job '{id}' has no 'steps'")),
            Some(steps) => match steps.as_seq() {
                Some(items) => {
                    if items.is_empty() {
                        ctx.error(steps.pos, format!("job '{id}' has an empty 'steps' list"));
                    }
                    job.steps = parse_steps(ctx, items, false);
                }
                None => ctx.error(steps.pos, "'steps' must be a sequence"),
            },
        }
    }
    Some(job)
}

/// Parses steps of a job, or of a composite action when `composite` (where `shell` is required).
pub(crate) fn parse_steps(ctx: &mut Ctx, items: &[Node], composite: bool) -> Vec<Step> {
    let outer = ctx.allowed;
    ctx.allowed = available::STEP;
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (index, node) in items.iter().enumerate() {
        if ctx.expect_map(node, "a step").is_none() {
            continue;
        }
        ctx.check_keys(node, STEP_KEYS, "a step");
        let id = node.get("id").and_then(|i| ctx.string(i, "'id'"));
        if let Some(id) = &id {
            if !valid_job_id(id) {
                ctx.error(node.get("id").map_or(node.pos, |n| n.pos), format!("invalid step id '{id}'"));
            } else if !ids.insert(id.clone()) {
                ctx.error(node.get("id").map_or(node.pos, |n| n.pos), format!("the step id '{id}' is used twice"));
            }
        }
        for key in ["name", "with", "env", "continue-on-error", "timeout-minutes", "run", "shell", "working-directory"]
        {
            if let Some(n) = node.get(key) {
                ctx.check_expressions(n);
            }
        }
        if let Some(env) = node.get("env") {
            env_node(ctx, env);
        }
        let action = match (node.get("run"), node.get("uses")) {
            (Some(_), Some(uses)) => {
                ctx.error(uses.pos, "a step cannot have both 'run' and 'uses'");
                continue;
            }
            (None, None) => {
                ctx.error(node.pos, "a step needs 'run' or 'uses'");
                continue;
            }
            (Some(run), None) => {
                if run.as_seq().is_some() || run.as_map().is_some() {
                    ctx.error(run.pos, "'run' must be a string");
                    continue;
                }
                if composite && node.get("shell").is_none() {
                    ctx.error(node.pos, "a 'run' step in a composite action needs 'shell'");
                }
                if node.get("with").is_some() {
                    ctx.error(node.pos, "a 'run' step cannot have 'with'");
                }
                StepAction::Run {
                    script: run.clone(),
                    shell: node.get("shell").cloned(),
                    working_directory: node.get("working-directory").cloned(),
                }
            }
            (None, Some(uses)) => {
                let Some(u) = ctx.string(uses, "'uses'") else {
                    continue;
                };
                if u.trim().is_empty() {
                    ctx.error(uses.pos, "'uses' is empty");
                    continue;
                }
                if !u.starts_with("./") && !u.starts_with("docker://") && !u.contains('@') && !u.starts_with('/') {
                    ctx.diagnostics.push(
                        Diagnostic::new(uses.pos, format!("'{u}' is not a valid action reference"))
                            .with_help("use owner/repo@ref, ./local/path or docker://image"),
                    );
                }
                for key in ["shell", "working-directory"] {
                    if let Some(n) = node.get(key) {
                        ctx.error(n.pos, format!("'{key}' only applies to 'run' steps"));
                    }
                }
                StepAction::Uses { uses: u }
            }
        };
        out.push(Step {
            index,
            pos: node.pos,
            id,
            name: node.get("name").cloned(),
            condition: node.get("if").and_then(|c| ctx.condition(c)),
            action,
            with: node.get("with").cloned(),
            env: node.get("env").cloned(),
            continue_on_error: node.get("continue-on-error").cloned(),
            timeout_minutes: node.get("timeout-minutes").cloned(),
        });
    }
    ctx.allowed = outer;
    out
}

/// Unknown `needs` and cycles, each reported where it is written.
fn check_needs(ctx: &mut Ctx, root: &Node, jobs: &IndexMap<String, Job>) {
    let job_nodes = root.get("jobs");
    let needs_pos = |job: &str, need: &str| -> Pos {
        let Some(node) = job_nodes.and_then(|j| j.get(job)).and_then(|j| j.get("needs")) else {
            return Pos::default();
        };
        match &node.value {
            NodeValue::Seq(items) => items.iter().find(|i| i.as_str() == Some(need)).map_or(node.pos, |i| i.pos),
            _ => node.pos,
        }
    };
    for job in jobs.values() {
        for need in &job.needs {
            if !jobs.contains_key(need) {
                let mut d = Diagnostic::new(
                    needs_pos(&job.id, need),
                    format!("job '{}' needs '{need}', which is not a job of this workflow", job.id),
                )
                .with_len(need.len());
                if let Some(close) = mobius_config::closest(need, jobs.keys().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{close}`?"));
                }
                ctx.diagnostics.push(d);
            } else if need == &job.id {
                ctx.error(needs_pos(&job.id, need), format!("job '{}' needs itself", job.id));
            }
        }
    }
    // Cycle detection by depth-first search, reporting each cycle once.
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        id: &'a str,
        jobs: &'a IndexMap<String, Job>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        match state.get(id) {
            Some(2) => return,
            Some(1) => {
                if let Some(start) = path.iter().position(|p| *p == id) {
                    cycles.push(path[start..].to_vec());
                }
                return;
            }
            _ => {}
        }
        state.insert(id, 1);
        path.push(id);
        if let Some(job) = jobs.get(id) {
            for need in &job.needs {
                if need != id && jobs.contains_key(need) {
                    visit(need, jobs, state, path, cycles);
                }
            }
        }
        path.pop();
        state.insert(id, 2);
    }
    let mut cycles = Vec::new();
    for id in jobs.keys() {
        visit(id, jobs, &mut state, &mut Vec::new(), &mut cycles);
    }
    for cycle in cycles {
        let first = cycle[0];
        let last = cycle[cycle.len() - 1];
        let mut names: Vec<&str> = cycle.clone();
        names.push(first);
        ctx.error(
            needs_pos(first, cycle.get(1).copied().unwrap_or(last)),
            format!("the jobs' needs form a cycle: {}", names.join(" -> ")),
        );
    }
}

/// A `container:` or a service: `credentials` may use `secrets` and `env`, `env` also
/// `job` and `runner`, the rest what job-level fields may, as GitHub's table says.
fn check_container(ctx: &mut Ctx, node: &Node) {
    let Some(map) = node.as_map() else {
        ctx.check_expressions(node);
        return;
    };
    let outer = ctx.allowed;
    for (key, value) in map {
        ctx.allowed = match key.as_str() {
            Some("credentials") => available::CONTAINER_CREDENTIALS,
            Some("env") => available::CONTAINER_ENV,
            _ => outer,
        };
        ctx.check_expressions(value);
    }
    ctx.allowed = outer;
}
