//! `turingwatch debug …` (hidden): store probes for the crash tests, store dumps and the web
//! seeder for load tests and demos.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Hidden test helpers.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Commit to a store in a loop, printing `committed N` after each commit (crash tests).
    StoreWriter {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        rounds: Option<u64>,
    },
    /// Check a store: open it, count jobs, decode every sample block; with `--acknowledged N`,
    /// fail unless probe rounds 1..=N are all present with their samples.
    StoreCheck {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 0)]
        acknowledged: u64,
    },
    /// Print stored jobs (with steps), the job count and the import watermark as JSON.
    StoreJobs {
        #[arg(long)]
        db: PathBuf,
        /// JobIDRaw values.
        ids: Vec<u64>,
    },
    /// Fill a store with synthetic users, jobs, samples and reports (web load tests, demos).
    SeedWeb {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 100)]
        users: u32,
        #[arg(long, default_value_t = 40)]
        jobs_per_user: u32,
    },
}

/// Runs one debug command.
pub fn run(command: DebugCommand) -> anyhow::Result<ExitCode> {
    match command {
        DebugCommand::StoreWriter { db, rounds } => {
            crate::store::probe::run(&db, rounds).with_context(|| format!("store writer on {}", db.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::StoreCheck { db, acknowledged } => {
            let store = crate::store::Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
            let jobs = store.job_count()?;
            let mut samples = 0usize;
            for id in 1..=jobs.max(acknowledged) {
                let n = store.samples_of_job(crate::job::JobId(id))?.values().map(Vec::len).sum::<usize>();
                samples += n;
                if id <= acknowledged {
                    let job = store.job(crate::job::JobId(id))?;
                    anyhow::ensure!(
                        job.as_ref() == Some(&crate::store::probe::probe_job(id))
                            && n == crate::store::probe::SAMPLES_PER_ROUND,
                        "acknowledged round {id} is incomplete: job {}, {n} samples",
                        if job.is_some() { "present" } else { "missing" }
                    );
                }
            }
            let watermark = store.meta(crate::store::tables::IMPORT_WATERMARK_KEY)?;
            println!("jobs {jobs} samples {samples} watermark {watermark:?}");
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::StoreJobs { db, ids } => {
            println!("{}", crate::accounting::debug_store_jobs(&db, &ids)?);
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::SeedWeb { db, users, jobs_per_user } => {
            let now = crate::clock::unix_now();
            let seeded = crate::web_backend::seed::run(&db, users, jobs_per_user, now)
                .with_context(|| format!("seeding {}", db.display()))?;
            println!("users {} jobs {} period {}", seeded.users, seeded.jobs, seeded.period_start);
            Ok(ExitCode::SUCCESS)
        }
    }
}
