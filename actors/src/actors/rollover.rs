//! The rollover actor: keeps the periods moving.
//!
//! It runs the period cycle (`analysis::run::tick`) on a timer (so a period closes at its
//! boundary even when nothing is imported) and after each accounting import (`JobsImported`, so
//! the current period's results follow the data). The work is blocking (store, files) and runs
//! on the blocking pool; one run at a time, and an import arriving during a run triggers one more
//! run after it. Everything it decides is in the store, so a restart simply carries on.

use crate::analysis::run::{tick, Cycle};
use crate::clock::unix_now;
use crate::messages::{JobsImported, PeriodClosed};
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
    /// An import (or timer) arrived during a run: run again afterwards.
    again: Option<bool>,
}

impl Rollover {
    /// A rollover over `store`; `on_closed` hear about every closed period.
    pub fn new(store: Arc<Store>, cycle: Cycle, on_closed: Vec<Recipient<PeriodClosed>>) -> Rollover {
        Rollover { store, cycle: Arc::new(cycle), on_closed, running: false, again: None }
    }

    /// How often the clock is checked: a tenth of a period, between 1 s and 30 s.
    fn check_every(&self) -> Duration {
        Duration::from_secs((self.cycle.config.analysis.period.as_secs() / 10).clamp(1, 30))
    }

    fn run(&mut self, imported: bool, ctx: &mut Context<Self>) {
        if self.running {
            self.again = Some(self.again.unwrap_or(false) || imported);
            return;
        }
        self.running = true;
        let (store, cycle) = (self.store.clone(), self.cycle.clone());
        let work = tokio::task::spawn_blocking(move || tick(&store, &cycle, unix_now(), imported));
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.running = false;
            match result {
                Ok(Ok(done)) => {
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
                Ok(Err(err)) => tracing::error!(error = %err, "period cycle failed; retrying at the next check"),
                Err(err) => tracing::error!(error = %err, "period cycle task failed"),
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
        tracing::warn!(actor = "rollover", "restarting");
    }
}

impl Actor for Rollover {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(actor = "rollover", every = ?self.check_every(), "started");
        self.run(false, ctx);
        ctx.run_interval(self.check_every(), |act, ctx| act.run(false, ctx));
    }
}

impl Handler<JobsImported> for Rollover {
    type Result = ();

    fn handle(&mut self, msg: JobsImported, ctx: &mut Self::Context) {
        tracing::debug!(
            until = msg.until,
            new = msg.new.len(),
            finished = msg.finished.len(),
            "refreshing after import"
        );
        self.run(true, ctx);
    }
}
