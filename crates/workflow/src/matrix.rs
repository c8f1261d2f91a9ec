//! Expanding `strategy.matrix` into job combinations with GitHub's include/exclude rules.

use serde_json::{Map, Value};

/// Expands an evaluated matrix object into its combinations, in GitHub's order:
/// the cartesian product of the value lists (first key varies slowest), minus
/// `exclude` entries (partial matches), then `include` entries merged into every
/// combination they do not contradict, or appended as new combinations.
pub fn expand(matrix: &Value) -> Result<Vec<Map<String, Value>>, String> {
    let Value::Object(matrix) = matrix else {
        return Err(format!("the matrix must be a mapping, got {}", crate::evaluate::type_name(matrix)));
    };
    let mut axes: Vec<(&String, &Vec<Value>)> = Vec::new();
    let mut include: &[Value] = &[];
    let mut exclude: &[Value] = &[];
    for (key, value) in matrix {
        match (key.as_str(), value) {
            ("include", Value::Array(items)) => include = items,
            ("exclude", Value::Array(items)) => exclude = items,
            ("include" | "exclude", Value::Null) => {}
            ("include" | "exclude", other) => {
                return Err(format!("matrix '{key}' must be a list, got {}", crate::evaluate::type_name(other)))
            }
            (_, Value::Array(items)) => {
                if items.is_empty() {
                    return Err(format!("matrix '{key}' is an empty list"));
                }
                axes.push((key, items));
            }
            (_, other) => {
                return Err(format!("matrix '{key}' must be a list, got {}", crate::evaluate::type_name(other)))
            }
        }
    }
    let mut combos: Vec<Map<String, Value>> = if axes.is_empty() { Vec::new() } else { vec![Map::new()] };
    for (key, values) in &axes {
        let mut next = Vec::with_capacity(combos.len() * values.len());
        for combo in &combos {
            for value in *values {
                let mut c = combo.clone();
                c.insert((*key).clone(), value.clone());
                next.push(c);
            }
        }
        combos = next;
    }
    for entry in exclude {
        let Value::Object(entry) = entry else {
            return Err("each matrix 'exclude' entry must be a mapping".into());
        };
        combos.retain(|combo| !entry.iter().all(|(k, v)| combo.get(k).is_some_and(|c| partial_match(c, v))));
    }
    let original_keys: Vec<&String> = axes.iter().map(|(k, _)| *k).collect();
    let base_count = combos.len();
    let mut extra: Vec<Map<String, Value>> = Vec::new();
    for entry in include {
        let Value::Object(entry) = entry else {
            return Err("each matrix 'include' entry must be a mapping".into());
        };
        let mut matched = false;
        for combo in combos.iter_mut().take(base_count) {
            let compatible =
                entry.iter().filter(|(k, _)| original_keys.contains(k)).all(|(k, v)| combo.get(k) == Some(v));
            if compatible {
                for (k, v) in entry {
                    if !original_keys.contains(&k) {
                        combo.insert(k.clone(), v.clone());
                    }
                }
                matched = true;
            }
        }
        if !matched {
            extra.push(entry.clone());
        }
    }
    combos.extend(extra);
    if combos.len() > 256 {
        return Err(format!("the matrix has {} combinations; GitHub allows at most 256", combos.len()));
    }
    Ok(combos)
}

/// An exclude value matches when equal, or for mappings when every given key matches.
fn partial_match(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => p.iter().all(|(k, v)| a.get(k).is_some_and(|x| partial_match(x, v))),
        _ => actual == pattern,
    }
}

/// The label GitHub shows for a matrix leg: the values joined by `, `.
pub fn display_values(combo: &Map<String, Value>) -> String {
    combo
        .values()
        .map(|v| match v {
            Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
            other => crate::expr::to_display_string(other),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn legs(matrix: Value) -> Vec<Value> {
        expand(&matrix).unwrap().into_iter().map(Value::Object).collect()
    }

    #[test]
    fn product_in_order() {
        assert_eq!(
            legs(json!({"os": ["a", "b"], "n": [1, 2]})),
            vec![json!({"os":"a","n":1}), json!({"os":"a","n":2}), json!({"os":"b","n":1}), json!({"os":"b","n":2})]
        );
    }

    #[test]
    fn include_and_exclude_follow_github_docs() {
        // The example from GitHub's documentation on expanding matrix configurations.
        let got = legs(json!({
            "fruit": ["apple", "pear"],
            "animal": ["cat", "dog"],
            "include": [
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"}
            ]
        }));
        assert_eq!(
            got,
            vec![
                json!({"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}),
                json!({"fruit":"apple","animal":"dog","color":"green","shape":"circle"}),
                json!({"fruit":"pear","animal":"cat","color":"pink"}),
                json!({"fruit":"pear","animal":"dog","color":"green"}),
                json!({"fruit":"banana"}),
                json!({"fruit":"banana","animal":"cat"}),
            ]
        );
        let excluded = legs(json!({"os": ["l", "m"], "n": [4, 6], "exclude": [{"os": "m", "n": 4}]}));
        assert_eq!(excluded.len(), 3);
    }

    #[test]
    fn include_only_matrix() {
        assert_eq!(legs(json!({"include": [{"a": 1}, {"a": 2}]})), vec![json!({"a":1}), json!({"a":2})]);
    }

    #[test]
    fn errors_are_clear() {
        assert!(expand(&json!({"os": "linux"})).unwrap_err().contains("must be a list"));
        assert!(expand(&json!({"os": []})).unwrap_err().contains("empty"));
    }
}
