//! The live queue: squeue, scontrol, sacctmgr, sbatch and scancel, as the distributor needs them.
//!
//! Each query has a pure `parse_*` for its output and an async call through [`SlurmRunner`].
//! squeue prints job names as users typed them, so its columns are separated by a per-call
//! random delimiter with the name last and cut by `delimited`: no name (with `|`, newlines or
//! anything else) can shift a column or add a job.

use super::delimited::{canonicalize, Delimiter, CANONICAL};
use super::hostlist::expand;
use super::{SlurmError, SlurmRunner};
use crate::job::JobId;

/// A running or pending job as squeue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: JobId,
    pub name: String,
    pub user: String,
    /// `PENDING`, `RUNNING`, `COMPLETING`, …
    pub state: String,
    /// Nodes the job runs on (expanded); empty while pending.
    pub nodes: Vec<String>,
    /// Nodes the job asked for (`--nodelist`, expanded).
    pub requested_nodes: Vec<String>,
}

/// squeue's fields, in order: id, user, state, nodes, requested nodes, name (last: it is free text).
const SQUEUE_FIELDS: [&str; 6] = ["%i", "%u", "%T", "%N", "%n", "%j"];

/// The `squeue -o` format with `delimiter` between the fields.
fn squeue_format(delimiter: &Delimiter) -> String {
    SQUEUE_FIELDS.join(delimiter.as_str())
}

/// Runs squeue with `selection` and parses its jobs.
async fn squeue(slurm: &SlurmRunner, selection: &[&str]) -> Result<Vec<QueuedJob>, SlurmError> {
    let delimiter = Delimiter::random();
    let mut words = vec!["-h".to_string()];
    words.extend(selection.iter().map(|w| w.to_string()));
    words.extend(["-o".to_string(), squeue_format(&delimiter)]);
    let raw = slurm.run_bytes("squeue", &words).await?;
    let canonical = canonicalize(&raw, &delimiter, SQUEUE_FIELDS.len());
    let (jobs, bad) = parse_squeue(&canonical.text);
    if bad > 0 || canonical.leftover.is_some() {
        tracing::warn!(bad, leftover = ?canonical.leftover, "squeue lines skipped");
    }
    Ok(jobs)
}

/// Parses canonical squeue text (see `delimited`; fields as [`SQUEUE_FIELDS`]). Lines that do
/// not parse are skipped (and counted).
pub fn parse_squeue(text: &str) -> (Vec<QueuedJob>, usize) {
    let mut bad = 0;
    let jobs = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let parsed = (|| {
                let mut f = line.split(CANONICAL);
                let id = f.next()?.trim();
                // Array tasks show as `123_4`; only plain numeric ids are placed or cancelled here.
                let id = JobId(id.parse().ok()?);
                let user = f.next()?.to_string();
                let state = f.next()?.to_string();
                let nodes = f.next()?.trim();
                let requested = f.next()?.trim();
                let name = f.next()?.to_string();
                if f.next().is_some() {
                    return None;
                }
                Some(QueuedJob {
                    id,
                    name,
                    user,
                    state,
                    nodes: expand_or_empty(nodes),
                    requested_nodes: expand_or_empty(requested),
                })
            })();
            if parsed.is_none() {
                bad += 1;
            }
            parsed
        })
        .collect();
    (jobs, bad)
}

fn expand_or_empty(list: &str) -> Vec<String> {
    if list.is_empty() || list == "(null)" || list.starts_with('(') {
        return Vec::new();
    }
    expand(list).unwrap_or_default()
}

/// Nodes with running jobs and how many each has, busiest first (ties by name), leaving out
/// our own scraper jobs: named `scraper_name` AND run by `service_user` (any other user's job
/// of that name is a job like any other, and its node is scraped).
pub fn busy_nodes(jobs: &[QueuedJob], scraper_name: &str, service_user: &str) -> Vec<(String, u32)> {
    let mut counts: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    let ours = |j: &QueuedJob| j.name == scraper_name && j.user == service_user;
    for job in jobs.iter().filter(|j| j.state == "RUNNING" && !ours(j)) {
        for node in &job.nodes {
            *counts.entry(node.as_str()).or_default() += 1;
        }
    }
    let mut out: Vec<(String, u32)> = counts.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A partition and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub nodes: Vec<String>,
    /// `None` = ALL.
    pub allow_accounts: Option<Vec<String>>,
    pub deny_accounts: Vec<String>,
    pub up: bool,
    pub default: bool,
}

impl Partition {
    /// Whether `account` may submit here.
    pub fn allows(&self, account: &str) -> bool {
        self.up
            && self.allow_accounts.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a == account))
            && !self.deny_accounts.iter().any(|a| a == account)
    }
}

/// Parses `scontrol show partition -o` (one partition per line, `Key=Value` words).
pub fn parse_partitions(text: &str) -> Vec<Partition> {
    text.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
            };
            let list = |v: Option<String>| -> Vec<String> {
                v.filter(|s| !s.is_empty() && s != "(null)")
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default()
            };
            let allow = field("AllowAccounts");
            Some(Partition {
                name: field("PartitionName")?,
                nodes: field("Nodes").and_then(|n| expand(&n).ok()).unwrap_or_default(),
                allow_accounts: allow.filter(|a| a != "ALL").map(|a| list(Some(a))),
                deny_accounts: list(field("DenyAccounts")),
                up: field("State").is_none_or(|s| s == "UP"),
                default: field("Default").is_some_and(|d| d == "YES"),
            })
        })
        .collect()
}

/// Parses `sacctmgr -n -P show assoc user=U format=Account` plus the default account first.
pub fn parse_accounts(assoc: &str, default_account: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let default = default_account.lines().next().unwrap_or("").trim();
    if !default.is_empty() {
        out.push(default.to_string());
    }
    for account in assoc.lines().map(|l| l.split('|').next().unwrap_or("").trim()) {
        if !account.is_empty() && !out.iter().any(|a| a == account) {
            out.push(account.to_string());
        }
    }
    out
}

/// Chooses (account, partition) for a scraper job on `node`: configured values win; otherwise
/// the first account (default first) and the first partition holding the node that allows it
/// (the default partition first). `None` when no pair is usable.
pub fn choose_account_partition(
    node: &str,
    accounts: &[String],
    partitions: &[Partition],
    account: &str,
    partition: &str,
) -> Option<(Option<String>, Option<String>)> {
    let candidates: Vec<&Partition> = {
        let mut p: Vec<&Partition> = partitions
            .iter()
            .filter(|p| p.nodes.iter().any(|n| n == node) && (partition.is_empty() || p.name == partition))
            .collect();
        p.sort_by_key(|p| !p.default);
        p
    };
    let accounts: Vec<&str> =
        if account.is_empty() { accounts.iter().map(String::as_str).collect() } else { vec![account] };
    if accounts.is_empty() {
        // No association known: let SLURM apply the user's defaults.
        return candidates.first().map(|p| (None, Some(p.name.clone())));
    }
    for acct in accounts {
        if let Some(p) = candidates.iter().find(|p| p.allows(acct)) {
            return Some((Some(acct.to_string()), Some(p.name.clone())));
        }
    }
    None
}

/// squeue of the running jobs of the cluster.
pub async fn running_jobs(slurm: &SlurmRunner) -> Result<Vec<QueuedJob>, SlurmError> {
    squeue(slurm, &["-t", "RUNNING"]).await
}

/// squeue of `user`'s jobs named `name` (our scraper jobs), any state.
pub async fn own_jobs(slurm: &SlurmRunner, user: &str, name: &str) -> Result<Vec<QueuedJob>, SlurmError> {
    squeue(slurm, &["-u", user, "-n", name]).await
}

/// squeue of every user's jobs named `name`, any state.
pub async fn jobs_named(slurm: &SlurmRunner, name: &str) -> Result<Vec<QueuedJob>, SlurmError> {
    squeue(slurm, &["-n", name]).await
}

/// Partitions from scontrol.
pub async fn partitions(slurm: &SlurmRunner) -> Result<Vec<Partition>, SlurmError> {
    Ok(parse_partitions(&slurm.run("scontrol", &args(&["show", "partition", "-o"])).await?))
}

/// Accounts `user` may charge, default first.
pub async fn accounts(slurm: &SlurmRunner, user: &str) -> Result<Vec<String>, SlurmError> {
    let assoc =
        slurm.run("sacctmgr", &args(&["-n", "-P", "show", "assoc", &format!("user={user}"), "format=Account"])).await?;
    let default = slurm.run("sacctmgr", &args(&["-n", "-P", "show", "user", user, "format=DefaultAccount"])).await?;
    Ok(parse_accounts(&assoc, &default))
}

/// What one scraper job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScraperJob {
    pub name: String,
    pub node: String,
    pub account: Option<String>,
    pub partition: Option<String>,
    pub memory: String,
    pub time_limit_secs: u64,
    pub output: String,
    /// The command the job runs (the binary and its arguments), shell-quoted by [`sbatch_args`].
    pub command: Vec<String>,
}

/// sbatch arguments for a scraper job: one task, one CPU, pinned to its node.
pub fn sbatch_args(job: &ScraperJob) -> Vec<String> {
    let minutes = job.time_limit_secs.div_ceil(60).max(1);
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={}", job.name),
        format!("--nodelist={}", job.node),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        "--cpus-per-task=1".into(),
        format!("--mem={}", job.memory),
        format!("--time={minutes}"),
        format!("--output={}", job.output),
        "--chdir=/tmp".into(),
    ];
    if let Some(acct) = &job.account {
        a.push(format!("--account={acct}"));
    }
    if let Some(part) = &job.partition {
        a.push(format!("--partition={part}"));
    }
    a.push("--wrap".into());
    a.push(format!("exec {}", job.command.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")));
    a
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Submits a scraper job; returns its id.
pub async fn submit(slurm: &SlurmRunner, job: &ScraperJob) -> Result<JobId, SlurmError> {
    let out = slurm.run("sbatch", &sbatch_args(job)).await?;
    let id = out.trim().split(';').next().and_then(|s| s.parse().ok());
    id.map(JobId).ok_or(SlurmError::Failed {
        program: "sbatch".into(),
        status: "ok".into(),
        stderr: format!("unexpected answer {out:?}"),
    })
}

/// A job's state from squeue (`RUNNING`, …); an error when squeue no longer knows it.
pub async fn job_state(slurm: &SlurmRunner, id: JobId) -> Result<String, SlurmError> {
    let out = slurm.run("squeue", &args(&["-h", "-j", &id.to_string(), "-o", "%T"])).await?;
    Ok(out.lines().next().unwrap_or("").trim().to_string())
}

/// Cancels one job.
pub async fn cancel(slurm: &SlurmRunner, id: JobId) -> Result<(), SlurmError> {
    slurm.run("scancel", &[id.to_string()]).await.map(|_| ())
}

/// How a job ended, from `sacct -X` (one line per job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    pub id: JobId,
    /// The first word of sacct's State (`CANCELLED by 0` is `CANCELLED`).
    pub state: String,
    /// ExitCode as sacct prints it (`1:0`: status 1, signal 0).
    pub exit_code: String,
    /// sacct's Reason (why it was pending or ended: `None`, `NonZeroExitCode`, …).
    pub reason: String,
}

impl FinalState {
    /// Whether sacct still shows the job as not finished (accounting lags a little).
    pub fn unfinished(&self) -> bool {
        ["PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING", ""].contains(&self.state.as_str())
    }

    /// Why a scraper job failed, as one of the distributor's failure reasons; `None` when it
    /// completed (or has not finished yet).
    pub fn failure(&self) -> Option<&'static str> {
        if self.unfinished() {
            return None;
        }
        Some(match self.state.as_str() {
            "COMPLETED" => return None,
            "FAILED" => "failed",
            "OUT_OF_MEMORY" => "out_of_memory",
            "TIMEOUT" => "timeout",
            "NODE_FAIL" => "node_fail",
            "CANCELLED" => "cancelled",
            _ => "other",
        })
    }
}

/// sacct's fields for final states; none holds user text, so `|` separates them safely.
const FINAL_FIELDS: &str = "JobIDRaw,State,ExitCode,Reason";

/// Parses `sacct -X -n -P --format=JobIDRaw,State,ExitCode,Reason` (step lines and junk skipped).
pub fn parse_final_states(text: &str) -> Vec<FinalState> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('|');
            let id = JobId(f.next()?.trim().parse().ok()?);
            let state = f.next()?.split_whitespace().next().unwrap_or("").to_string();
            let exit_code = f.next()?.trim().to_string();
            let reason = f.next().unwrap_or("").trim().to_string();
            Some(FinalState { id, state, exit_code, reason })
        })
        .collect()
}

/// Final states of `ids` from sacct (at most [`MAX_FINAL_STATES`] per call; the rest are left
/// for the caller's next call).
pub async fn final_states(slurm: &SlurmRunner, ids: &[JobId]) -> Result<Vec<FinalState>, SlurmError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().take(MAX_FINAL_STATES).map(|id| id.to_string()).collect();
    let mut words = args(&["-X", "-n", "-P"]);
    words.push(format!("--format={FINAL_FIELDS}"));
    words.push(format!("--jobs={}", list.join(",")));
    if let Some(cluster) = slurm.cluster() {
        words.push(format!("--clusters={cluster}"));
    }
    Ok(parse_final_states(&slurm.run("sacct", &words).await?))
}

/// Most job ids asked of sacct at once.
pub const MAX_FINAL_STATES: usize = 64;

/// Nodes whose CPUs are all allocated (`sinfo -N -o '%N|%C'`: allocated/idle/other/total; a
/// node in several partitions shows once per partition).
pub fn parse_packed_nodes(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let (node, cpus) = line.trim().split_once('|')?;
            let n: Vec<u64> = cpus.split('/').map(|c| c.trim().parse().ok()).collect::<Option<_>>()?;
            let [alloc, idle, _other, total] = n[..] else { return None };
            (total > 0 && idle == 0 && alloc > 0).then(|| node.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Nodes whose CPUs are all allocated, from sinfo.
pub async fn packed_nodes(slurm: &SlurmRunner) -> Result<Vec<String>, SlurmError> {
    Ok(parse_packed_nodes(&slurm.run("sinfo", &args(&["-N", "-h", "-o", "%N|%C"])).await?))
}

/// A scraper step inside a running job on one node (`srun --jobid --overlap`). SLURM lets only
/// the job's owner create a step in a job (root and SlurmUser are refused), so the step is
/// started as that user by a root distributor (`setpriv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScraperStep {
    pub job: JobId,
    pub node: String,
    /// The job's owner: the step runs as this user.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub memory: String,
    pub time_limit_secs: u64,
    /// The command the step runs (the binary and its arguments).
    pub command: Vec<String>,
}

/// The program and arguments that start `step`: setpriv to the owner, then srun; srun alone when
/// this process already runs as the owner (`self_uid`: a user's own distributor, user mode).
pub fn step_command(slurm: &SlurmRunner, step: &ScraperStep, self_uid: u32) -> (String, Vec<String>) {
    let minutes = step.time_limit_secs.div_ceil(60).max(1);
    let srun = slurm.program("srun").display().to_string();
    let mut a = vec![
        format!("--reuid={}", step.uid),
        format!("--regid={}", step.gid),
        "--init-groups".into(),
        "--".into(),
        srun.clone(),
        format!("--jobid={}", step.job),
        "--overlap".into(),
        format!("--nodelist={}", step.node),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--mem={}", step.memory),
        format!("--job-name={}", super::SCRAPER_STEP_NAME),
        format!("--time={minutes}"),
        "--kill-on-bad-exit=0".into(),
        "--quiet".into(),
    ];
    a.extend(step.command.iter().cloned());
    if step.uid == self_uid {
        a.drain(..5);
        return (srun, a);
    }
    ("setpriv".into(), a)
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_give_jobs_and_busy_nodes_busiest_first() {
        // Fields as squeue prints them: id, user, state, nodes, requested nodes, name.
        let rows: [[&str; 6]; 6] = [
            ["31", "alice", "RUNNING", "n2", "", "burn"],
            ["32", "bob", "RUNNING", "n[2-3]", "", "hog"],
            ["33", "root", "RUNNING", "n3", "n3", "turingwatch"],
            ["34", "bob", "PENDING", "", "n1", "x"],
            ["35_2", "bob", "RUNNING", "n1", "", "arr"],
            // A hostile name: the old `|` columns, a newline and a whole forged line.
            ["36", "eve", "RUNNING", "n1", "", "a|b|root|RUNNING|n2|\n37|root|RUNNING|n3||forged"],
        ];
        let d = Delimiter::random();
        let mut raw = String::new();
        for row in rows {
            raw.push_str(&row.join(d.as_str()));
            raw.push('\n');
        }
        raw.insert_str(0, "garbage\n");
        let canonical = canonicalize(raw.as_bytes(), &d, SQUEUE_FIELDS.len());
        let (jobs, bad) = parse_squeue(&canonical.text);
        assert_eq!((jobs.len(), bad), (5, 1));
        assert_eq!(jobs[1].nodes, ["n2", "n3"]);
        assert_eq!(jobs[3].requested_nodes, ["n1"]);
        assert_eq!((jobs[4].id, jobs[4].user.as_str()), (JobId(36), "eve"));
        assert!(jobs[4].name.starts_with("a|b|root"), "{}", jobs[4].name);
        assert!(!jobs.iter().any(|j| j.id == JobId(37)));
        assert_eq!((canonical.junk_lines, canonical.leftover), (1, None));
        let busy = busy_nodes(&jobs, "turingwatch", "root");
        assert_eq!(busy, [("n2".to_string(), 2), ("n1".to_string(), 1), ("n3".to_string(), 1)]);
        // A user's own job named like the scrapers is a job like any other.
        let mut theirs = jobs.clone();
        theirs[2].user = "mallory".into();
        assert_eq!(busy_nodes(&theirs, "turingwatch", "root")[0..2], [("n2".to_string(), 2), ("n3".to_string(), 2)]);
    }

    #[test]
    fn partitions_honour_allow_and_deny_accounts() {
        let text = "PartitionName=debug AllowAccounts=ALL Default=YES Nodes=n[1-3] State=UP\nPartitionName=gpu AllowAccounts=proj DenyAccounts=dev Nodes=n3 State=UP\nPartitionName=old AllowAccounts=ALL Nodes=n3 State=DOWN\n";
        let parts = parse_partitions(text);
        assert_eq!(parts.len(), 3);
        assert!(parts[0].allows("dev") && parts[0].default);
        assert!(!parts[1].allows("dev") && parts[1].allows("proj") && !parts[1].allows("other"));
        assert!(!parts[2].allows("dev"));
        let accounts = parse_accounts("dev||root\nproj||root\n", "proj\n");
        assert_eq!(accounts, ["proj", "dev"]);
        // proj may use gpu on n3, but the default partition comes first.
        assert_eq!(
            choose_account_partition("n3", &accounts, &parts, "", ""),
            Some((Some("proj".into()), Some("debug".into())))
        );
        assert_eq!(choose_account_partition("n3", &["dev".into()], &parts, "", "gpu"), None);
        assert_eq!(choose_account_partition("n9", &accounts, &parts, "", ""), None);
    }

    #[test]
    fn final_states_tell_failures_by_reason() {
        let text = "41|FAILED|1:0|NonZeroExitCode\n41.batch|FAILED|1:0|\n42|COMPLETED|0:0|None\n43|CANCELLED by 0|0:15|None\n44|RUNNING|0:0|None\n45|OUT_OF_MEMORY|0:125|OutOfMemory\njunk\n";
        let states = parse_final_states(text);
        assert_eq!(states.len(), 5);
        assert_eq!(
            states[0],
            FinalState {
                id: JobId(41),
                state: "FAILED".into(),
                exit_code: "1:0".into(),
                reason: "NonZeroExitCode".into()
            }
        );
        let failures: Vec<Option<&str>> = states.iter().map(FinalState::failure).collect();
        assert_eq!(failures, [Some("failed"), None, Some("cancelled"), None, Some("out_of_memory")]);
        assert!(states[3].unfinished());
    }

    #[test]
    fn packed_nodes_are_those_with_no_idle_cpu() {
        let text = "n1|2/0/0/2\nn1|2/0/0/2\nn2|1/1/0/2\nn3|0/2/0/2\nn4|0/0/2/2\nbad\nn5|x/0/0/2\n";
        assert_eq!(parse_packed_nodes(text), ["n1"]);
    }

    #[test]
    fn a_scraper_step_runs_as_the_jobs_owner_inside_its_allocation() {
        let slurm = SlurmRunner::new(&turingwatch_config::SlurmConfig {
            bin_dir: "/opt/slurm/bin".into(),
            ..Default::default()
        });
        let step = ScraperStep {
            job: JobId(77),
            node: "n2".into(),
            user: "alice".into(),
            uid: 1001,
            gid: 1001,
            memory: "64M".into(),
            time_limit_secs: 960,
            command: vec!["/usr/bin/turingwatch".into(), "scrape".into()],
        };
        // Alice's own distributor runs srun itself.
        let (program, own) = step_command(&slurm, &step, 1001);
        assert_eq!(program, "/opt/slurm/bin/srun");
        assert_eq!(own[0], "--jobid=77");
        let (program, a) = step_command(&slurm, &step, 0);
        assert_eq!(program, "setpriv");
        assert_eq!(a[..4], ["--reuid=1001", "--regid=1001", "--init-groups", "--"]);
        assert_eq!(a[4], "/opt/slurm/bin/srun");
        for want in ["--jobid=77", "--overlap", "--nodelist=n2", "--mem=64M", "--job-name=tw-scraper", "--time=16"] {
            assert!(a.contains(&want.to_string()), "{want} missing from {a:?}");
        }
        assert_eq!(a[a.len() - 2..], ["/usr/bin/turingwatch", "scrape"]);
    }

    #[test]
    fn scraper_jobs_ask_for_one_cpu_on_their_node_with_time_to_spare() {
        let job = ScraperJob {
            name: "turingwatch".into(),
            node: "n2".into(),
            account: Some("dev".into()),
            partition: Some("debug".into()),
            memory: "128M".into(),
            time_limit_secs: 15 * 60 + 60,
            output: "/dev/null".into(),
            command: vec!["/opt/tw/turingwatch".into(), "--config".into(), "/etc/a b.toml".into(), "scrape".into()],
        };
        let a = sbatch_args(&job);
        for want in
            ["--nodelist=n2", "--cpus-per-task=1", "--time=16", "--account=dev", "--partition=debug", "--mem=128M"]
        {
            assert!(a.contains(&want.to_string()), "{want} missing from {a:?}");
        }
        assert_eq!(a.last().unwrap(), "exec /opt/tw/turingwatch --config '/etc/a b.toml' scrape");
    }
}
