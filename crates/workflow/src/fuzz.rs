//! Entry points for the fuzz targets in `fuzz/` and the bounded property tests that
//! run the same functions in CI: each takes arbitrary bytes and must not panic,
//! overflow its stack or run unbounded.

use crate::expr::{self, Contexts};
use crate::{parse_workflow, SourceFile};

/// The YAML layer (aliases and anchors included), then workflow validation on top.
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mobius_config::yaml::parse(text);
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

/// xorshift64*: a deterministic pseudo-random source for the bounded property tests
/// (a failure reproduces), with no dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)] // reason: an endless source, not an Iterator
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One of `items`.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}
