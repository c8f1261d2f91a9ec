//! The kinds of what happens: every entry of the event log ([`EventKind`]), and the
//! rollout and incident timelines that read it ([`DeployEventKind`], [`IncidentEventKind`]).

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

        /// The schema lists the names as stored and shown.
        #[cfg(feature = "schema")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|k| k.as_str())))
                    .into()
            }
        }

        #[cfg(feature = "schema")]
        impl utoipa::ToSchema for $name {}

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

kinds! {
    /// What an entry of the event log records. The log is append-only and every stage
    /// writes it; the names are stored as they are written here (a check in both
    /// databases refuses any other). Entries a request caused carry where it came from
    /// and are the audit trail; the rest record what the stages did.
    EventKind {
        /// A new commit was found on a watched branch (polling or a push webhook).
        PushReceived = "push.received",
        /// A signed webhook was accepted.
        WebhookReceive = "webhook.receive",
        /// A webhook delivery id arrived again and was ignored.
        WebhookReplay = "webhook.replay",
        /// A webhook's signature did not verify.
        WebhookRefused = "webhook.refused",
        /// A run was queued.
        RunQueued = "run.queued",
        /// A run started.
        RunStarted = "run.started",
        /// A run completed (its conclusion is in the data).
        RunCompleted = "run.completed",
        /// A job completed (its conclusion is in the data).
        JobCompleted = "job.completed",
        /// Someone asked a run to stop.
        RunCancel = "run.cancel",
        /// Someone re-ran a run (or its failed jobs).
        RunRerun = "run.rerun",
        /// Someone dispatched a workflow.
        WorkflowDispatch = "workflow.dispatch",
        /// A pushed `mobius.yaml` is invalid.
        MobiusYamlInvalid = "mobius_yaml.invalid",
        /// A pushed `mobius.yaml` claims another project's address.
        MobiusYamlRefused = "mobius_yaml.refused",
        /// A pushed monitoring file (rules, routes) is invalid.
        MonitoringInvalid = "monitoring.invalid",
        /// A green run made a release.
        ReleaseCreated = "release.created",
        /// A run's artifact has the digest of an existing release, which is kept.
        ReleaseReuse = "release.reuse",
        /// A run of an older commit than the newest release made none.
        ReleaseSkip = "release.skip",
        /// Someone asked for a deploy.
        Deploy = "deploy",
        /// Someone asked for a rollback.
        Rollback = "rollback",
        /// Someone asked a rollout to go past its pause.
        RolloutPromote = "rollout.promote",
        /// Someone asked a rollout to roll back.
        RolloutAbort = "rollout.abort",
        /// Someone approved a rollout into a protected environment.
        RolloutApprove = "rollout.approve",
        /// A rollout started.
        RolloutStarted = "rollout.started",
        /// A canary step began.
        RolloutStep = "rollout.step",
        /// A rollout went past a pause (or the blue-green switch).
        RolloutPromoted = "rollout.promoted",
        /// A protected environment's approval was given.
        RolloutApproved = "rollout.approved",
        /// A rollout was asked to roll back (by someone or a firing alert).
        RolloutAborted = "rollout.aborted",
        /// The new version takes all traffic.
        RolloutSucceeded = "rollout.succeeded",
        /// The analysis or a failing instance rolled it back.
        RolloutRolledBack = "rollout.rolled_back",
        /// The new version never became ready.
        RolloutFailed = "rollout.failed",
        /// The server restarted and took the rollout up again.
        RolloutResumed = "rollout.resumed",
        /// A newer release of the service arrived and waits for the rollout.
        RolloutNewerRelease = "rollout.newer_release",
        /// An environment now serves a release (a rollout finished, either way).
        EnvironmentServing = "environment.serving",
        /// An alert started firing.
        AlertFiring = "alert.firing",
        /// A firing alert resolved.
        AlertResolved = "alert.resolved",
        /// Alerts were posted to the Alertmanager API.
        AlertsPost = "alerts.post",
        /// The monitoring configuration was reloaded.
        MonitorReload = "monitor.reload",
        /// A silence was created or changed.
        SilencePut = "silence.put",
        /// A silence was expired.
        SilenceExpire = "silence.expire",
        /// An alert group started firing: an incident opened.
        IncidentOpened = "incident.opened",
        /// Another alert joined an incident's group.
        IncidentAlert = "incident.alert",
        /// Every firing alert of an incident is silenced or inhibited.
        IncidentSilenced = "incident.silenced",
        /// A level of the escalation policy was paged.
        IncidentEscalated = "incident.escalated",
        /// Escalation could not page.
        IncidentEscalation = "incident.escalation",
        /// An incident's alert aborted a rollout of its service.
        IncidentRollback = "incident.rollback",
        /// Someone acknowledged an incident.
        IncidentAcknowledged = "incident.acknowledged",
        /// An incident resolved.
        IncidentResolved = "incident.resolved",
        /// Someone asked to acknowledge an incident.
        IncidentAcknowledge = "incident.acknowledge",
        /// Someone asked to resolve an incident.
        IncidentResolve = "incident.resolve",
        /// A project was added.
        ProjectCreate = "project.create",
        /// A secret was set (its value is never recorded).
        SecretSet = "secret.set",
        /// A secret was deleted.
        SecretDelete = "secret.delete",
        /// A variable was set.
        VariableSet = "variable.set",
        /// A token was created.
        TokenCreate = "token.create",
        /// A token was revoked.
        TokenRevoke = "token.revoke",
        /// A request was refused (authentication or role).
        RequestDenied = "request.denied",
        /// Someone signed in to the web UI.
        UiSignIn = "ui.sign_in",
        /// A sign-in to the web UI failed.
        UiSignInFailed = "ui.sign_in_failed",
    }
}

impl From<DeployEventKind> for EventKind {
    fn from(kind: DeployEventKind) -> EventKind {
        match kind {
            DeployEventKind::Started => EventKind::RolloutStarted,
            DeployEventKind::Step => EventKind::RolloutStep,
            DeployEventKind::Promoted => EventKind::RolloutPromoted,
            DeployEventKind::Approved => EventKind::RolloutApproved,
            DeployEventKind::Aborted => EventKind::RolloutAborted,
            DeployEventKind::Succeeded => EventKind::RolloutSucceeded,
            DeployEventKind::RolledBack => EventKind::RolloutRolledBack,
            DeployEventKind::Failed => EventKind::RolloutFailed,
            DeployEventKind::Resumed => EventKind::RolloutResumed,
            DeployEventKind::NewerRelease => EventKind::RolloutNewerRelease,
        }
    }
}

impl From<IncidentEventKind> for EventKind {
    fn from(kind: IncidentEventKind) -> EventKind {
        match kind {
            IncidentEventKind::Opened => EventKind::IncidentOpened,
            IncidentEventKind::Alert => EventKind::IncidentAlert,
            IncidentEventKind::Silenced => EventKind::IncidentSilenced,
            IncidentEventKind::Escalated => EventKind::IncidentEscalated,
            IncidentEventKind::Escalation => EventKind::IncidentEscalation,
            IncidentEventKind::Rollback => EventKind::IncidentRollback,
            IncidentEventKind::Acknowledged => EventKind::IncidentAcknowledged,
            IncidentEventKind::Resolved => EventKind::IncidentResolved,
        }
    }
}

impl EventKind {
    /// The rollout timeline's kind this entry is, if it is one.
    pub fn deploy_kind(self) -> Option<DeployEventKind> {
        DeployEventKind::ALL.iter().copied().find(|k| EventKind::from(*k) == self)
    }

    /// The incident timeline's kind this entry is, if it is one.
    pub fn incident_kind(self) -> Option<IncidentEventKind> {
        IncidentEventKind::ALL.iter().copied().find(|k| EventKind::from(*k) == self)
    }

    /// Parses a kind, or a family of kinds ending in `.*` (`rollout.*`): the kinds it names.
    pub fn matching(pattern: &str) -> Vec<EventKind> {
        match pattern.strip_suffix('*') {
            Some(prefix) => Self::ALL.iter().copied().filter(|k| k.as_str().starts_with(prefix)).collect(),
            None => Self::parse(pattern).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeployEventKind, EventKind, IncidentEventKind};

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

    #[test]
    fn every_timeline_kind_is_a_log_kind_and_back() {
        for k in DeployEventKind::ALL {
            assert_eq!(EventKind::from(*k).deploy_kind(), Some(*k));
            assert_eq!(EventKind::from(*k).as_str(), format!("rollout.{k}"));
        }
        for k in IncidentEventKind::ALL {
            assert_eq!(EventKind::from(*k).incident_kind(), Some(*k));
            assert_eq!(EventKind::from(*k).as_str(), format!("incident.{k}"));
        }
        assert_eq!(EventKind::RunQueued.deploy_kind(), None);
        let names: std::collections::HashSet<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len(), "two kinds share a name");
        assert_eq!(EventKind::matching("rollout.*").len(), 13);
        assert_eq!(EventKind::matching("run.queued"), vec![EventKind::RunQueued]);
        assert!(EventKind::matching("exploded").is_empty());
    }
}
