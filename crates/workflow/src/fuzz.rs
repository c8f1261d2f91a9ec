//! Entry points for the fuzz targets in `fuzz/` and the bounded property tests that
//! run the same functions in CI: each takes arbitrary bytes and must not panic,
//! overflow its stack or run unbounded.

use crate::expr::{self, Contexts};
use crate::{parse_workflow, SourceFile};

/// The YAML layer (aliases and anchors included), then workflow validation on top.
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::yaml::parse(text);
    let _ = parse_workflow(SourceFile::new("fuzz.yml", text));
}

/// The `${{ }}` expression language: parsing, then evaluation against small contexts.
pub fn expression(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = expr::parse(text) else { return };
    let mut contexts = Contexts::default();
    contexts.set(
        "github",
        serde_json::json!({"event_name": "push", "ref": "refs/heads/main", "event": {"commits": [{"message": "x"}]}}),
    );
    contexts.set("matrix", serde_json::json!({"os": "linux", "n": [1, 2, 3]}));
    let _ = expr::evaluate(&parsed, &contexts);
}
