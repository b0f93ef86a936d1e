//! The distributor: the allocation actor that places short scraper jobs on busy nodes through
//! SLURM, so every node with running jobs is sampled in turn.
//!
//! It runs as its own role (`turingwatch distribute`, the original's separate distributor
//! service) or inside `turingwatch server` (`[distributor] in_server = true`), where the
//! accounting importer's `JobsImported` (nodes with running jobs) starts a round at once and
//! failures are counted in the server's `/metrics`. Either way it is one supervised actix actor,
//! [`Allocator`]: a `Tick` every two seconds reconciles with squeue (adopting its own scraper jobs
//! after a restart, cancelling those pending past `allocation_timeout`), starts a round every
//! `round_interval` over the nodes with running jobs, busiest first, and submits scraper jobs
//! within `scrape.concurrent_nodes`. Scraper jobs are named `distributor.job_name`, pinned with
//! `--nodelist`, one CPU, small memory, time limit `time_per_node + 1 min`, with an
//! account/partition the service account may use. `CancelScrapers` (sent on shutdown) cancels
//! every scraper job it knows. The round logic (`distribution::Rounds`) is pure and unit-tested.
//!
//! A tick that cannot reach SLURM (the service account unknown, squeue of our jobs failing) is
//! retried at the next tick; [`MAX_FAILED_TICKS`] of them in a row are a failure the allocator
//! cannot handle: it stops, and its supervisor restarts it after a growing delay. The round
//! state survives the restart (squeue is re-read and our jobs adopted anyway).

use super::messages::{CancelScrapers, JobsImported, Tick};
use super::supervision::Restarts;
use crate::clock::unix_now;
use crate::distribution::{new_rounds, scraper_job, DistributeOptions, Rounds};
use crate::metrics::Metrics;
use crate::slurm::queue;
use crate::slurm::SlurmRunner;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use turingwatch_config::Config;

/// Time between two reconciliations with squeue.
const TICK: Duration = Duration::from_secs(2);

/// Ticks in a row that could not reach SLURM before the allocator stops (and is restarted).
pub const MAX_FAILED_TICKS: u32 = 15;

/// Longest wait before a restarted allocator ticks again: once SLURM is back, scrapers are
/// placed within about a minute.
const RESTART_MAX: Duration = Duration::from_secs(60);

/// Starts the allocation actor under a supervisor; `metrics` counts failed allocations and
/// restarts (the server's, or the distribute role's own).
pub fn start(config: Arc<Config>, options: DistributeOptions, metrics: Arc<Metrics>) -> Addr<Allocator> {
    let allocator = Allocator::new(config, options, metrics);
    actix::Supervisor::start(move |_| allocator)
}

/// What a tick needs, shared with the future that does the SLURM work.
struct Context {
    config: Arc<Config>,
    options: DistributeOptions,
    slurm: SlurmRunner,
    metrics: Arc<Metrics>,
}

/// The allocation actor.
pub struct Allocator {
    ctx: Arc<Context>,
    /// The round state; taken by a tick's future while it runs (ticks are atomic).
    rounds: Option<Rounds>,
    /// Service account name and binary path, resolved on the first tick.
    me: Option<(String, String)>,
    next_round: u64,
    /// Busy nodes the accounting importer reported since the last round.
    imported_busy: Vec<(String, u32)>,
    stopping: bool,
    /// Time between ticks ([`TICK`]; shorter in tests).
    tick_every: Duration,
    /// Ticks in a row that could not reach SLURM.
    failed_ticks: u32,
    restarts: Restarts,
}

impl Allocator {
    /// An allocator with `config`'s limits; `metrics` counts failed allocations and restarts.
    pub fn new(config: Arc<Config>, options: DistributeOptions, metrics: Arc<Metrics>) -> Self {
        let rounds = new_rounds(&config);
        let slurm = SlurmRunner::new(&config.slurm);
        let restarts = Restarts::new("allocator", TICK, RESTART_MAX, metrics.clone());
        Allocator {
            ctx: Arc::new(Context { config, options, slurm, metrics }),
            rounds: Some(rounds),
            me: None,
            next_round: 0,
            imported_busy: Vec::new(),
            stopping: false,
            tick_every: TICK,
            failed_ticks: 0,
            restarts,
        }
    }
}

impl Allocator {
    /// Nodes with running jobs from an import make a round due as soon as the current one ends.
    fn note_import(&mut self, JobsImported(event): JobsImported) {
        if !event.busy_nodes.is_empty() {
            tracing::debug!(nodes = event.busy_nodes.len(), "busy nodes from the accounting import");
            self.imported_busy = event.busy_nodes;
            self.next_round = 0;
        }
    }
}

impl Actor for Allocator {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let config = &self.ctx.config;
        tracing::info!(
            job_name = %config.distributor.job_name,
            limit = config.scrape.concurrent_nodes,
            "distributor started"
        );
        ctx.notify_later(Tick, self.restarts.take_delay());
    }
}

impl Supervised for Allocator {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Round state lives on (squeue is the truth and is re-read on the next tick).
        if self.rounds.is_none() {
            self.rounds = Some(new_rounds(&self.ctx.config));
        }
        self.failed_ticks = 0;
        self.restarts.restarting();
    }
}

impl Handler<JobsImported> for Allocator {
    type Result = ();

    fn handle(&mut self, event: JobsImported, _ctx: &mut Self::Context) {
        self.note_import(event);
    }
}

impl Handler<Tick> for Allocator {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Tick, _ctx: &mut Self::Context) -> Self::Result {
        let (Some(rounds), false) = (self.rounds.take(), self.stopping) else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let ctx = Arc::clone(&self.ctx);
        let me = self.me.clone();
        let hint = std::mem::take(&mut self.imported_busy);
        let next_round = self.next_round;
        let work = async move { tick(&ctx, me, rounds, next_round, hint).await };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|outcome, act, ctx| {
            act.rounds = Some(outcome.rounds);
            act.me = outcome.me.or(act.me.take());
            act.next_round = if act.next_round == 0 && !act.imported_busy.is_empty() { 0 } else { outcome.next_round };
            if outcome.reached_slurm {
                act.failed_ticks = 0;
                act.restarts.succeeded();
            } else {
                act.failed_ticks += 1;
                if act.failed_ticks >= MAX_FAILED_TICKS && !act.stopping {
                    let error = format!("SLURM unreachable for {} ticks in a row", act.failed_ticks);
                    return act.restarts.fail(ctx, &error);
                }
            }
            if !act.stopping {
                ctx.notify_later(Tick, act.tick_every);
            }
        })))
    }
}

impl Handler<CancelScrapers> for Allocator {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: CancelScrapers, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let jobs: Vec<crate::job::JobId> =
            self.rounds.as_ref().map(|r| r.placements().iter().map(|p| p.job).collect()).unwrap_or_default();
        let ctx = Arc::clone(&self.ctx);
        AtomicResponse::new(Box::pin(
            async move {
                tracing::info!(jobs = jobs.len(), "cancelling our scraper jobs");
                for job in jobs {
                    if let Err(err) = queue::cancel(&ctx.slurm, job).await {
                        tracing::warn!(job_id = job.0, error = %err, "cannot cancel a scraper job");
                    }
                }
            }
            .into_actor(self)
            .map(|(), act, _| {
                if let Some(rounds) = act.rounds.as_mut() {
                    rounds.forget_all();
                }
            }),
        ))
    }
}

/// What a tick hands back to the actor.
struct TickOutcome {
    rounds: Rounds,
    me: Option<(String, String)>,
    next_round: u64,
    /// Whether the service account is known and squeue of our jobs answered.
    reached_slurm: bool,
}

/// One reconciliation: squeue of our jobs, a round when due, submissions.
async fn tick(
    ctx: &Context,
    me: Option<(String, String)>,
    mut rounds: Rounds,
    mut next_round: u64,
    hint: Vec<(String, u32)>,
) -> TickOutcome {
    let me = match me {
        Some(me) => Some(me),
        None => match identity(&ctx.config).await {
            Ok(me) => Some(me),
            Err(err) => {
                tracing::warn!(error = %err, "cannot tell the service account or this binary's path; retrying");
                return TickOutcome { rounds, me: None, next_round, reached_slurm: false };
            }
        },
    };
    let Some((user, binary)) = me.as_ref() else {
        return TickOutcome { rounds, me, next_round, reached_slurm: false };
    };
    let name = &ctx.config.distributor.job_name;
    let now = unix_now();
    let mut reached_slurm = true;
    match queue::own_jobs(&ctx.slurm, user, name).await {
        Ok(own) => {
            let was_pending: Vec<String> =
                rounds.placements().iter().filter(|p| !p.running).map(|p| p.node.clone()).collect();
            for job in rounds.observe(&own, now) {
                count_failure(ctx);
                if let Err(err) = queue::cancel(&ctx.slurm, job).await {
                    tracing::warn!(job_id = job.0, error = %err, "cannot cancel a pending scraper job");
                }
            }
            let started: Vec<String> = rounds
                .placements()
                .iter()
                .filter(|p| p.running && was_pending.contains(&p.node))
                .map(|p| p.node.clone())
                .collect();
            for node in started {
                rounds.succeeded(&node);
            }
        }
        Err(err) => {
            reached_slurm = false;
            tracing::warn!(error = %err, "squeue of our scraper jobs failed");
        }
    }
    if !rounds.round_in_progress() && now >= next_round {
        let busy = match queue::running_jobs(&ctx.slurm).await {
            Ok(jobs) => Some(queue::busy_nodes(&jobs, name, user)),
            Err(err) if !hint.is_empty() => {
                tracing::warn!(error = %err, "squeue of running jobs failed; using the accounting import's nodes");
                Some(hint)
            }
            Err(err) => {
                tracing::warn!(error = %err, "squeue of running jobs failed");
                None
            }
        };
        if let Some(mut busy) = busy {
            if !ctx.options.only_nodes.is_empty() {
                busy.retain(|(n, _)| ctx.options.only_nodes.contains(n));
            }
            tracing::debug!(nodes = busy.len(), "distribution round");
            rounds.start_round(&busy);
            next_round = now + ctx.config.distributor.round_interval.get().as_secs().max(1);
        }
    }
    let nodes = rounds.next_nodes(now);
    if !nodes.is_empty() {
        let accounts = queue::accounts(&ctx.slurm, user).await.unwrap_or_default();
        let partitions = queue::partitions(&ctx.slurm).await.unwrap_or_default();
        for (node, _) in nodes {
            let distributor = &ctx.config.distributor;
            let Some((account, partition)) = queue::choose_account_partition(
                &node,
                &accounts,
                &partitions,
                &distributor.account,
                &distributor.partition,
            ) else {
                tracing::warn!(node = %node, "no account/partition may run a scraper on this node");
                rounds.failed(&node, now);
                count_failure(ctx);
                continue;
            };
            let job = scraper_job(&ctx.config, &ctx.options, binary, &node, account, partition);
            match queue::submit(&ctx.slurm, &job).await {
                Ok(id) => {
                    tracing::info!(job_id = id.0, node = %node, "scraper job submitted");
                    rounds.submitted(&node, id, now);
                }
                Err(err) => {
                    tracing::warn!(node = %node, error = %err, "scraper job submission failed");
                    rounds.failed(&node, now);
                    count_failure(ctx);
                }
            }
        }
    }
    TickOutcome { rounds, me, next_round, reached_slurm }
}

fn count_failure(ctx: &Context) {
    ctx.metrics.scraper_jobs_failed_total.inc();
}

/// The service account's name and the binary scraper jobs run.
async fn identity(config: &Config) -> anyhow::Result<(String, String)> {
    use anyhow::Context as _;
    let out = tokio::process::Command::new("id").arg("-un").output().await.context("running id -un")?;
    anyhow::ensure!(out.status.success(), "id -un failed");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let binary = if config.distributor.binary.is_empty() {
        std::env::current_exe().context("finding this binary's path ([distributor] binary)")?.display().to_string()
    } else {
        config.distributor.binary.clone()
    };
    tracing::info!(user = %user, binary = %binary, "distributor identity");
    Ok((user, binary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::ImportChanges;
    use crate::actors::tests_support::{eventually, scratch};

    #[test]
    fn imported_busy_nodes_make_a_round_due_at_once() {
        let mut allocator =
            Allocator::new(Arc::new(Config::default()), DistributeOptions::default(), Arc::new(Metrics::default()));
        allocator.next_round = u64::MAX;
        allocator.note_import(JobsImported::default());
        assert_eq!(allocator.next_round, u64::MAX, "an import without running jobs changes nothing");
        let busy = ImportChanges { busy_nodes: vec![("n1".into(), 3)], ..Default::default() };
        allocator.note_import(JobsImported(busy));
        assert_eq!((allocator.next_round, allocator.imported_busy.len()), (0, 1));
    }

    /// squeue is not there: every tick fails to reach SLURM, the allocator stops after
    /// `MAX_FAILED_TICKS`, and its supervisor restarts it (counted) with its round state.
    #[actix_rt::test]
    async fn the_allocator_is_restarted_when_slurm_stays_unreachable() {
        let dir = scratch("allocator-restart");
        let mut config = Config::default();
        config.slurm.bin_dir = dir.join("no-such-bin").display().to_string();
        let metrics = Arc::new(Metrics::default());
        let mut allocator = Allocator::new(Arc::new(config), DistributeOptions::default(), metrics.clone());
        allocator.tick_every = Duration::from_millis(1);
        allocator.restarts =
            Restarts::new("allocator", Duration::from_millis(5), Duration::from_millis(20), metrics.clone());
        let addr = actix::Supervisor::start(move |_| allocator);
        let restarted = eventually(Duration::from_secs(20), || metrics.restarts_of("allocator") >= 1).await;
        assert!(restarted, "the allocator was not restarted");
        // It still answers after the restart.
        addr.send(CancelScrapers).await.unwrap();
    }
}
