//! Evaluation of parsed expressions against contexts.

use super::{functions, to_display_string, to_number, truthy, BinOp, Expr, ExprError};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// What the status functions answer where the expression is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `success()`: nothing before has failed or been cancelled.
    pub success: bool,
    /// `failure()`: something before has failed.
    pub failure: bool,
    /// `cancelled()`: the run was cancelled.
    pub cancelled: bool,
}

impl Default for Status {
    fn default() -> Self {
        Status { success: true, failure: false, cancelled: false }
    }
}

/// The named values an expression can read, plus what the functions need.
#[derive(Debug, Clone, Default)]
pub struct Contexts {
    /// Context objects by lowercase name (`github`, `env`, `matrix`...).
    pub values: Map<String, Value>,
    pub status: Status,
    /// Root for `hashFiles`; without it `hashFiles` is an error.
    pub workspace: Option<PathBuf>,
}

impl Contexts {
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// Evaluates an expression.
pub fn evaluate(expr: &Expr, contexts: &Contexts) -> Result<Value, ExprError> {
    Ok(eval(expr, contexts)?.0)
}

/// Case-insensitive property lookup, as GitHub's contexts are.
pub(super) fn get_property<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn index_value(base: &Value, index: &Value) -> Value {
    match base {
        Value::Object(object) => get_property(object, &to_display_string(index)).cloned().unwrap_or(Value::Null),
        Value::Array(items) => {
            let n = to_number(index);
            if n.is_nan() || n < 0.0 {
                return Value::Null;
            }
            items.get(n.floor() as usize).cloned().unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// Returns the value and whether it is a filtered array produced by `*`.
fn eval(expr: &Expr, ctx: &Contexts) -> Result<(Value, bool), ExprError> {
    Ok(match expr {
        Expr::Null => (Value::Null, false),
        Expr::Bool(b) => (Value::Bool(*b), false),
        Expr::Number(n) => (super::number_value(*n), false),
        Expr::String(s) => (Value::String(s.clone()), false),
        Expr::Context(name) => (ctx.get(name).cloned().unwrap_or(Value::Null), false),
        Expr::Property(base, name) => {
            let (base, filtered) = eval(base, ctx)?;
            if filtered {
                let mut out = Vec::new();
                if let Value::Array(items) = base {
                    for item in items {
                        if let Value::Object(object) = item {
                            if let Some(v) = get_property(&object, name) {
                                out.push(v.clone());
                            }
                        }
                    }
                }
                (Value::Array(out), true)
            } else {
                (index_value(&base, &Value::String(name.clone())), false)
            }
        }
        Expr::Index(base, index) => {
            let (base, filtered) = eval(base, ctx)?;
            let index = evaluate(index, ctx)?;
            if filtered {
                let mut out = Vec::new();
                if let Value::Array(items) = base {
                    for item in items {
                        let v = index_value(&item, &index);
                        if !v.is_null() {
                            out.push(v);
                        }
                    }
                }
                (Value::Array(out), true)
            } else {
                (index_value(&base, &index), false)
            }
        }
        Expr::Filter(base) => {
            let (base, filtered) = eval(base, ctx)?;
            let items = match base {
                Value::Array(items) if filtered => {
                    // A filter of a filtered array flattens one level.
                    let mut out = Vec::new();
                    for item in items {
                        match item {
                            Value::Array(inner) => out.extend(inner),
                            Value::Object(object) => out.extend(object.into_iter().map(|(_, v)| v)),
                            _ => {}
                        }
                    }
                    out
                }
                Value::Array(items) => items,
                Value::Object(object) => object.into_iter().map(|(_, v)| v).collect(),
                _ => Vec::new(),
            };
            (Value::Array(items), true)
        }
        Expr::Not(inner) => (Value::Bool(!truthy(&evaluate(inner, ctx)?)), false),
        Expr::And(a, b) => {
            let left = evaluate(a, ctx)?;
            if !truthy(&left) {
                (left, false)
            } else {
                (evaluate(b, ctx)?, false)
            }
        }
        Expr::Or(a, b) => {
            let left = evaluate(a, ctx)?;
            if truthy(&left) {
                (left, false)
            } else {
                (evaluate(b, ctx)?, false)
            }
        }
        Expr::Binary(op, a, b) => {
            let left = evaluate(a, ctx)?;
            let right = evaluate(b, ctx)?;
            let result = match op {
                BinOp::Eq => loose_equals(&left, &right),
                BinOp::Ne => !loose_equals(&left, &right),
                BinOp::Lt => compare(&left, &right).is_some_and(|o| o.is_lt()),
                BinOp::Le => compare(&left, &right).is_some_and(|o| o.is_le()),
                BinOp::Gt => compare(&left, &right).is_some_and(|o| o.is_gt()),
                BinOp::Ge => compare(&left, &right).is_some_and(|o| o.is_ge()),
            };
            (Value::Bool(result), false)
        }
        Expr::Call(name, args) => (functions::call(name, args, ctx)?, false),
    })
}

/// GitHub's `==`: same-kind values compare directly (strings ignoring case),
/// different kinds are both coerced to numbers; objects and arrays are never equal.
pub(super) fn loose_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
        (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => {
            let (x, y) = (to_number(a), to_number(b));
            x == y
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => None,
        _ => to_number(a).partial_cmp(&to_number(b)),
    }
}
