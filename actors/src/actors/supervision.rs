//! Supervised restarts with bounded exponential backoff and jitter, counted per actor.
//!
//! Every actor stops (`ctx.stop()`) on a failure it cannot handle. Its actix `Supervisor` then
//! calls `restarting()` on the same struct and `started()` again. Each actor keeps a
//! [`Restarts`]: `restarting()` calls [`Restarts::restarting`] (counts the restart in
//! `/metrics`, draws the next delay) and `started()` waits [`Restarts::take_delay`] before it
//! resumes work, so a failure that persists is retried ever more slowly, up to a cap; work that
//! succeeds again calls [`Restarts::succeeded`] and the next failure starts from the first delay.
//! Durable state is in the store (or the spool), so a restart only loses what was in flight.

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use actix::ActorContext;
use std::sync::Arc;
use std::time::Duration;

/// First delay before a restarted actor resumes work.
pub const RESTART_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay between restarts in a row.
pub const RESTART_MAX: Duration = Duration::from_secs(300);

/// One actor's restart bookkeeping.
#[derive(Debug, Clone)]
pub struct Restarts {
    actor: &'static str,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    /// Wait before work resumes: zero at the first start, the drawn backoff after a restart.
    delay: Duration,
}

impl Restarts {
    /// Restarts of `actor` (one of `metrics::ACTORS`), waiting from `initial` up to `max`.
    pub fn new(actor: &'static str, initial: Duration, max: Duration, metrics: Arc<Metrics>) -> Restarts {
        Restarts { actor, backoff: Backoff::new(initial, max), metrics, delay: Duration::ZERO }
    }

    /// With the default delays ([`RESTART_INITIAL`] up to [`RESTART_MAX`]).
    pub fn with_defaults(actor: &'static str, metrics: Arc<Metrics>) -> Restarts {
        Restarts::new(actor, RESTART_INITIAL, RESTART_MAX, metrics)
    }

    /// The actor's name in logs and `/metrics`.
    pub fn actor(&self) -> &'static str {
        self.actor
    }

    /// The metrics the restarts are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// From `Supervised::restarting`: counts the restart and draws the delay before work resumes.
    pub fn restarting(&mut self) {
        self.delay = self.backoff.next_delay();
        self.metrics.actor_restarted(self.actor);
        tracing::warn!(
            actor = self.actor,
            restarts = self.metrics.restarts_of(self.actor),
            in_a_row = self.backoff.attempts(),
            delay_secs = self.delay.as_secs_f64(),
            "restarting"
        );
    }

    /// From `Actor::started`: how long to wait before resuming (zero unless just restarted).
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// The actor's work succeeded: the next failure waits the first delay again.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// Logs why the actor gives up and stops it; its supervisor restarts it.
    pub fn fail<C: ActorContext>(&self, ctx: &mut C, error: &dyn std::fmt::Display) {
        tracing::error!(actor = self.actor, error = %error, "failed; stopping, the supervisor restarts it");
        ctx.stop();
    }
}
