//! The SLURM adapter: runs SLURM's own commands with explicit formats and timeouts, and parses
//! their output into typed records.
//!
//! Parsing is pure (`parse_*`, tested on recorded output in `tests/fixtures/sacct/`); running is
//! async (`SlurmRunner::run`, tokio::process with a timeout, the child killed when it expires).
//! Submodules: `units` (SLURM's time, memory and TRES notations), `hostlist` (`n[1-3,05]`),
//! `node_info` (what `scontrol show node` says of one node).

pub mod delimited;
pub mod hostlist;
pub mod local_time;
pub mod node_info;
pub mod queue;
pub mod sacct;
pub mod sacct_parse;
pub mod sacct_print;
mod sacct_records;
pub mod units;

/// Name of the scraper steps turingwatch starts inside users' jobs (the distributor's steps on
/// packed nodes, the user-mode template's). The accounting import leaves such steps out of the
/// job (`sacct_parse`): they are the scraper's work, not the user's.
pub const SCRAPER_STEP_NAME: &str = "tw-scraper";

use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;
use turingwatch_config::SlurmConfig;

/// Why a SLURM command gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

impl SlurmError {
    /// Whether the failure looks like slurmdbd/slurmctld being unreachable (worth a retry),
    /// as opposed to a bad request.
    pub fn is_unreachable(&self) -> bool {
        match self {
            SlurmError::Timeout { .. } => true,
            SlurmError::Failed { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                [
                    "connection refused",
                    "unable to connect",
                    "slurmdbd",
                    "communication",
                    "socket timed out",
                    "unreachable",
                ]
                .iter()
                .any(|needle| s.contains(needle))
            }
            _ => false,
        }
    }
}

/// Runs SLURM commands from a configured directory with a timeout.
#[derive(Debug, Clone)]
pub struct SlurmRunner {
    bin_dir: Option<PathBuf>,
    timeout: Duration,
    cluster: Option<String>,
}

impl SlurmRunner {
    /// A runner for `[slurm]` settings.
    pub fn new(config: &SlurmConfig) -> Self {
        SlurmRunner {
            bin_dir: (!config.bin_dir.is_empty()).then(|| PathBuf::from(&config.bin_dir)),
            timeout: config.command_timeout.get(),
            cluster: (!config.cluster.is_empty()).then(|| config.cluster.clone()),
        }
    }

    /// The cluster named in config, for `-M`.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The path of a SLURM program.
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Runs `program args…`, returning stdout as text: non-zero exit and timeout are errors;
    /// bytes that are not UTF-8 (a Latin-1 job name, say) are replaced by U+FFFD and logged, not
    /// fatal. Output with user text in fields goes through [`SlurmRunner::run_bytes`] and
    /// `delimited` instead.
    pub async fn run(&self, program: &str, args: &[String]) -> Result<String, SlurmError> {
        let bytes = self.run_bytes(program, args).await?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(program, "output is not UTF-8; invalid bytes replaced");
                String::from_utf8_lossy(err.as_bytes()).into_owned()
            }
        })
    }

    /// Runs `program args…`, returning stdout as bytes; non-zero exit and timeout are errors.
    pub async fn run_bytes(&self, program: &str, args: &[String]) -> Result<Vec<u8>, SlurmError> {
        let mut cmd = Command::new(self.program(program));
        cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
        let output = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => return Err(SlurmError::Timeout { program: program.to_string(), timeout: self.timeout }),
            Ok(Err(source)) => return Err(SlurmError::Spawn { program: program.to_string(), source }),
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            return Err(SlurmError::Failed {
                program: program.to_string(),
                status: output.status.to_string(),
                // Some commands print their error on stdout (`scontrol show node x`: "Node x
                // not found"): the message is wherever the program put it.
                stderr: {
                    let text =
                        if output.stderr.iter().all(u8::is_ascii_whitespace) { &output.stdout } else { &output.stderr };
                    String::from_utf8_lossy(text).trim().chars().take(2_000).collect()
                },
            });
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turingwatch_config::Span;

    fn runner(timeout_secs: u64) -> SlurmRunner {
        SlurmRunner::new(&SlurmConfig {
            bin_dir: String::new(),
            command_timeout: Span::secs(timeout_secs),
            cluster: String::new(),
        })
    }

    #[actix_rt::test]
    async fn output_failure_and_timeout_are_told_apart() {
        let r = runner(5);
        assert_eq!(r.run("echo", &["hi".into()]).await.unwrap(), "hi\n");
        let err = r.run("sh", &["-c".into(), "echo boom >&2; exit 3".into()]).await.unwrap_err();
        assert!(matches!(&err, SlurmError::Failed { stderr, .. } if stderr == "boom"), "{err}");
        assert!(matches!(r.run("/nonexistent/sacct", &[]).await, Err(SlurmError::Spawn { .. })));
        let slow = runner(1);
        let err = slow.run("sleep", &["5".into()]).await.unwrap_err();
        assert!(matches!(err, SlurmError::Timeout { .. }) && err.is_unreachable());
    }

    #[test]
    fn unreachable_slurmdbd_is_recognised() {
        let err = SlurmError::Failed {
            program: "sacct".into(),
            status: "exit status: 1".into(),
            stderr: "sacct: error: Problem talking to the database: Connection refused".into(),
        };
        assert!(err.is_unreachable());
    }
}
