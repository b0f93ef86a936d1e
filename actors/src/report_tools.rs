//! The one-shot roles of issue #5: `turingwatch analyze`, `turingwatch job` and
//! `turingwatch mail`. Wiring only: each opens what it needs, calls the domain modules and
//! prints. anyhow lives here, at the edge.

use crate::analysis::load::load_job;
use crate::analysis::period::{Period, PeriodSpec};
use crate::analysis::run::{refresh, Cycle};
use crate::analysis::summary::{analyze_job, JobInput, Params};
use crate::clock::unix_now;
use crate::job::JobId;
use crate::mail::deliver::{deliver, Delivery};
use crate::mail::outbox::{self, OutboxState};
use crate::mail::send::{build_message, Outgoing, Transport};
use crate::report::job_text::{render_job_text, Source};
use crate::store::Store;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use turingwatch_config::Config;

/// `turingwatch analyze` options.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The period: `current` (default), `previous`, or a period start (unix seconds).
    #[arg(long, default_value = "current")]
    pub period: String,
}

/// `turingwatch mail` options.
#[derive(Debug, clap::Args)]
pub struct MailArgs {
    /// The period: `previous` (default), `current`, or a period start (unix seconds).
    #[arg(long, default_value = "previous")]
    pub period: String,
    /// Only these users (repeat the option for several).
    #[arg(long)]
    pub user: Vec<String>,
    /// Print the messages (MIME) instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
    /// Send again even if the outbox says sent or uncertain.
    #[arg(long)]
    pub resend: bool,
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(Path::new(&config.store.path)).with_context(|| {
        format!("opening the store {} (is a turingwatch server using it? stop it first)", config.store.path)
    })
}

fn resolve_period(spec: &PeriodSpec, text: &str) -> anyhow::Result<Period> {
    let now = unix_now();
    let current = spec.containing(now)?;
    Ok(match text {
        "current" => current,
        "previous" => spec.containing(current.start.saturating_sub(1))?,
        other => {
            let start: u64 = other.parse().with_context(|| {
                format!("--period {other:?}: expected current, previous, or a period start in unix seconds")
            })?;
            spec.containing(start)?
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// `turingwatch analyze`: analyses one period now, stores its reports and writes its bundle.
pub fn run_analyze(config: &Config, args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
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
    for user in store.report_users(period.start)? {
        if let Some(r) = store.report(period.start, &user)? {
            println!("  {user}: {}", if r.has_findings { "findings" } else { "nothing to report" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `turingwatch job ID`: one job's report, from the store (with samples) or from SLURM.
pub fn run_job(config: &Config, job_text: &str, json: bool) -> anyhow::Result<ExitCode> {
    let params = Params::from_config(config);
    let from_store = match job_text.parse::<u64>() {
        Ok(id) => match Store::open(Path::new(&config.store.path)) {
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
    let Some(job) = input.job.as_ref() else {
        anyhow::bail!("job {job_text}: no record");
    };
    let analysis = analyze_job(job, &input, &params);
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
    Ok(found.map(|(job, steps)| JobInput { job: Some(job), steps, ..JobInput::default() }))
}

/// `turingwatch mail`: previews or (re)sends a period's report mails by hand.
pub fn run_mail(config: &Config, args: &MailArgs) -> anyhow::Result<ExitCode> {
    let spec = PeriodSpec::from_config(&config.analysis)?;
    let period = resolve_period(&spec, &args.period)?;
    let store = Arc::new(open_store(config)?);
    let mut users = store.report_users(period.start)?;
    if !args.user.is_empty() {
        for wanted in &args.user {
            anyhow::ensure!(users.contains(wanted), "no report for user {wanted} in period {}", period.start);
        }
        users.retain(|u| args.user.contains(u));
    }
    let mut reports = Vec::new();
    for user in &users {
        if let Some(r) = store.report(period.start, user)? {
            if r.has_findings || args.user.contains(user) {
                reports.push(r);
            }
        }
    }
    if reports.is_empty() {
        println!("period {}: no mail to send", period.start);
        return Ok(ExitCode::SUCCESS);
    }
    let recipients: Vec<(String, String)> =
        reports.iter().map(|r| (r.user.clone(), crate::mail::render::recipient(config, &r.user))).collect();
    if args.dry_run {
        for r in &reports {
            let to = crate::mail::render::recipient(config, &r.user);
            let message_id = outbox::message_id(period.start, &r.user, &config.mail.from);
            let mail = Outgoing {
                to: &to,
                subject: &config.mail.subject,
                html: &r.html,
                text: &r.text,
                message_id: &message_id,
            };
            let message = build_message(&config.mail, &mail)?;
            println!("{}", String::from_utf8_lossy(&message.formatted()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    outbox::queue(&store, period.start, &recipients, &config.mail.from, &config.mail.opt_out, unix_now())?;
    // The SMTP pool spawns on (and is dropped into) the runtime: enter it first, drop it last.
    let rt = runtime()?;
    let _context = rt.enter();
    let transport = Transport::from_config(&config.mail)?;
    let from: &'static [OutboxState] = if args.resend {
        &[OutboxState::Queued, OutboxState::Failed, OutboxState::Uncertain, OutboxState::Sent]
    } else {
        &[OutboxState::Queued, OutboxState::Failed]
    };
    let mut failed = false;
    for (user, to) in &recipients {
        let entry = store.outbox_entries(Some(period.start))?.into_iter().find(|e| e.user == *user);
        let Some(entry) = entry else { continue };
        let outcome = rt.block_on(deliver(store.clone(), config, &transport, &entry, from, unix_now()))?;
        match outcome {
            Delivery::Sent => println!("{user}: sent to {to}"),
            Delivery::Skipped => println!("{user}: not sent ({:?}; --resend sends it again)", entry.state),
            Delivery::OptedOut => println!("{user}: opted out"),
            Delivery::Retry { error, .. } | Delivery::Failed { error } => {
                failed = true;
                println!("{user}: FAILED: {error}");
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
