//! A series' identity (its sorted label set) and the label matchers that select series.

use regex::Regex;
use std::fmt;

/// The label naming a series' metric.
pub const METRIC_NAME: &str = "__name__";

/// A label set, sorted by name, without empty values (an empty value is an absent label).
/// Shared: a clone is a reference count, so queries pass label sets around freely.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(std::sync::Arc<[(String, String)]>);

impl Labels {
    /// Sorts the pairs; a name given twice keeps its last value; empty values are dropped.
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        // A stable sort keeps the given order among equal names: keep the last.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Labels(out.into())
    }

    /// The set without the label `name` (still sorted; shared when it had none).
    pub fn without(&self, name: &str) -> Labels {
        if self.get(name).is_none() {
            return self.clone();
        }
        Labels(self.0.iter().filter(|(k, _)| k != name).cloned().collect::<Vec<_>>().into())
    }

    /// The set with `name` set to `value`, or without it when `value` is empty.
    pub fn with(&self, name: &str, value: String) -> Labels {
        let mut pairs: Vec<(String, String)> =
            self.0.iter().filter(|(k, _)| k != name).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        pairs.push((name.to_string(), value));
        Labels::new(pairs)
    }

    /// The set with only the labels `names` lists (PromQL's `by` and `on`).
    pub fn only(&self, names: &[String]) -> Labels {
        Labels(self.0.iter().filter(|(k, _)| names.iter().any(|n| n == k)).cloned().collect::<Vec<_>>().into())
    }

    /// The set without the metric name and the labels `names` lists (PromQL's
    /// `without` and `ignoring`).
    pub fn except(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| k != METRIC_NAME && !names.iter().any(|n| n == k))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    /// The metric name.
    pub fn metric(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes the label strings take, for memory accounting.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints a series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={}", Quoted(v))?;
        }
        f.write_str("}")
    }
}

/// A label value in double quotes, escaped as PromQL and Alertmanager read it back.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
    }
}

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// The operator Alertmanager's v2 API spells as `isEqual` and `isRegex`.
    pub fn from_flags(is_equal: bool, is_regex: bool) -> MatchOp {
        match (is_equal, is_regex) {
            (true, false) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (false, true) => MatchOp::NotRegex,
        }
    }

    /// `isEqual` of Alertmanager's v2 API: `=` and `=~`.
    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }

    /// `isRegex` of Alertmanager's v2 API: `=~` and `!~`.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

/// `name op "value"`, as in `{job=~"api|web"}`. An absent label matches as the empty value.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Regular expressions are anchored at both ends, as in Prometheus.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, regex::Error> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(&format!("^(?s:{value})$"))?),
            _ => None,
        };
        Ok(Matcher { name: name.to_string(), op, value: value.to_string(), regex })
    }

    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher { name: name.to_string(), op: MatchOp::Equal, value: value.to_string(), regex: None }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the matcher accepts a series without the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl fmt::Display for Matcher {
    /// `name op "value"`, escaped so that `parse_matchers` and PromQL read it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), Quoted(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_printed_like_prometheus() {
        let l = Labels::from_pairs(&[("job", "a"), ("__name__", "up"), ("empty", ""), ("job", "b")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), [("__name__", "up"), ("job", "b")]);
        assert_eq!(l.to_string(), "up{job=\"b\"}");
        assert_eq!(l.get("empty"), None);
    }

    #[test]
    fn matchers_are_anchored_and_absent_is_empty() {
        let m = Matcher::new(MatchOp::Regex, "job", "api|web").unwrap();
        assert!(m.matches("api") && !m.matches("apis") && !m.matches_empty());
        let m = Matcher::new(MatchOp::NotRegex, "job", "a.*").unwrap();
        assert!(m.matches_empty() && !m.matches("abc"));
        assert!(Matcher::new(MatchOp::Regex, "job", "(").is_err());
    }
}
