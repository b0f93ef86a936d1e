//! The daemon's side of the report site: [`turingwatch_web::backend::Backend`] over the store.
//!
//! The web crate decides who may see what; this file only turns stored records into the web
//! crate's response types: seff's efficiencies per job, per-node time series of cores in use
//! (differences of the cumulative CPU counters) and memory, GPU readings, the analysis's own
//! findings for the job (so the site and the mail never disagree), and SLURM's coordinator list
//! from sacctmgr, cached.
//!
//! A running job has no CPU figure from accounting until its steps end; the site shows the
//! figures of its samples instead (`cpu_live` / `mem_live`, as the analysis computes them).
//! The job page reads every sample of the job anyway (for the plots), so its figures cover
//! the whole run. The job list would have to read every sample of every running job on each
//! request, so it reads only the last [`LIVE_WINDOW_SECS`] of each (at most two blocks per
//! series) and says so in `live_since`.

use crate::analysis::coverage::PeriodCoverage;
use crate::analysis::efficiency::{efficiency, with_live_samples, Efficiency, NoData};
use crate::analysis::load::load_job;
use crate::analysis::series::{series_stats, NodeUse};
use crate::analysis::summary::{analyze_job, JobInput, Params};
use crate::job::{JobId, JobRecord};
use crate::mail::prefs::{quiet_mask, quiet_names};
use crate::sample::GpuReading;
use crate::slurm::SlurmRunner;
use crate::store::{MailPrefs, SeriesKey, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turingwatch_config::Config;
use turingwatch_web::api::{
    self, FindingText, JobDetail, JobSummary, PeriodInfo, SampledMemory, StepRow, StoredReport,
};
use turingwatch_web::backend::{Backend, BackendError, Coordination, JobQuery, LocalFuture};

pub mod energy;
pub mod seed;
pub mod series;

pub use series::{gpu_series, node_series, step_series};

/// How much of a running job's recent samples the job list reads for its live figures.
pub const LIVE_WINDOW_SECS: u64 = 3_600;

/// The coordinator list and when it was read.
type CoordinationCache = Arc<Mutex<Option<(Instant, Arc<Coordination>)>>>;

/// The store-backed implementation the server mounts.
pub struct StoreBackend {
    store: Arc<Store>,
    params: Params,
    slurm: SlurmRunner,
    coordinator_ttl: Duration,
    coordination: CoordinationCache,
    /// `[mail] opt_out` and `quiet_days`, shown on the settings page.
    admin_opt_out: Vec<String>,
    site_quiet_days: Vec<String>,
    /// `[mail] holdout_share`, shown with the outcomes.
    holdout_share: f64,
}

impl StoreBackend {
    /// A backend over `store`, with thresholds and SLURM settings from `config`.
    pub fn new(store: Arc<Store>, config: &Config) -> StoreBackend {
        StoreBackend {
            store,
            params: Params::from_config(config),
            slurm: SlurmRunner::new(&config.slurm),
            coordinator_ttl: config.web.coordinator_cache_ttl.get(),
            coordination: Arc::new(Mutex::new(None)),
            admin_opt_out: config.mail.opt_out.clone(),
            site_quiet_days: config.mail.quiet_days.clone(),
            holdout_share: config.mail.holdout_share,
        }
    }

    /// A job as the list shows it at time `now`: accounting's figures, and for a running job
    /// those of its samples since `now - LIVE_WINDOW_SECS`.
    fn summary(&self, job: &JobRecord, now: u64) -> Result<JobSummary, BackendError> {
        let gpu_util = if job.alloc_gpus() > 0 {
            mean_gpu_util(&self.store.gpu_readings_of_job(job.id).map_err(store_error)?)
        } else {
            None
        };
        let (eff, live_since) = if job.is_running() {
            let since = now.saturating_sub(LIVE_WINDOW_SECS);
            let samples = self.store.samples_of_job_since(job.id, since).map_err(store_error)?;
            let stats = series_stats(&samples, &BTreeMap::new(), job.elapsed_secs, &self.params.series);
            let eff = with_live_samples(efficiency(job), job, &stats);
            (eff, (eff.cpu_live || eff.mem_live).then_some(since))
        } else {
            (efficiency(job), None)
        };
        let summary = JobSummary { live_since, ..summarize(job, &eff, gpu_util) };
        Ok(if self.params.is_service_job(job) { not_waste(summary) } else { summary })
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn store_error(err: crate::store::StoreError) -> BackendError {
    BackendError::Store(err.to_string())
}

impl Backend for StoreBackend {
    fn periods(&self) -> Result<Vec<PeriodInfo>, BackendError> {
        Ok(self
            .store
            .periods()
            .map_err(store_error)?
            .into_iter()
            .map(|p| PeriodInfo { start: p.start, end: p.end, closed: p.closed, updated_at: p.updated_at })
            .collect())
    }

    fn period_coverage(&self, period_start: u64) -> Result<Option<api::PeriodCoverage>, BackendError> {
        let Some(text) = self.store.period_coverage(period_start).map_err(store_error)? else { return Ok(None) };
        match serde_json::from_str::<PeriodCoverage>(&text) {
            Ok(c) => Ok(Some(web_coverage(c))),
            Err(err) => {
                tracing::warn!(period = period_start, error = %err, "stored period coverage does not parse");
                Ok(None)
            }
        }
    }

    fn report(&self, period_start: u64, user: &str) -> Result<Option<StoredReport>, BackendError> {
        Ok(self.store.report(period_start, user).map_err(store_error)?.map(|r| StoredReport {
            period_start: r.period_start,
            user: r.user,
            json: r.json,
            html: r.html,
            has_findings: r.has_findings,
            updated_at: r.updated_at,
        }))
    }

    fn jobs(&self, query: &JobQuery) -> Result<Vec<JobSummary>, BackendError> {
        let records = match &query.users {
            None => self.store.jobs_in_window(query.from, query.to).map_err(store_error)?,
            Some(users) => {
                let mut out = Vec::new();
                for user in users {
                    for id in self.store.job_ids_of_user(user).map_err(store_error)? {
                        if let Some(job) = self.store.job(id).map_err(store_error)? {
                            let ran_in_window = job.start_at.is_some_and(|s| s < query.to)
                                && job.end_at.is_none_or(|e| e >= query.from);
                            if ran_in_window {
                                out.push(job);
                            }
                        }
                    }
                }
                out
            }
        };
        let now = unix_now();
        records.iter().map(|job| self.summary(job, now)).collect()
    }

    fn job_owner(&self, id: u64) -> Result<Option<(String, String)>, BackendError> {
        let job = self.store.job(JobId(id)).map_err(store_error)?;
        Ok(job.map(|j| (j.user, j.account)))
    }

    fn job(&self, id: u64) -> Result<Option<JobDetail>, BackendError> {
        let Some(job) = self.store.job(JobId(id)).map_err(store_error)? else {
            return Ok(None);
        };
        let input = load_job(&self.store, job).map_err(store_error)?;
        let (job, steps, samples, gpu) = (&input.job, &input.steps, &input.samples, &input.gpu);
        // The analysis's own figures: a running job's from all its samples (cpu_live, mem_live).
        let analysis = analyze_job(&input, &self.params);
        let summary = summarize(job, &analysis.efficiency, mean_gpu_util(gpu));
        let summary = if self.params.is_service_job(job) { not_waste(summary) } else { summary };
        let nodes = f64::from(job.node_count.max(1));
        Ok(Some(JobDetail {
            findings: findings_text(analysis.findings),
            sampled_memory: sampled_memory(&analysis.nodes),
            cores_requested_per_node: f64::from(job.alloc_cpus) / nodes,
            mem_requested_per_node_bytes: job.req_mem_bytes.map(|b| b / u64::from(job.node_count.max(1))),
            steps: steps
                .iter()
                .map(|s| StepRow {
                    step: s.step.to_string(),
                    name: s.name.clone(),
                    state: s.state.clone(),
                    elapsed_secs: s.elapsed_secs,
                    alloc_cpus: s.alloc_cpus,
                    total_cpu_secs: s.usage.total_cpu_ms as f64 / 1000.0,
                    max_rss_bytes: s.usage.max_rss_bytes,
                    node_list: s.node_list.clone(),
                })
                .collect(),
            series: node_series(samples),
            step_series: step_series(samples),
            gpu_series: gpu_series(gpu),
            energy: analysis.energy.as_ref().map(|e| energy::job_energy_view(e, &self.params.energy)),
            summary,
        }))
    }

    fn mail_prefs(&self, user: &str) -> Result<api::MailPrefs, BackendError> {
        let stored = self.store.mail_prefs(user).map_err(store_error)?;
        let by_admin = self.admin_opt_out.iter().any(|u| u == user);
        Ok(match stored {
            Some(p) => web_prefs(p, by_admin),
            None => {
                api::MailPrefs { user: user.to_string(), opted_out_by_admin: by_admin, ..api::MailPrefs::default() }
            }
        })
    }

    fn set_mail_prefs(&self, prefs: &api::MailPrefs) -> Result<(), BackendError> {
        self.store
            .put_mail_prefs(&MailPrefs {
                user: prefs.user.clone(),
                opted_out: prefs.opted_out,
                quiet_days: quiet_mask(&prefs.quiet_days),
                updated_at: unix_now(),
            })
            .map_err(store_error)
    }

    fn all_mail_prefs(&self) -> Result<(Vec<api::MailPrefs>, Vec<String>), BackendError> {
        let all = self.store.all_mail_prefs().map_err(store_error)?;
        let users = all
            .into_iter()
            .map(|p| {
                let by_admin = self.admin_opt_out.contains(&p.user);
                web_prefs(p, by_admin)
            })
            .collect();
        Ok((users, self.admin_opt_out.clone()))
    }

    fn site_quiet_days(&self) -> Vec<String> {
        self.site_quiet_days.clone()
    }

    fn energy_ranking(
        &self,
        period_start: u64,
    ) -> Result<(Vec<api::EnergyRow>, Vec<api::EnergyRow>, String), BackendError> {
        let mut reports = Vec::new();
        for user in self.store.report_users(period_start).map_err(store_error)? {
            reports.extend(self.store.report(period_start, &user).map_err(store_error)?.map(|r| r.json));
        }
        let (users, accounts) = energy::ranking(reports.iter().map(String::as_str));
        Ok((users, accounts, crate::analysis::energy::factors_text(&self.params.energy)))
    }

    fn outcomes(&self) -> Result<api::OutcomesView, BackendError> {
        let (periods, unreadable) = crate::analysis::load::outcome_inputs(&self.store).map_err(store_error)?;
        let o = crate::analysis::outcome::outcomes(&periods);
        energy::outcomes_view(&o, self.holdout_share, unreadable).map_err(BackendError::Store)
    }

    fn coordination(&self) -> LocalFuture<Result<Arc<Coordination>, BackendError>> {
        let cache = Arc::clone(&self.coordination);
        let slurm = self.slurm.clone();
        let ttl = self.coordinator_ttl;
        Box::pin(async move {
            if let Ok(guard) = cache.lock() {
                if let Some((at, value)) = guard.as_ref().filter(|(at, _)| at.elapsed() < ttl) {
                    tracing::trace!(age_secs = at.elapsed().as_secs(), "coordinator list from cache");
                    return Ok(Arc::clone(value));
                }
            }
            let value = Arc::new(read_coordination(&slurm).await?);
            tracing::debug!(coordinators = value.accounts_of.len(), "coordinator list read");
            if let Ok(mut guard) = cache.lock() {
                *guard = Some((Instant::now(), Arc::clone(&value)));
            }
            Ok(value)
        })
    }
}

/// Stored mail settings in the web API's shape.
fn web_prefs(p: MailPrefs, opted_out_by_admin: bool) -> api::MailPrefs {
    api::MailPrefs {
        quiet_days: quiet_names(p.quiet_days),
        user: p.user,
        opted_out: p.opted_out,
        updated_at: Some(p.updated_at),
        opted_out_by_admin,
    }
}

/// Asks sacctmgr who coordinates which account and which users each account has.
async fn read_coordination(slurm: &SlurmRunner) -> Result<Coordination, BackendError> {
    let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let coords = slurm
        .run("sacctmgr", &args(&["-n", "-P", "show", "account", "withcoord", "format=account,coordinators"]))
        .await
        .map_err(|e| BackendError::Slurm(e.to_string()))?;
    let assocs = slurm
        .run("sacctmgr", &args(&["-n", "-P", "show", "user", "withassoc", "format=user,account"]))
        .await
        .map_err(|e| BackendError::Slurm(e.to_string()))?;
    Ok(parse_coordination(&coords, &assocs))
}

/// Parses `account|coord1,coord2` lines and `user|account` lines.
pub fn parse_coordination(coordinators: &str, associations: &str) -> Coordination {
    let mut out = Coordination::default();
    for line in coordinators.lines() {
        let Some((account, coords)) = line.trim().split_once('|') else { continue };
        for coord in coords.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            out.accounts_of.entry(coord.to_string()).or_default().insert(account.to_string());
        }
    }
    for line in associations.lines() {
        let mut fields = line.trim().split('|');
        if let (Some(user), Some(account)) = (fields.next(), fields.next()) {
            if !user.is_empty() && !account.is_empty() {
                out.users_of.entry(account.to_string()).or_default().insert(user.to_string());
            }
        }
    }
    out
}

/// The analysis's period coverage in the web API's shape.
pub fn web_coverage(c: PeriodCoverage) -> api::PeriodCoverage {
    api::PeriodCoverage {
        jobs: c.jobs,
        jobs_sampled: c.jobs_sampled,
        jobs_unsampled: c.jobs_unsampled,
        core_hours: c.core_hours,
        core_hours_sampled: c.core_hours_sampled,
        core_hours_sampled_frac: c.core_hours_sampled_frac,
        gpu_jobs: c.gpu_jobs,
        gpu_jobs_unsampled: c.gpu_jobs_unsampled,
        gpu_hours: c.gpu_hours,
        gpu_hours_sampled: c.gpu_hours_sampled,
        gpu_hours_sampled_frac: c.gpu_hours_sampled_frac,
        text: c.text,
    }
}

fn hours(secs: f64) -> f64 {
    secs / 3600.0
}

/// A job as the site lists it.
pub fn summarize(job: &JobRecord, eff: &Efficiency, gpu_util_frac: Option<f64>) -> JobSummary {
    let gpus = job.alloc_gpus();
    let gpu_hours = hours(job.elapsed_secs as f64 * gpus as f64);
    JobSummary {
        id: job.id.0,
        display_id: job.display_id.clone(),
        name: job.name.clone(),
        user: job.user.clone(),
        account: job.account.clone(),
        partition: job.partition.clone(),
        state: job.state.clone(),
        submit_at: job.submit_at,
        start_at: job.start_at,
        end_at: job.end_at,
        elapsed_secs: job.elapsed_secs,
        time_limit_secs: job.time_limit_secs,
        alloc_cpus: job.alloc_cpus,
        node_count: job.node_count,
        node_list: job.node_list.clone(),
        req_mem_bytes: job.req_mem_bytes,
        max_rss_bytes: job.usage.max_rss_bytes,
        mem_used_bytes: eff.mem_used_bytes,
        gpus,
        cpu_frac: eff.cpu_frac,
        cpu_no_data: eff.cpu_no_data.map(no_data_name),
        cpu_live: eff.cpu_live,
        mem_frac: eff.mem_frac,
        mem_no_data: eff.mem_no_data.map(no_data_name),
        mem_live: eff.mem_live,
        live_since: None,
        time_frac: eff.time_frac,
        time_no_data: eff.time_no_data.map(no_data_name),
        core_hours: hours(eff.core_secs as f64),
        wasted_core_hours: hours(eff.wasted_core_secs as f64),
        gpu_hours,
        gpu_util_frac,
        wasted_gpu_hours: gpu_util_frac.map(|u| gpu_hours * (1.0 - u.clamp(0.0, 1.0))),
    }
}

/// The machine name of a reason (`running`, `unlimited`…), as the analysis's JSON writes it.
fn no_data_name(why: NoData) -> String {
    serde_json::to_value(why).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// The service's own scraper jobs are listed with their figures but count as no waste.
fn not_waste(mut summary: JobSummary) -> JobSummary {
    summary.wasted_core_hours = 0.0;
    summary.wasted_gpu_hours = summary.wasted_gpu_hours.map(|_| 0.0);
    summary
}

/// The sampled memory peaks of a job: each node's peak, summed over nodes (as the analysis's
/// live memory figure sums them); `None` without sampled memory.
pub fn sampled_memory(nodes: &[NodeUse]) -> Option<SampledMemory> {
    let sum = |f: fn(&NodeUse) -> u64| nodes.iter().map(f).fold(0u64, u64::saturating_add);
    let out = SampledMemory {
        resident_peak_bytes: sum(|n| n.peak_mem_bytes),
        cache_peak_bytes: sum(|n| n.peak_cache_bytes),
        charged_peak_bytes: sum(|n| n.peak_charged_bytes),
    };
    (out != SampledMemory::default()).then_some(out)
}

fn mean_gpu_util(readings: &BTreeMap<SeriesKey, Vec<GpuReading>>) -> Option<f64> {
    let (sum, n) = readings.values().flatten().fold((0u64, 0u64), |(s, n), r| (s + u64::from(r.util_pct), n + 1));
    (n > 0).then(|| sum as f64 / n as f64 / 100.0)
}

/// The job page's findings: exactly the analysis's findings for the job (the same rules, with
/// samples where the store has them), in the web API's shape.
pub fn web_findings(input: &JobInput, params: &Params) -> Vec<FindingText> {
    findings_text(analyze_job(input, params).findings)
}

fn findings_text(findings: Vec<crate::analysis::findings::Finding>) -> Vec<FindingText> {
    findings
        .into_iter()
        .map(|f| FindingText {
            kind: serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            message: format!("{}: {}", f.kind.title(), f.evidence),
            fix: (!f.fix.is_empty()).then_some(f.fix),
        })
        .collect()
}

#[cfg(test)]
mod tests;
