//! The sampler actor (scrape role): one sample of every step of its node per interval.
//!
//! Samples fall on wall-clock multiples of the interval, so `at` (whole seconds) is exact and
//! samples of different nodes line up. Every `report_every` the samples gathered go to the
//! reporter as one `SubmitSamples`; at the end of a bounded run, or on `Finish` (SIGTERM), one
//! last sample is taken and everything is handed over with `last`, and the reporter's answer
//! ends the run. Sampling is a few hundred microseconds of /proc and cgroup reads, done on the
//! actor's own thread (nothing else runs there that it could hold up).
//!
//! A failing sample is logged and skipped; [`MAX_FAILED_SAMPLES`] in a row (the proc or cgroup
//! tree unreadable) are a failure it cannot handle: it stops, and its supervisor restarts it
//! after a growing delay with a sampler built afresh (the step finder detected again). Samples
//! not yet reported survive the restart.

use super::messages::{Finish, ReporterStats, SubmitSamples};
use super::supervision::Restarts;
use crate::clock::unix_now;
use crate::job::{JobId, StepId};
use crate::sample::collect::{Sampler, StepReading};
use crate::wire::format::StepBatch;
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Failed samples in a row before the sampler stops (and is restarted).
pub const MAX_FAILED_SAMPLES: u32 = 5;

/// Builds the node's sampler (at start and after each restart).
pub type MakeSampler = Box<dyn FnMut() -> Sampler>;

/// When the run ends and how often it samples and reports.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub interval: Duration,
    pub report_every: Duration,
    /// End of a bounded run (`None`: until stopped).
    pub end: Option<Instant>,
}

/// The sampler actor.
pub struct NodeSampler {
    sampler: Option<Sampler>,
    make: MakeSampler,
    schedule: Schedule,
    pending: BTreeMap<(JobId, StepId), StepBatch>,
    last_report: Instant,
    reporter: Recipient<SubmitSamples>,
    failures: u32,
    /// The last report was handed over: no more samples.
    finishing: bool,
    /// Hears the reporter's answer to the last report (the run is over).
    done: Option<oneshot::Sender<ReporterStats>>,
    restarts: Restarts,
}

impl NodeSampler {
    /// A sampler actor reporting to `reporter`; `done` hears when a bounded run has ended.
    pub fn new(
        mut make: MakeSampler,
        schedule: Schedule,
        reporter: Recipient<SubmitSamples>,
        done: oneshot::Sender<ReporterStats>,
        restarts: Restarts,
    ) -> NodeSampler {
        NodeSampler {
            sampler: Some(make()),
            make,
            schedule,
            pending: BTreeMap::new(),
            last_report: Instant::now(),
            reporter,
            failures: 0,
            finishing: false,
            done: Some(done),
            restarts,
        }
    }

    fn schedule_next(&self, ctx: &mut Context<Self>, after: Duration) {
        let wait = after + until(next_tick(self.schedule.interval));
        ctx.run_later(wait, |act, ctx| act.tick(ctx));
    }

    /// Takes one sample into `pending`; false when it failed.
    fn sample_once(&mut self) -> bool {
        let Some(sampler) = self.sampler.as_mut() else { return false };
        match sampler.sample(unix_now()) {
            Ok(readings) => {
                add_readings(&mut self.pending, readings);
                self.failures = 0;
                self.restarts.succeeded();
                true
            }
            Err(err) => {
                self.failures += 1;
                tracing::warn!(error = %err, in_a_row = self.failures, "sample failed");
                false
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.finishing {
            return;
        }
        if !self.sample_once() && self.failures >= MAX_FAILED_SAMPLES {
            let error = format!("{} samples in a row failed", self.failures);
            return self.restarts.fail(ctx, &error);
        }
        let interval = self.schedule.interval;
        if self.schedule.end.is_some_and(|end| Instant::now() + interval > end) {
            let last = self.hand_over();
            ctx.spawn(last.into_actor(self).map(|stats, act, _| {
                if let Some(done) = act.done.take() {
                    let _ = done.send(stats);
                }
            }));
            return;
        }
        if self.last_report.elapsed() >= self.schedule.report_every {
            let steps = self.take_pending();
            self.reporter.do_send(SubmitSamples { steps, last: false });
        }
        self.schedule_next(ctx, Duration::ZERO);
    }

    fn take_pending(&mut self) -> Vec<StepBatch> {
        self.last_report = Instant::now();
        std::mem::take(&mut self.pending).into_values().collect()
    }

    /// Hands everything over as the last report; resolves with the reporter's answer.
    fn hand_over(&mut self) -> impl std::future::Future<Output = ReporterStats> {
        self.finishing = true;
        let (reporter, steps) = (self.reporter.clone(), self.take_pending());
        async move {
            match reporter.send(SubmitSamples { steps, last: true }).await {
                Ok(stats) => stats,
                Err(err) => {
                    tracing::error!(error = %err, "the reporter did not answer the last report");
                    ReporterStats::default()
                }
            }
        }
    }
}

impl Actor for NodeSampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.sampler.is_none() {
            self.sampler = Some((self.make)());
        }
        let delay = self.restarts.take_delay();
        if let Some(sampler) = &self.sampler {
            tracing::debug!(finder = sampler.finder().name(), delay = ?delay, "sampler started");
        }
        self.schedule_next(ctx, delay);
    }
}

impl Supervised for NodeSampler {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // A fresh sampler (the finder detected again); the unreported samples stay.
        self.sampler = None;
        self.failures = 0;
        self.restarts.restarting();
    }
}

impl Handler<Finish> for NodeSampler {
    type Result = ResponseFuture<ReporterStats>;

    fn handle(&mut self, _msg: Finish, _ctx: &mut Self::Context) -> Self::Result {
        if !self.finishing {
            self.sample_once();
        }
        Box::pin(self.hand_over())
    }
}

fn add_readings(pending: &mut BTreeMap<(JobId, StepId), StepBatch>, readings: Vec<StepReading>) {
    for r in readings {
        let entry = pending.entry((r.job, r.step)).or_insert_with(|| StepBatch {
            job: r.job,
            step: r.step,
            samples: Vec::new(),
            gpus: Vec::new(),
            apps: Vec::new(),
        });
        entry.samples.push(r.sample);
        entry.gpus.extend(r.gpus);
        let known: BTreeSet<&String> = entry.apps.iter().collect();
        let new: Vec<String> = r.apps.into_iter().filter(|a| !known.contains(a)).collect();
        entry.apps.extend(new);
    }
}

/// The next wall-clock multiple of `interval` (a little after it, so `at` reads that second).
pub fn next_tick(interval: Duration) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let step = interval.as_millis().max(1);
    let next_ms = (now.as_millis() / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(u64::try_from(next_ms).unwrap_or(u64::MAX)) + Duration::from_millis(5)
}

fn until(when: SystemTime) -> Duration {
    when.duration_since(SystemTime::now()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::tests_support::{eventually, scratch};
    use crate::metrics::Metrics;
    use crate::sample::collect::StepFinder;
    use crate::sample::procfs::ProcRoot;
    use std::sync::Arc;

    /// Takes reports and answers like a reporter that sent everything.
    struct Probe;

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<SubmitSamples> for Probe {
        type Result = ReporterStats;

        fn handle(&mut self, _msg: SubmitSamples, _ctx: &mut Self::Context) -> ReporterStats {
            ReporterStats::default()
        }
    }

    /// The proc tree is unreadable: samples fail, the sampler stops after `MAX_FAILED_SAMPLES`,
    /// and its supervisor restarts it (counted) with a sampler built afresh.
    #[actix_rt::test]
    async fn the_sampler_is_restarted_when_samples_keep_failing() {
        let dir = scratch("sampler-restart");
        let proc_root = dir.join("no-proc");
        let built = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = built.clone();
        let make: MakeSampler = Box::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Sampler::new(ProcRoot::new(&proc_root), StepFinder::ProcTree, &[], None)
        });
        let metrics = Arc::new(Metrics::default());
        let restarts = Restarts::new("sampler", Duration::from_millis(5), Duration::from_millis(20), metrics.clone());
        let schedule =
            Schedule { interval: Duration::from_millis(10), report_every: Duration::from_secs(60), end: None };
        let (done, _ended) = oneshot::channel();
        let reporter = Probe.start().recipient();
        let addr = actix::Supervisor::start(move |_| NodeSampler::new(make, schedule, reporter, done, restarts));
        let restarted = eventually(Duration::from_secs(10), || metrics.restarts_of("sampler") >= 1).await;
        assert!(restarted, "the sampler was not restarted");
        assert!(built.load(std::sync::atomic::Ordering::SeqCst) >= 2, "no fresh sampler after the restart");
        // The restarted sampler still finishes a run.
        assert_eq!(addr.send(Finish).await.unwrap(), ReporterStats::default());
    }
}
