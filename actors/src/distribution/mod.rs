//! Distribution of scrapers, the allocator's pure part: the round state ([`Rounds`]) and the
//! scraper job each placement submits ([`scraper_job`]). No SLURM calls and no actix here: the
//! allocator actor (`actors/allocator.rs`) does the I/O.

mod rounds;
pub mod steps;

pub use rounds::{Placement, Rounds, Settled};

use crate::slurm::queue::ScraperJob;
use std::path::PathBuf;
use turingwatch_config::Config;

/// Options of the distributor.
#[derive(Debug, Clone, Default)]
pub struct DistributeOptions {
    /// Configuration file handed to the scraper jobs (`--config`).
    pub config_path: Option<PathBuf>,
    /// Only place scrapers on these nodes (empty: every busy node).
    pub only_nodes: Vec<String>,
    /// Output file of scraper jobs (sbatch `--output`; `%j` = job id). Empty:
    /// `<state_dir>/scrapers/scraper-%j.out`, read (first line) and deleted when the job ends.
    pub scraper_output: String,
    /// The distributor's own directory: scraper job output, scraper step spools. Empty:
    /// `$STATE_DIRECTORY` (systemd), else the directory of `[store] path`.
    pub state_dir: PathBuf,
}

impl DistributeOptions {
    /// The state directory to use under `config` (see [`DistributeOptions::state_dir`]).
    pub fn resolved_state_dir(&self, config: &Config) -> PathBuf {
        if !self.state_dir.as_os_str().is_empty() {
            return self.state_dir.clone();
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            // systemd may list several, separated by ':'; the first is ours.
            let first = dir.to_string_lossy().split(':').next().unwrap_or_default().to_string();
            return PathBuf::from(first);
        }
        let dir = PathBuf::from(&config.store.path).parent().map(PathBuf::from).unwrap_or_default();
        // Absolute: scraper jobs run elsewhere (sbatch --chdir=/tmp).
        if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
        }
    }

    /// The sbatch `--output` pattern of scraper jobs.
    pub fn output_pattern(&self, config: &Config) -> String {
        match self.scraper_output.as_str() {
            // Compute nodes write this file: only a path they share with this host works, so by
            // default the output is dropped and a failure is told by SLURM's exit state alone.
            "" => "/dev/null".into(),
            AUTO_OUTPUT => {
                self.resolved_state_dir(config).join("scrapers").join("scraper-%j.out").display().to_string()
            }
            pattern => pattern.to_string(),
        }
    }

    /// Whether scraper outputs go to the state directory (which it then creates and prunes).
    pub fn outputs_in_state_dir(&self) -> bool {
        self.scraper_output == AUTO_OUTPUT
    }
}

/// `--scraper-output auto`: outputs under `<state dir>/scrapers/` (a directory the compute nodes
/// share with the distributor's host).
pub const AUTO_OUTPUT: &str = "auto";

/// Most scraper output files kept; older ones are pruned each round.
pub const OUTPUTS_KEPT: usize = 256;

/// The line that says why a scraper job ended, from its output (`pattern` with `%j` = `job`):
/// the first line that reads as an error (`turingwatch: …`, `ERROR`, `error`, a panic), else
/// the first line; at most 300 characters, from the first 16 KiB; the file is then removed.
/// `None` when the pattern names no per-job file or the file cannot be read (the node's
/// filesystem is not shared with the distributor's host).
pub fn take_first_output_line(pattern: &str, job: crate::job::JobId) -> Option<String> {
    use std::io::Read;
    if !pattern.contains("%j") {
        return None;
    }
    let path = PathBuf::from(pattern.replace("%j", &job.to_string()));
    let mut buf = Vec::with_capacity(16_384);
    std::fs::File::open(&path).and_then(|f| f.take(16_384).read_to_end(&mut buf)).ok()?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let is_error = |l: &&str| {
        l.starts_with("turingwatch:") || l.contains("ERROR") || l.contains("error") || l.contains("panicked")
    };
    let first = lines.clone().next();
    lines.find(is_error).or(first).map(|l| l.chars().take(300).collect())
}

/// Removes all but the newest [`OUTPUTS_KEPT`] files of `dir`.
pub fn prune_outputs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.metadata().ok().filter(|m| m.is_file())?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= OUTPUTS_KEPT {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - OUTPUTS_KEPT] {
        let _ = std::fs::remove_file(path);
    }
}

/// Round state with `config`'s limits, timeout and backoff.
pub fn new_rounds(config: &Config) -> Rounds {
    Rounds::new(
        config.scrape.concurrent_nodes as usize,
        config.distributor.allocation_timeout.get().as_secs(),
        config.distributor.backoff_initial.get(),
        config.distributor.backoff_max.get(),
    )
}

/// The scraper job for `node`: pinned to it, `binary scrape --node <node> --duration
/// <time_per_node>`, time limit one minute more, in `account`/`partition` when given.
pub fn scraper_job(
    config: &Config,
    options: &DistributeOptions,
    binary: &str,
    node: &str,
    account: Option<String>,
    partition: Option<String>,
) -> ScraperJob {
    let scrape_secs = config.scrape.time_per_node.get().as_secs();
    let mut command = vec![binary.to_string()];
    if let Some(path) = &options.config_path {
        command.push("--config".into());
        command.push(path.display().to_string());
    }
    command.extend([
        "scrape".into(),
        "--node".into(),
        node.to_string(),
        "--duration".into(),
        format!("{scrape_secs}s"),
    ]);
    ScraperJob {
        name: config.distributor.job_name.clone(),
        node: node.to_string(),
        account,
        partition,
        memory: config.distributor.memory.clone(),
        time_limit_secs: scrape_secs + 60,
        output: options.output_pattern(config),
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scraper_jobs_are_pinned_and_limited_to_the_scrape_time() {
        let config = Config::default();
        let options = DistributeOptions { config_path: Some("/etc/tw.toml".into()), ..Default::default() };
        let job = scraper_job(&config, &options, "/usr/bin/turingwatch", "n7", Some("ops".into()), None);
        assert_eq!(job.node, "n7");
        assert_eq!(job.time_limit_secs, 900 + 60);
        assert_eq!(
            job.command,
            ["/usr/bin/turingwatch", "--config", "/etc/tw.toml", "scrape", "--node", "n7", "--duration", "900s"]
        );
        // The output is written on the compute node: none unless a shared path is asked for.
        assert_eq!(job.output, "/dev/null");
        let auto = DistributeOptions { scraper_output: AUTO_OUTPUT.into(), ..options.clone() };
        let job = scraper_job(&config, &auto, "/usr/bin/turingwatch", "n7", None, None);
        assert!(job.output.starts_with('/') && job.output.ends_with("/scrapers/scraper-%j.out"), "{}", job.output);
    }

    #[test]
    fn a_scraper_jobs_output_gives_its_first_line_once_and_outputs_are_bounded() {
        let dir = std::env::temp_dir().join(format!("tw-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pattern = dir.join("scraper-%j.out").display().to_string();
        std::fs::write(dir.join("scraper-7.out"), "\nturingwatch: opening the spool: Permission denied\nmore\n")
            .unwrap();
        let line = take_first_output_line(&pattern, crate::job::JobId(7));
        assert_eq!(line.as_deref(), Some("turingwatch: opening the spool: Permission denied"));
        assert_eq!(take_first_output_line(&pattern, crate::job::JobId(7)), None, "read once, then removed");
        assert_eq!(take_first_output_line("/dev/null", crate::job::JobId(7)), None);
        for i in 0..OUTPUTS_KEPT + 5 {
            std::fs::write(dir.join(format!("scraper-{i}.out")), "x").unwrap();
        }
        prune_outputs(&dir);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), OUTPUTS_KEPT);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
