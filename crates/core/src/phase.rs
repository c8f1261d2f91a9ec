//! Where a rollout is: the phase the controller reports, the store keeps and the API shows.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a rollout is.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Instances starting or traffic shifting.
    Progressing,
    /// Waiting at a pause without duration, for a promotion or for an approval.
    Paused,
    /// The new version takes all new requests.
    Succeeded,
    /// The new version was taken out of traffic and the stable one restored.
    RolledBack,
    /// The new version never became ready; the stable one kept serving.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack => "rolled_back",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        [Phase::Progressing, Phase::Paused, Phase::Succeeded, Phase::RolledBack, Phase::Failed]
            .into_iter()
            .find(|p| p.as_str() == text)
    }

    /// Succeeded, rolled back or failed: the rollout has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Failed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn phases_read_back_what_they_write() {
        for p in [Phase::Progressing, Phase::Paused, Phase::Succeeded, Phase::RolledBack, Phase::Failed] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("done"), None);
        assert!(Phase::RolledBack.is_final() && !Phase::Paused.is_final());
    }
}
