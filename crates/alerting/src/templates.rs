//! Notification templates as Alertmanager offers them: named defaults (`__subject`,
//! `slack.default.title`, `email.default.html`...), the files an `alertmanager.yml`
//! lists under `templates`, Alertmanager's functions (`join`, `toUpper`, `safeHtml`,
//! `since`, `date`, `tz`, `toJson`...) and the methods of its data (`.Alerts.Firing`, `.Labels.SortedPairs`,
//! `.CommonLabels.Remove .GroupLabels.Names`, `.Names`, `.Values`).
//!
//! The template engine (`gotmpl`) has no methods on values, so a method in a field
//! chain is rewritten into a call of a helper function before parsing:
//! `.GroupLabels.SortedPairs.Values` reads `(_values (_sortedPairs .GroupLabels))`.

use gotmpl::{MissingKey, Template, TemplateError, Value};
use mobius_template::{string_args, with_functions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Mobius' own definitions, under Alertmanager's names.
const DEFAULTS: &str = include_str!("default.tmpl");

/// The methods of Alertmanager's template data, and the helpers that stand for them.
const METHODS: [(&str, &str); 6] = [
    ("Firing", "_firing"),
    ("Resolved", "_resolved"),
    ("SortedPairs", "_sortedPairs"),
    ("Names", "_names"),
    ("Values", "_values"),
    ("Remove", "_remove"),
];

/// Why templates could not be read, checked or expanded.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    #[error("the default templates: {0}")]
    Defaults(#[source] TemplateError),
    #[error("`{pattern}` is not a valid pattern: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("`{pattern}`: {source}")]
    Glob {
        pattern: String,
        #[source]
        source: glob::GlobError,
    },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    /// A template that does not parse or does not execute.
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("template \"{0}\" is not defined")]
    Undefined(String),
}

/// The definitions every notification template can call: the defaults, then the
/// configured files (a file may redefine a default).
#[derive(Clone)]
pub struct NotificationTemplates {
    base: Template,
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for NotificationTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationTemplates").field("files", &self.files).finish()
    }
}

impl NotificationTemplates {
    /// The defaults alone.
    pub fn defaults() -> Result<Self, TemplatesError> {
        let base = engine().parse(&with_methods(DEFAULTS)).map_err(TemplatesError::Defaults)?;
        Ok(NotificationTemplates { base, files: Vec::new() })
    }

    /// No definitions at all (only if the defaults could not be read).
    pub fn empty() -> Self {
        NotificationTemplates { base: engine(), files: Vec::new() }
    }

    /// The defaults and every file matching `patterns` (globs, relative to `dir`),
    /// as Alertmanager reads its `templates` list. A pattern that matches nothing is
    /// not an error; a file that does not parse is, naming the file.
    pub fn load(dir: &Path, patterns: &[String]) -> Result<Self, TemplatesError> {
        let mut templates = Self::defaults()?;
        for pattern in patterns {
            let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { dir.join(pattern) };
            let text = full.to_string_lossy();
            let paths =
                glob::glob(&text).map_err(|source| TemplatesError::Pattern { pattern: pattern.clone(), source })?;
            for path in paths {
                let path = path.map_err(|source| TemplatesError::Glob { pattern: pattern.clone(), source })?;
                let source = match std::fs::read_to_string(&path) {
                    Ok(source) => source,
                    Err(source) => return Err(TemplatesError::Read { path, source }),
                };
                templates.base = match templates.base.parse(&with_methods(&source)) {
                    Ok(base) => base,
                    Err(source) => return Err(TemplatesError::Parse { path, source }),
                };
                templates.files.push(path);
            }
        }
        Ok(templates)
    }

    /// The template files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Whether `text` parses and every template it calls by name is defined.
    pub fn check(&self, text: &str) -> Result<(), TemplatesError> {
        let defined = self.base.templates();
        let t = engine().parse(&with_methods(text))?;
        let own = t.templates();
        for name in called_templates(text) {
            if !defined.contains(&name) && !own.contains(&name) {
                return Err(TemplatesError::Undefined(name.to_string()));
            }
        }
        Ok(())
    }

    /// Expands `text` over `data` (Alertmanager's notification data).
    pub fn expand(&self, text: &str, data: &Value) -> Result<String, TemplatesError> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        // The templates' maps hold strings in Alertmanager, so an absent label is
        // empty, where an untyped map (as gotmpl's are) prints `<no value>`.
        self.base
            .clone()
            .parse(&with_methods(text))
            .and_then(|t| t.execute_to_string(data))
            .map(|s| s.replace("<no value>", ""))
            .map_err(TemplatesError::Template)
    }
}

/// The names `text` calls with `{{ template "name" }}`.
fn called_templates(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        rest = &rest[at + 2..];
        let action = rest.trim_start_matches('-').trim_start();
        if let Some(after) = action.strip_prefix("template").map(str::trim_start) {
            if let Some(quoted) = after.strip_prefix('"') {
                if let Some(end) = quoted.find('"') {
                    names.push(&quoted[..end]);
                }
            }
        }
    }
    names
}

fn exec_error(message: String) -> TemplateError {
    TemplateError::Exec(message)
}

fn one_arg<'a>(args: &'a [Value], name: &str) -> Result<&'a Value, TemplateError> {
    match args {
        [v] => Ok(v),
        _ => Err(exec_error(format!("{name} takes one argument"))),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m.get(key),
        _ => None,
    }
}

/// `.Alerts.Firing` and `.Alerts.Resolved`: the alerts of that status. On a map it
/// is the key of that name, as for any other field.
fn by_status(args: &[Value], name: &str, method: &str, status: &str) -> Result<Value, TemplateError> {
    match one_arg(args, name)? {
        Value::List(alerts) => Ok(Value::from(
            alerts
                .iter()
                .filter(|a| field(a, "Status").is_some_and(|s| s.to_string() == status))
                .cloned()
                .collect::<Vec<_>>(),
        )),
        v => Ok(field(v, method).cloned().unwrap_or(Value::Nil)),
    }
}

fn pair(name: &str, value: &Value) -> Value {
    Value::from_entries([("Name".to_string(), Value::from(name)), ("Value".to_string(), value.clone())])
}

/// `.Names` and `.Values` of a label map (sorted by name) or of a list of pairs.
fn pair_parts(args: &[Value], name: &str, part: &str) -> Result<Value, TemplateError> {
    let items: Vec<Value> = match one_arg(args, name)? {
        Value::Map(m) if part == "Name" => m.keys().map(|k| Value::from(&**k)).collect(),
        Value::Map(m) => m.values().cloned().collect(),
        Value::List(pairs) => pairs.iter().filter_map(|p| field(p, part).cloned()).collect(),
        Value::Nil => Vec::new(),
        other => return Err(exec_error(format!("{name}: {other} has no names and values"))),
    };
    Ok(Value::from(items))
}

/// The engine with Alertmanager's functions and the method helpers.
fn engine() -> Template {
    with_functions(Template::new("").missing_key(MissingKey::Invalid))
        .func("_firing", |a| by_status(a, "Firing", "Firing", "firing"))
        .func("_resolved", |a| by_status(a, "Resolved", "Resolved", "resolved"))
        .func("_sortedPairs", |a| match one_arg(a, "SortedPairs")? {
            Value::Map(m) => Ok(Value::from(m.iter().map(|(k, v)| pair(k, v)).collect::<Vec<_>>())),
            Value::Nil => Ok(Value::from(Vec::<Value>::new())),
            other => Err(exec_error(format!("SortedPairs: {other} is not a label set"))),
        })
        .func("_names", |a| pair_parts(a, "Names", "Name"))
        .func("_values", |a| pair_parts(a, "Values", "Value"))
        .func("_remove", |a| match a {
            [Value::Map(m), Value::List(names)] => {
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                let kept: BTreeMap<Arc<str>, Value> = m
                    .iter()
                    .filter(|(k, _)| !names.iter().any(|n| n == &***k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(Value::from(kept))
            }
            _ => Err(exec_error("Remove takes a label set and a list of names".into())),
        })
        .func("join", |a| match a {
            [sep, Value::List(items)] => {
                Ok(Value::from(items.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(&sep.to_string())))
            }
            [_, Value::Nil] => Ok(Value::from("")),
            _ => Err(exec_error("join takes a separator and a list".into())),
        })
        .func("safeHtml", |a| Ok(one_arg(a, "safeHtml")?.clone()))
        .func("safeUrl", |a| Ok(one_arg(a, "safeUrl")?.clone()))
        .func("urlUnescape", |a| {
            let [s] = string_args::<1>(a, "urlUnescape")?;
            let decoded = percent_decode(&s).ok_or_else(|| exec_error(format!("urlUnescape: `{s}` is not escaped")))?;
            Ok(Value::from(decoded))
        })
        .func("trimSpace", |a| Ok(Value::from(string_args::<1>(a, "trimSpace")?[0].trim())))
        .func("stringSlice", |a| Ok(Value::from(a.iter().map(|v| Value::from(v.to_string())).collect::<Vec<_>>())))
        .func("since", |a| {
            let [t] = string_args::<1>(a, "since")?;
            let at = chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| exec_error(format!("since: `{t}` is not a time: {e}")))?;
            let seconds = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
            Ok(Value::Float(seconds))
        })
        .func("date", |a| {
            let [layout, t] = string_args::<2>(a, "date")?;
            let at = chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| exec_error(format!("date: `{t}` is not a time: {e}")))?;
            // The zone's name is gone once a time is text: `MST` prints UTC or the offset.
            let format = go_layout(&layout);
            let text = if at.offset().local_minus_utc() == 0 {
                at.with_timezone(&chrono::Utc).format(&format).to_string()
            } else {
                at.format(&format).to_string()
            };
            Ok(Value::from(text))
        })
        .func("tz", |a| {
            let [zone, t] = string_args::<2>(a, "tz")?;
            let at = chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| exec_error(format!("tz: `{t}` is not a time: {e}")))?;
            let zone: chrono_tz::Tz = zone
                .parse()
                .map_err(|_| exec_error(format!("tz: `{zone}` is not a time zone of the IANA database")))?;
            let local = at.with_timezone(&zone);
            Ok(Value::from(local.fixed_offset().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
        })
        .func("toJson", |a| Ok(Value::from(json(one_arg(a, "toJson")?).to_string())))
}

/// A template value as JSON (for `toJson`).
fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::from(&**s),
        Value::List(items) => serde_json::Value::Array(items.iter().map(json).collect()),
        Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.to_string(), json(v))).collect()),
        other => serde_json::Value::from(other.to_string()),
    }
}

/// `%XX` sequences decoded, `+` as a space (Go's `url.QueryUnescape`).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Go's reference-time layout (`2006-01-02 15:04:05 MST`) as a `chrono` format.
fn go_layout(layout: &str) -> String {
    const TOKENS: [(&str, &str); 22] = [
        ("January", "%B"),
        ("Monday", "%A"),
        ("2006", "%Y"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        (".000000000", "%.9f"),
        (".000000", "%.6f"),
        (".000", "%.3f"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("pm", "%P"),
    ];
    let mut out = String::with_capacity(layout.len() * 2);
    let mut rest = layout;
    'outer: while let Some(c) = rest.chars().next() {
        for (go, chrono) in TOKENS {
            if let Some(after) = rest.strip_prefix(go) {
                out.push_str(chrono);
                rest = after;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Rewrites the methods in every action's field chains into helper calls; text,
/// strings and comments stay as they are.
pub(crate) fn with_methods(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open + 2]);
        rest = &rest[open + 2..];
        let trimmed = rest.trim_start_matches('-').trim_start();
        if trimmed.starts_with("/*") {
            // A comment runs to `*/`, whatever it holds.
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        let end = action_end(rest);
        out.push_str(&rewrite_action(&rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where the action starting at `s` ends (at its `}}`, outside quotes).
fn action_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = quoted_end(bytes, i),
            b'`' => i = s[i + 1..].find('`').map_or(bytes.len(), |e| i + e + 2),
            b'}' if bytes.get(i + 1) == Some(&b'}') => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after the quoted string or character starting at `start`.
fn quoted_end(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn rewrite_action(action: &str) -> String {
    let bytes = action.as_bytes();
    let mut out = String::with_capacity(action.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let prev = if i == 0 { b' ' } else { bytes[i - 1] };
        match b {
            b'"' | b'\'' | b'`' => {
                let end = if b == b'`' { action_end_raw(action, i) } else { quoted_end(bytes, i) };
                out.push_str(&action[i..end]);
                i = end;
            }
            b'.' | b'$' if !is_ident(prev) && prev != b')' => {
                let (end, rewritten) = chain(action, i);
                out.push_str(&rewritten);
                i = end;
            }
            _ => {
                let c = action[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn action_end_raw(action: &str, start: usize) -> usize {
    action[start + 1..].find('`').map_or(action.len(), |e| start + e + 2)
}

/// The field chain starting at `start` (`.A.B`, `$x.A`, `$.A`), rewritten: each
/// method becomes a helper call around what comes before it.
fn chain(action: &str, start: usize) -> (usize, String) {
    let bytes = action.as_bytes();
    let mut i = start;
    let mut base = String::new();
    if bytes[i] == b'$' {
        i += 1;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        base.push_str(&action[start..i]);
    } else {
        base.push('.');
    }
    let mut fields = Vec::new();
    while i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        let from = i + 1;
        i = from;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        fields.push(&action[from..i]);
    }
    if bytes[start] == b'.' && fields.is_empty() {
        return (start + 1, ".".into());
    }
    let original = &action[start..i];
    if !fields.iter().any(|f| METHODS.iter().any(|(m, _)| m == f)) {
        return (i, original.to_string());
    }
    let mut expr = base;
    for (n, f) in fields.iter().enumerate() {
        match METHODS.iter().find(|(m, _)| m == f) {
            // `Remove` takes the words after it as its argument.
            Some(("Remove", helper)) if n + 1 == fields.len() => expr = format!("{helper} {expr}"),
            Some((_, helper)) => expr = format!("({helper} {expr})"),
            None if expr == "." => expr = format!(".{f}"),
            None => expr = format!("{expr}.{f}"),
        }
    }
    (i, expr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn methods_become_helper_calls_outside_strings() {
        assert_eq!(with_methods("{{ len .Alerts.Firing }}"), "{{ len (_firing .Alerts) }}");
        assert_eq!(
            with_methods("{{ .GroupLabels.SortedPairs.Values | join \" \" }}"),
            "{{ (_values (_sortedPairs .GroupLabels)) | join \" \" }}"
        );
        assert_eq!(
            with_methods("{{ with .CommonLabels.Remove .GroupLabels.Names }}x{{ end }}"),
            "{{ with _remove .CommonLabels (_names .GroupLabels) }}x{{ end }}"
        );
        assert_eq!(
            with_methods("{{ range $a := $.Alerts.Resolved }}{{ $a.Labels.job }}"),
            "{{ range $a := (_resolved $.Alerts) }}{{ $a.Labels.job }}"
        );
        assert_eq!(
            with_methods("{{ \".Alerts.Firing }}\" }} .Alerts.Firing"),
            "{{ \".Alerts.Firing }}\" }} .Alerts.Firing"
        );
        assert_eq!(
            with_methods("{{/* .Alerts.Firing */}}{{ .Alerts.FiringSoon }}"),
            "{{/* .Alerts.Firing */}}{{ .Alerts.FiringSoon }}"
        );
        assert_eq!(with_methods("{{ printf \"%.2f\" 1.5 }}{{ . }}"), "{{ printf \"%.2f\" 1.5 }}{{ . }}");
    }

    #[test]
    fn go_layouts_read_as_chrono_formats() {
        assert_eq!(go_layout("2006-01-02 15:04:05 MST"), "%Y-%m-%d %H:%M:%S %Z");
        assert_eq!(go_layout("Mon Jan _2 3:04PM 100%"), "%a %b %e 3:%M%p 100%%");
    }

    #[test]
    fn a_call_of_an_undefined_template_is_refused_when_checked() {
        let t = NotificationTemplates::defaults().unwrap();
        assert!(t.check("{{ template \"slack.default.title\" . }}").is_ok());
        assert_eq!(
            t.check("{{ template \"slack.custom.title\" . }}").unwrap_err().to_string(),
            "template \"slack.custom.title\" is not defined"
        );
        assert!(t.check("{{ define \"mine\" }}x{{ end }}{{ template \"mine\" . }}").is_ok());
        assert!(t.check("{{ .Status ").is_err());
        let data = Value::from_entries([
            ("StartsAt".to_string(), Value::from("2026-12-04T23:30:00Z")),
            ("Labels".to_string(), Value::from_entries([("job".to_string(), Value::from("node"))])),
        ]);
        let run = |text: &str| t.expand(text, &data).unwrap();
        assert_eq!(run(r#"{{ .StartsAt | tz "Europe/Berlin" | date "Mon 15:04 -07:00" }}"#), "Sat 00:30 +01:00");
        assert_eq!(run(r#"{{ .StartsAt | date "2006-01-02 15:04 MST" }}"#), "2026-12-04 23:30 UTC");
        assert_eq!(run("{{ .Labels | toJson }}"), r#"{"job":"node"}"#);
        // Methods and functions parse as they run when sending.
        assert!(t.check("{{ .Alerts.Firing | len }} {{ .CommonLabels.job | toUpper }} {{ .Status | since }}").is_ok());
    }
}
