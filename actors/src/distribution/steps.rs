//! Scraper steps inside users' jobs, for nodes whose CPUs are all allocated: there a scraper
//! job would only wait (and be cancelled), so the distributor starts `srun --jobid=<job>
//! --overlap` in each running job instead, as the job's owner (SLURM 20.11 and later let only
//! the owner create a step in a job: root, SlurmUser and Operator/Admin levels are refused), so
//! only a root distributor can. Each step samples its own job (`scrape --job`), reports with the
//! owner's MUNGE credential, asks for little memory (it lives in the job's cgroup) and dies with
//! the job; the next round places it again while the node stays packed.

use crate::job::JobId;
use crate::slurm::queue::{step_command, ScraperStep};
use crate::slurm::SlurmRunner;
use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt;

/// Most scraper steps running at once (one srun process each on the distributor's host).
pub const MAX_STEPS: usize = 512;

/// Memory a scraper step asks for: it counts against the user's job, so little (the scraper's
/// resident set is a few MiB).
pub const STEP_MEMORY: &str = "48M";

/// One running scraper step: the srun process (under setpriv) and the first line it printed.
#[derive(Debug)]
pub struct RunningStep {
    child: tokio::process::Child,
    first_line: Arc<Mutex<Option<String>>>,
    pub started_at: u64,
}

/// A step that ended.
#[derive(Debug)]
pub struct EndedStep {
    pub job: JobId,
    pub node: String,
    pub status: Option<ExitStatus>,
    /// The first line the step (srun or the scraper) wrote, if any.
    pub first_line: Option<String>,
    pub ran_secs: u64,
}

/// The scraper steps the distributor runs, by (job, node).
#[derive(Debug, Default)]
pub struct Steps {
    running: HashMap<(JobId, String), RunningStep>,
}

impl Steps {
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether `job` has our step on `node`.
    pub fn has(&self, job: JobId, node: &str) -> bool {
        self.running.contains_key(&(job, node.to_string()))
    }

    /// Starts `step`; its output is drained, only the first line kept.
    pub fn start(&mut self, slurm: &SlurmRunner, step: &ScraperStep, now: u64) -> std::io::Result<()> {
        let (program, args) = step_command(slurm, step, own_uid());
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let first_line = Arc::new(Mutex::new(None));
        for stream in
            [child.stdout.take().map(drain_boxed_out), child.stderr.take().map(drain_boxed_err)].into_iter().flatten()
        {
            let keep = first_line.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut slot = keep.lock().unwrap_or_else(|p| p.into_inner());
                    if slot.is_none() && !line.trim().is_empty() {
                        *slot = Some(line.chars().take(300).collect());
                    }
                }
            });
        }
        self.running.insert((step.job, step.node.clone()), RunningStep { child, first_line, started_at: now });
        Ok(())
    }

    /// Steps that ended since the last call.
    pub fn reap(&mut self, now: u64) -> Vec<EndedStep> {
        let mut ended = Vec::new();
        self.running.retain(|(job, node), step| match step.child.try_wait() {
            Ok(None) => true,
            result => {
                let first_line = step.first_line.lock().unwrap_or_else(|p| p.into_inner()).clone();
                ended.push(EndedStep {
                    job: *job,
                    node: node.clone(),
                    status: result.ok().flatten(),
                    first_line,
                    ran_secs: now.saturating_sub(step.started_at),
                });
                false
            }
        });
        ended
    }

    /// Stops every step: SIGTERM to srun (which passes it to the scraper, which sends what it
    /// has left), then waits up to `grace` before killing.
    pub async fn stop_all(&mut self, grace: std::time::Duration) {
        for step in self.running.values() {
            if let Some(pid) = step.child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (_, mut step) in self.running.drain() {
            if tokio::time::timeout_at(deadline, step.child.wait()).await.is_err() {
                let _ = step.child.kill().await;
            }
        }
    }
}

type BoxedRead = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

fn drain_boxed_out(s: tokio::process::ChildStdout) -> BoxedRead {
    Box::pin(s)
}

fn drain_boxed_err(s: tokio::process::ChildStderr) -> BoxedRead {
    Box::pin(s)
}

/// A user's uid and primary gid from the password database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16_384];
    // SAFETY: zeroed passwd is a valid out-parameter; buf outlives the call and its length is passed.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; getpwnam_r writes only within buf.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Whether this process can start steps as other users (it runs as root).
pub fn privileged() -> bool {
    own_uid() == 0
}

/// The uid this process runs as.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_and_unknown_ones_refused() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-here"), None);
        assert_eq!(user_ids("a\0b"), None);
    }

    #[actix_rt::test]
    async fn an_ended_step_is_reaped_with_its_first_line() {
        let mut steps = Steps::default();
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "echo; echo 'error: cannot open the spool'; echo more; exit 3"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let first_line = Arc::new(Mutex::new(None));
        let out = child.stdout.take().unwrap();
        let keep = first_line.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut slot = keep.lock().unwrap();
                if slot.is_none() && !line.trim().is_empty() {
                    *slot = Some(line);
                }
            }
        });
        steps.running.insert((JobId(1), "n1".into()), RunningStep { child, first_line, started_at: 0 });
        let mut ended = Vec::new();
        for _ in 0..100 {
            ended = steps.reap(5);
            if !ended.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].status.and_then(|s| s.code()), Some(3));
        assert!(steps.is_empty());
    }
}
