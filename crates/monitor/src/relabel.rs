//! Relabelling as Prometheus does it, for `relabel_configs` (targets before they are
//! scraped) and `metric_relabel_configs` (series before they are stored): `replace`,
//! `keep`, `drop`, `keepequal`, `dropequal`, `labelmap`, `labeldrop`, `labelkeep`,
//! `lowercase`, `uppercase` and `hashmod`, with anchored regular expressions and
//! `$1`/`${name}` replacements.

use regex::Regex;
use sha2::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
    HashMod,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            "hashmod" => Action::HashMod,
            _ => return None,
        })
    }
}

/// One relabelling step.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// Anchored at both ends, as Prometheus anchors it.
    pub regex: Regex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source_labels == other.source_labels
            && self.separator == other.separator
            && self.regex.as_str() == other.regex.as_str()
            && self.modulus == other.modulus
            && self.target_label == other.target_label
            && self.replacement == other.replacement
            && self.action == other.action
    }
}

impl RelabelConfig {
    /// Prometheus' defaults: `replace` of `(.*)` by `$1`, separator `;`.
    pub fn new(action: Action) -> RelabelConfig {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            regex: anchored("(.*)").expect("the default pattern compiles"),
            modulus: 0,
            target_label: String::new(),
            replacement: "$1".into(),
            action,
        }
    }
}

/// Compiles `pattern` anchored at both ends.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{pattern})$"))
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    labels.retain(|(k, _)| k != name);
    if !value.is_empty() {
        labels.push((name.to_string(), value));
    }
}

fn valid_name(name: &str) -> bool {
    mobius_series::valid_label_name(name)
}

/// Applies the steps in order; `None` when a step drops the target or series.
pub fn relabel(mut labels: Vec<(String, String)>, steps: &[RelabelConfig]) -> Option<Vec<(String, String)>> {
    for step in steps {
        let value: String =
            step.source_labels.iter().map(|n| get(&labels, n)).collect::<Vec<_>>().join(&step.separator);
        match step.action {
            Action::Keep if !step.regex.is_match(&value) => return None,
            Action::Drop if step.regex.is_match(&value) => return None,
            Action::KeepEqual if value != get(&labels, &step.target_label) => return None,
            Action::DropEqual if value == get(&labels, &step.target_label) => return None,
            Action::Keep | Action::Drop | Action::KeepEqual | Action::DropEqual => {}
            Action::Replace => {
                let Some(captures) = step.regex.captures(&value) else { continue };
                let mut target = String::new();
                captures.expand(&step.target_label, &mut target);
                if !valid_name(&target) {
                    continue;
                }
                let mut replaced = String::new();
                captures.expand(&step.replacement, &mut replaced);
                set(&mut labels, &target, replaced);
            }
            Action::Lowercase => set(&mut labels, &step.target_label, value.to_lowercase()),
            Action::Uppercase => set(&mut labels, &step.target_label, value.to_uppercase()),
            Action::HashMod => {
                // Prometheus: the first 8 bytes of the value's MD5 as a big-endian number.
                // MD5 is not among our dependencies: SHA-256's first 8 bytes spread as well,
                // but the shard a value lands on differs from Prometheus'.
                let digest = sha2::Sha256::digest(value.as_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                let shard = u64::from_be_bytes(first) % step.modulus.max(1);
                set(&mut labels, &step.target_label, shard.to_string());
            }
            Action::LabelMap => {
                let mut added = Vec::new();
                for (name, v) in &labels {
                    if step.regex.is_match(name) {
                        let new = step.regex.replace_all(name, step.replacement.as_str()).into_owned();
                        added.push((new, v.clone()));
                    }
                }
                for (name, v) in added {
                    set(&mut labels, &name, v);
                }
            }
            Action::LabelDrop => labels.retain(|(name, _)| !step.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|(name, _)| step.regex.is_match(name)),
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn step(action: Action, source: &[&str], regex: &str, target: &str, replacement: &str) -> RelabelConfig {
        RelabelConfig {
            source_labels: source.iter().map(|s| s.to_string()).collect(),
            regex: anchored(regex).unwrap(),
            target_label: target.into(),
            replacement: replacement.into(),
            ..RelabelConfig::new(action)
        }
    }

    #[test]
    fn replace_keep_drop_and_label_actions_follow_prometheus() {
        let labels = pairs(&[("__address__", "db-1.lab:9100"), ("__meta_team", "core"), ("job", "node")]);
        let out = relabel(
            labels.clone(),
            &[
                step(Action::Replace, &["__address__"], "([^.]+)\\..*:(\\d+)", "host", "${1}"),
                step(Action::LabelMap, &[], "__meta_(.+)", "", "$1"),
                step(Action::Replace, &["job", "host"], "(.*);(.*)", "id", "$1/$2"),
                step(Action::Uppercase, &["team"], "(.*)", "team_upper", "$1"),
                step(Action::LabelDrop, &[], "__meta_.*", "", ""),
            ],
        )
        .unwrap();
        assert_eq!(get(&out, "host"), "db-1");
        assert_eq!(get(&out, "team"), "core");
        assert_eq!(get(&out, "id"), "node/db-1");
        assert_eq!(get(&out, "team_upper"), "CORE");
        assert_eq!(get(&out, "__meta_team"), "");
        // Anchored: `node` does not match `nod`.
        assert!(relabel(labels.clone(), &[step(Action::Keep, &["job"], "nod", "", "")]).is_none());
        assert!(relabel(labels.clone(), &[step(Action::Drop, &["job"], "node|web", "", "")]).is_none());
        assert!(relabel(labels.clone(), &[step(Action::Keep, &["job"], "node|web", "", "")]).is_some());
        // A replacement to the empty string removes the label; a non-matching regex changes nothing.
        let out = relabel(labels.clone(), &[step(Action::Replace, &["job"], ".*", "job", "")]).unwrap();
        assert_eq!(get(&out, "job"), "");
        let out = relabel(labels.clone(), &[step(Action::Replace, &["job"], "web", "job", "x")]).unwrap();
        assert_eq!(get(&out, "job"), "node");
        let out = relabel(labels, &[step(Action::LabelKeep, &[], "job", "", "")]).unwrap();
        assert_eq!(out, pairs(&[("job", "node")]));
    }

    #[test]
    fn hashmod_spreads_and_keepequal_compares() {
        let mut shards = std::collections::BTreeSet::new();
        for i in 0..50 {
            let labels = pairs(&[("__address__", &format!("host-{i}:9100"))]);
            let out = relabel(
                labels,
                &[RelabelConfig {
                    source_labels: vec!["__address__".into()],
                    modulus: 4,
                    target_label: "shard".into(),
                    ..RelabelConfig::new(Action::HashMod)
                }],
            )
            .unwrap();
            shards.insert(get(&out, "shard").to_string());
        }
        assert_eq!(shards.len(), 4, "{shards:?}");
        let labels = pairs(&[("a", "x"), ("b", "x"), ("c", "y")]);
        let keep = |target: &str| {
            relabel(
                labels.clone(),
                &[RelabelConfig {
                    source_labels: vec!["a".into()],
                    target_label: target.into(),
                    ..RelabelConfig::new(Action::KeepEqual)
                }],
            )
        };
        assert!(keep("b").is_some());
        assert!(keep("c").is_none());
    }
}
