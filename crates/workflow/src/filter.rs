//! Branch, tag and path filters with GitHub's pattern syntax (`*`, `**`, `?`, `+`, `[]`, `!`).

use crate::model::Trigger;
use regex::Regex;

/// Compiles one filter pattern (without its leading `!`) to an anchored regex.
///
/// GitHub's syntax: `*` matches anything but `/`, `**` anything, `?` makes the
/// previous character optional, `+` repeats it, `[...]` is a class, `\` escapes.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    let pattern = pattern.strip_prefix('!').unwrap_or(pattern);
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // `**/` also matches zero directories.
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push('?'),
            '+' => re.push('+'),
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']').map(|p| p + i).ok_or("unclosed '['")?;
                re.push('[');
                for &ch in &chars[i + 1..end] {
                    if ch == '\\' || ch == '^' && re.ends_with('[') {
                        re.push('\\');
                    }
                    re.push(ch);
                }
                re.push(']');
                i = end + 1;
                continue;
            }
            '\\' => {
                let next = chars.get(i + 1).ok_or("a pattern cannot end with '\\'")?;
                re.push_str(&regex::escape(&next.to_string()));
                i += 2;
                continue;
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

/// Whether `name` passes an ordered include list (later `!` patterns exclude again).
fn included(patterns: &[String], name: &str) -> bool {
    let mut result = false;
    for p in patterns {
        let negated = p.starts_with('!');
        if compile(p).is_ok_and(|re| re.is_match(name)) {
            result = !negated;
        }
    }
    result
}

/// Whether `name` is excluded by an ignore list.
fn ignored(patterns: &[String], name: &str) -> bool {
    included(patterns, name)
}

/// What the event refers to, for filter matching.
#[derive(Debug, Clone, Default)]
pub struct EventRef {
    /// Branch name for branch pushes, and the base branch for pull requests.
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// Changed files, when known; `None` means path filters cannot be evaluated and pass.
    pub changed_paths: Option<Vec<String>>,
    /// The event's activity type (`action` in the payload, such as `opened`), when known.
    pub activity: Option<String>,
    /// The event's name, for its default activity types.
    pub event_name: String,
}

/// Activity types that trigger a workflow when `types` is not given.
fn default_types(event_name: &str) -> Option<&'static [&'static str]> {
    match event_name {
        "pull_request" | "pull_request_target" => Some(&["opened", "synchronize", "reopened"]),
        _ => None,
    }
}

/// Whether a trigger's filters accept the event (GitHub's rules: a push to a
/// tag is checked against tag filters only; with only branch filters, tag pushes do not run).
pub fn accepts(trigger: &Trigger, event: &EventRef) -> bool {
    if let Some(activity) = &event.activity {
        let allowed = if trigger.types.is_empty() {
            default_types(&event.event_name).map(|d| d.iter().any(|t| t == activity))
        } else {
            Some(trigger.types.iter().any(|t| t == activity))
        };
        if allowed == Some(false) {
            return false;
        }
    }
    let has_branch_filter = trigger.branches.is_some() || trigger.branches_ignore.is_some();
    let has_tag_filter = trigger.tags.is_some() || trigger.tags_ignore.is_some();
    let ref_ok = if let Some(tag) = &event.tag {
        if has_tag_filter {
            trigger.tags.as_ref().is_none_or(|p| included(p, tag))
                && trigger.tags_ignore.as_ref().is_none_or(|p| !ignored(p, tag))
        } else {
            !has_branch_filter
        }
    } else if let Some(branch) = &event.branch {
        if has_branch_filter {
            trigger.branches.as_ref().is_none_or(|p| included(p, branch))
                && trigger.branches_ignore.as_ref().is_none_or(|p| !ignored(p, branch))
        } else {
            !has_tag_filter
        }
    } else {
        true
    };
    if !ref_ok {
        return false;
    }
    let Some(paths) = &event.changed_paths else {
        return true;
    };
    if let Some(include) = &trigger.paths {
        if !paths.iter().any(|p| included(include, p)) {
            return false;
        }
    }
    if let Some(ignore) = &trigger.paths_ignore {
        if !paths.is_empty() && paths.iter().all(|p| ignored(ignore, p)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        compile(pattern).unwrap().is_match(name)
    }

    #[test]
    fn github_pattern_syntax() {
        assert!(matches("main", "main"));
        assert!(!matches("main", "main2"));
        assert!(matches("releases/*", "releases/v1"));
        assert!(!matches("releases/*", "releases/v1/x"));
        assert!(matches("releases/**", "releases/v1/x"));
        assert!(matches("**.js", "src/app.js"));
        assert!(matches("docs/**/*.md", "docs/a.md"));
        assert!(matches("v[12].[0-9]+.[0-9]+", "v1.10.3"));
        assert!(matches("feature?", "feature"));
        assert!(matches("feature?", "featur"));
    }

    fn trigger(branches: &[&str], tags: &[&str], paths: &[&str]) -> Trigger {
        let list = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
        Trigger { branches: list(branches), tags: list(tags), paths: list(paths), ..Trigger::default() }
    }

    #[test]
    fn ordered_negation_and_tag_rules() {
        let t = trigger(&["releases/**", "!releases/**-alpha"], &[], &[]);
        let on = |b: &str| accepts(&t, &EventRef { branch: Some(b.into()), ..EventRef::default() });
        assert!(on("releases/v1"));
        assert!(!on("releases/v1-alpha"));
        // Only branch filters: a tag push does not run.
        assert!(!accepts(&t, &EventRef { tag: Some("v1".into()), ..EventRef::default() }));
        let p = trigger(&[], &[], &["src/**"]);
        let changed = |files: &[&str]| EventRef {
            branch: Some("main".into()),
            changed_paths: Some(files.iter().map(|s| s.to_string()).collect()),
            ..EventRef::default()
        };
        assert!(accepts(&p, &changed(&["src/a.rs"])));
        assert!(!accepts(&p, &changed(&["README.md"])));
    }

    #[test]
    fn activity_types_with_pull_request_defaults() {
        let event = |action: &str| EventRef {
            activity: Some(action.into()),
            event_name: "pull_request".into(),
            ..EventRef::default()
        };
        let default = Trigger::default();
        assert!(accepts(&default, &event("opened")));
        assert!(!accepts(&default, &event("closed")));
        let closed = Trigger { types: vec!["closed".into()], ..Trigger::default() };
        assert!(accepts(&closed, &event("closed")));
        assert!(!accepts(&closed, &event("opened")));
    }
}
