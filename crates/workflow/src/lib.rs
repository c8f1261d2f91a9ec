//! Workflow files in GitHub Actions syntax: parsed with source positions,
//! validated (all problems at once), expressions, matrices and trigger filters.
#![forbid(unsafe_code)]

pub mod action;
pub mod evaluate;
pub mod expr;
pub mod filter;
#[doc(hidden)]
pub mod fuzz;
pub mod matrix;
pub mod model;
mod parse;

pub use action::{parse_action, Action, ActionInput, ActionRuns};
pub use mobius_config::{yaml, Diagnostic, FileErrors, SourceFile};
pub use model::*;
pub use parse::parse_workflow;

use std::path::Path;

/// Reads and parses a workflow file; `display` is the path shown in errors.
pub fn load_workflow(path: &Path, display: &str) -> Result<Workflow, FileErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_workflow(SourceFile::new(display, text)),
        Err(e) => Err(FileErrors {
            file: SourceFile::new(display, ""),
            diagnostics: vec![Diagnostic::new(yaml::Pos { line: 1, col: 1 }, format!("cannot read the file: {e}"))],
        }),
    }
}
