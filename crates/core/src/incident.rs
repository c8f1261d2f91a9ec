//! Where an incident is: open (paging), acknowledged (someone is on it), resolved.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an incident is.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Firing and escalating until someone acknowledges it.
    Open,
    /// Someone is on it: escalation has stopped.
    Acknowledged,
    /// Its alerts resolved, or someone resolved it.
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentStatus> {
        [IncidentStatus::Open, IncidentStatus::Acknowledged, IncidentStatus::Resolved]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which incidents a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentFilter {
    All,
    Only(IncidentStatus),
    /// Open or acknowledged.
    Unresolved,
}

impl IncidentFilter {
    /// `open`, `acknowledged`, `resolved` or `unresolved`.
    pub fn parse(text: &str) -> Option<IncidentFilter> {
        match text {
            "unresolved" => Some(IncidentFilter::Unresolved),
            other => IncidentStatus::parse(other).map(IncidentFilter::Only),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{IncidentFilter, IncidentStatus};

    #[test]
    fn incident_states_read_back_what_they_write() {
        for s in [IncidentStatus::Open, IncidentStatus::Acknowledged, IncidentStatus::Resolved] {
            assert_eq!(IncidentStatus::parse(s.as_str()), Some(s));
            assert_eq!(IncidentFilter::parse(s.as_str()), Some(IncidentFilter::Only(s)));
        }
        assert_eq!(IncidentFilter::parse("unresolved"), Some(IncidentFilter::Unresolved));
        assert_eq!(IncidentFilter::parse("closed"), None);
    }
}
