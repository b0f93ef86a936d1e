//! The rollover actor: keeps the periods moving.
//!
//! It runs the period cycle (`period::cycle::tick`) on a timer (so a period closes at its
//! boundary even when nothing is imported) and after each accounting import (`JobsImported`, so
//! the current period's results follow the data). The work is blocking (store, files) and runs
//! on the blocking pool; one run at a time, and an import arriving during a run triggers one more
//! run after it. Everything it decides is in the store, so a restart simply carries on. After
//! each cycle it sets the `turingwatch_period_*` gauges from the stored sampling coverage of the
//! current and the latest closed period (read back, so a restarted server exports them at once).
//!
//! A failed cycle (store, templates, the bundle directory) is a failure it cannot handle: it
//! stops, and its supervisor restarts it after a growing delay; the restarted rollover runs the
//! cycle again (an import that arrived meanwhile included).

use super::messages::{JobsImported, PeriodClosed};
use super::supervision::Restarts;
use crate::clock::unix_now;
use crate::metrics::Metrics;
use crate::period::cycle::{latest_coverage, tick, Cycle, RunError};
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// The rollover actor.
pub struct Rollover {
    store: Arc<Store>,
    cycle: Arc<Cycle>,
    on_closed: Vec<Recipient<PeriodClosed>>,
    running: bool,
    /// Waiting out the delay after a restart: runs are deferred until it ends.
    paused: bool,
    /// An import (or timer) arrived during a run: run again afterwards.
    again: Option<bool>,
    restarts: Restarts,
    metrics: Arc<Metrics>,
}

impl Rollover {
    /// A rollover over `store`; `on_closed` hear about every closed period.
    pub fn new(
        store: Arc<Store>,
        cycle: Cycle,
        on_closed: Vec<Recipient<PeriodClosed>>,
        metrics: Arc<Metrics>,
    ) -> Rollover {
        Rollover {
            store,
            cycle: Arc::new(cycle),
            on_closed,
            running: false,
            paused: false,
            again: None,
            restarts: Restarts::with_defaults("rollover", metrics.clone()),
            metrics,
        }
    }

    /// How often the clock is checked: a tenth of a period, between 1 s and 30 s.
    fn check_every(&self) -> Duration {
        Duration::from_secs((self.cycle.config.analysis.period.as_secs() / 10).clamp(1, 30))
    }

    fn run(&mut self, imported: bool, ctx: &mut Context<Self>) {
        if self.running || self.paused {
            self.again = Some(self.again.unwrap_or(false) || imported);
            return;
        }
        self.running = true;
        let (store, cycle) = (self.store.clone(), self.cycle.clone());
        let work = tokio::task::spawn_blocking(move || {
            let now = unix_now();
            let done = tick(&store, &cycle, now, imported)?;
            Ok::<_, RunError>((done, latest_coverage(&store, &cycle, now)))
        });
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.running = false;
            match result {
                Ok(Ok((done, coverage))) => {
                    act.restarts.succeeded();
                    match coverage {
                        Ok((current, last)) => {
                            act.metrics.period_current.set(current.as_ref());
                            act.metrics.period_last.set(last.as_ref());
                        }
                        // The cycle itself went through: the gauges keep their values until the next.
                        Err(err) => tracing::warn!(error = %err, "period coverage for /metrics not read"),
                    }
                    for r in done.iter().filter(|r| r.closed) {
                        for recipient in &act.on_closed {
                            recipient.do_send(PeriodClosed {
                                start: r.period.start,
                                end: r.period.end,
                                queued: r.queued,
                            });
                        }
                    }
                }
                Ok(Err(err)) => return act.restarts.fail(ctx, &format_args!("period cycle failed: {err}")),
                Err(err) => return act.restarts.fail(ctx, &format_args!("period cycle task failed: {err}")),
            }
            if let Some(imported) = act.again.take() {
                act.run(imported, ctx);
            }
        }));
    }
}

impl Supervised for Rollover {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Periods live in the store; a restart only forgets the run in progress.
        self.running = false;
        self.restarts.restarting();
    }
}

impl Actor for Rollover {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.restarts.take_delay();
        tracing::info!(actor = "rollover", every = ?self.check_every(), delay = ?delay, "started");
        self.paused = true;
        ctx.run_later(delay, |act, ctx| {
            act.paused = false;
            let imported = act.again.take().unwrap_or(false);
            act.run(imported, ctx);
            ctx.run_interval(act.check_every(), |act, ctx| act.run(false, ctx));
        });
    }
}

impl Handler<JobsImported> for Rollover {
    type Result = ();

    fn handle(&mut self, JobsImported(msg): JobsImported, ctx: &mut Self::Context) {
        tracing::debug!(
            until = msg.until,
            new = msg.new.len(),
            finished = msg.finished.len(),
            "refreshing after import"
        );
        self.run(true, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::tests_support::{eventually, scratch};
    use turingwatch_config::Config;

    /// The results directory cannot be created (a file is in the way): every cycle fails, the
    /// rollover stops, and its supervisor restarts it (counted) and runs the cycle again.
    #[actix_rt::test]
    async fn the_rollover_is_restarted_when_the_period_cycle_fails() {
        let dir = scratch("rollover-restart");
        std::fs::write(dir.join("file"), "not a directory").unwrap();
        let mut config = Config::default();
        config.analysis.results_dir = dir.join("file").join("results").display().to_string();
        let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
        let metrics = Arc::new(Metrics::default());
        let cycle = Cycle::new(&config, unix_now()).unwrap();
        let mut rollover = Rollover::new(store, cycle, Vec::new(), metrics.clone());
        rollover.restarts =
            Restarts::new("rollover", Duration::from_millis(5), Duration::from_millis(20), metrics.clone());
        let _addr = actix::Supervisor::start(move |_| rollover);
        let restarted = eventually(Duration::from_secs(10), || metrics.restarts_of("rollover") >= 2).await;
        assert!(restarted, "restarts: {}", metrics.restarts_of("rollover"));
    }

    /// After a cycle the period gauges follow the store: the current period's coverage (one
    /// unsampled job) is exported, and nothing for a last closed period while there is none.
    #[actix_rt::test]
    async fn the_period_gauges_follow_each_cycle() {
        let dir = scratch("rollover-coverage");
        let mut config = Config::default();
        config.analysis.results_dir = dir.join("results").display().to_string();
        config.analysis.timezone = "UTC".into();
        let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
        let now = unix_now();
        let running = crate::store::tests_support::job(1, "alice", now - 100, None);
        store.upsert_jobs(&[running], &[], None).unwrap();
        let metrics = Arc::new(Metrics::default());
        let cycle = Cycle::new(&config, now).unwrap();
        let _addr = Rollover::new(store, cycle, Vec::new(), metrics.clone()).start();
        let current = &metrics.period_current;
        let set = eventually(Duration::from_secs(10), || current.present.get() == 1).await;
        assert!(set, "the current period's coverage was not exported");
        assert_eq!((current.jobs.get(), current.jobs_unsampled.get()), (1, 1));
        assert!(current.start.get() <= now && metrics.period_last.present.get() == 0);
        assert!(metrics.render(now).contains("turingwatch_period_unsampled_jobs{period=\"current\"} 1\n"));
    }
}
