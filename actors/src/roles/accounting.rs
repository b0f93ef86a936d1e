//! `turingwatch accounting`: prints what the accounting import would import for a window
//! (touches nothing; the store is not opened).

use clap::Args;
use std::process::ExitCode;
use turingwatch_config::Config;

/// `turingwatch accounting` options.
#[derive(Debug, Args)]
pub struct AccountingArgs {
    /// Start of the window: a time sacct accepts, or a duration ago such as `2h`.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this user's jobs.
    #[arg(long)]
    pub user: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the jobs sacct returns for the window, as the importer would read them.
pub fn run(config: &Config, args: &AccountingArgs) -> anyhow::Result<ExitCode> {
    let out = crate::accounting::print_only(
        config,
        args.since.as_deref(),
        args.until.as_deref(),
        args.user.as_deref(),
        args.json,
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
