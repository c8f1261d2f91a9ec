//! Action metadata files (`action.yml`): inputs, outputs and how the action runs.

use crate::model::{Condition, Step};
use crate::parse::{parse_steps, Ctx};
use indexmap::IndexMap;
use mobius_config::diagnostic::{Diagnostic, FileErrors, SourceFile};
use mobius_config::yaml::{self, Node, NodeValue};

/// An action input: its default value (a template) and whether it is required.
#[derive(Debug, Clone)]
pub struct ActionInput {
    pub default: Option<Node>,
    pub required: bool,
}

/// How an action runs.
#[derive(Debug, Clone)]
pub enum ActionRuns {
    Composite {
        steps: Vec<Step>,
    },
    Node {
        using: String,
        main: String,
        pre: Option<String>,
        post: Option<String>,
        pre_if: Option<Condition>,
        post_if: Option<Condition>,
    },
    /// `using: docker`: an image (`Dockerfile`, a path to one, or `docker://IMAGE`),
    /// run with `args` (templates over `inputs`), `entrypoint`, `env` and pre/post entrypoints.
    Docker {
        image: String,
        args: Vec<Node>,
        entrypoint: Option<String>,
        env: Option<Node>,
        pre_entrypoint: Option<String>,
        post_entrypoint: Option<String>,
        pre_if: Option<Condition>,
        post_if: Option<Condition>,
    },
}

#[derive(Debug, Clone)]
pub struct Action {
    pub file: SourceFile,
    pub name: Option<String>,
    pub inputs: IndexMap<String, ActionInput>,
    /// Output name to its value template (composite actions only have values).
    pub outputs: IndexMap<String, Option<Node>>,
    pub runs: ActionRuns,
}

/// Parses an `action.yml`/`action.yaml` file.
pub fn parse_action(file: SourceFile) -> Result<Action, FileErrors> {
    let root = yaml::parse(&file.text).map_err(|e| FileErrors {
        file: file.clone(),
        diagnostics: vec![Diagnostic::new(e.pos, format!("invalid YAML: {}", e.message))],
    })?;
    let mut ctx = Ctx::new(&file);
    let mut action = Action {
        file: file.clone(),
        name: None,
        inputs: IndexMap::new(),
        outputs: IndexMap::new(),
        runs: ActionRuns::Composite { steps: Vec::new() },
    };
    if ctx.expect_map(&root, "an action").is_none() {
        return ctx.finish(action);
    }
    ctx.check_keys(&root, &["name", "author", "description", "inputs", "outputs", "runs", "branding"], "the action");
    action.name = root.get("name").and_then(Node::scalar_string);
    if let Some(inputs) = root.get("inputs").and_then(Node::as_map) {
        for (k, v) in inputs {
            let Some(name) = k.as_str() else { continue };
            action.inputs.insert(
                name.to_string(),
                ActionInput {
                    default: v.get("default").cloned(),
                    required: v.get("required").is_some_and(|r| r.value == NodeValue::Bool(true)),
                },
            );
            if let Some(d) = v.get("default") {
                ctx.check_expressions(d);
            }
        }
    }
    if let Some(outputs) = root.get("outputs").and_then(Node::as_map) {
        for (k, v) in outputs {
            let Some(name) = k.as_str() else { continue };
            let value = v.get("value").cloned();
            if let Some(value) = &value {
                ctx.check_expressions(value);
            }
            action.outputs.insert(name.to_string(), value);
        }
    }
    let Some(runs) = root.get("runs") else {
        ctx.error(root.pos, "the action has no 'runs'");
        return ctx.finish(action);
    };
    let using = runs.get("using").and_then(Node::as_str).unwrap_or_default().to_string();
    action.runs = match using.as_str() {
        "composite" => {
            ctx.check_keys(runs, &["using", "steps"], "'runs'");
            let steps = match runs.get("steps").and_then(Node::as_seq) {
                Some(items) => parse_steps(&mut ctx, items, true),
                None => {
                    ctx.error(runs.pos, "a composite action needs 'runs.steps'");
                    Vec::new()
                }
            };
            ActionRuns::Composite { steps }
        }
        u if u.starts_with("node") => {
            ctx.check_keys(runs, &["using", "main", "pre", "post", "pre-if", "post-if"], "'runs'");
            let main = runs.get("main").and_then(Node::as_str).map(str::to_string);
            if main.is_none() {
                ctx.error(runs.pos, "a JavaScript action needs 'runs.main'");
            }
            ActionRuns::Node {
                using: using.clone(),
                main: main.unwrap_or_default(),
                pre: runs.get("pre").and_then(Node::as_str).map(str::to_string),
                post: runs.get("post").and_then(Node::as_str).map(str::to_string),
                pre_if: runs.get("pre-if").and_then(|c| ctx.condition(c)),
                post_if: runs.get("post-if").and_then(|c| ctx.condition(c)),
            }
        }
        "docker" => {
            ctx.check_keys(
                runs,
                &[
                    "using",
                    "image",
                    "args",
                    "entrypoint",
                    "env",
                    "pre-entrypoint",
                    "post-entrypoint",
                    "pre-if",
                    "post-if",
                ],
                "'runs'",
            );
            let image = runs.get("image").and_then(Node::as_str).map(str::to_string);
            if image.as_deref().is_none_or(|i| i.trim().is_empty()) {
                ctx.error(runs.pos, "a Docker action needs 'runs.image' (Dockerfile or docker://IMAGE)");
            }
            let args = match runs.get("args") {
                None => Vec::new(),
                Some(n) => match n.as_seq() {
                    Some(items) => items.to_vec(),
                    None => {
                        ctx.error(n.pos, "'runs.args' must be a list");
                        Vec::new()
                    }
                },
            };
            let text = |key: &str| runs.get(key).and_then(Node::as_str).map(str::to_string);
            ActionRuns::Docker {
                image: image.unwrap_or_default(),
                args,
                entrypoint: text("entrypoint"),
                env: runs.get("env").cloned(),
                pre_entrypoint: text("pre-entrypoint"),
                post_entrypoint: text("post-entrypoint"),
                pre_if: runs.get("pre-if").and_then(|c| ctx.condition(c)),
                post_if: runs.get("post-if").and_then(|c| ctx.condition(c)),
            }
        }
        other => {
            ctx.error(
                runs.get("using").map_or(runs.pos, |u| u.pos),
                format!("unsupported 'runs.using: {other}': expected composite, node12/16/20/24 or docker"),
            );
            ActionRuns::Composite { steps: Vec::new() }
        }
    };
    ctx.finish(action)
}
