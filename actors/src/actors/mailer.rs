//! The mailer actor: sends due outbox entries, at the configured rate, when there is cause to.
//!
//! At start it turns entries left `sending` by a crash into `uncertain` (at most once, see
//! `mail/outbox.rs`) and sends what is already due. After that it is driven by events:
//! `PeriodClosed` (the rollover queued a period's mails) and `SendDue` (SIGUSR1, which opens
//! the window of `schedule = "on_signal"`) start a drain; a drain sends one due entry at a time,
//! waiting `rate_limit` plus a random part of `rate_jitter` after each attempt, until nothing
//! is due. A failed attempt is retried by the outbox at its `next_attempt_at`: the mailer sets a
//! timer for the earliest one. A slow safety check ([`SAFETY_CHECK`]) covers what no event
//! announces (a quiet day ending, an entry queued by hand). The outbox in the store is the
//! source of truth, so nothing is lost if a message is.
//!
//! A store error (reading the outbox, recording a delivery) is a failure it cannot handle: it
//! stops, and its supervisor restarts it after a growing delay; the restart recovers the outbox
//! again, so an entry caught mid-send is marked uncertain, never sent twice.

use super::messages::{PeriodClosed, SendDue};
use super::supervision::Restarts;
use crate::analysis::period::{time_zone, weekday_name};
use crate::clock::unix_now;
use crate::mail::deliver::{deliver, DeliveryOutcome};
use crate::mail::outbox::{self, OutboxEntry, OutboxState};
use crate::mail::send::Transport;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use turingwatch_config::{Config, MailSchedule};

/// How often the mailer looks at the outbox when no event told it to.
pub const SAFETY_CHECK: Duration = Duration::from_secs(60);

/// Reads the next due entry and the number queued (`Store::next_due_mail`; a failing one in tests).
type NextDue = fn(&Store, u64) -> Result<(Option<OutboxEntry>, u64), StoreError>;

/// The mailer actor.
pub struct Mailer {
    store: Arc<Store>,
    config: Arc<Config>,
    transport: Arc<Transport>,
    tz: jiff::tz::TimeZone,
    /// Recovering the outbox, or an attempt in flight.
    busy: bool,
    /// A drain was asked for while busy: drain again afterwards.
    again: bool,
    /// The rate limit: no attempt before this.
    next_send_at: Instant,
    /// The timer of the next drain (rate limit or retry), if one is set.
    wake: Option<(Instant, SpawnHandle)>,
    /// The earliest retry of a failed attempt: the timer is set for it once nothing else is due.
    retry_at: Option<Instant>,
    metrics: Arc<Metrics>,
    /// With `schedule = "on_signal"`: a `SendDue` opened the window; it closes when nothing is due.
    window_open: bool,
    next_due: NextDue,
    restarts: Restarts,
}

impl Mailer {
    /// A mailer; fails when the transport or time zone cannot be set up.
    pub fn new(store: Arc<Store>, config: Arc<Config>) -> anyhow::Result<Mailer> {
        let transport = Transport::from_config(&config.mail)?;
        let tz = time_zone(&config.analysis.timezone)?;
        let metrics = Arc::new(Metrics::default());
        Ok(Mailer {
            store,
            config,
            transport: Arc::new(transport),
            tz,
            busy: false,
            again: false,
            next_send_at: Instant::now(),
            wake: None,
            retry_at: None,
            restarts: Restarts::with_defaults("mailer", metrics.clone()),
            metrics,
            window_open: false,
            next_due: Store::next_due_mail,
        })
    }

    /// Reports queued, sent and failed mails, and restarts, to the server's metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Mailer {
        self.restarts = Restarts::with_defaults("mailer", metrics.clone());
        self.metrics = metrics;
        self
    }

    fn pause(&self) -> Duration {
        let jitter = self.config.mail.rate_jitter.get().mul_f64(rand::random::<f64>());
        self.config.mail.rate_limit.get() + jitter
    }

    /// Drains again at `at` (unless an earlier drain is already set).
    fn wake_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((when, handle)) = self.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.wake = None;
            act.drain(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// Sends the next due entry, if the schedule, the quiet days and the rate limit allow; the
    /// next drain follows after the pause, until nothing is due.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        if self.config.mail.schedule == MailSchedule::OnSignal && !self.window_open {
            return;
        }
        let now = unix_now();
        let today = weekday_name(now, &self.tz);
        if self.config.mail.quiet_days.iter().any(|d| d == today) {
            return; // The safety check looks again.
        }
        if Instant::now() < self.next_send_at {
            return self.wake_at(self.next_send_at, ctx);
        }
        self.busy = true;
        let (store, config, transport) = (self.store.clone(), self.config.clone(), self.transport.clone());
        let (metrics, next_due) = (self.metrics.clone(), self.next_due);
        let work = async move {
            let s = store.clone();
            let m = metrics.clone();
            let due = tokio::task::spawn_blocking(move || {
                let (due, queued) = next_due(&s, now)?;
                m.mails_queued.set(queued);
                Ok::<_, StoreError>(due)
            })
            .await;
            let entry = match due {
                Ok(Ok(Some(entry))) => entry,
                Ok(Ok(None)) => return Ok(Attempt::NothingDue),
                Ok(Err(err)) => return Err(format!("cannot read the outbox: {err}")),
                Err(err) => return Err(format!("outbox task failed: {err}")),
            };
            let result = deliver(store, &config, &transport, &entry, &[OutboxState::Queued], now, Some(today)).await;
            let (period, user) = (entry.period_start, entry.user.as_str());
            match &result {
                Ok(DeliveryOutcome::Sent) => metrics.mails_sent_total.inc(),
                Ok(DeliveryOutcome::Retry { .. } | DeliveryOutcome::Failed { .. }) | Err(_) => {
                    metrics.mails_failed_total.inc()
                }
                _ => {}
            }
            match result {
                Ok(DeliveryOutcome::Sent) => tracing::info!(period, user, to = %entry.to, "mail sent"),
                Ok(DeliveryOutcome::Retry { error, next_attempt_at }) => {
                    tracing::warn!(period, user, error = %error, next_attempt_at, "mail not sent; will retry");
                    return Ok(Attempt::Retry { at: next_attempt_at });
                }
                Ok(DeliveryOutcome::Failed { error }) => {
                    tracing::error!(period, user, error = %error, "mail failed for good")
                }
                Ok(DeliveryOutcome::OptedOut) => tracing::info!(period, user, "user opted out; no mail"),
                Ok(DeliveryOutcome::Deferred { until }) => {
                    tracing::info!(period, user, until, "a quiet day of the user's; the mail waits")
                }
                Ok(DeliveryOutcome::Skipped) => {}
                Err(err) => return Err(format!("mail delivery bookkeeping failed for {period}/{user}: {err}")),
            }
            Ok(Attempt::Done)
        };
        ctx.spawn(work.into_actor(self).map(|attempt, act, ctx| {
            act.busy = false;
            let attempt = match attempt {
                Ok(attempt) => attempt,
                Err(error) => return act.restarts.fail(ctx, &error),
            };
            act.restarts.succeeded();
            match attempt {
                Attempt::NothingDue => {
                    if act.window_open {
                        tracing::info!(actor = "mailer", "nothing more is due; waiting for the next signal");
                        act.window_open = false;
                    }
                    if std::mem::take(&mut act.again) {
                        return act.drain(ctx);
                    }
                    if let Some(at) = act.retry_at.take().filter(|at| *at > Instant::now()) {
                        act.wake_at(at, ctx);
                    }
                }
                Attempt::Retry { at } => {
                    act.note_retry(at);
                    act.next_send_at = Instant::now() + act.pause();
                    act.again = false;
                    act.wake_at(act.next_send_at, ctx);
                }
                Attempt::Done => {
                    act.next_send_at = Instant::now() + act.pause();
                    act.again = false;
                    act.wake_at(act.next_send_at, ctx);
                }
            }
        }));
    }

    /// Remembers a retry due at `at` (unix seconds) if it is the earliest known.
    fn note_retry(&mut self, at: u64) {
        let at = Instant::now() + Duration::from_secs(at.saturating_sub(unix_now()));
        self.retry_at = Some(self.retry_at.map_or(at, |known| known.min(at)));
    }
}

/// What one drain step did.
enum Attempt {
    NothingDue,
    Done,
    Retry { at: u64 },
}

impl Actor for Mailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.restarts.take_delay();
        tracing::info!(actor = "mailer", transport = ?self.config.mail.transport, delay = ?delay, "started");
        self.busy = true;
        self.wake = None;
        ctx.run_later(delay, |act, ctx| {
            let store = act.store.clone();
            let recover = tokio::task::spawn_blocking(move || {
                let uncertain = outbox::recover(&store, unix_now())?;
                Ok::<_, StoreError>((uncertain, store.outbox_entries(None)?))
            });
            ctx.spawn(recover.into_actor(act).map(|result, act, ctx| {
                act.busy = false;
                let entries = match result {
                    Ok(Ok((uncertain, entries))) => {
                        for e in uncertain {
                            tracing::warn!(
                                period = e.period_start, user = %e.user, message_id = %e.message_id,
                                "mail was being sent when the server stopped; marked uncertain, not resent (turingwatch mail --resend sends it)"
                            );
                        }
                        entries
                    }
                    Ok(Err(err)) => return act.restarts.fail(ctx, &format_args!("outbox recovery failed: {err}")),
                    Err(err) => return act.restarts.fail(ctx, &format_args!("outbox recovery task failed: {err}")),
                };
                let now = unix_now();
                for e in entries.iter().filter(|e| e.state == OutboxState::Queued && e.next_attempt_at > now) {
                    act.note_retry(e.next_attempt_at);
                }
                act.drain(ctx);
                ctx.run_interval(SAFETY_CHECK, |act, ctx| act.drain(ctx));
            }));
        });
    }
}

impl Handler<SendDue> for Mailer {
    type Result = ();

    fn handle(&mut self, _msg: SendDue, ctx: &mut Self::Context) {
        tracing::info!(actor = "mailer", "sending due mails (signal)");
        self.window_open = true;
        self.drain(ctx);
    }
}

impl Handler<PeriodClosed> for Mailer {
    type Result = ();

    fn handle(&mut self, msg: PeriodClosed, ctx: &mut Self::Context) {
        tracing::info!(period = msg.start, queued = msg.queued, "period closed; mails queued");
        self.drain(ctx);
    }
}

impl Supervised for Mailer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The outbox in the store is the state; only the in-memory pacing is reset.
        self.busy = false;
        self.again = false;
        self.wake = None;
        self.retry_at = None;
        self.next_send_at = Instant::now() + self.pause();
        self.restarts.restarting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::tests_support::{eventually, scratch};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Outbox reads made by [`flaky_next_due`]; the first two fail.
    static READS: AtomicU32 = AtomicU32::new(0);

    fn flaky_next_due(store: &Store, now: u64) -> Result<(Option<OutboxEntry>, u64), StoreError> {
        if READS.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(StoreError::NoMigration { from: 0 }); // Any store error will do.
        }
        store.next_due_mail(now)
    }

    /// Reading the outbox fails twice: the mailer stops each time, its supervisor restarts it
    /// (counted), and the third drain reads the outbox fine.
    #[actix_rt::test]
    async fn the_mailer_is_restarted_when_the_outbox_cannot_be_read() {
        let dir = scratch("mailer-restart");
        let mut config = Config::default();
        config.mail.transport = turingwatch_config::MailTransport::File;
        config.mail.file_dir = dir.join("mails").display().to_string();
        config.mail.rate_limit = turingwatch_config::Span(Duration::from_millis(10));
        config.mail.rate_jitter = turingwatch_config::Span(Duration::ZERO);
        let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
        let metrics = Arc::new(Metrics::default());
        let mut mailer = Mailer::new(store, Arc::new(config)).unwrap().with_metrics(metrics.clone());
        mailer.next_due = flaky_next_due;
        mailer.restarts = Restarts::new("mailer", Duration::from_millis(5), Duration::from_millis(20), metrics.clone());
        let addr = actix::Supervisor::start(move |_| mailer);
        let restarted = eventually(Duration::from_secs(10), || READS.load(Ordering::SeqCst) >= 3).await;
        assert!(restarted, "reads: {}", READS.load(Ordering::SeqCst));
        assert_eq!(metrics.restarts_of("mailer"), 2);
        // A closed period still reaches the restarted mailer.
        addr.send(PeriodClosed { start: 0, end: 60, queued: 0 }).await.unwrap();
        assert!(eventually(Duration::from_secs(5), || READS.load(Ordering::SeqCst) >= 4).await);
    }
}
