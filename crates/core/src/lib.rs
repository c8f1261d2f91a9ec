//! Domain model shared by every Mobius stage: results of runs, jobs and steps, and the events a run emits. No IO here.
#![forbid(unsafe_code)]

pub mod clock;
pub mod duration;
pub mod event;
pub mod events;
pub mod incident;
pub mod phase;
pub mod status;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Annotation, AnnotationLevel, RunEvent};
pub use events::{DeployEventKind, EventKind, IncidentEventKind};
pub use incident::{IncidentFilter, IncidentStatus};
pub use phase::{Phase, StrategyKind};
pub use status::{Conclusion, State, Status};
