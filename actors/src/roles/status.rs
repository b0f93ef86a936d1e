//! `turingwatch status`: import lag, current period, scraper jobs, mail queue, store size and
//! actor restarts — from the running server's admin API, or from the store when none runs.

use crate::admin::Status;
use anyhow::Context;
use std::process::ExitCode;
use turingwatch_config::Config;

/// `turingwatch status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Server to ask (default [scrape] server_url, else http://<web.bind>); where none
    /// answers, the store is opened directly.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `turingwatch status`.
pub fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let path = crate::client::ADMIN_STATUS_PATH;
    let status: Status = match super::through_server(config, args.server.as_deref(), path, None, "status")? {
        Some(status) => status,
        // Read-only: never create (or migrate) a store where none is.
        None => {
            let path = std::path::Path::new(&config.store.path);
            let store = crate::store::Store::open_existing(path)
                .with_context(|| format!("opening the store {} (no server answered either)", config.store.path))?;
            crate::admin::status(config, &store, None)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.text());
    }
    Ok(ExitCode::SUCCESS)
}
