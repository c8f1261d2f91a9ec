//! The validated workflow model. Fields that GitHub evaluates at run time keep
//! their YAML node (with positions) and are evaluated by the runner.

use crate::expr::Expr;
use indexmap::IndexMap;
use mobius_config::diagnostic::SourceFile;
use mobius_config::yaml::{Node, Pos};

/// A parsed, validated workflow file.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub file: SourceFile,
    pub name: Option<String>,
    pub run_name: Option<Node>,
    pub triggers: IndexMap<String, Trigger>,
    pub env: Option<Node>,
    pub defaults: RunDefaults,
    pub concurrency: Option<Node>,
    pub permissions: Option<Permissions>,
    pub jobs: IndexMap<String, Job>,
}

impl Workflow {
    /// The name shown for the workflow: its `name`, else its file path.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.file.path)
    }
}

/// One event under `on:` with its filters and inputs.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    pub types: Vec<String>,
    pub branches: Option<Vec<String>>,
    pub branches_ignore: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub tags_ignore: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub paths_ignore: Option<Vec<String>>,
    /// `workflow_dispatch` and `workflow_call` inputs.
    pub inputs: IndexMap<String, InputSpec>,
    /// `workflow_call` outputs: name to value expression.
    pub outputs: IndexMap<String, Node>,
    /// `workflow_call` secrets: name to required.
    pub secrets: IndexMap<String, bool>,
    /// `schedule` cron expressions.
    pub crons: Vec<String>,
}

/// The declared type of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputType {
    String,
    Boolean,
    Number,
    Choice(Vec<String>),
    Environment,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Node>,
    pub kind: InputType,
    pub pos: Pos,
}

/// `defaults.run`.
#[derive(Debug, Clone, Default)]
pub struct RunDefaults {
    pub shell: Option<String>,
    pub working_directory: Option<String>,
}

/// `permissions`: either a shorthand or per-scope levels.
#[derive(Debug, Clone, PartialEq)]
pub enum Permissions {
    ReadAll,
    WriteAll,
    None,
    Scopes(IndexMap<String, String>),
}

/// An `if:` condition, parsed.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub pos: Pos,
    pub kind: ConditionKind,
}

#[derive(Debug, Clone)]
pub enum ConditionKind {
    /// An expression (written bare or as one `${{ }}`).
    Expr(Expr),
    /// Text mixing literals and expressions: evaluated to a string, then truthiness.
    Template(String),
}

impl Condition {
    pub fn uses_status_function(&self) -> bool {
        match &self.kind {
            ConditionKind::Expr(e) => e.uses_status_function(),
            ConditionKind::Template(t) => {
                let lower = t.to_ascii_lowercase();
                ["success(", "failure(", "always(", "cancelled("].iter().any(|f| lower.contains(f))
            }
        }
    }
}

/// `strategy:`.
#[derive(Debug, Clone, Default)]
pub struct Strategy {
    pub matrix: Option<Node>,
    pub fail_fast: Option<Node>,
    pub max_parallel: Option<Node>,
}

/// How a reusable-workflow job passes secrets.
#[derive(Debug, Clone)]
pub enum JobSecrets {
    Inherit,
    Map(Node),
}

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub pos: Pos,
    pub name: Option<Node>,
    pub needs: Vec<String>,
    pub condition: Option<Condition>,
    pub runs_on: Option<Node>,
    pub strategy: Option<Strategy>,
    pub env: Option<Node>,
    pub defaults: RunDefaults,
    pub steps: Vec<Step>,
    pub outputs: Vec<(String, Node)>,
    pub timeout_minutes: Option<Node>,
    pub continue_on_error: Option<Node>,
    /// A reusable workflow called by this job (`uses: ./.github/workflows/x.yml`).
    pub uses: Option<(String, Pos)>,
    pub with: Option<Node>,
    pub secrets: Option<JobSecrets>,
    pub container: Option<Node>,
    pub services: Option<Node>,
    pub concurrency: Option<Node>,
    pub permissions: Option<Permissions>,
    pub environment: Option<Node>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepAction {
    Run { script: Node, shell: Option<Node>, working_directory: Option<Node> },
    Uses { uses: String },
}

/// A step of a job or of a composite action.
#[derive(Debug, Clone)]
pub struct Step {
    pub index: usize,
    pub pos: Pos,
    pub id: Option<String>,
    pub name: Option<Node>,
    pub condition: Option<Condition>,
    pub action: StepAction,
    pub with: Option<Node>,
    pub env: Option<Node>,
    pub continue_on_error: Option<Node>,
    pub timeout_minutes: Option<Node>,
}

impl Step {
    /// A name for logs when the step has none: `Run <first line>` or `Run <action>`.
    pub fn default_name(&self) -> String {
        match &self.action {
            StepAction::Run { script, .. } => {
                let text = script.scalar_string().unwrap_or_default();
                let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
                let mut name = format!("Run {first}");
                if name.len() > 80 {
                    let cut = (0..=77).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
                    name.truncate(cut);
                    name.push_str("...");
                }
                name
            }
            StepAction::Uses { uses } => format!("Run {uses}"),
        }
    }
}
