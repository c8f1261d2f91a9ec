//! The conclusion of a run, job or step, spelled as GitHub spells it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a run, job or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Conclusion {
    /// GitHub's lowercase name, as used in `needs.<job>.result` and `steps.<id>.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }

    /// The conclusion named by [`Conclusion::as_str`].
    pub fn parse(name: &str) -> Option<Conclusion> {
        [Conclusion::Success, Conclusion::Failure, Conclusion::Cancelled, Conclusion::Skipped]
            .into_iter()
            .find(|c| c.as_str() == name)
    }

    /// Combines the results of several matrix legs or reusable-workflow jobs into one,
    /// the way GitHub reports a matrix job: any failure wins, then cancellation, then success.
    pub fn combine(results: impl IntoIterator<Item = Conclusion>) -> Conclusion {
        let mut any = false;
        let mut all_skipped = true;
        let mut cancelled = false;
        for result in results {
            any = true;
            match result {
                Conclusion::Failure => return Conclusion::Failure,
                Conclusion::Cancelled => cancelled = true,
                Conclusion::Success => all_skipped = false,
                Conclusion::Skipped => {}
            }
        }
        if cancelled {
            Conclusion::Cancelled
        } else if !any || all_skipped {
            Conclusion::Skipped
        } else {
            Conclusion::Success
        }
    }
}

impl fmt::Display for Conclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Conclusion::*;
    use super::*;

    #[test]
    fn combine_prefers_failure_then_cancellation() {
        assert_eq!(Conclusion::combine([Success, Failure, Cancelled]), Failure);
        assert_eq!(Conclusion::combine([Success, Cancelled]), Cancelled);
        assert_eq!(Conclusion::combine([Success, Skipped]), Success);
        assert_eq!(Conclusion::combine([Skipped, Skipped]), Skipped);
        assert_eq!(Conclusion::combine([]), Skipped);
    }
}
