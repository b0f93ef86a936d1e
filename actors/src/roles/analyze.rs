//! `turingwatch analyze`: analyse one period now, store its reports and write its bundle —
//! through the running server's admin API, or on the store itself when no server runs.

use super::open_store;
use crate::admin::Outcome;
use std::process::ExitCode;
use turingwatch_config::Config;

/// `turingwatch analyze` options.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The period: `current` (default), `previous`, or a period start (unix seconds).
    #[arg(long, default_value = "current")]
    pub period: String,
    /// Server to run it on (default [scrape] server_url, else http://<web.bind>); where none
    /// answers, the store is opened directly.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `turingwatch analyze`: analyses one period now, stores its reports and writes its bundle.
pub fn run(config: &Config, args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::to_vec(&serde_json::json!({ "period": args.period }))?;
    let path = crate::client::ADMIN_ANALYZE_PATH;
    let outcome: Outcome = match super::through_server(config, args.server.as_deref(), path, Some(&body), "analyze")? {
        Some(outcome) => outcome,
        None => crate::admin::analyze(config, &open_store(config)?, &args.period)?,
    };
    print!("{}", outcome.text);
    Ok(if outcome.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
