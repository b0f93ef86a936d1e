//! Messages between actors, sectioned by the actor that handles them, each with its result type.
//!
//! Events are past tense (`JobsImported`), commands imperative, queries `Get…`. Actors receive
//! their collaborators as `Recipient<M>` values from `system.rs`, so a test can pass a probe.

use crate::job::JobId;
use actix::Message;

// --- Published by the accounting importer; handled by the allocator and the rollover. ---

/// An accounting import committed: what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct JobsImported {
    /// End of the window imported (the new watermark), unix seconds.
    pub until: u64,
    /// Jobs seen for the first time.
    pub new: Vec<JobId>,
    /// Jobs that ended since the previous import.
    pub finished: Vec<JobId>,
    /// Nodes with running jobs and how many running steps (or jobs) each has, busiest first.
    pub busy_nodes: Vec<(String, u32)>,
}

// --- Published by the rollover; handled by the mailer. ---

/// A period closed: its results are final and its mails are queued in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct PeriodClosed {
    pub start: u64,
    pub end: u64,
    /// Mails queued for it.
    pub queued: usize,
}
