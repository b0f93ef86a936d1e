//! `turingwatch analyze`: analyse one period now, store its reports and write its bundle.

use super::{open_store, resolve_period};
use crate::clock::unix_now;
use crate::period::cycle::{refresh, Cycle};
use std::process::ExitCode;
use turingwatch_config::Config;

/// `turingwatch analyze` options.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The period: `current` (default), `previous`, or a period start (unix seconds).
    #[arg(long, default_value = "current")]
    pub period: String,
}

/// `turingwatch analyze`: analyses one period now, stores its reports and writes its bundle.
pub fn run(config: &Config, args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let cycle = Cycle::new(config, unix_now())?;
    let period = resolve_period(&cycle.spec, &args.period)?;
    let store = open_store(config)?;
    let done = refresh(&store, &cycle, period, unix_now(), false)?;
    println!(
        "period {} .. {}: {} user(s), {} job(s), bundle {}",
        period.start,
        period.end,
        done.users,
        done.jobs,
        done.bundle.display()
    );
    println!("coverage: {}", done.coverage.text);
    for user in store.report_users(period.start)? {
        if let Some(r) = store.report(period.start, &user)? {
            println!("  {user}: {}", if r.has_findings { "findings" } else { "nothing to report" });
        }
    }
    Ok(ExitCode::SUCCESS)
}
