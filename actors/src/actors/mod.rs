//! The actors: thin actix shells over the domain types, supervised, exchanging the messages of
//! [`messages`]. Imports the domain; never the roles.
//!
//! Server (wired by [`system`]): the accounting importer publishes `JobsImported` to the
//! rollover and (distributor in the server) the allocator; the rollover publishes `PeriodClosed`
//! to the mailer. Node (wired by the scrape role): the sampler hands `SubmitSamples` to the
//! reporter. Every actor runs under an actix `Supervisor` and restarts with backoff
//! ([`supervision`]).

/// The accounting importer: sacct windows into the store, `JobsImported` out.
pub mod accounting;
/// The allocator: places scraper jobs on busy nodes through SLURM.
pub mod allocator;
pub mod client_api;
pub mod exporter;
/// Group commit of scraper reports (one writing thread).
pub mod group_commit;
/// `POST /ingest/v1/report`: scraper reports into the store, exactly once.
pub mod ingest;
/// The mailer: sends due outbox entries when a period closed (or on SIGUSR1).
pub mod mailer;
/// Every message, by handling actor.
pub mod messages;
/// The reporter (node): spools reports and sends them, backing off while the server is away.
pub mod reporter;
/// The rollover: runs the period cycle, `PeriodClosed` out.
pub mod rollover;
/// The sampler (node): one sample of every step of the node per interval.
pub mod sampler;
/// Config, store and metrics handles of the server.
pub mod shared;
/// The one signal handler.
pub mod signals;
/// Restart bookkeeping: backoff, counting.
pub mod supervision;
/// The server's wiring: starts the actors in order, serves HTTP, shuts down in order.
pub mod system;

#[cfg(test)]
mod tests_support;
