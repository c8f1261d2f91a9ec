//! Splitting text into literal parts and `${{ }}` expressions.

use super::ExprError;

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Literal(String),
    /// An expression's source and the byte offset of that source in the template.
    Expr {
        expr: String,
        offset: usize,
    },
}

/// Whether the text contains `${{`.
pub fn contains_expression(text: &str) -> bool {
    text.contains("${{")
}

/// Splits a template into segments. The closing `}}` is searched outside of
/// string literals, so `${{ format('{{0}}') }}` works.
pub fn split_template(text: &str) -> Result<Vec<Segment>, ExprError> {
    let mut segments = Vec::new();
    let mut rest = 0;
    let bytes = text.as_bytes();
    while let Some(rel) = text[rest..].find("${{") {
        let open = rest + rel;
        if open > rest {
            segments.push(Segment::Literal(text[rest..open].to_string()));
        }
        let body_start = open + 3;
        let mut i = body_start;
        let mut in_string = false;
        let mut close = None;
        while i < bytes.len() {
            match bytes[i] {
                b'\'' => in_string = !in_string,
                b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let Some(close) = close else {
            return Err(ExprError::new(open, "the expression is missing its closing '}}'"));
        };
        segments.push(Segment::Expr { expr: text[body_start..close].to_string(), offset: body_start });
        rest = close + 2;
    }
    if rest < text.len() || segments.is_empty() {
        segments.push(Segment::Literal(text[rest..].to_string()));
    }
    Ok(segments)
}
