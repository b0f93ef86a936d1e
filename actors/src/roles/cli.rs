//! The command line: one binary, one subcommand per role.
//!
//! Parse → load configuration → set up logging → run the role. Errors from roles are printed as
//! one line (`{:#}` of the anyhow chain). Exit codes: 0 ok, 1 failure, 2 usage (clap), 78 bad
//! configuration (systemd units set `RestartPreventExitStatus=78`).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use turingwatch_config::{LogFormat, Source};

pub use super::EXIT_CONFIG;

/// turingwatch: how well SLURM jobs use what they asked for.
#[derive(Debug, Parser)]
#[command(name = "turingwatch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file (else $TURINGWATCH_CONFIG, else /etc/turingwatch/turingwatch.toml, else defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log line format (overrides [log] format).
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// The roles.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: accounting import, ingest, periods, mail, web site (admin, long-running).
    Server,
    /// Place scrapers on compute nodes through SLURM allocations.
    Distribute(DistributeArgs),
    /// Sample the job steps on this node and report them to the server.
    Scrape(ScrapeArgs),
    /// Analyse one period now and write its result bundle.
    Analyze(super::analyze::AnalyzeArgs),
    /// Report on one job, like seff/jobstats.
    Job(super::job::JobArgs),
    /// Print what the accounting import would import (touches nothing).
    Accounting(super::accounting::AccountingArgs),
    /// Send or preview report mails by hand.
    Mail(super::mail::MailArgs),
    /// How the service is doing: import lag, periods, scraper jobs, mails, store, restarts.
    Status(super::status::StatusArgs),
    /// Print the effective configuration.
    Config,
    /// Print version and store schema version.
    Version,
    /// Tools for tests and debugging.
    #[command(hide = true, subcommand)]
    Debug(super::debug::DebugCommand),
}

/// `turingwatch scrape` options.
#[derive(Debug, Args)]
pub struct ScrapeArgs {
    /// Sample once (rates over --interval) and print JSON instead of reporting.
    #[arg(long, requires = "json")]
    pub once: bool,
    /// Print JSON (with --once).
    #[arg(long)]
    pub json: bool,
    /// Node whose steps are sampled (default $SLURMD_NODENAME, else the short host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Time between samples (default [scrape] interval; 1s with --once), e.g. `1s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// Length of a bounded run (default [scrape] time_per_node), e.g. `15m`.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["forever", "once"])]
    pub duration: Option<std::time::Duration>,
    /// Run until stopped (node agent).
    #[arg(long, conflicts_with = "once")]
    pub forever: bool,
    /// Server URL (default [scrape] server_url, else http://<web.bind>).
    #[arg(long)]
    pub server: Option<String>,
    /// Spool directory (default [scrape] spool_dir; `auto`: a private per-user directory, whatever the config says).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Only sample this job's steps (user mode).
    #[arg(long)]
    pub job: Option<u64>,
}

/// `turingwatch distribute` options.
#[derive(Debug, Args)]
pub struct DistributeArgs {
    /// Only place scrapers on these nodes (comma-separated; default: every node with running jobs).
    #[arg(long, value_delimiter = ',')]
    pub only_nodes: Vec<String>,
    /// Output file of scraper jobs (sbatch --output, `%j` = job id), written on the compute
    /// node. Default: none (/dev/null; a failure is told by SLURM's exit state). `auto`:
    /// `<state dir>/scrapers/scraper-%j.out`, read when a job fails, then deleted — only where
    /// the compute nodes share that directory with this host.
    #[arg(long, default_value = "")]
    pub scraper_output: String,
    /// The distributor's directory, for `--scraper-output auto` (default $STATE_DIRECTORY, else
    /// the directory of [store] path).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Serve /metrics (Prometheus text) on this address, e.g. 127.0.0.1:9105.
    #[arg(long)]
    pub metrics_bind: Option<String>,
}

/// Runs the binary; returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match turingwatch_config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("turingwatch: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => loaded.config.log.format,
    };
    crate::logging::init(format, &loaded.config.log.level);
    if matches!(cli.command, Command::Server | Command::Distribute(_) | Command::Scrape(_)) {
        install_panic_exit();
    }
    match run(cli.command, &loaded) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("turingwatch: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, loaded: &turingwatch_config::Loaded) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    match command {
        Command::Config => Ok(super::config::run(loaded)),
        Command::Version => Ok(super::version::run()),
        Command::Debug(command) => super::debug::run(command),
        Command::Server => super::server::run(
            config.clone(),
            crate::distribution::DistributeOptions { config_path: config_path(&loaded.source), ..Default::default() },
        ),
        Command::Distribute(args) => crate::roles::distribute::run(
            config,
            &crate::distribution::DistributeOptions {
                config_path: config_path(&loaded.source),
                only_nodes: args.only_nodes,
                scraper_output: args.scraper_output,
                state_dir: args.state_dir.unwrap_or_default(),
            },
            args.metrics_bind.as_deref(),
        ),
        Command::Scrape(args) => crate::roles::scrape::run(
            config,
            &crate::roles::scrape::ScrapeOptions {
                node: args.node,
                once: args.once,
                json: args.json,
                interval: args.interval,
                duration: args.duration,
                forever: args.forever,
                server: args.server,
                spool_dir: args.spool_dir,
                job: args.job.map(crate::job::JobId),
            },
        ),
        Command::Analyze(args) => super::analyze::run(config, &args),
        Command::Job(args) => super::job::run(config, &args),
        Command::Accounting(args) => super::accounting::run(config, &args),
        Command::Mail(args) => super::mail::run(config, &args),
        Command::Status(args) => super::status::run(config, &args),
    }
}

/// Long-running roles exit on any panic (after logging it) instead of limping on with a dead
/// actor thread: the service manager restarts the process, and nothing committed is lost.
fn install_panic_exit() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic: exiting so the service manager restarts us");
        default_hook(info);
        std::process::exit(1);
    }));
}

/// The configuration file as scraper jobs on other nodes should name it (absolute).
fn config_path(source: &Source) -> Option<std::path::PathBuf> {
    match source {
        Source::File(path) => Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())),
        Source::Defaults => None,
    }
}
