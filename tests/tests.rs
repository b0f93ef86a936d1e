//! End-to-end tests: the real `turingwatch` binary against a real SLURM, SMTP server and browser.
//!
//! One module per area. `util` gives each test its own directory and handles for the dev
//! cluster. With `TURINGWATCH_E2E=1` (set by `.ci/run`) a missing SLURM fails a test instead of
//! skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod accounting;
mod analysis;
mod cli;
mod client;
mod crash;
mod deploy;
mod disk_full;
mod distribute;
mod export;
mod fidelity;
mod hostile;
mod ingest;
mod load;
mod mail;
mod modes;
mod outage;
mod sampled;
mod scrape;
mod scrape_support;
mod server;
mod slurm;
mod units;
mod web;
