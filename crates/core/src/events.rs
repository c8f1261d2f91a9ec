//! The kinds of what happens to a rollout and to an incident, as their timelines show them.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! kinds {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|k| k.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kinds! {
    /// What happened to a rollout.
    DeployEventKind {
        /// Someone (or auto-deploy) started it.
        Started = "started",
        /// A canary step began.
        Step = "step",
        /// Someone went past a pause (or the blue-green switch).
        Promoted = "promoted",
        /// A protected environment's approval was given.
        Approved = "approved",
        /// Someone (or a firing alert) asked to roll back.
        Aborted = "aborted",
        /// The new version takes all traffic.
        Succeeded = "succeeded",
        /// The analysis or a failing instance rolled it back.
        RolledBack = "rolled_back",
        /// The new version never became ready.
        Failed = "failed",
        /// The server restarted and took the rollout up again.
        Resumed = "resumed",
        /// A newer release of the service arrived and waits for this rollout.
        NewerRelease = "newer_release",
    }
}

kinds! {
    /// What happened to an incident.
    IncidentEventKind {
        /// An alert group started firing.
        Opened = "opened",
        /// Another alert joined the group.
        Alert = "alert",
        /// Every firing alert is silenced or inhibited: paging pauses.
        Silenced = "silenced",
        /// A level of the escalation policy was paged.
        Escalated = "escalated",
        /// Escalation could not page (nobody to page, the group gone).
        Escalation = "escalation",
        /// The incident's alert aborted a rollout of its service.
        Rollback = "rollback",
        /// Someone is on it.
        Acknowledged = "acknowledged",
        /// Its alerts resolved, or someone resolved it.
        Resolved = "resolved",
    }
}

#[cfg(test)]
mod tests {
    use super::{DeployEventKind, IncidentEventKind};

    #[test]
    fn event_kinds_read_back_what_they_write() {
        for k in DeployEventKind::ALL {
            assert_eq!(DeployEventKind::parse(k.as_str()), Some(*k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for k in IncidentEventKind::ALL {
            assert_eq!(IncidentEventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(DeployEventKind::parse("exploded"), None);
    }
}
