//! The built-in functions of the expression language.

use super::eval::{evaluate, loose_equals, Contexts};
use super::{to_display_string, Expr, ExprError};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(super) fn call(name: &str, args: &[Expr], ctx: &Contexts) -> Result<Value, ExprError> {
    let status = ctx.status;
    match name {
        "success" => return Ok(Value::Bool(status.success && !status.cancelled)),
        "failure" => return Ok(Value::Bool(status.failure)),
        "cancelled" => return Ok(Value::Bool(status.cancelled)),
        "always" => return Ok(Value::Bool(true)),
        _ => {}
    }
    let values = args.iter().map(|a| evaluate(a, ctx)).collect::<Result<Vec<_>, _>>()?;
    let arg = |i: usize| values.get(i).cloned().unwrap_or(Value::Null);
    match name {
        "contains" => {
            let item = arg(1);
            Ok(Value::Bool(match arg(0) {
                Value::Array(items) => items.iter().any(|v| loose_equals(v, &item)),
                haystack => {
                    to_display_string(&haystack).to_lowercase().contains(&to_display_string(&item).to_lowercase())
                }
            }))
        }
        "startswith" => Ok(Value::Bool(
            to_display_string(&arg(0)).to_lowercase().starts_with(&to_display_string(&arg(1)).to_lowercase()),
        )),
        "endswith" => Ok(Value::Bool(
            to_display_string(&arg(0)).to_lowercase().ends_with(&to_display_string(&arg(1)).to_lowercase()),
        )),
        "format" => format(&to_display_string(&arg(0)), &values[1..]).map(Value::String),
        "join" => {
            let separator = if values.len() > 1 { to_display_string(&arg(1)) } else { ",".into() };
            Ok(Value::String(match arg(0) {
                Value::Array(items) => items.iter().map(to_display_string).collect::<Vec<_>>().join(&separator),
                other => to_display_string(&other),
            }))
        }
        "tojson" => serde_json::to_string_pretty(&arg(0))
            .map(Value::String)
            .map_err(|e| ExprError::new(0, format!("toJSON failed: {e}"))),
        "fromjson" => {
            let text = to_display_string(&arg(0));
            serde_json::from_str::<Value>(text.trim())
                .map(normalize_numbers)
                .map_err(|e| ExprError::new(0, format!("fromJSON: invalid JSON {text:?}: {e}")))
        }
        "hashfiles" => hash_files(&values, ctx).map(Value::String),
        other => Err(ExprError::new(0, format!("unrecognized function: '{other}'"))),
    }
}

/// Integral floats from JSON (`1.0`) are kept as integers, so they print as GitHub prints them.
fn normalize_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => super::number_value(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, normalize_numbers(v))).collect()),
        other => other,
    }
}

/// `format('{0} and {1}', a, b)` with `{{` and `}}` as escaped braces.
fn format(template: &str, args: &[Value]) -> Result<String, ExprError> {
    let mut out = String::with_capacity(template.len());
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
            }
            '{' => {
                let end = chars[i..].iter().position(|&c| c == '}').map(|p| p + i).ok_or_else(|| {
                    ExprError::new(0, format!("format: the string '{template}' has an unclosed '{{'"))
                })?;
                let index: String = chars[i + 1..end].iter().collect();
                let index: usize = index.trim().parse().map_err(|_| {
                    ExprError::new(0, format!("format: '{{{index}}}' in '{template}' is not an argument index"))
                })?;
                let value = args.get(index).ok_or_else(|| {
                    ExprError::new(
                        0,
                        format!("format: '{template}' refers to argument {index}, but only {} given", args.len()),
                    )
                })?;
                out.push_str(&to_display_string(value));
                i = end + 1;
            }
            '}' => return Err(ExprError::new(0, format!("format: the string '{template}' has an unmatched '}}'"))),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `hashFiles`: the SHA-256 of the SHA-256 of every matching regular file, in path order;
/// empty when nothing matches. Patterns are relative to the workspace; `!` negates.
fn hash_files(patterns: &[Value], ctx: &Contexts) -> Result<String, ExprError> {
    let Some(root) = ctx.workspace.as_ref() else {
        return Err(ExprError::new(0, "hashFiles is only available in steps"));
    };
    let mut include = globset::GlobSetBuilder::new();
    let mut exclude = globset::GlobSetBuilder::new();
    for pattern in patterns.iter().map(to_display_string) {
        for line in pattern.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (negated, glob) = match line.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let glob = glob.trim_start_matches("./");
            let glob = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| ExprError::new(0, format!("hashFiles: invalid pattern '{line}': {e}")))?;
            if negated {
                exclude.add(glob);
            } else {
                include.add(glob);
            }
        }
    }
    let include = include.build().map_err(|e| ExprError::new(0, format!("hashFiles: {e}")))?;
    let exclude = exclude.build().map_err(|e| ExprError::new(0, format!("hashFiles: {e}")))?;
    let mut files: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_path_buf();
            (include.is_match(&rel) && !exclude.is_match(&rel)).then(|| e.path().to_path_buf())
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut outer = Sha256::new();
    for file in files {
        let bytes = std::fs::read(&file)
            .map_err(|e| ExprError::new(0, format!("hashFiles: cannot read {}: {e}", file.display())))?;
        outer.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(outer.finalize()))
}
