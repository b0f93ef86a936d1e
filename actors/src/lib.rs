//! turingwatch: the daemon and its one-shot tools, as a library the `turingwatch` binary runs.
//!
//! Layout (see the README's "Layers" and "Where things live"): roles (`roles/`, one module per
//! subcommand) on top, then the actors (`actors/`: actix shells, messages, supervision, the
//! server's wiring), then the domain modules (pure logic and I/O adapters, no actix). Imports go
//! one way; `scripts/check-layers.sh` checks it.

// Roles: one module per subcommand.
pub mod roles;

// Actors.
pub mod actors;

// Domain modules: pure logic and I/O adapters.
pub mod accounting;
pub mod admin;
pub mod analysis;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod distribution;
pub mod export;
pub mod job;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod munge;
pub mod period;
pub mod sample;
pub mod service_user;
pub mod slurm;
pub mod store;
pub mod web_backend;
pub mod wire;
