//! Checks shared by every file reader: unknown keys with "did you mean", mappings,
//! strings, booleans, lists and durations, each problem kept with its position.

use crate::diagnostic::{Diagnostic, FileErrors, SourceFile};
use crate::yaml::{Node, Pos};
use std::time::Duration;

/// The diagnostic for a key that is not one of `known`, in the one style every file
/// reader uses: ``unknown key `colr` in service `web` `` with "did you mean `color`?"
/// when one known key is a single edit away, or the list of known keys otherwise.
pub fn unknown_key(pos: Pos, name: &str, what: &str, known: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(pos, format!("unknown key `{name}` in {what}")).with_len(name.chars().count());
    match closest(name, known.iter().copied()) {
        Some(close) => d.with_help(format!("did you mean `{close}`?")),
        None => d.with_help(format!("expected one of: {}", known.join(", "))),
    }
}

/// The first candidate one edit away from `name` (ignoring case, and `_` against `-`).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates.into_iter().find(|c| similar(c, name))
}

fn similar(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase().replace('_', "-"), b.to_ascii_lowercase().replace('_', "-"));
    if a == b {
        return true;
    }
    // One edit apart (substitution, insertion or deletion).
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b'y', ..] => (365 * 86_400_000, 1),
            [b'w', ..] => (7 * 86_400_000, 1),
            [b'd', ..] => (86_400_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'm', ..] => (60_000, 1),
            [b's', ..] => (1000, 1),
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[len..];
    }
    Some(Duration::from_millis(total))
}

/// Collects every problem of a YAML file with its position, then answers the value
/// or all the problems at once.
#[derive(Debug, Default)]
pub struct Checker {
    pub diagnostics: Vec<Diagnostic>,
}

impl Checker {
    /// `value` when nothing was wrong, otherwise every problem found in `file`.
    pub fn finish<T>(self, file: SourceFile, value: T) -> Result<T, FileErrors> {
        if self.diagnostics.is_empty() {
            Ok(value)
        } else {
            Err(FileErrors { file, diagnostics: self.diagnostics })
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(pos, message));
    }

    /// The entries of a mapping, reporting keys outside `known` (and naming the ones
    /// the original tool has but Mobius does not handle yet, listed in `later`).
    pub fn entries<'a>(
        &mut self,
        node: &'a Node,
        what: &str,
        known: &[&str],
        later: &[&str],
    ) -> Vec<(&'a str, &'a Node)> {
        let Some(map) = node.as_map() else {
            if !node.is_null() {
                self.error(node.pos, format!("{what} must be a mapping"));
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in map {
            let Some(name) = key.as_str() else {
                self.error(key.pos, format!("keys of {what} must be strings, not a {}", key.kind()));
                continue;
            };
            if known.contains(&name) {
                out.push((name, value));
            } else if later.contains(&name) {
                self.error(key.pos, format!("`{name}` in {what} is not supported by Mobius yet"));
            } else {
                self.diagnostics.push(unknown_key(key.pos, name, what, known));
            }
        }
        out
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let value = node.scalar_string();
        if value.is_none() {
            self.error(node.pos, format!("{what} must be a string"));
        }
        value
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let parsed = node.scalar_string().as_deref().and_then(parse_duration).filter(|d| !d.is_zero());
        if parsed.is_none() {
            self.error(node.pos, format!("{what} must be a duration such as `15s`, `1m` or `500ms`"));
        }
        parsed
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.scalar_string().as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.error(node.pos, format!("{what} must be true or false"));
                None
            }
        }
    }

    /// A mapping of names to strings, each name checked by `valid_name`.
    pub fn labels(&mut self, node: &Node, what: &str, valid_name: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let Some(map) = node.as_map() else {
            self.error(node.pos, format!("{what} must be a mapping of label names to values"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in map {
            let name = key.as_str().unwrap_or("");
            if !valid_name(name) {
                self.error(key.pos, format!("invalid label name `{name}`"));
                continue;
            }
            if let Some(v) = self.string(value, &format!("the value of `{name}`")) {
                out.push((name.to_string(), v));
            }
        }
        out
    }

    pub fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        let Some(items) = node.as_seq() else {
            self.error(node.pos, format!("{what} must be a list"));
            return Vec::new();
        };
        items.iter().filter_map(|n| self.string(n, what)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_one_edit_away_suggests_the_known_one() {
        let d = unknown_key(Pos { line: 3, col: 5 }, "colr", "service `web`", &["color", "port"]);
        assert_eq!(d.message, "unknown key `colr` in service `web`");
        assert_eq!(d.help.as_deref(), Some("did you mean `color`?"));
        let far = unknown_key(Pos { line: 3, col: 5 }, "zzz", "service `web`", &["color", "port"]);
        assert_eq!(far.help.as_deref(), Some("expected one of: color, port"));
    }

    #[test]
    fn durations_read_like_prometheus() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
