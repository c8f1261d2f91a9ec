//! The status and the conclusion of a run, job or step, spelled as GitHub spells them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a run, job or step ended.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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

    /// Every conclusion.
    pub const ALL: [Conclusion; 4] =
        [Conclusion::Success, Conclusion::Failure, Conclusion::Cancelled, Conclusion::Skipped];

    /// The conclusion named by [`Conclusion::as_str`].
    pub fn parse(name: &str) -> Option<Conclusion> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
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

/// Where a run, job or step is: waiting, running, or done (then it has a [`Conclusion`]).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    InProgress,
    Completed,
}

impl Status {
    /// GitHub's name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
        }
    }

    /// Every status, in the order a run goes through them.
    pub const ALL: [Status; 3] = [Status::Queued, Status::InProgress, Status::Completed];

    /// The status named by [`Status::as_str`].
    pub fn parse(name: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runs list shows for a run, job or step: its conclusion once it has one,
/// its status before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum State {
    Waiting(Status),
    Done(Conclusion),
}

impl State {
    pub fn of(status: Status, conclusion: Option<Conclusion>) -> State {
        conclusion.map_or(State::Waiting(status), State::Done)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting(s) => s.as_str(),
            State::Done(c) => c.as_str(),
        }
    }
}

impl fmt::Display for State {
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

    #[test]
    fn statuses_and_conclusions_read_back_what_they_write() {
        for s in [Status::Queued, Status::InProgress, Status::Completed] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for c in [Success, Failure, Cancelled, Skipped] {
            assert_eq!(Conclusion::parse(c.as_str()), Some(c));
        }
        assert_eq!(Status::parse("done"), None);
        assert_eq!(State::of(Status::InProgress, None).as_str(), "in_progress");
        assert_eq!(State::of(Status::Completed, Some(Failure)).as_str(), "failure");
    }
}
