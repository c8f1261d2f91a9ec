//! Secret masking: every secret and `::add-mask::` value, in its plain, base64
//! and URL-encoded forms and line by line, is replaced by `***` in all output.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

const MASK: &str = "***";

/// Everything but RFC 3986's unreserved characters.
const URI_DATA: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// What `encodeURIComponent` escapes.
const URI_COMPONENT: &percent_encoding::AsciiSet =
    &URI_DATA.remove(b'!').remove(b'\'').remove(b'(').remove(b')').remove(b'*');

/// A shared, growable set of values to mask. Cheap to clone.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<State>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker(..)")
    }
}

#[derive(Default)]
struct State {
    values: BTreeSet<String>,
    automaton: Option<AhoCorasick>,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret value with its derived forms.
    pub fn add(&self, secret: &str) {
        let mut forms = Vec::new();
        let mut push = |v: &str| {
            let v = v.trim_end_matches('\r');
            // Whitespace-only fragments would mask every space of the log.
            if !v.trim().is_empty() {
                forms.push(v.to_string());
            }
        };
        push(secret);
        for line in secret.lines() {
            push(line);
        }
        push(&base64::engine::general_purpose::STANDARD.encode(secret));
        push(base64::engine::general_purpose::STANDARD.encode(secret).trim_end_matches('='));
        // URL-encoded as RFC 3986 data (.NET's EscapeDataString, which GitHub's runner masks)
        // and as JavaScript's encodeURIComponent, which also leaves !'()* alone.
        push(&percent_encoding::utf8_percent_encode(secret, URI_DATA).to_string());
        push(&percent_encoding::utf8_percent_encode(secret, URI_COMPONENT).to_string());
        let mut state = match self.inner.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = state.values.len();
        state.values.extend(forms);
        if state.values.len() != before {
            // A contiguous NFA builds in time linear in the secrets' length; the DFA that
            // the builder would otherwise pick for few patterns takes quadratic time on
            // repetitive ones (36 s for 40 KB of one letter).
            state.automaton = AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .match_kind(MatchKind::LeftmostLongest)
                .build(state.values.iter())
                .ok();
        }
    }

    /// Replaces every masked value in `text` by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let state = match self.inner.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &state.automaton {
            Some(ac) if ac.is_match(text) => {
                let replacements = vec![MASK; state.values.len()];
                Cow::Owned(ac.replace_all(text, &replacements))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks every string in a JSON value, keys included.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&key).into_owned(), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Whether `text` contains any masked value (job outputs holding secrets are dropped).
    pub fn contains_secret(&self, text: &str) -> bool {
        self.inner.read().ok().and_then(|s| s.automaton.as_ref().map(|ac| ac.is_match(text))).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_encoded_and_multiline_forms() {
        let m = Masker::new();
        m.add("s3cr3t!");
        m.add("line-one\nline-two");
        assert_eq!(m.mask("token=s3cr3t! end"), "token=*** end");
        assert_eq!(m.mask("b64 czNjcjN0IQ=="), "b64 ***");
        assert_eq!(m.mask("url s3cr3t%21"), "url ***");
        m.add("a-b c.d!");
        assert_eq!(m.mask("q=a-b%20c.d%21"), "q=***");
        assert_eq!(m.mask("q=a-b%20c.d!"), "q=***");
        assert_eq!(m.mask("got line-two"), "got ***");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn longest_value_wins_and_blank_is_ignored() {
        let m = Masker::new();
        m.add("abc");
        m.add("abcdef");
        m.add("   ");
        assert_eq!(m.mask("xabcdefx abc  "), "x***x ***  ");
    }
}

#[cfg(test)]
mod repetition_tests {
    use super::*;

    /// Issue 15, item 5: secrets of one repeated letter (the worst case for the DFA
    /// the builder used to pick) are masked whole, however they are cut in the text.
    /// Issue 15, item 9: every string of a JSON value, keys included.
    #[test]
    fn json_values_are_masked_everywhere() {
        let m = Masker::new();
        m.add("hunter2");
        let mut v = serde_json::json!({"name": "t hunter2", "hunter2": [1, "x-hunter2-y", null]});
        m.mask_json(&mut v);
        assert_eq!(v, serde_json::json!({"name": "t ***", "***": [1, "x-***-y", null]}));
    }

    #[test]
    fn repetitive_secrets_are_masked() {
        let m = Masker::new();
        let secret = "a".repeat(40 * 1024);
        m.add(&secret);
        let text = format!("x{secret}y {secret}{secret}");
        assert_eq!(m.mask(&text), "x***y ******");
        assert_eq!(m.mask(&"a".repeat(100)), "a".repeat(100), "shorter runs are not the secret");
    }
}
