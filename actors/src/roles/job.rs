//! `turingwatch job ID`: one job's report like seff/jobstats, from the server's client API
//! (with samples, live for running jobs), else a local store that exists, else SLURM's
//! accounting; `text` renders it for a terminal. It never creates or writes a store.

pub mod text;

use super::runtime;
use crate::analysis::load::load_job;
use crate::analysis::summary::{analyze_job, JobInput, Params};
use crate::client::{fetch_job, parse_job_id};
use crate::job::JobId;
use crate::store::Store;
use anyhow::Context;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use text::{render_job_text, use_colour, Source};
use turingwatch_config::Config;

/// `turingwatch job` options.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The job id (`123`, `123_4`, `123+1`).
    pub job_id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Server to ask (default [scrape] server_url, else http://<web.bind>); without an answer
    /// from it, the local store or SLURM's accounting.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// How long the server may take to answer (connect, send, read each).
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// `turingwatch job ID`: one job's report, from the server, a local store or SLURM.
pub fn run(config: &Config, args: &JobArgs) -> anyhow::Result<ExitCode> {
    let job_text = args.job_id.as_str();
    let params = Params::from_config(config);
    let id = parse_job_id(job_text);
    let from_server = id.and_then(|id| ask_server(config, args, id));
    let from_store = match (&from_server, id) {
        (None, Some(id)) => from_local_store(config, id)?,
        _ => None,
    };
    let (input, source) = match (from_server, from_store) {
        (Some(input), _) => (input, Source::Server),
        (None, Some(input)) => (input, Source::Store),
        (None, None) => match runtime()?.block_on(from_slurm(config, job_text))? {
            // An array task (`123_4`) or a heterogeneous component (`123+1`) is stored under
            // its raw id, which sacct gives: ask the server for that one.
            Some(input) if id.is_none() => match ask_server(config, args, input.job.id) {
                Some(stored) => (stored, Source::Server),
                None => (input, Source::Slurm),
            },
            Some(input) => (input, Source::Slurm),
            None => {
                eprintln!("turingwatch job: job {job_text} is not in the store nor in SLURM's accounting");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let analysis = analyze_job(&input, &params);
    if args.json {
        let value = serde_json::json!({"source": source, "job": analysis});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let colour = use_colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR"));
        print!("{}", render_job_text(&analysis, source, colour, &config.mail.web_base_url));
    }
    Ok(ExitCode::SUCCESS)
}

/// The job's data from the server's client API; `None`, with one line on stderr saying why,
/// when the server cannot or will not give it.
fn ask_server(config: &Config, args: &JobArgs, id: JobId) -> Option<JobInput> {
    let url = super::server_url(config, args.server.as_deref());
    let why = match fetch_job(&url, id, &config.ingest.munge_command, SERVER_TIMEOUT) {
        Ok(Some(answer)) => return Some(answer.into_input()),
        Ok(None) => format!("server {url} has no job {id}"),
        Err(err) => format!("{err} ({url})"),
    };
    eprintln!("turingwatch job: {why}; using the local store or SLURM accounting");
    None
}

/// The job from a local store, if one exists and can be opened (it is never created).
fn from_local_store(config: &Config, id: JobId) -> anyhow::Result<Option<JobInput>> {
    // Never `Store::open`: that creates the file where `[store] path` points (by default in
    // the caller's working directory) and migrates it.
    match Store::open_existing(Path::new(&config.store.path)) {
        Ok(store) => match store.job(id)? {
            Some(job) => Ok(Some(load_job(&store, job)?)),
            None => Ok(None),
        },
        Err(err) => {
            tracing::debug!(error = %err, "store not readable; asking SLURM");
            Ok(None)
        }
    }
}

/// Asks SLURM's accounting for one job (any job sacct knows, as seff does).
async fn from_slurm(config: &Config, job_text: &str) -> anyhow::Result<Option<JobInput>> {
    let runner = crate::slurm::SlurmRunner::new(&config.slurm);
    let found = crate::slurm::sacct::fetch_job(&runner, job_text, &jiff::tz::TimeZone::system())
        .await
        .with_context(|| format!("asking SLURM's accounting for job {job_text}"))?;
    Ok(found.map(|(job, steps)| JobInput { steps, ..JobInput::new(job) }))
}
