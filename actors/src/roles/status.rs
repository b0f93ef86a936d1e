//! `turingwatch status`: import lag, current period, scraper jobs, mail queue, store size and
//! actor restarts — from the running server's admin API, or from the store when none runs.

use super::open_store;
use crate::admin::Status;
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
        None => crate::admin::status(config, &open_store(config)?, None)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.text());
    }
    Ok(ExitCode::SUCCESS)
}
