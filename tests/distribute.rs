//! The distributor on the real dev cluster: it sees its scrapers' failures (sacct's final
//! state, counted by reason on its /metrics, logged once with the scraper's first line), and it
//! samples every job on a cluster whose CPUs are all allocated (scraper steps inside the jobs).

use crate::scrape_support::*;
use crate::util::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use turingwatch::job::{JobId, StepId};

/// Cancels the test's jobs when dropped, whatever happened.
struct JobsGuard(Vec<u64>);

impl Drop for JobsGuard {
    fn drop(&mut self) {
        for id in &self.0 {
            cancel(*id);
        }
    }
}

/// Stops a child (SIGTERM, then SIGKILL) when dropped, so a failed assertion leaves none behind.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

fn metric(port: u16, line_start: &str) -> u64 {
    crate::server::http_get(port, "/metrics")
        .and_then(|(_, body)| body.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok()))
        .unwrap_or(0)
}

/// A directory the `turingwatch` user owns (the distributor's state directory).
fn owned_by(dir: &std::path::Path, user: &str) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(run(Command::new("chown").arg(user).arg(dir)).status.success());
}

#[test]
fn a_scraper_job_that_dies_at_once_is_counted_backed_off_and_logged_with_its_first_line() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("distributor_sees_scraper_failures", 18_600, "");
    // Other tests' jobs may fill n2 for a while: the scraper job may wait its turn (not the
    // failure this test is about), so it is given longer than the usual 40 s to start.
    let config = std::fs::read_to_string(&setup.config).unwrap();
    assert!(config.contains("allocation_timeout = \"40s\""), "{config}");
    std::fs::write(&setup.config, config.replace("allocation_timeout = \"40s\"", "allocation_timeout = \"150s\""))
        .unwrap();
    let job = python_job("alice", Some("n2"), "100M", &hog_program(20, 60));
    let _guard = JobsGuard(vec![job]);
    wait_running(job, Duration::from_secs(90));
    let state = setup.dir.join("state");
    owned_by(&state, "turingwatch");
    // As shipped before: a spool the service user cannot create, so every scraper dies at once.
    let distributor = Command::new("runuser")
        .args(["-u", "turingwatch", "--", "env", "TURINGWATCH_SCRAPE_SPOOL_DIR=/proc/turingwatch-spool"])
        .arg(env!("CARGO_BIN_EXE_turingwatch"))
        .arg("--config")
        .arg(&setup.config)
        .args(["distribute", "--only-nodes", "n2", "--metrics-bind", "127.0.0.1:18621", "--scraper-output", "auto"])
        .arg("--state-dir")
        .arg(&state)
        .current_dir("/tmp")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(setup.dir.join("distributor.log")).unwrap())
        .spawn()
        .unwrap();
    let mut distributor = ChildGuard(distributor);
    let log = || read(&setup.dir.join("distributor.log"));
    let counted = eventually(Duration::from_secs(180), || {
        metric(18_621, "turingwatch_scraper_jobs_failed_total{reason=\"failed\"} ") >= 1
    });
    assert!(counted, "the failed scraper job is not counted on /metrics:\n{}", log());
    // Logged once for the node and reason, with why the scraper could not start.
    let text = log();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("scraper placement failed")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("n2") && lines[0].contains("spool"), "no first output line: {}", lines[0]);
    assert!(lines[0].contains("FAILED"), "{}", lines[0]);
    // Backed off: no new scraper job on n2 for the backoff (60 s), though rounds run every 5 s.
    std::thread::sleep(Duration::from_secs(12));
    let submitted = log().matches("scraper job submitted").count();
    assert_eq!(submitted, 1, "resubmitted while backing off:\n{}", log());
    assert_eq!(metric(18_621, "turingwatch_scraper_steps_possible "), 0, "turingwatch is not root");
    // Outputs are read and removed, not left to pile up.
    let outputs = std::fs::read_dir(state.join("scrapers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(outputs, 0, "scraper outputs left behind");
    terminate(&mut distributor.0);
}

/// Waits (bounded) until no other test's jobs are in the queue: this test fills every CPU.
fn wait_queue_empty() {
    let empty = eventually(Duration::from_secs(180), || {
        String::from_utf8_lossy(&run(Command::new("squeue").args(["-h", "-o", "%i"])).stdout).trim().is_empty()
    });
    assert!(empty, "other jobs are queued; this test must run alone (scripts/test.sh serial list)");
}

/// With every CPU of the three nodes allocated (one 2-CPU job each, of alice and bob), scraper
/// jobs could only wait: the distributor, as root, starts a scraper step in each job as its
/// owner, and every job has samples stored within one round (≤ 2 minutes). The steps are not
/// the users' work: the accounting import leaves them out.
#[test]
fn every_job_on_a_packed_cluster_is_sampled_within_one_round() {
    if !cluster() {
        return;
    }
    wait_queue_empty();
    let setup = Setup::new("every_job_on_a_packed_cluster_is_sampled_within_one_round", 18_610, "");
    let mut guard = JobsGuard(Vec::new());
    for (user, node) in [("alice", "n1"), ("bob", "n2"), ("alice", "n3")] {
        let script = format!("exec python3 -c '{}'", hog_program(50, 100).replace('\'', "'\\''"));
        let args = ["--ntasks=1", "--cpus-per-task=2", "--mem=300M", "--time=3", &format!("--nodelist={node}")];
        guard.0.push(sbatch(Some(user), &args, &script));
    }
    for job in &guard.0 {
        wait_running(*job, Duration::from_secs(60));
    }
    let sinfo =
        String::from_utf8_lossy(&run(Command::new("sinfo").args(["-N", "-h", "-o", "%N %C"])).stdout).into_owned();
    assert!(sinfo.lines().all(|l| l.contains(" 2/0/0/2")), "the cluster is not packed: {sinfo}");
    let server = setup.server();
    let started = Instant::now();
    // The distributor as root: only a job's owner may start a step in it, and root can become them.
    let mut distributor = ChildGuard(
        setup
            .turingwatch()
            .args(["distribute", "--metrics-bind", "127.0.0.1:18611"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(setup.dir.join("distributor.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || read(&setup.dir.join("distributor.log"));
    let steps = || scraper_steps(None);
    assert!(eventually(Duration::from_secs(60), || steps() == 3), "not 3 scraper steps: {}\n{}", steps(), log());
    // Samples flow for a while (the scrapers report every 3 s), within the first round's 2 minutes.
    let flowing = eventually(Duration::from_secs(60), || metric(18_610, "turingwatch_samples_stored_total ") >= 9);
    assert!(flowing, "samples are not stored: {}\n{}", log(), setup.server_log());
    std::thread::sleep(Duration::from_secs(4));
    let waited = started.elapsed();
    assert_eq!(metric(18_611, "turingwatch_scraper_steps_running "), 3);
    assert_eq!(metric(18_611, "turingwatch_packed_nodes_unsampled "), 0);
    let pending = run(Command::new("squeue").args(["-h", "-t", "PENDING", "-o", "%i"]));
    assert!(String::from_utf8_lossy(&pending.stdout).trim().is_empty(), "a scraper job waits on a packed node");
    terminate(&mut distributor.0);
    assert!(eventually(Duration::from_secs(20), || steps() == 0), "scraper steps left after the distributor stopped");
    server.stop();

    let store = setup.store();
    let distributor_started = turingwatch::clock::unix_now() - started.elapsed().as_secs();
    for (job, node) in guard.0.iter().zip(["n1", "n2", "n3"]) {
        let samples = step_samples(&store, *job, StepId::BATCH, node);
        assert!(samples.len() >= 2, "job {job} on {node}: {} samples\n{}", samples.len(), log());
        let first = samples[0].at.saturating_sub(distributor_started);
        eprintln!("job {job} on {node}: first sample {first} s after the distributor started");
        assert!(first <= 120, "job {job} first sampled after {first} s");
        // Only the job's own steps: never the scraper step itself.
        let series = store.samples_of_job(JobId(*job)).unwrap();
        assert!(!series.keys().any(|k| k.step.is_numbered()), "the scraper step was reported: {:?}", series.keys());
    }
    eprintln!("every packed job sampled; checked after {waited:?}");
    drop(store);

    // The jobs end; accounting shows our steps inside them, the import leaves them out.
    for job in &guard.0 {
        cancel(*job);
        wait_job_done(*job, Duration::from_secs(30));
    }
    let ids: Vec<String> = guard.0.iter().map(u64::to_string).collect();
    let sacct = run(Command::new("sacct").args(["-n", "-P", "-o", "JobID,JobName", "-j", &ids.join(",")]));
    assert!(String::from_utf8_lossy(&sacct.stdout).contains("|tw-scraper"), "no scraper steps in sacct");
    let imported = run(setup.turingwatch().args(["accounting", "--since", "10m", "--json"]));
    let text = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(text.contains(&format!("\"{}\"", guard.0[0])) || text.contains(&guard.0[0].to_string()), "{text}");
    assert!(!text.contains("tw-scraper"), "the import keeps the scraper steps: {text}");
}
