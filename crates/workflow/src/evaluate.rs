//! Evaluating YAML nodes that contain expressions into JSON values at run time,
//! including `${{ insert }}` keys and expressions as mapping keys.

use crate::expr::{self, Contexts};
use crate::parse::is_insert;
use mobius_config::yaml::{Node, NodeValue, Pos};
use serde_json::{Map, Value};
use std::fmt;

/// An expression that failed while a node was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.pos.line, self.pos.col, self.message)
    }
}

impl std::error::Error for EvalError {}

/// Evaluates a node: strings as templates, mappings and sequences recursively.
/// A sequence item that is one expression yielding an array is spliced in.
pub fn evaluate_node(node: &Node, ctx: &Contexts) -> Result<Value, EvalError> {
    let err = |e: expr::ExprError| EvalError { pos: node.pos, message: e.message };
    Ok(match &node.value {
        NodeValue::String(s) if s.contains("${{") => expr::evaluate_template(s, ctx).map_err(err)?,
        NodeValue::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let whole_expression =
                    item.as_str().is_some_and(|s| s.trim().starts_with("${{") && s.trim().ends_with("}}"));
                match evaluate_node(item, ctx)? {
                    Value::Array(inner) if whole_expression => out.extend(inner),
                    v => out.push(v),
                }
            }
            Value::Array(out)
        }
        NodeValue::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key_text = k.scalar_string().unwrap_or_default();
                if is_insert(&key_text) {
                    match evaluate_node(v, ctx)? {
                        Value::Object(inserted) => out.extend(inserted),
                        Value::Null => {}
                        other => {
                            return Err(EvalError {
                                pos: v.pos,
                                message: format!("'${{{{ insert }}}}' needs a mapping, got {}", type_name(&other)),
                            })
                        }
                    }
                    continue;
                }
                let key = if key_text.contains("${{") {
                    expr::to_display_string(
                        &expr::evaluate_template(&key_text, ctx)
                            .map_err(|e| EvalError { pos: k.pos, message: e.message })?,
                    )
                } else {
                    key_text
                };
                out.insert(key, evaluate_node(v, ctx)?);
            }
            Value::Object(out)
        }
        _ => node.to_json(),
    })
}

/// Evaluates a node to a string (for `name`, `shell`, `working-directory`...).
pub fn evaluate_string(node: &Node, ctx: &Contexts) -> Result<String, EvalError> {
    Ok(expr::to_display_string(&evaluate_node(node, ctx)?))
}

/// Evaluates a mapping node to string pairs (for `env` and `with`), keeping order.
pub fn evaluate_string_map(node: &Node, ctx: &Contexts) -> Result<Vec<(String, String)>, EvalError> {
    match evaluate_node(node, ctx)? {
        Value::Object(map) => Ok(map.into_iter().map(|(k, v)| (k, expr::to_display_string(&v))).collect()),
        Value::Null => Ok(Vec::new()),
        other => Err(EvalError { pos: node.pos, message: format!("expected a mapping, got {}", type_name(&other)) }),
    }
}

/// Evaluates a node to a boolean with truthiness (`continue-on-error`).
pub fn evaluate_bool(node: &Node, ctx: &Contexts) -> Result<bool, EvalError> {
    Ok(expr::truthy(&evaluate_node(node, ctx)?))
}

/// Evaluates a node to a number (`timeout-minutes`, `max-parallel`).
pub fn evaluate_number(node: &Node, ctx: &Contexts) -> Result<f64, EvalError> {
    let value = evaluate_node(node, ctx)?;
    let n = expr::to_number(&value);
    if n.is_nan() {
        return Err(EvalError {
            pos: node.pos,
            message: format!("expected a number, got '{}'", expr::to_display_string(&value)),
        });
    }
    Ok(n)
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
