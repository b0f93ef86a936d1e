//! turingwatch: the daemon and its one-shot tools, as a library the `turingwatch` binary runs.
//!
//! Layout (see the README's "Where things live"). A file directly under `src/` is wiring or an
//! actor; a directory is a domain module and never imports actix.

// Wiring.
pub mod accounting;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod system;
pub mod web_backend;

// Actors and roles.
pub mod allocator;
pub mod clock;
pub mod ingest;
pub mod munge;
pub mod scraper;

// Actors.
pub mod mailer;
pub mod rollover;

// Roles: one module per subcommand.
pub mod roles;

// Domain modules: pure logic and I/O adapters.
pub mod analysis;
pub mod job;
pub mod mail;
pub mod period;
pub mod sample;
pub mod slurm;
pub mod store;
pub mod wire;
