//! The `${{ }}` expression language: parsing, evaluation with GitHub's loose
//! equality and coercions, and templates that mix literal text with expressions.

mod eval;
mod functions;
mod lexer;
mod parser;
mod template;

pub use eval::{evaluate, Contexts, Status};
pub use parser::{parse, CONTEXTS};
pub use template::{contains_expression, split_template, Segment};

use serde_json::Value;
use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// A top-level named value such as `github` (lowercased).
    Context(String),
    Property(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    /// `.*` or `[*]`: the object's values or the array's items, as a filtered array.
    Filter(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// A function call (lowercased name).
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Expr {
    /// Whether the expression calls one of the status functions anywhere, which
    /// decides whether an `if` gets GitHub's implicit `success() &&`.
    pub fn uses_status_function(&self) -> bool {
        match self {
            Expr::Call(name, args) => {
                matches!(name.as_str(), "success" | "failure" | "always" | "cancelled")
                    || args.iter().any(Expr::uses_status_function)
            }
            Expr::Property(e, _) | Expr::Filter(e) | Expr::Not(e) => e.uses_status_function(),
            Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.uses_status_function() || b.uses_status_function()
            }
            _ => false,
        }
    }

    /// The contexts named anywhere in the expression.
    pub fn contexts(&self, out: &mut Vec<String>) {
        match self {
            Expr::Context(name) => out.push(name.clone()),
            Expr::Call(_, args) => args.iter().for_each(|a| a.contexts(out)),
            Expr::Property(e, _) | Expr::Filter(e) | Expr::Not(e) => e.contexts(out),
            Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.contexts(out);
                b.contexts(out);
            }
            _ => {}
        }
    }
}

/// An error in an expression, at a byte offset inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl ExprError {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        ExprError { offset, message: message.into() }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExprError {}

/// GitHub's truthiness: null, false, 0, NaN and '' are falsy; everything else is truthy.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

pub use mobius_config::yaml::{number_to_string, number_value};

/// Coerces a value to a string the way GitHub interpolates it into text.
pub fn to_display_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(_) => "Array".into(),
        Value::Object(_) => "Object".into(),
    }
}

/// Coerces a value to a number for loose comparison.
pub fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => string_to_number(s),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

fn string_to_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).map_or(f64::NAN, |v| v as f64);
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).map_or(f64::NAN, |v| v as f64);
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    if t.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') {
        return f64::NAN;
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// Evaluates a whole template string (which may contain several `${{ }}`) into a value:
/// a lone expression keeps its type, anything else becomes a string.
pub fn evaluate_template(text: &str, contexts: &Contexts) -> Result<Value, ExprError> {
    let segments = split_template(text)?;
    if let [Segment::Expr { expr, .. }] = segments.as_slice() {
        if text.trim().starts_with("${{") && text.trim().ends_with("}}") {
            let parsed = parse(expr)?;
            return evaluate(&parsed, contexts);
        }
    }
    let mut out = String::with_capacity(text.len());
    for segment in &segments {
        match segment {
            Segment::Literal(s) => out.push_str(s),
            Segment::Expr { expr, .. } => {
                let parsed = parse(expr)?;
                out.push_str(&to_display_string(&evaluate(&parsed, contexts)?));
            }
        }
    }
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests;
