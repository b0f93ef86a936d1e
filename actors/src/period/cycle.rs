//! The life of a period: create it when the clock enters it, refresh its results after each
//! accounting import, and close it once its end has passed *and* the import has caught up with
//! it (or `close_grace` later): then its results are final, its bundle is rewritten one last
//! time and its mails are queued. Everything is persisted, so a restart carries on where the
//! last run stopped. Blocking (store and files): the rollover actor runs it off the executor.

use crate::analysis::coverage::PeriodCoverage;
use crate::analysis::load::analyze_period;
use crate::analysis::period::{Period, PeriodError, PeriodSpec};
use crate::analysis::summary::{Params, UserAnalysis};
use crate::mail::outbox;
use crate::mail::render::{render_mail, RenderError, Templates};
use crate::period::bundle::{user_raw_json, write_bundle, BundleError, BundleUser};
use crate::store::tables::IMPORT_WATERMARK_KEY;
use crate::store::{PeriodRecord, Store, StoreError, UserReport};
use std::collections::BTreeMap;
use std::path::PathBuf;
use turingwatch_config::Config;

/// Most missed periods filled in after a long downtime.
const MAX_GAP_PERIODS: usize = 60;

/// A period step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// What the cycle needs, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Cycle {
    pub config: Config,
    pub spec: PeriodSpec,
    pub params: Params,
    pub templates: Templates,
    /// When this server started (raw.json's `started`).
    pub started_at: u64,
}

impl Cycle {
    /// Builds the cycle; fails on a bad time zone, anchor or template directory.
    pub fn new(config: &Config, started_at: u64) -> Result<Cycle, RunError> {
        Ok(Cycle {
            config: config.clone(),
            spec: PeriodSpec::from_config(&config.analysis)?,
            params: Params::from_config(config),
            templates: Templates::load(&config.mail.templates_dir)?,
            started_at,
        })
    }

    /// The results directory.
    pub fn results_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.analysis.results_dir)
    }
}

/// What one refresh produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    pub period: Period,
    pub users: usize,
    pub jobs: usize,
    pub bundle: PathBuf,
    /// Mails queued (only when closing).
    pub queued: usize,
    /// Whether the period is closed now.
    pub closed: bool,
    /// How much of the period's allocation was sampled.
    pub coverage: PeriodCoverage,
}

/// Analyses a period, stores the per-user reports and its sampling coverage, writes the bundle;
/// when `closing`, queues the mails and marks the period closed (in that order, so a crash in
/// between re-runs the close).
pub fn refresh(store: &Store, cycle: &Cycle, period: Period, now: u64, closing: bool) -> Result<Refreshed, RunError> {
    let analyses = analyze_period(store, period, &cycle.config.accounting.skip_users, &cycle.params)?;
    let (reports, bundle_users) = render_all(&analyses, cycle, now)?;
    let coverage = PeriodCoverage::of(period, analyses.values().flat_map(|a| &a.jobs), &cycle.params);
    store.put_reports(period.start, &reports)?;
    store.put_period_coverage(period.start, &serde_json::to_string(&coverage).unwrap_or_default())?;
    let bundle =
        write_bundle(&cycle.results_dir(), period.start, cycle.started_at, now, &bundle_users, Some(&coverage))?;
    let mut queued = 0;
    if closing {
        let recipients: Vec<(String, String)> = reports
            .iter()
            .filter(|r| r.has_findings)
            .map(|r| (r.user.clone(), crate::mail::render::recipient(&cycle.config, &r.user)))
            .collect();
        let mail = &cycle.config.mail;
        let holdout = crate::mail::holdout::Holdout::from_config(mail);
        queued = outbox::queue(store, period.start, &recipients, &mail.from, &mail.opt_out, &holdout, now)?;
    }
    // Re-analysing a closed period by hand (`turingwatch analyze`) keeps it closed.
    let was_closed = store.periods()?.iter().any(|p| p.start == period.start && p.closed);
    let closed = closing || was_closed;
    store.put_period(&PeriodRecord { start: period.start, end: period.end, closed, updated_at: now })?;
    let jobs = analyses.values().map(|a| a.jobs.len()).sum();
    Ok(Refreshed { period, users: analyses.len(), jobs, bundle, queued, closed, coverage })
}

/// The stored sampling coverage of the period containing `now` and of the latest closed period
/// (for `/metrics`); `None` where a period has none stored yet (or its JSON does not parse).
pub fn latest_coverage(
    store: &Store,
    cycle: &Cycle,
    now: u64,
) -> Result<(Option<PeriodCoverage>, Option<PeriodCoverage>), RunError> {
    let current = cycle.spec.containing(now)?;
    let periods = store.periods()?;
    let last_closed = periods.iter().filter(|p| p.closed).map(|p| p.start).max();
    let read = |start: u64| -> Result<Option<PeriodCoverage>, RunError> {
        let Some(text) = store.period_coverage(start)? else { return Ok(None) };
        match serde_json::from_str(&text) {
            Ok(coverage) => Ok(Some(coverage)),
            Err(err) => {
                tracing::warn!(period = start, error = %err, "stored period coverage does not parse");
                Ok(None)
            }
        }
    };
    let open = periods.iter().any(|p| p.start == current.start && !p.closed);
    let current = if open { read(current.start)? } else { None };
    let last = last_closed.map(read).transpose()?.flatten();
    Ok((current, last))
}

/// Renders every user's report: the stored forms and the bundle files.
pub fn render_all(
    analyses: &BTreeMap<String, UserAnalysis>,
    cycle: &Cycle,
    now: u64,
) -> Result<(Vec<UserReport>, Vec<BundleUser>), RunError> {
    let mut reports = Vec::new();
    let mut bundle = Vec::new();
    for (user, a) in analyses {
        let mail = render_mail(a, &cycle.config, &cycle.spec, &cycle.templates)?;
        let raw = user_raw_json(a);
        let has_findings = a.has_findings();
        reports.push(UserReport {
            period_start: a.period.start,
            user: user.clone(),
            json: raw.to_string(),
            html: mail.html.clone(),
            text: mail.text.clone(),
            has_findings,
            updated_at: now,
        });
        bundle.push(BundleUser {
            user: user.clone(),
            header: mail.header,
            html: has_findings.then_some(mail.html),
            raw,
        });
    }
    Ok((reports, bundle))
}

/// One turn of the cycle at `now`: closes every period that may close, creates the current one
/// (and any missed while the server was down), and refreshes the current one when `imported`
/// or new. Returns what was refreshed.
pub fn tick(store: &Store, cycle: &Cycle, now: u64, imported: bool) -> Result<Vec<Refreshed>, RunError> {
    let mut done = Vec::new();
    let current = cycle.spec.containing(now)?;
    let mut known = store.periods()?;
    // Fill in periods missed while no server ran, so their jobs are analysed and mailed too.
    if let Some(last) = known.iter().map(|p| Period { start: p.start, end: p.end }).max() {
        let mut p = last;
        let mut added = 0;
        while p.end <= current.start && added < MAX_GAP_PERIODS {
            p = cycle.spec.next(p)?;
            if p.start >= current.start {
                break;
            }
            let record = PeriodRecord { start: p.start, end: p.end, closed: false, updated_at: now };
            store.put_period(&record)?;
            known.push(record);
            added += 1;
        }
    }
    let watermark = store.meta(IMPORT_WATERMARK_KEY)?.unwrap_or(0);
    let grace = cycle.config.analysis.close_grace.as_secs();
    for p in known.iter().filter(|p| !p.closed && p.end <= now) {
        if watermark >= p.end || now >= p.end.saturating_add(grace) {
            let r = refresh(store, cycle, Period { start: p.start, end: p.end }, now, true)?;
            tracing::info!(period = p.start, users = r.users, jobs = r.jobs, queued = r.queued, "period closed");
            done.push(r);
        }
    }
    let is_new = !known.iter().any(|p| p.start == current.start);
    if is_new || imported {
        let r = refresh(store, cycle, current, now, false)?;
        tracing::debug!(period = current.start, users = r.users, jobs = r.jobs, "period refreshed");
        done.push(r);
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
