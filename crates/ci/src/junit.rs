//! JUnit XML test reports (the format of Maven Surefire, pytest `--junitxml`, Jest,
//! cargo-nextest...): totals and the failed cases with their messages.

use serde_json::{json, Value};

/// What one report file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub tests: i64,
    pub failures: i64,
    pub errors: i64,
    pub skipped: i64,
    /// Failed and errored cases: `{suite, classname, name, kind, message, detail}`.
    pub failed: Vec<Value>,
}

/// Why a file is not a JUnit report.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// Not well-formed XML.
    #[error(transparent)]
    Xml(#[from] roxmltree::Error),
    /// XML whose root is neither `<testsuites>` nor `<testsuite>`.
    #[error("not a JUnit report: the root element is <{0}>")]
    NotJunit(String),
}

/// Longest failure detail kept per case.
const DETAIL_LIMIT: usize = 4000;

/// Parses a JUnit XML document (`<testsuites>` or a single `<testsuite>`).
pub fn parse(text: &str) -> Result<Summary, JunitError> {
    let doc = roxmltree::Document::parse(text)?;
    let root = doc.root_element();
    if !matches!(root.tag_name().name(), "testsuites" | "testsuite") {
        return Err(JunitError::NotJunit(root.tag_name().name().to_string()));
    }
    let mut summary = Summary { tests: 0, failures: 0, errors: 0, skipped: 0, failed: Vec::new() };
    for case in root.descendants().filter(|n| n.has_tag_name("testcase")) {
        summary.tests += 1;
        let suite = case
            .ancestors()
            .find(|n| n.has_tag_name("testsuite"))
            .and_then(|s| s.attribute("name"))
            .unwrap_or_default();
        for child in case.children().filter(|c| c.is_element()) {
            let kind = child.tag_name().name();
            match kind {
                "failure" | "error" => {
                    if kind == "failure" {
                        summary.failures += 1;
                    } else {
                        summary.errors += 1;
                    }
                    let mut detail: String = child.text().unwrap_or_default().trim().to_string();
                    if detail.len() > DETAIL_LIMIT {
                        let mut cut = DETAIL_LIMIT;
                        while !detail.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        detail.truncate(cut);
                        detail.push('…');
                    }
                    summary.failed.push(json!({
                        "suite": suite,
                        "classname": case.attribute("classname").unwrap_or_default(),
                        "name": case.attribute("name").unwrap_or_default(),
                        "kind": kind,
                        "message": child.attribute("message").unwrap_or_default(),
                        "detail": detail,
                    }));
                }
                "skipped" => summary.skipped += 1,
                _ => {}
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cases_and_keeps_failure_messages() {
        let xml = r#"<?xml version="1.0"?>
<testsuites>
  <testsuite name="math" tests="3">
    <testcase classname="math.Add" name="adds"/>
    <testcase classname="math.Add" name="overflows"><failure message="expected 2 got 3">assert 2 == 3</failure></testcase>
    <testcase classname="math.Div" name="by zero"><skipped/></testcase>
  </testsuite>
  <testsuite name="io"><testcase name="reads"><error message="boom" type="IOError"/></testcase></testsuite>
</testsuites>"#;
        let s = parse(xml).unwrap();
        assert_eq!((s.tests, s.failures, s.errors, s.skipped), (4, 1, 1, 1));
        assert_eq!(s.failed[0]["name"], "overflows");
        assert_eq!(s.failed[0]["message"], "expected 2 got 3");
        assert_eq!(s.failed[0]["detail"], "assert 2 == 3");
        assert_eq!(s.failed[1]["suite"], "io");
        assert!(parse("<html/>").unwrap_err().to_string().contains("<html>"));
        assert!(parse("<testsuite").is_err());
    }
}
