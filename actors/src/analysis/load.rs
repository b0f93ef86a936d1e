//! Reads what the analysis needs from the store: the jobs of a period with their steps,
//! samples, GPU readings and applications, and each user's job history (for trends and
//! right-sizing), all in one read transaction (`Store::each_user_of_period`, a user at a time), so a period is analysed
//! from one consistent state of the store. Blocking: call from a blocking context.

use super::period::Period;
use super::summary::{analyze_user, JobInput, Params, UserAnalysis};
use crate::job::JobRecord;
use crate::store::{JobData, Store, StoreError};
use std::collections::BTreeMap;

/// Loads one job's stored data (one read transaction).
pub fn load_job(store: &Store, job: JobRecord) -> Result<JobInput, StoreError> {
    let data = store.job_data(job.id)?;
    Ok(input(job, data))
}

fn input(job: JobRecord, data: JobData) -> JobInput {
    let JobData { steps, samples, gpu, apps, .. } = data;
    JobInput { steps, samples, gpu, apps, job }
}

/// Whether a job is reported in `period`: a finished job in the period it ended in (so each
/// job has exactly one final report), a running job in every period it runs in.
pub fn belongs_to(job: &JobRecord, period: Period) -> bool {
    match job.end_at {
        Some(end) => end >= period.start && end < period.end,
        None => job.start_at.is_some_and(|s| s < period.end),
    }
}

/// Analyses every user's jobs of `period` (see [`belongs_to`]; `skip_users` and the service's
/// own scraper jobs, [`Params::is_service_job`], are left out).
pub fn analyze_period(
    store: &Store,
    period: Period,
    skip_users: &[String],
    params: &Params,
) -> Result<BTreeMap<String, UserAnalysis>, StoreError> {
    let keep = |job: &JobRecord| {
        let skipped = skip_users.contains(&job.user) || params.is_service_job(job);
        !skipped && job.start_at.is_some() && belongs_to(job, period)
    };
    let mut out = BTreeMap::new();
    let mut corrupt_blocks = 0;
    // A user at a time: only one user's samples are in memory at once.
    store.each_user_of_period(period.start, period.end, keep, |part| {
        corrupt_blocks += part.corrupt_blocks;
        let inputs: Vec<JobInput> = part.jobs.into_iter().map(|(job, data)| input(job, data)).collect();
        out.insert(part.user.clone(), analyze_user(&part.user, period, &inputs, &part.history, params));
    })?;
    if corrupt_blocks > 0 {
        tracing::error!(
            period = period.start,
            blocks = corrupt_blocks,
            "corrupt sample blocks skipped in the period's analysis"
        );
    }
    Ok(out)
}

/// What outcome tracking reads (`analysis::outcome`): every stored (period, user) report's jobs,
/// with what the outbox did with that user's mail. A stored report whose JSON does not parse is
/// logged, counted in the second value and left out; it stops nothing.
pub fn outcome_inputs(store: &Store) -> Result<(Vec<super::outcome::UserPeriod>, u32), StoreError> {
    use super::outcome::{facts_from_report_json, MailFate, UserPeriod};
    use crate::store::OutboxState;
    let fates: BTreeMap<(u64, String), MailFate> = store
        .outbox_entries(None)?
        .into_iter()
        .map(|e| {
            let fate = match e.state {
                OutboxState::Sent | OutboxState::Uncertain => MailFate::Sent,
                OutboxState::Held => MailFate::Held,
                _ => MailFate::None,
            };
            ((e.period_start, e.user), fate)
        })
        .collect();
    let (mut out, mut bad) = (Vec::new(), 0u32);
    for period in store.periods()? {
        for user in store.report_users(period.start)? {
            let Some(report) = store.report(period.start, &user)? else { continue };
            match facts_from_report_json(&report.json) {
                Ok(jobs) => out.push(UserPeriod {
                    period_start: period.start,
                    fate: fates.get(&(period.start, user.clone())).copied().unwrap_or(MailFate::None),
                    user,
                    jobs,
                }),
                Err(err) => {
                    bad += 1;
                    tracing::warn!(period = period.start, user, error = %err, "stored report unreadable for outcomes");
                }
            }
        }
    }
    Ok((out, bad))
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
