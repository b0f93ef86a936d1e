//! The admin commands — `analyze`, `mail` (preview, resend) and `status` — as functions of a
//! store, so they give the same answer wherever they run.
//!
//! Why: redb lets one process hold a store file. While the server runs, the CLI cannot open it
//! ("Database already open"), so an admin had to stop the service to preview or resend a mail.
//! Now the CLI sends the command to the server's admin API (`actors/client_api.rs`, MUNGE
//! authenticated), which runs the function below on its own store and returns the text; with
//! the server stopped the CLI opens the store and runs the same function itself.

use crate::analysis::period::{Period, PeriodError, PeriodSpec};
use crate::clock::unix_now;
use crate::mail::deliver::{deliver, DeliverError, DeliveryOutcome};
use crate::mail::outbox::{self, OutboxState};
use crate::mail::send::{build_message, MailError, Outgoing, Transport};
use crate::metrics::{Metrics, ACTORS};
use crate::period::cycle::{refresh, Cycle, RunError};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;
use turingwatch_config::Config;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--period {0:?}: expected current, previous, or a period start in unix seconds")]
    PeriodText(String),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("no report for user {user} in period {period}")]
    NoReport { user: String, period: u64 },
}

/// `current`, `previous` or a period start, as `--period` takes it.
pub fn resolve_period(spec: &PeriodSpec, text: &str, now: u64) -> Result<Period, AdminError> {
    let current = spec.containing(now)?;
    Ok(match text {
        "current" => current,
        "previous" => spec.containing(current.start.saturating_sub(1))?,
        other => {
            let start: u64 = other.parse().map_err(|_| AdminError::PeriodText(other.chars().take(40).collect()))?;
            spec.containing(start)?
        }
    })
}

/// What a command printed, and whether it succeeded as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub text: String,
    pub ok: bool,
}

/// `turingwatch analyze`: analyses one period now, stores its reports and writes its bundle.
pub fn analyze(config: &Config, store: &Store, period_text: &str) -> Result<Outcome, AdminError> {
    let now = unix_now();
    let cycle = Cycle::new(config, now)?;
    let period = resolve_period(&cycle.spec, period_text, now)?;
    let done = refresh(store, &cycle, period, now, false)?;
    let mut text = format!(
        "period {} .. {}: {} user(s), {} job(s), bundle {}\ncoverage: {}\n",
        period.start,
        period.end,
        done.users,
        done.jobs,
        done.bundle.display(),
        done.coverage.text
    );
    for user in store.report_users(period.start)? {
        if let Some(r) = store.report(period.start, &user)? {
            let _ = writeln!(text, "  {user}: {}", if r.has_findings { "findings" } else { "nothing to report" });
        }
    }
    let (inputs, unreadable) = crate::analysis::load::outcome_inputs(store)?;
    let _ = writeln!(text, "{}", outcome_line(&crate::analysis::outcome::outcomes(&inputs), unreadable));
    Ok(Outcome { text, ok: true })
}

/// One line on whether the mails change anything (the admin view has the details).
fn outcome_line(o: &crate::analysis::outcome::Outcomes, unreadable: u32) -> String {
    let mailed: u32 = o.kinds.iter().map(|k| k.mailed.pairs).sum();
    let held: u32 = o.kinds.iter().map(|k| k.held.pairs).sum();
    let mut line = format!(
        "outcomes: {} finding kind(s) mailed over {} period(s): {mailed} user-finding pair(s) mailed, {held} held back",
        o.kinds.len(),
        o.periods
    );
    let (followed, recurred) = o.kinds.iter().fold((0, 0), |(f, r), k| (f + k.mailed.followed, r + k.mailed.recurred));
    if followed > 0 {
        line.push_str(&format!("; {recurred} of {followed} recurred after the mail"));
    }
    if unreadable > 0 {
        line.push_str(&format!("; {unreadable} stored report(s) unreadable"));
    }
    line + " (web: Overview, /api/admin/outcomes)"
}

/// `turingwatch mail` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRequest {
    /// `previous`, `current`, or a period start.
    pub period: String,
    /// Only these users (all with findings when empty).
    pub users: Vec<String>,
    /// Return the messages (MIME) instead of sending them.
    pub dry_run: bool,
    /// Send again even if the outbox says sent or uncertain.
    pub resend: bool,
}

/// `turingwatch mail`: previews or (re)sends a period's report mails by hand, through the same
/// outbox and delivery as the mailer, so a mail is still sent at most once (the outbox's state
/// moves are atomic, whoever sends).
pub async fn mail(config: &Config, store: Arc<Store>, req: &MailRequest) -> Result<Outcome, AdminError> {
    let spec = PeriodSpec::from_config(&config.analysis)?;
    let period = resolve_period(&spec, &req.period, unix_now())?;
    let mut users = store.report_users(period.start)?;
    if !req.users.is_empty() {
        if let Some(missing) = req.users.iter().find(|u| !users.contains(u)) {
            return Err(AdminError::NoReport { user: missing.clone(), period: period.start });
        }
        users.retain(|u| req.users.contains(u));
    }
    let mut reports = Vec::new();
    for user in &users {
        if let Some(r) = store.report(period.start, user)? {
            if r.has_findings || req.users.contains(user) {
                reports.push(r);
            }
        }
    }
    if reports.is_empty() {
        return Ok(Outcome { text: format!("period {}: no mail to send\n", period.start), ok: true });
    }
    let recipients: Vec<(String, String)> =
        reports.iter().map(|r| (r.user.clone(), crate::mail::render::recipient(config, &r.user))).collect();
    let mut text = String::new();
    if req.dry_run {
        for (r, (_, to)) in reports.iter().zip(&recipients) {
            let message_id = outbox::message_id(period.start, &r.user, &config.mail.from);
            let mail =
                Outgoing { to, subject: &config.mail.subject, html: &r.html, text: &r.text, message_id: &message_id };
            let message = build_message(&config.mail, &mail)?;
            let _ = writeln!(text, "{}", String::from_utf8_lossy(&message.formatted()));
        }
        return Ok(Outcome { text, ok: true });
    }
    let holdout = crate::mail::holdout::Holdout::from_config(&config.mail);
    outbox::queue(&store, period.start, &recipients, &config.mail.from, &config.mail.opt_out, &holdout, unix_now())?;
    let transport = Transport::from_config(&config.mail)?;
    let from: &'static [OutboxState] = if req.resend {
        &[OutboxState::Queued, OutboxState::Failed, OutboxState::Uncertain, OutboxState::Sent]
    } else {
        &[OutboxState::Queued, OutboxState::Failed]
    };
    let mut ok = true;
    for (user, to) in &recipients {
        let entry = store.outbox_entries(Some(period.start))?.into_iter().find(|e| e.user == *user);
        let Some(entry) = entry else { continue };
        match deliver(store.clone(), config, &transport, &entry, from, unix_now(), None).await? {
            DeliveryOutcome::Sent => {
                let _ = writeln!(text, "{user}: sent to {to}");
            }
            DeliveryOutcome::Skipped if entry.state == OutboxState::Held => {
                let _ = writeln!(text, "{user}: held back (in the [mail] holdout; never sent)");
            }
            DeliveryOutcome::Skipped => {
                let _ = writeln!(text, "{user}: not sent ({:?}; --resend sends it again)", entry.state);
            }
            DeliveryOutcome::OptedOut => {
                let _ = writeln!(text, "{user}: opted out");
            }
            DeliveryOutcome::Deferred { until } => {
                let _ = writeln!(text, "{user}: waits for {until} (a quiet day of theirs)");
            }
            DeliveryOutcome::Retry { error, .. } | DeliveryOutcome::Failed { error } => {
                ok = false;
                let _ = writeln!(text, "{user}: FAILED: {error}");
            }
        }
    }
    Ok(Outcome { text, ok })
}

/// `turingwatch status`: how the service is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Where the figures come from: `server` (the running server's) or `store` (a stopped one's).
    pub source: String,
    pub now: u64,
    /// The accounting import: last success and how far it has read (unix seconds; absent when
    /// the running server has not imported yet, or with the server stopped).
    pub import_last_success_at: Option<u64>,
    pub import_watermark: Option<u64>,
    pub current_period: Period,
    /// Periods the store knows, and how many of them are closed.
    pub periods: usize,
    pub periods_closed: usize,
    pub jobs: u64,
    pub store_path: String,
    pub store_bytes: u64,
    /// Mails by outbox state (`queued`, `sent`, …), all periods.
    pub mails: Vec<(String, u64)>,
    /// Scraper jobs of the distributor, pending and running (server only).
    pub scraper_jobs_pending: Option<u64>,
    pub scraper_jobs_running: Option<u64>,
    /// Supervised actors' restarts (server only).
    pub actor_restarts: Vec<(String, u64)>,
}

/// The service's status from its store and, when the server runs it, its metrics.
pub fn status(config: &Config, store: &Store, metrics: Option<&Metrics>) -> Result<Status, AdminError> {
    let now = unix_now();
    let spec = PeriodSpec::from_config(&config.analysis)?;
    let periods = store.periods()?;
    let mut mails: Vec<(String, u64)> = Vec::new();
    for entry in store.outbox_entries(None)? {
        let state = serde_json::to_value(entry.state).ok().and_then(|v| v.as_str().map(str::to_string));
        let state = state.unwrap_or_else(|| format!("{:?}", entry.state));
        match mails.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => mails.push((state, 1)),
        }
    }
    mails.sort();
    let nonzero = |v: u64| (v > 0).then_some(v);
    Ok(Status {
        source: if metrics.is_some() { "server" } else { "store" }.to_string(),
        now,
        import_last_success_at: metrics.and_then(|m| nonzero(m.import_last_success_at.get())),
        import_watermark: metrics.and_then(|m| nonzero(m.import_watermark.get())),
        current_period: spec.containing(now)?,
        periods: periods.len(),
        periods_closed: periods.iter().filter(|p| p.closed).count(),
        jobs: store.job_count()?,
        store_path: store.path().display().to_string(),
        store_bytes: std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0),
        mails,
        scraper_jobs_pending: metrics.map(|m| m.scraper_jobs_pending.get()),
        scraper_jobs_running: metrics.map(|m| m.scraper_jobs_running.get()),
        actor_restarts: metrics
            .map_or_else(Vec::new, |m| ACTORS.iter().map(|a| (a.to_string(), m.restarts_of(a))).collect()),
    })
}

impl Status {
    /// For people.
    pub fn text(&self) -> String {
        let ago = |t: Option<u64>| match t {
            Some(t) => format!("{t} ({} s ago)", self.now.saturating_sub(t)),
            None => "n/a".to_string(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "source: {}", self.source);
        let _ = writeln!(out, "accounting import: last success {}", ago(self.import_last_success_at));
        let _ = writeln!(out, "accounting read up to: {}", ago(self.import_watermark));
        let _ = writeln!(out, "current period: {} .. {}", self.current_period.start, self.current_period.end);
        let _ = writeln!(out, "periods: {} ({} closed)", self.periods, self.periods_closed);
        let _ = writeln!(out, "jobs: {}", self.jobs);
        let _ = writeln!(out, "store: {} ({:.1} MiB)", self.store_path, self.store_bytes as f64 / 1048576.0);
        let mails: Vec<String> = self.mails.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let _ = writeln!(out, "mails: {}", if mails.is_empty() { "none".to_string() } else { mails.join(", ") });
        match (self.scraper_jobs_pending, self.scraper_jobs_running) {
            (Some(p), Some(r)) => {
                let _ = writeln!(out, "scraper jobs: {r} running, {p} pending");
            }
            _ => {
                let _ = writeln!(out, "scraper jobs: n/a (server not running)");
            }
        }
        if !self.actor_restarts.is_empty() {
            let restarts: Vec<String> = self.actor_restarts.iter().map(|(a, n)| format!("{a} {n}")).collect();
            let _ = writeln!(out, "actor restarts: {}", restarts.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests;
