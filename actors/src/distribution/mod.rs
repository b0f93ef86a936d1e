//! Distribution of scrapers, the allocator's pure part: the round state ([`Rounds`]) and the
//! scraper job each placement submits ([`scraper_job`]). No SLURM calls and no actix here: the
//! allocator actor (`actors/allocator.rs`) does the I/O.

mod rounds;

pub use rounds::{Placement, Rounds};

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
    /// Output file of scraper jobs (sbatch `--output`; `%j` = job id).
    pub scraper_output: String,
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
        output: if options.scraper_output.is_empty() { "/dev/null".into() } else { options.scraper_output.clone() },
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
        assert_eq!(job.output, "/dev/null");
    }
}
