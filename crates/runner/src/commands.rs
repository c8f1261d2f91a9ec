//! Workflow commands written to standard output (`::set-output name=x::v`, `::add-mask::`...).

use mobius_core::{Annotation, AnnotationLevel};
use std::collections::BTreeMap;

/// A parsed workflow command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub properties: BTreeMap<String, String>,
    pub data: String,
}

/// Parses `::name key=value,key=value::data`; `None` when the line is not a command.
pub fn parse(line: &str) -> Option<Command> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let head = &rest[..end];
    let data = &rest[end + 2..];
    let (name, props) = match head.find(' ') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, ""),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    let mut properties = BTreeMap::new();
    for pair in props.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            properties.insert(k.trim().to_string(), unescape_property(v));
        }
    }
    Some(Command { name: name.to_string(), properties, data: unescape_data(data) })
}

fn unescape_data(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
}

fn unescape_property(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")
}

/// The annotation for `::error`, `::warning`, `::notice` and `::debug`.
pub fn annotation(cmd: &Command) -> Option<Annotation> {
    let level = match cmd.name.as_str() {
        "error" => AnnotationLevel::Error,
        "warning" => AnnotationLevel::Warning,
        "notice" => AnnotationLevel::Notice,
        "debug" => AnnotationLevel::Debug,
        _ => return None,
    };
    let num = |k: &str| cmd.properties.get(k).and_then(|v| v.parse().ok());
    Some(Annotation {
        level,
        message: cmd.data.clone(),
        title: cmd.properties.get("title").cloned(),
        file: cmd.properties.get("file").cloned(),
        line: num("line"),
        col: num("col"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_with_properties_and_escapes() {
        let c = parse("::set-output name=zoo::zar").unwrap();
        assert_eq!(c.name, "set-output");
        assert_eq!(c.properties["name"], "zoo");
        assert_eq!(c.data, "zar");
        let e = parse("::error file=app.js,line=100,col=20::Hello%0Aworld").unwrap();
        let a = annotation(&e).unwrap();
        assert_eq!((a.file.as_deref(), a.line, a.col), (Some("app.js"), Some(100), Some(20)));
        assert_eq!(a.message, "Hello\nworld");
        assert_eq!(parse("::endgroup::").unwrap().name, "endgroup");
        assert!(parse("not ::a command").is_none());
        assert!(parse(":: spaced::x").is_none());
    }
}
