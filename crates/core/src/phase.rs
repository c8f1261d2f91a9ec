//! Where a rollout is and how it goes: the phase the controller reports and the strategy it
//! follows, as the store keeps them and the API shows them.

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

/// How a rollout replaces the running version: the kind of an environment's strategy
/// (its settings stay in `mobius.yaml`).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Stop the old instances, then start the new ones.
    Recreate,
    /// Replace instances a few at a time.
    Rolling,
    /// Start the new version beside the old one, then switch all traffic at once.
    BlueGreen,
    /// Shift traffic step by step under analysis.
    Canary,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] =
        [StrategyKind::Recreate, StrategyKind::Rolling, StrategyKind::BlueGreen, StrategyKind::Canary];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Recreate => "recreate",
            StrategyKind::Rolling => "rolling",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        }
    }

    pub fn parse(text: &str) -> Option<StrategyKind> {
        StrategyKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Phase, StrategyKind};

    #[test]
    fn phases_read_back_what_they_write() {
        for p in [Phase::Progressing, Phase::Paused, Phase::Succeeded, Phase::RolledBack, Phase::Failed] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("done"), None);
        assert!(Phase::RolledBack.is_final() && !Phase::Paused.is_final());
    }

    #[test]
    fn strategy_kinds_read_back_what_they_write_and_serialize_as_stored() {
        for k in StrategyKind::ALL {
            assert_eq!(StrategyKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
        }
        assert_eq!(StrategyKind::parse("blue_green"), None);
    }
}
