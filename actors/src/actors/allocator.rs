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
//! Failures are seen, not only submissions: a scraper job that leaves squeue has its final
//! state read from sacct (bounded per tick); a failed one (or one pending past the timeout, or
//! a submission SLURM refused) is counted in `turingwatch_scraper_jobs_failed_total{reason}`,
//! backs its node off, and is logged once per node and reason with the first line of the
//! scraper's output (`DistributeOptions::output_pattern`, read then deleted, pruned each round).
//!
//! Nodes whose CPUs are all allocated (sinfo) get no scraper job (it would only wait): a root
//! distributor starts a scraper step in each running job there instead (`distribution::steps`),
//! as the job's owner; a distributor that is not root says once that it cannot, and counts such
//! nodes in `turingwatch_packed_nodes_unsampled` (the node agent covers them).
//!
//! A tick that cannot reach SLURM (the service account unknown, squeue of our jobs failing) is
//! retried at the next tick; [`MAX_FAILED_TICKS`] of them in a row are a failure the allocator
//! cannot handle: it stops, and its supervisor restarts it after a growing delay. The round
//! state survives the restart (squeue is re-read and our jobs adopted anyway).

use super::messages::{CancelScrapers, JobsImported, Tick};
use super::supervision::Restarts;
use crate::clock::unix_now;
use crate::distribution::steps::{self, Steps};
use crate::distribution::{new_rounds, prune_outputs, scraper_job, take_first_output_line, DistributeOptions, Rounds};
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
    /// Whether scraper steps can be started inside users' jobs (root).
    privileged: bool,
}

/// The allocation actor.
pub struct Allocator {
    ctx: Arc<Context>,
    /// The round state; taken by a tick's future while it runs (ticks are atomic).
    rounds: Option<Rounds>,
    /// Scraper steps in users' jobs on packed nodes; taken by a tick's future like `rounds`.
    steps: Option<Steps>,
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
        let privileged = steps::privileged();
        metrics.scraper_steps_possible.set(u64::from(privileged));
        Allocator {
            ctx: Arc::new(Context { config, options, slurm, metrics, privileged }),
            rounds: Some(rounds),
            steps: Some(Steps::default()),
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
        if self.ctx.privileged {
            tracing::info!(
                "nodes whose CPUs are all allocated get a scraper step inside each running job, started as the job's owner"
            );
        } else {
            tracing::warn!(
                "not root: on nodes whose CPUs are all allocated only this user's own jobs get a scraper step (SLURM \
                 lets only a job's owner start a step in it); nodes left unsampled are counted in \
                 turingwatch_packed_nodes_unsampled; run the node agent (systemd/turingwatch-scrape.service) or the \
                 distributor as root to cover them"
            );
        }
        let dir = self.ctx.options.resolved_state_dir(config).join("scrapers");
        if self.ctx.options.outputs_in_state_dir() {
            if let Err(err) = std::fs::create_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot create the scraper output directory");
            }
        }
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
        let (Some(rounds), Some(steps), false) = (self.rounds.take(), self.steps.take(), self.stopping) else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let ctx = Arc::clone(&self.ctx);
        let me = self.me.clone();
        let hint = std::mem::take(&mut self.imported_busy);
        let next_round = self.next_round;
        let work = async move { tick(&ctx, me, rounds, steps, next_round, hint).await };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|outcome, act, ctx| {
            act.rounds = Some(outcome.rounds);
            act.steps = Some(outcome.steps);
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
        let mut steps = self.steps.take().unwrap_or_default();
        let ctx = Arc::clone(&self.ctx);
        AtomicResponse::new(Box::pin(
            async move {
                tracing::info!(jobs = jobs.len(), steps = steps.len(), "cancelling our scraper jobs");
                for job in jobs {
                    if let Err(err) = queue::cancel(&ctx.slurm, job).await {
                        tracing::warn!(job_id = job.0, error = %err, "cannot cancel a scraper job");
                    }
                }
                steps.stop_all(Duration::from_secs(10)).await;
                ctx.metrics.scraper_steps_running.set(0);
                steps
            }
            .into_actor(self)
            .map(|steps, act, _| {
                act.steps = Some(steps);
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
    steps: Steps,
    me: Option<(String, String)>,
    next_round: u64,
    /// Whether the service account is known and squeue of our jobs answered.
    reached_slurm: bool,
}

/// One reconciliation: squeue of our jobs, sacct of those that ended, a round when due
/// (scraper jobs on busy nodes, scraper steps on packed ones), submissions.
async fn tick(
    ctx: &Context,
    me: Option<(String, String)>,
    mut rounds: Rounds,
    mut steps: Steps,
    mut next_round: u64,
    hint: Vec<(String, u32)>,
) -> TickOutcome {
    let me = match me {
        Some(me) => Some(me),
        None => match identity(&ctx.config).await {
            Ok(me) => Some(me),
            Err(err) => {
                tracing::warn!(error = %err, "cannot tell the service account or this binary's path; retrying");
                return TickOutcome { rounds, steps, me: None, next_round, reached_slurm: false };
            }
        },
    };
    let Some((user, binary)) = me.as_ref() else {
        return TickOutcome { rounds, steps, me, next_round, reached_slurm: false };
    };
    let name = &ctx.config.distributor.job_name;
    let now = unix_now();
    let mut reached_slurm = true;
    match queue::own_jobs(&ctx.slurm, user, name).await {
        Ok(own) => {
            for job in rounds.observe(&own, now) {
                failure(ctx, &mut rounds, "", "pending_timeout", None, job);
                if let Err(err) = queue::cancel(&ctx.slurm, job).await {
                    tracing::warn!(job_id = job.0, error = %err, "cannot cancel a pending scraper job");
                }
            }
        }
        Err(err) => {
            reached_slurm = false;
            tracing::warn!(error = %err, "squeue of our scraper jobs failed");
        }
    }
    settle_ended(ctx, &mut rounds).await;
    reap_steps(ctx, &mut rounds, &mut steps, now).await;
    if !rounds.round_in_progress() && now >= next_round {
        let running = match queue::running_jobs(&ctx.slurm).await {
            Ok(jobs) => Some(jobs),
            Err(err) => {
                tracing::warn!(error = %err, "squeue of running jobs failed");
                None
            }
        };
        let busy = match &running {
            Some(jobs) => Some(queue::busy_nodes(jobs, name, user)),
            None if !hint.is_empty() => {
                tracing::warn!("using the accounting import's busy nodes");
                Some(hint)
            }
            None => None,
        };
        if let Some(mut busy) = busy {
            if !ctx.options.only_nodes.is_empty() {
                busy.retain(|(n, _)| ctx.options.only_nodes.contains(n));
            }
            let packed = packed_uncovered(ctx, &rounds, &busy).await;
            if let Some(jobs) = &running {
                place_steps(ctx, &mut rounds, &mut steps, jobs, &packed, (user, binary), now);
            }
            // A scraper job on a packed node would only wait, then be cancelled.
            busy.retain(|(n, _)| !packed.contains(n));
            tracing::debug!(nodes = busy.len(), packed = packed.len(), "distribution round");
            rounds.start_round(&busy);
            next_round = now + ctx.config.distributor.round_interval.get().as_secs().max(1);
            if ctx.options.outputs_in_state_dir() {
                prune_outputs(&ctx.options.resolved_state_dir(&ctx.config).join("scrapers"));
            }
        }
    }
    ctx.metrics.scraper_steps_running.set(steps.len() as u64);
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
                rounds.failed(&node, now);
                let line = "no account/partition may run a scraper on this node".to_string();
                failure(ctx, &mut rounds, &node, "no_partition", Some(line), crate::job::JobId(0));
                continue;
            };
            let job = scraper_job(&ctx.config, &ctx.options, binary, &node, account, partition);
            match queue::submit(&ctx.slurm, &job).await {
                Ok(id) => {
                    tracing::info!(job_id = id.0, node = %node, "scraper job submitted");
                    rounds.submitted(&node, id, now);
                }
                Err(err) => {
                    rounds.failed(&node, now);
                    failure(ctx, &mut rounds, &node, "submit_error", Some(err.to_string()), crate::job::JobId(0));
                }
            }
        }
    }
    TickOutcome { rounds, steps, me, next_round, reached_slurm }
}

/// Counts a failed placement under `reason` and logs it: at warn level the first time for this
/// node and reason, at debug level after that. `node` empty: looked up from the placement.
fn failure(
    ctx: &Context,
    rounds: &mut Rounds,
    node: &str,
    reason: &str,
    detail: Option<String>,
    job: crate::job::JobId,
) {
    ctx.metrics.scraper_failed(reason);
    let node = if node.is_empty() { "?" } else { node };
    let detail = detail.unwrap_or_default();
    if rounds.first_time(node, reason) {
        tracing::warn!(node = %node, job_id = job.0, reason, detail = %detail, "scraper placement failed");
    } else {
        tracing::debug!(node = %node, job_id = job.0, reason, detail = %detail, "scraper placement failed again");
    }
}

/// Reads the final state of scraper jobs that left squeue (bounded per tick) and counts the
/// failed ones, with the first line of their output.
async fn settle_ended(ctx: &Context, rounds: &mut Rounds) {
    let asked = rounds.awaiting_final(queue::MAX_FINAL_STATES);
    if asked.is_empty() {
        return;
    }
    let states = match queue::final_states(&ctx.slurm, &asked).await {
        Ok(states) => states,
        Err(err) => {
            tracing::debug!(error = %err, "sacct of ended scraper jobs failed; asked again next tick");
            Vec::new()
        }
    };
    let pattern = ctx.options.output_pattern(&ctx.config);
    for settled in rounds.settle(&asked, &states, unix_now()) {
        let first_line = take_first_output_line(&pattern, settled.placement.job);
        let Some(reason) = settled.failure else {
            tracing::debug!(job_id = settled.placement.job.0, node = %settled.placement.node, "scraper job completed");
            continue;
        };
        let detail = format!(
            "{} exit {} ({}); output: {}",
            settled.state.state,
            settled.state.exit_code,
            settled.state.reason,
            first_line.as_deref().unwrap_or("(not readable)")
        );
        let node = settled.placement.node.clone();
        failure(ctx, rounds, &node, reason, Some(detail), settled.placement.job);
    }
}

/// Scraper steps that ended: one that exited non-zero while its job still runs failed (a step
/// ends with its job, which is no failure).
async fn reap_steps(ctx: &Context, rounds: &mut Rounds, steps: &mut Steps, now: u64) {
    for ended in steps.reap(now) {
        if ended.status.is_some_and(|s| s.success()) {
            continue;
        }
        let still_running = queue::job_state(&ctx.slurm, ended.job).await.is_ok_and(|s| s == "RUNNING");
        if still_running {
            rounds.failed(&ended.node, now);
            let detail = format!(
                "{} after {} s; output: {}",
                ended.status.map_or("killed".to_string(), |s| s.to_string()),
                ended.ran_secs,
                ended.first_line.as_deref().unwrap_or("(none)")
            );
            failure(ctx, rounds, &ended.node, "step_failed", Some(detail), ended.job);
        }
    }
}

/// Busy nodes whose CPUs are all allocated and that no scraper job of ours runs on.
async fn packed_uncovered(ctx: &Context, rounds: &Rounds, busy: &[(String, u32)]) -> Vec<String> {
    let packed = match queue::packed_nodes(&ctx.slurm).await {
        Ok(packed) => packed,
        Err(err) => {
            tracing::debug!(error = %err, "sinfo of allocated CPUs failed; no node taken as packed");
            return Vec::new();
        }
    };
    packed
        .into_iter()
        .filter(|n| busy.iter().any(|(b, _)| b == n))
        .filter(|n| !rounds.placements().iter().any(|p| p.running && &p.node == n))
        .collect()
}

/// Starts a scraper step in every running job on `packed` nodes that has none (as root, as each
/// job's owner; otherwise only in the distributor's own user's jobs) and counts the packed nodes
/// left with a job unsampled.
fn place_steps(
    ctx: &Context,
    rounds: &mut Rounds,
    steps: &mut Steps,
    jobs: &[queue::QueuedJob],
    packed: &[String],
    (me, binary): (&str, &str),
    now: u64,
) {
    let mut unsampled = std::collections::BTreeSet::new();
    let name = &ctx.config.distributor.job_name;
    for job in jobs.iter().filter(|j| j.state == "RUNNING" && !(j.name == *name && j.user == me)) {
        for node in job.nodes.iter().filter(|n| packed.contains(n)) {
            if steps.has(job.id, node) {
                continue;
            }
            // Not root: only the distributor's own user's jobs (user mode) can take a step.
            if !ctx.privileged && job.user != me {
                unsampled.insert(node.clone());
                continue;
            }
            if rounds.backing_off(node, now) || steps.len() >= steps::MAX_STEPS {
                unsampled.insert(node.clone());
                continue;
            }
            let Some((uid, gid)) = steps::user_ids(&job.user) else {
                let detail = format!("user {} of job {} is unknown here", job.user, job.id);
                failure(ctx, rounds, node, "step_failed", Some(detail), job.id);
                unsampled.insert(node.clone());
                continue;
            };
            let step = scraper_step(ctx, binary, job, node, (uid, gid));
            match steps.start(&ctx.slurm, &step, now) {
                Ok(()) => tracing::info!(job_id = job.id.0, node = %node, user = %job.user, "scraper step started"),
                Err(err) => {
                    rounds.failed(node, now);
                    failure(ctx, rounds, node, "step_failed", Some(format!("cannot run setpriv/srun: {err}")), job.id);
                    unsampled.insert(node.clone());
                }
            }
        }
    }
    ctx.metrics.packed_nodes_unsampled.set(unsampled.len() as u64);
}

/// The scraper step for `job` on `node`: `scrape --job` for that job only, spooling where a
/// scraper of that user spools by default on that node (`wire::spool`: a private per-uid
/// directory), not under the distributor's state directory, which compute nodes need not have.
fn scraper_step(
    ctx: &Context,
    binary: &str,
    job: &queue::QueuedJob,
    node: &str,
    (uid, gid): (u32, u32),
) -> queue::ScraperStep {
    let scrape_secs = ctx.config.scrape.time_per_node.get().as_secs();
    let mut command = vec![binary.to_string()];
    if let Some(path) = &ctx.options.config_path {
        command.extend(["--config".to_string(), path.display().to_string()]);
    }
    command.extend([
        "scrape".to_string(),
        "--node".into(),
        node.to_string(),
        "--job".into(),
        job.id.to_string(),
        "--duration".into(),
        format!("{scrape_secs}s"),
        // The owner's private spool on that node, not the service's `[scrape] spool_dir`.
        "--spool-dir".into(),
        "auto".into(),
    ]);
    queue::ScraperStep {
        job: job.id,
        node: node.to_string(),
        user: job.user.clone(),
        uid,
        gid,
        memory: steps::STEP_MEMORY.to_string(),
        time_limit_secs: scrape_secs + 60,
        command,
    }
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
