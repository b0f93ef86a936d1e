//! A distributor's round state, pure (times are passed in) so it is unit-tested without SLURM.
//!
//! Each round takes the nodes with running jobs, busiest first (they know about the most jobs),
//! and gives every node two chances: a node whose submission fails or whose job is still pending
//! after the allocation timeout (then cancelled) goes to the back of the round's queue once, and
//! its failures back off exponentially across rounds. At most `limit` scraper jobs are pending
//! or running at once. Scraper jobs found in squeue but unknown here are adopted (a restart).
//!
//! A scraper job that leaves squeue is not forgotten at once: its final state is read from
//! sacct ([`Rounds::awaiting_final`], [`Rounds::settle`]), so one that died (a spool it cannot
//! open, a missing binary) counts as a failure of its node, backs the node off, and is told
//! apart from one that ran its time and completed.

use crate::backoff::Backoff;
use crate::job::JobId;
use crate::slurm::queue::{FinalState, QueuedJob};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

/// Chances a node gets per round.
const CHANCES_PER_ROUND: u32 = 2;

/// Ticks an ended scraper job waits for sacct to show its final state before it is given up.
const FINAL_STATE_TRIES: u32 = 15;

/// Most (node, reason) pairs remembered as logged; past it the memory starts again.
const LOGGED_MAX: usize = 4_096;

/// An ended scraper job whose final state was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub placement: Placement,
    pub state: FinalState,
    /// The failure reason (`FinalState::failure`); `None`: it completed.
    pub failure: Option<&'static str>,
}

/// One scraper job the distributor knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub job: JobId,
    pub node: String,
    pub submitted_at: u64,
    pub running: bool,
}

/// The distributor's round state (pure: times are passed in).
#[derive(Debug)]
pub struct Rounds {
    limit: usize,
    allocation_timeout_secs: u64,
    backoff: (Duration, Duration),
    placements: Vec<Placement>,
    queue: VecDeque<String>,
    /// Chances each node of the current round has used.
    tries: HashMap<String, u32>,
    failing: HashMap<String, (Backoff, u64)>,
    /// Failed allocations per node since start.
    pub failures: HashMap<String, u64>,
    /// Scraper jobs that left squeue, waiting for sacct's final state (with the tries spent).
    ending: VecDeque<(Placement, u32)>,
    /// (node, reason) pairs already logged.
    logged: HashSet<(String, String)>,
}

impl Rounds {
    /// Round state for `limit` concurrent scraper jobs.
    pub fn new(limit: usize, allocation_timeout_secs: u64, backoff_initial: Duration, backoff_max: Duration) -> Self {
        Rounds {
            limit: limit.max(1),
            allocation_timeout_secs,
            backoff: (backoff_initial, backoff_max),
            placements: Vec::new(),
            queue: VecDeque::new(),
            tries: HashMap::new(),
            failing: HashMap::new(),
            failures: HashMap::new(),
            ending: VecDeque::new(),
            logged: HashSet::new(),
        }
    }

    /// Scraper jobs known now.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// Whether the current round has nodes left to try.
    pub fn round_in_progress(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Starts a round over `busy` nodes (busiest first); nodes already being scraped are left out.
    pub fn start_round(&mut self, busy: &[(String, u32)]) {
        self.queue = busy
            .iter()
            .filter(|(node, _)| !self.placements.iter().any(|p| &p.node == node))
            .map(|(node, _)| node.clone())
            .collect();
        self.tries.clear();
    }

    /// Takes in squeue's view of our scraper jobs (adopting unknown ones: a restart), forgets
    /// ended ones, and returns pending ones past the allocation timeout, which the caller cancels.
    pub fn observe(&mut self, own: &[QueuedJob], now: u64) -> Vec<JobId> {
        let (kept, ended): (Vec<Placement>, Vec<Placement>) =
            std::mem::take(&mut self.placements).into_iter().partition(|p| own.iter().any(|j| j.id == p.job));
        self.placements = kept;
        self.ending.extend(ended.into_iter().map(|p| (p, 0)));
        for job in own {
            let running = job.state == "RUNNING" || job.state == "COMPLETING";
            match self.placements.iter_mut().find(|p| p.job == job.id) {
                Some(p) => p.running = running,
                None => {
                    let node = job.nodes.first().or(job.requested_nodes.first()).cloned().unwrap_or_default();
                    tracing::info!(job_id = job.id.0, node = %node, "adopted a running scraper job");
                    self.placements.push(Placement { job: job.id, node, submitted_at: now, running });
                }
            }
        }
        let timeout = self.allocation_timeout_secs;
        let (late, keep): (Vec<Placement>, Vec<Placement>) = std::mem::take(&mut self.placements)
            .into_iter()
            .partition(|p| !p.running && now.saturating_sub(p.submitted_at) >= timeout);
        self.placements = keep;
        late.into_iter()
            .map(|p| {
                tracing::warn!(job_id = p.job.0, node = %p.node, "scraper job still pending: cancelled");
                self.failed(&p.node, now);
                p.job
            })
            .collect()
    }

    /// Nodes to submit to now (with the chance each is on, 0 or 1), within the concurrency
    /// limit; a node still backing off spends a chance waiting.
    pub fn next_nodes(&mut self, now: u64) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut deferred = Vec::new();
        while self.placements.len() + out.len() < self.limit {
            let Some(node) = self.queue.pop_front() else { break };
            let tries = self.tries.entry(node.clone()).or_default();
            let chance = *tries;
            *tries += 1;
            if self.failing.get(&node).is_some_and(|(_, until)| *until > now) {
                if *tries < CHANCES_PER_ROUND {
                    deferred.push(node);
                }
                continue;
            }
            out.push((node, chance));
        }
        self.queue.extend(deferred);
        out
    }

    /// A scraper job was submitted.
    pub fn submitted(&mut self, node: &str, job: JobId, now: u64) {
        self.placements.push(Placement { job, node: node.to_string(), submitted_at: now, running: false });
    }

    /// An allocation on `node` failed (submission error or pending timeout): count it, back
    /// off, and requeue the node in this round if it has a chance left.
    pub fn failed(&mut self, node: &str, now: u64) {
        *self.failures.entry(node.to_string()).or_default() += 1;
        let (initial, max) = self.backoff;
        let entry = self.failing.entry(node.to_string()).or_insert_with(|| (Backoff::new(initial, max), 0));
        entry.1 = now + entry.0.next_base().as_secs();
        let tries = self.tries.get(node).copied().unwrap_or(CHANCES_PER_ROUND);
        if tries < CHANCES_PER_ROUND && !self.queue.iter().any(|n| n == node) {
            self.queue.push_back(node.to_string());
        }
    }

    /// Every scraper job was cancelled (shutdown): nothing is placed, no round goes on.
    pub fn forget_all(&mut self) {
        self.placements.clear();
        self.queue.clear();
        self.ending.clear();
    }

    /// A node's scraper completed: its failures are forgotten.
    pub fn succeeded(&mut self, node: &str) {
        self.failing.remove(node);
    }

    /// Whether `node` is backing off after a failure at `now`.
    pub fn backing_off(&self, node: &str, now: u64) -> bool {
        self.failing.get(node).is_some_and(|(_, until)| *until > now)
    }

    /// Ended scraper jobs whose final state is wanted (oldest first, at most `max`).
    pub fn awaiting_final(&self, max: usize) -> Vec<JobId> {
        self.ending.iter().take(max).map(|(p, _)| p.job).collect()
    }

    /// Takes in sacct's final states for [`Rounds::awaiting_final`]'s jobs: a completed job
    /// clears its node's backoff, a failed one counts as the node's failure (backoff, and a
    /// second chance in the round). Jobs sacct does not show as finished yet wait for the next
    /// call, at most [`FINAL_STATE_TRIES`] calls. `asked` are the ids that were asked for.
    pub fn settle(&mut self, asked: &[JobId], states: &[FinalState], now: u64) -> Vec<Settled> {
        let mut out = Vec::new();
        let mut waiting = VecDeque::new();
        for (placement, tries) in std::mem::take(&mut self.ending) {
            if !asked.contains(&placement.job) {
                waiting.push_back((placement, tries));
                continue;
            }
            match states.iter().find(|s| s.id == placement.job).filter(|s| !s.unfinished()) {
                Some(state) => {
                    let failure = state.failure();
                    match failure {
                        Some(_) => self.failed(&placement.node, now),
                        None => self.succeeded(&placement.node),
                    }
                    out.push(Settled { placement, state: state.clone(), failure });
                }
                None if tries + 1 < FINAL_STATE_TRIES => waiting.push_back((placement, tries + 1)),
                None => tracing::debug!(job_id = placement.job.0, "no final state from sacct; given up"),
            }
        }
        self.ending = waiting;
        out
    }

    /// True the first time `(node, reason)` is seen: such a failure is logged once.
    pub fn first_time(&mut self, node: &str, reason: &str) -> bool {
        if self.logged.len() >= LOGGED_MAX {
            self.logged.clear();
        }
        self.logged.insert((node.to_string(), reason.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(limit: usize) -> Rounds {
        Rounds::new(limit, 120, Duration::from_secs(60), Duration::from_secs(3600))
    }

    fn queued(id: u64, node: &str, state: &str) -> QueuedJob {
        QueuedJob {
            id: JobId(id),
            name: "turingwatch".into(),
            user: "root".into(),
            state: state.into(),
            nodes: if state == "RUNNING" { vec![node.into()] } else { vec![] },
            requested_nodes: vec![node.into()],
        }
    }

    fn busy(nodes: &[&str]) -> Vec<(String, u32)> {
        nodes.iter().enumerate().map(|(i, n)| (n.to_string(), 10 - i as u32)).collect()
    }

    #[test]
    fn busiest_nodes_go_first_within_the_concurrency_limit() {
        let mut r = rounds(2);
        r.start_round(&busy(&["n3", "n1", "n2"]));
        let first = r.next_nodes(0);
        assert_eq!(first, [("n3".to_string(), 0), ("n1".to_string(), 0)]);
        r.submitted("n3", JobId(1), 0);
        r.submitted("n1", JobId(2), 0);
        assert!(r.next_nodes(1).is_empty(), "limit reached");
        // n3's job ends: n2 gets its turn.
        r.observe(&[queued(2, "n1", "RUNNING")], 10);
        assert_eq!(r.next_nodes(10), [("n2".to_string(), 0)]);
    }

    #[test]
    fn a_pending_job_past_the_timeout_is_cancelled_and_the_node_gets_a_second_chance() {
        let mut r = rounds(1);
        r.start_round(&busy(&["n1", "n2"]));
        assert_eq!(r.next_nodes(0), [("n1".to_string(), 0)]);
        r.submitted("n1", JobId(7), 0);
        assert!(r.observe(&[queued(7, "n1", "PENDING")], 60).is_empty());
        assert_eq!(r.observe(&[queued(7, "n1", "PENDING")], 120), [JobId(7)]);
        assert_eq!(r.failures["n1"], 1);
        assert_eq!(r.next_nodes(120), [("n2".to_string(), 0)]);
        r.submitted("n2", JobId(8), 120);
        r.observe(&[], 130);
        // n1 is backing off (60 s from 120): its second chance is spent waiting, then dropped.
        assert!(r.next_nodes(130).is_empty());
        assert!(!r.round_in_progress());
        // Next round, after the backoff, n1 is tried again.
        r.start_round(&busy(&["n1"]));
        assert_eq!(r.next_nodes(181), [("n1".to_string(), 0)]);
    }

    #[test]
    fn a_failed_submission_is_retried_once_in_the_round() {
        let mut r = Rounds::new(1, 120, Duration::from_secs(0), Duration::from_secs(0));
        r.start_round(&busy(&["n1"]));
        assert_eq!(r.next_nodes(0).len(), 1);
        r.failed("n1", 0);
        assert_eq!(r.next_nodes(0), [("n1".to_string(), 1)]);
        r.failed("n1", 0);
        assert!(r.next_nodes(0).is_empty(), "two chances per round, no more");
    }

    fn final_state(id: u64, state: &str) -> FinalState {
        FinalState { id: JobId(id), state: state.into(), exit_code: "1:0".into(), reason: "NonZeroExitCode".into() }
    }

    #[test]
    fn a_scraper_job_that_dies_at_once_is_a_failure_of_its_node_and_backs_it_off() {
        let mut r = rounds(1);
        r.start_round(&busy(&["n1"]));
        assert_eq!(r.next_nodes(0), [("n1".to_string(), 0)]);
        r.submitted("n1", JobId(5), 0);
        // Gone from squeue before we even saw it run.
        r.observe(&[], 2);
        assert_eq!(r.awaiting_final(10), [JobId(5)]);
        // sacct lags: not final yet, asked again next time.
        assert!(r.settle(&[JobId(5)], &[final_state(5, "RUNNING")], 3).is_empty());
        let settled = r.settle(&[JobId(5)], &[final_state(5, "FAILED")], 4);
        assert_eq!(settled.len(), 1);
        assert_eq!((settled[0].failure, settled[0].placement.node.as_str()), (Some("failed"), "n1"));
        assert_eq!(r.failures["n1"], 1);
        assert!(r.backing_off("n1", 10) && !r.backing_off("n1", 65));
        assert!(r.awaiting_final(10).is_empty());
        assert!(r.first_time("n1", "failed") && !r.first_time("n1", "failed") && r.first_time("n2", "failed"));
        // A scraper that ran its time and completed clears the backoff.
        r.submitted("n1", JobId(6), 70);
        r.observe(&[], 80);
        let done = r.settle(&[JobId(6)], &[final_state(6, "COMPLETED")], 90);
        assert_eq!(done[0].failure, None);
        assert!(!r.backing_off("n1", 91));
    }

    #[test]
    fn a_final_state_never_shown_is_given_up_after_a_bound() {
        let mut r = rounds(1);
        r.submitted("n1", JobId(9), 0);
        r.observe(&[], 1);
        for t in 0..FINAL_STATE_TRIES {
            assert_eq!(r.awaiting_final(10), [JobId(9)], "try {t}");
            r.settle(&[JobId(9)], &[], 2);
        }
        assert!(r.awaiting_final(10).is_empty());
    }

    #[test]
    fn a_restart_adopts_running_scraper_jobs_instead_of_duplicating_them() {
        let mut r = rounds(4);
        r.observe(&[queued(41, "n2", "RUNNING")], 0);
        assert_eq!(r.placements().len(), 1);
        r.start_round(&busy(&["n2", "n3"]));
        assert_eq!(r.next_nodes(0), [("n3".to_string(), 0)], "n2 already has our scraper");
    }
}
