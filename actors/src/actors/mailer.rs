//! The mailer actor: drains the outbox at the configured rate.
//!
//! At start it turns entries left `sending` by a crash into `uncertain` (at most once, see
//! `mail/outbox.rs`). Then, once a second, if the rate limit allows and today is not a quiet
//! day, it takes the next due entry and delivers it (`mail/deliver.rs`); after each attempt it
//! waits `rate_limit` plus a random part of `rate_jitter`. `PeriodClosed` only logs: the outbox
//! in the store is the source of truth, so nothing is lost if a message is.

use crate::analysis::period::{time_zone, weekday_name};
use crate::clock::unix_now;
use crate::mail::deliver::{deliver, Delivery};
use crate::mail::outbox::{self, OutboxState};
use crate::mail::send::Transport;
use crate::messages::PeriodClosed;
use crate::metrics::Metrics;
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use turingwatch_config::{Config, MailSchedule};

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(1);

/// The mailer actor.
pub struct Mailer {
    store: Arc<Store>,
    config: Arc<Config>,
    transport: Arc<Transport>,
    tz: jiff::tz::TimeZone,
    busy: bool,
    next_send_at: Instant,
    metrics: Arc<Metrics>,
    /// With `schedule = "on_signal"`: a `SendDue` opened the window; it closes when nothing is due.
    window_open: bool,
}

impl Mailer {
    /// A mailer; fails when the transport or time zone cannot be set up.
    pub fn new(store: Arc<Store>, config: Arc<Config>) -> anyhow::Result<Mailer> {
        let transport = Transport::from_config(&config.mail)?;
        let tz = time_zone(&config.analysis.timezone)?;
        Ok(Mailer {
            store,
            config,
            transport: Arc::new(transport),
            tz,
            busy: false,
            next_send_at: Instant::now(),
            metrics: Arc::new(Metrics::default()),
            window_open: false,
        })
    }

    /// Reports queued, sent and failed mails to the server's metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Mailer {
        self.metrics = metrics;
        self
    }

    fn pause(&self) -> Duration {
        let jitter = self.config.mail.rate_jitter.get().mul_f64(rand::random::<f64>());
        self.config.mail.rate_limit.get() + jitter
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.busy || Instant::now() < self.next_send_at {
            return;
        }
        if self.config.mail.schedule == MailSchedule::OnSignal && !self.window_open {
            return;
        }
        let now = unix_now();
        let today = weekday_name(now, &self.tz);
        if self.config.mail.quiet_days.iter().any(|d| d == today) {
            return;
        }
        self.busy = true;
        let (store, config, transport) = (self.store.clone(), self.config.clone(), self.transport.clone());
        let metrics = self.metrics.clone();
        let work = async move {
            let s = store.clone();
            let m = metrics.clone();
            let due = tokio::task::spawn_blocking(move || {
                let (due, queued) = outbox::next_due(&s, now)?;
                m.mails_queued.set(queued);
                Ok::<_, crate::store::StoreError>(due)
            })
            .await;
            let entry = match due {
                Ok(Ok(Some(entry))) => entry,
                Ok(Ok(None)) => return None,
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "cannot read the outbox");
                    return None;
                }
                Err(err) => {
                    tracing::error!(error = %err, "outbox task failed");
                    return None;
                }
            };
            let result = deliver(store, &config, &transport, &entry, &[OutboxState::Queued], now).await;
            let (period, user) = (entry.period_start, entry.user.as_str());
            match &result {
                Ok(Delivery::Sent) => metrics.mails_sent_total.inc(),
                Ok(Delivery::Retry { .. } | Delivery::Failed { .. }) | Err(_) => metrics.mails_failed_total.inc(),
                _ => {}
            }
            match &result {
                Ok(Delivery::Sent) => tracing::info!(period, user, to = %entry.to, "mail sent"),
                Ok(Delivery::Retry { error, next_attempt_at }) => {
                    tracing::warn!(period, user, error = %error, next_attempt_at, "mail not sent; will retry")
                }
                Ok(Delivery::Failed { error }) => tracing::error!(period, user, error = %error, "mail failed for good"),
                Ok(Delivery::OptedOut) => tracing::info!(period, user, "user opted out; no mail"),
                Ok(Delivery::Skipped) => {}
                Err(err) => tracing::error!(period, user, error = %err, "mail delivery bookkeeping failed"),
            }
            Some(result.is_ok())
        };
        ctx.spawn(work.into_actor(self).map(|attempted, act, _| {
            act.busy = false;
            if attempted.is_some() {
                act.next_send_at = Instant::now() + act.pause();
            } else if act.window_open {
                tracing::info!(actor = "mailer", "nothing more is due; waiting for the next signal");
                act.window_open = false;
            }
        }));
    }
}

impl Actor for Mailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(actor = "mailer", transport = ?self.config.mail.transport, "started");
        self.busy = true;
        let store = self.store.clone();
        let recover = tokio::task::spawn_blocking(move || outbox::recover(&store, unix_now()));
        ctx.spawn(recover.into_actor(self).map(|result, act, _| {
            match result {
                Ok(Ok(uncertain)) => {
                    for e in uncertain {
                        tracing::warn!(
                            period = e.period_start, user = %e.user, message_id = %e.message_id,
                            "mail was being sent when the server stopped; marked uncertain, not resent (turingwatch mail --resend sends it)"
                        );
                    }
                    act.busy = false;
                }
                Ok(Err(err)) => tracing::error!(error = %err, "outbox recovery failed; mailer paused"),
                Err(err) => tracing::error!(error = %err, "outbox recovery task failed; mailer paused"),
            }
        }));
        ctx.run_interval(POLL, |act, ctx| act.poll(ctx));
    }
}

/// Opens the sending window (`schedule = "on_signal"`); the server sends it on SIGUSR1.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SendDue;

impl Handler<SendDue> for Mailer {
    type Result = ();

    fn handle(&mut self, _msg: SendDue, _ctx: &mut Self::Context) {
        tracing::info!(actor = "mailer", "sending due mails (signal)");
        self.window_open = true;
    }
}

impl Supervised for Mailer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The outbox in the store is the state; only the in-memory pacing is reset.
        self.busy = false;
        self.next_send_at = Instant::now() + self.pause();
        self.metrics.actor_restarted("mailer");
        tracing::warn!(actor = "mailer", "restarting");
    }
}

impl Handler<PeriodClosed> for Mailer {
    type Result = ();

    fn handle(&mut self, msg: PeriodClosed, _ctx: &mut Self::Context) {
        tracing::info!(period = msg.start, queued = msg.queued, "period closed; mails queued");
    }
}
