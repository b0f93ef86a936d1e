//! Reads what the analysis needs from the store: the jobs of a period with their steps,
//! samples, GPU readings and applications, and each user's job history (for trends and
//! right-sizing). Blocking: call from a blocking context.

use super::period::Period;
use super::summary::{analyze_user, JobInput, Params, UserAnalysis};
use crate::job::JobRecord;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

/// Loads one job's stored data.
pub fn load_job(store: &Store, job: JobRecord) -> Result<JobInput, StoreError> {
    let id = job.id;
    Ok(JobInput {
        steps: store.steps(id)?,
        samples: store.samples_of_job(id)?,
        gpu: store.gpu_readings_of_job(id)?,
        apps: store.apps_of_job(id)?,
        job,
    })
}

/// Whether a job is reported in `period`: a finished job in the period it ended in (so each
/// job has exactly one final report), a running job in every period it runs in.
pub fn belongs_to(job: &JobRecord, period: Period) -> bool {
    match job.end_at {
        Some(end) => end >= period.start && end < period.end,
        None => job.start_at.is_some_and(|s| s < period.end),
    }
}

/// Analyses every user's jobs of `period` (see [`belongs_to`]; `skip_users` are left out).
pub fn analyze_period(
    store: &Store,
    period: Period,
    skip_users: &[String],
    params: &Params,
) -> Result<BTreeMap<String, UserAnalysis>, StoreError> {
    let mut by_user: BTreeMap<String, Vec<JobInput>> = BTreeMap::new();
    for job in store.jobs_in_window(period.start, period.end)? {
        if skip_users.contains(&job.user) || job.start_at.is_none() || !belongs_to(&job, period) {
            continue;
        }
        by_user.entry(job.user.clone()).or_default().push(load_job(store, job)?);
    }
    let mut out = BTreeMap::new();
    for (user, inputs) in by_user {
        let mut history = Vec::new();
        for id in store.job_ids_of_user(&user)? {
            if let Some(job) = store.job(id)? {
                history.push(job);
            }
        }
        out.insert(user.clone(), analyze_user(&user, period, &inputs, &history, params));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::job;

    #[test]
    fn a_finished_job_belongs_to_the_period_it_ended_in_only() {
        let (a, b) = (Period { start: 0, end: 100 }, Period { start: 100, end: 200 });
        let across = job(1, "u", 90, Some(110));
        assert!(!belongs_to(&across, a) && belongs_to(&across, b));
        let running = job(2, "u", 90, None);
        assert!(belongs_to(&running, a) && belongs_to(&running, b));
    }
}
