//! What moved in a repository since it was last looked at: refs compared with those
//! last recorded. A repository seen for the first time records every ref and counts
//! only its default branch head as pushed (one run, not one per branch and tag).

use std::collections::HashMap;

/// One ref that differs from what was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefChange {
    /// Moved (or appeared) and counts as a push: runs start for it.
    Pushed {
        name: String,
        sha: String,
        before: Option<String>,
    },
    /// Appeared on the first look, not the default branch: recorded only.
    Recorded {
        name: String,
        sha: String,
    },
    Deleted {
        name: String,
        before: String,
    },
}

/// The changes from `seen` (ref name to commit, as recorded) to `current` (as the
/// repository has them now), in `current`'s order, deletions last.
pub fn changes(seen: &HashMap<String, String>, current: &[(String, String)], default_branch: &str) -> Vec<RefChange> {
    let first = seen.is_empty();
    let head = format!("refs/heads/{default_branch}");
    let mut out = Vec::new();
    for (name, sha) in current {
        if seen.get(name) == Some(sha) {
            continue;
        }
        if !first || *name == head {
            out.push(RefChange::Pushed { name: name.clone(), sha: sha.clone(), before: seen.get(name).cloned() });
        } else {
            out.push(RefChange::Recorded { name: name.clone(), sha: sha.clone() });
        }
    }
    let mut gone: Vec<(&String, &String)> =
        seen.iter().filter(|(n, _)| !current.iter().any(|(c, _)| c == *n)).collect();
    gone.sort();
    out.extend(
        gone.into_iter().map(|(name, before)| RefChange::Deleted { name: name.clone(), before: before.clone() }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect()
    }

    #[test]
    fn a_first_look_pushes_only_the_default_branch_and_later_looks_push_what_moved() {
        let now = refs(&[("refs/heads/main", "a"), ("refs/heads/dev", "b"), ("refs/tags/v1", "c")]);
        let first = changes(&HashMap::new(), &now, "main");
        assert_eq!(first[0], RefChange::Pushed { name: "refs/heads/main".into(), sha: "a".into(), before: None });
        assert_eq!(first[1], RefChange::Recorded { name: "refs/heads/dev".into(), sha: "b".into() });
        let seen: HashMap<String, String> = now.into_iter().collect();
        let later = refs(&[("refs/heads/main", "a"), ("refs/heads/dev", "d")]);
        assert_eq!(
            changes(&seen, &later, "main"),
            [
                RefChange::Pushed { name: "refs/heads/dev".into(), sha: "d".into(), before: Some("b".into()) },
                RefChange::Deleted { name: "refs/tags/v1".into(), before: "c".into() },
            ]
        );
    }
}
