//! `turingwatch job ID`: one job's report like seff/jobstats, from the store (with samples) or
//! from SLURM's accounting; `text` renders it for a terminal.

pub mod text;

use super::runtime;
use crate::analysis::load::load_job;
use crate::analysis::summary::{analyze_job, JobInput, Params};
use crate::job::JobId;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use text::{render_job_text, Source};
use turingwatch_config::Config;

/// `turingwatch job ID`: one job's report, from the store (with samples) or from SLURM.
pub fn run(config: &Config, job_text: &str, json: bool) -> anyhow::Result<ExitCode> {
    let params = Params::from_config(config);
    let from_store = match job_text.parse::<u64>() {
        // Never `Store::open`: that creates the file where `[store] path` points (by default in
        // the caller's working directory) and migrates it.
        Ok(id) => match Store::open_existing(Path::new(&config.store.path)) {
            Ok(store) => match store.job(JobId(id))? {
                Some(job) => Some(load_job(&store, job)?),
                None => None,
            },
            Err(err) => {
                tracing::debug!(error = %err, "store not readable; asking SLURM");
                None
            }
        },
        Err(_) => None,
    };
    let (input, source) = match from_store {
        Some(input) => (input, Source::Store),
        None => match runtime()?.block_on(from_slurm(config, job_text))? {
            Some(input) => (input, Source::Slurm),
            None => {
                eprintln!("turingwatch job: job {job_text} is not in the store nor in SLURM's accounting");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let analysis = analyze_job(&input, &params);
    if json {
        let value = serde_json::json!({"source": source, "job": analysis});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render_job_text(&analysis, source));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks SLURM's accounting for one job (any job sacct knows, as seff does).
async fn from_slurm(config: &Config, job_text: &str) -> anyhow::Result<Option<JobInput>> {
    let runner = crate::slurm::SlurmRunner::new(&config.slurm);
    let found = crate::slurm::sacct::fetch_job(&runner, job_text, &jiff::tz::TimeZone::system())
        .await
        .with_context(|| format!("asking SLURM's accounting for job {job_text}"))?;
    Ok(found.map(|(job, steps)| JobInput { steps, ..JobInput::new(job) }))
}
