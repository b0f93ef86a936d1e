//! turingwatch: the daemon and its one-shot tools, as a library the `turingwatch` binary runs.
//!
//! Layout (see the README's "Where things live"):
//! - wiring: `cli` (subcommands → roles), `logging`.
//! - domain modules (pure logic and I/O adapters, never actix): `job` (SLURM's records),
//!   `sample` (what scrapers measure), `store` (the redb database).
//! - actors arrive with their issues: accounting import, allocation, scraping, ingest,
//!   period rollover, mailing.

pub mod cli;
pub mod job;
pub mod logging;
pub mod sample;
pub mod store;
