//! The roles: one module per subcommand of the `turingwatch` binary (`cli` parses the command
//! line and dispatches). Roles are the edge: they open what they need, call the domain modules
//! and the actors, print, and map outcomes to exit codes; anyhow lives here.

pub mod accounting;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod debug;
pub mod distribute;
pub mod job;
pub mod mail;
pub mod scrape;
pub mod server;
pub mod version;

use crate::analysis::period::{Period, PeriodSpec};
use crate::clock::unix_now;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;
use turingwatch_config::Config;

/// Exit code for a configuration error (sysexits EX_CONFIG); the units set
/// `RestartPreventExitStatus=78`.
pub const EXIT_CONFIG: u8 = 78;

/// Opens the store for a one-shot role (the server must not hold it).
pub(crate) fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(Path::new(&config.store.path)).with_context(|| {
        format!("opening the store {} (is a turingwatch server using it? stop it first)", config.store.path)
    })
}

/// `current`, `previous` or a period start, as the roles' `--period` takes it.
pub(crate) fn resolve_period(spec: &PeriodSpec, text: &str) -> anyhow::Result<Period> {
    let now = unix_now();
    let current = spec.containing(now)?;
    Ok(match text {
        "current" => current,
        "previous" => spec.containing(current.start.saturating_sub(1))?,
        other => {
            let start: u64 = other.parse().with_context(|| {
                format!("--period {other:?}: expected current, previous, or a period start in unix seconds")
            })?;
            spec.containing(start)?
        }
    })
}

/// A current-thread runtime for a one-shot role's async calls.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}
