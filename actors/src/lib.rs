//! turingwatch: the daemon and its one-shot tools, as a library the `turingwatch` binary runs.
//!
//! Layout (see the README's "Where things live"): roles (one module per subcommand) on top,
//! then the actors (`actors/`: actix shells, messages, wiring), then the domain modules (pure
//! logic and I/O adapters, no actix). Imports go one way.

// Roles.
pub mod cli;
pub mod report_tools;
pub mod roles;

// Actors.
pub mod actors;

// Domain modules: pure logic and I/O adapters.
pub mod accounting;
pub mod analysis;
pub mod backoff;
pub mod clock;
pub mod distribution;
pub mod job;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod munge;
pub mod report;
pub mod sample;
pub mod slurm;
pub mod store;
pub mod web_backend;
