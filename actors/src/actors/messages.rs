//! Every message between actors, sectioned by the actor that handles it, each with its result
//! type beside it.
//!
//! Events are past tense (`JobsImported`), commands imperative (`SendDue`), queries `Get…`.
//! Actors receive their collaborators as `Recipient<M>` values from `system.rs` (or the scrape
//! role), never from a registry, so a test can pass a probe. Payloads are domain types, so the
//! domain modules never see actix.

use crate::accounting::ImportChanges;
use crate::wire::format::StepBatch;
use actix::Message;

// --- Handled by the rollover and the allocator (published by the accounting importer). ---

/// An accounting import committed: what changed (new and finished jobs, busy nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct JobsImported(pub ImportChanges);

// --- Handled by the allocator. ---

/// Reconcile with squeue, start a round when due, submit (the allocator sends it to itself).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Cancels every scraper job the allocator knows (on shutdown); answers when done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CancelScrapers;

// --- Handled by the mailer (published by the rollover; SendDue from the signal handler). ---

/// A period closed: its results are final and its mails are queued in the outbox. The mailer
/// sends what is due at once when the schedule allows.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct PeriodClosed {
    pub start: u64,
    pub end: u64,
    /// Mails queued for it.
    pub queued: usize,
}

/// Opens the sending window (`[mail] schedule = "on_signal"`; the server sends it on SIGUSR1)
/// and sends what is due.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SendDue;

// --- Handled by the node sampler (scrape role). ---

/// Stop requested (SIGTERM, end of a bounded run): take one last sample, hand everything to
/// the reporter and answer once it was spooled and sent (or kept).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ReporterStats")]
pub struct Finish;

// --- Handled by the reporter (scrape role; sent by the sampler). ---

/// Samples of some steps since the last report: spool them as one report, then send the spool.
/// `last`: the run ends; no retry is scheduled after this one.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ReporterStats")]
pub struct SubmitSamples {
    pub steps: Vec<StepBatch>,
    pub last: bool,
}

/// What the reporter has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct ReporterStats {
    /// Reports the server took.
    pub sent: u64,
    /// Reports still in the spool.
    pub left_in_spool: usize,
    /// Reports the server refused for good (set aside in the spool's `rejected/`).
    pub rejected: u64,
}
