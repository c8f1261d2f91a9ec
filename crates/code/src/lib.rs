//! The code stage: repositories read with gix (refs, files and history at a commit,
//! mirrors of remote repositories), what moved since the last look (`refs`), webhook
//! deliveries checked and read (`webhook`), and scheduled workflows due (`cron`).
//! CI turns what this stage finds into runs.
#![forbid(unsafe_code)]

pub mod cron;
pub mod git;
pub mod refs;
pub mod webhook;
