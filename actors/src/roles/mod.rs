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
pub mod status;
pub mod version;

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

/// The server a client role asks: `--server`, else `[scrape] server_url`, else
/// `http://<web.bind>` (as the scraper finds it).
pub(crate) fn server_url(config: &Config, flag: Option<&str>) -> String {
    match flag {
        Some(url) => url.to_string(),
        None if config.scrape.server_url.is_empty() => format!("http://{}", config.web.bind),
        None => config.scrape.server_url.clone(),
    }
}

/// How long a server may take to answer a client role (connect, send, read each); an
/// analysis of a big period takes a while.
pub(crate) const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs an admin command through the running server's admin API; `Ok(None)` when no server
/// answers there (the caller then opens the store itself), with one line saying so.
pub(crate) fn through_server<T: serde::de::DeserializeOwned>(
    config: &Config,
    flag: Option<&str>,
    path: &str,
    body: Option<&[u8]>,
    what: &str,
) -> anyhow::Result<Option<T>> {
    let url = server_url(config, flag);
    match crate::client::admin_call(&url, path, body, &config.ingest.munge_command, ADMIN_TIMEOUT) {
        Ok(answer) => Ok(Some(answer)),
        Err(crate::client::ClientError::Unreachable { .. }) => {
            eprintln!("turingwatch {what}: no server at {url}; opening the store {}", config.store.path);
            Ok(None)
        }
        Err(err) => Err(anyhow::anyhow!("{err} ({url})")),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}
