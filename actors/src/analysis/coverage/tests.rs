use super::*;
use crate::analysis::summary::tests::params;
use crate::analysis::summary::{analyze_job, JobInput};
use crate::job::{JobId, StepId, Tres};
use crate::sample::{GpuReading, StepSample};
use crate::store::tests_support::job;
use crate::store::SeriesKey;

const PERIOD: Period = Period { start: 0, end: 10_000 };

/// Samples of one step on n1 every 20 s from `from` to `to` (inclusive): `to - from` seconds covered.
fn sampled(mut input: JobInput, step: StepId, from: u64, to: u64) -> JobInput {
    let key = SeriesKey { job: input.job.id, step, node: "n1".into() };
    let rows = (from..=to)
        .step_by(20)
        .map(|at| StepSample { at, cpu_user_cs: (at - from) * 100, rss_kib: 1024, cpus: 4, ..StepSample::default() })
        .collect();
    input.samples.insert(key, rows);
    input
}

/// GPU readings of device `index` on n1, by `step`, every 20 s over `[from, to]`.
fn gpu_read(mut input: JobInput, step: StepId, index: u32, from: u64, to: u64) -> JobInput {
    let key = SeriesKey { job: input.job.id, step, node: "n1".into() };
    let rows: Vec<GpuReading> =
        (from..=to).step_by(20).map(|at| GpuReading { at, index, util_pct: 50, ..GpuReading::default() }).collect();
    input.gpu.entry(key).or_default().extend(rows);
    input
}

fn analysed(inputs: &[JobInput]) -> Vec<JobAnalysis> {
    inputs.iter().map(|i| analyze_job(i, &params())).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_half_sampled_job_and_an_unsampled_one_give_a_third_and_the_service_job_is_left_out() {
    // 4 CPUs for 1 000 s, samples over its first 500 s: 4 000 core-s, 2 000 of them sampled.
    let mut half = job(1, "alice", 1_000, Some(2_000));
    half.alloc_cpus = 4;
    let half = sampled(JobInput::new(half), StepId::BATCH, 1_000, 1_500);
    // 2 CPUs for 1 000 s, never sampled.
    let mut none = job(2, "bob", 1_000, Some(2_000));
    none.alloc_cpus = 2;
    // The service's own scraper job (root's `turingwatch`), fully sampled: not counted at all.
    let mut scraper = job(3, "root", 1_000, Some(2_000));
    scraper.name = "turingwatch".into();
    assert!(params().is_service_job(&scraper));
    let scraper = sampled(JobInput::new(scraper), StepId::BATCH, 1_000, 2_000);
    let jobs = analysed(&[half, JobInput::new(none), scraper]);
    assert!(close(jobs[0].sample_coverage_frac, 0.5), "{}", jobs[0].sample_coverage_frac);

    let c = PeriodCoverage::of(PERIOD, &jobs, &params());
    assert_eq!((c.jobs, c.jobs_sampled, c.jobs_unsampled), (2, 1, 1));
    assert!(close(c.core_hours, 6_000.0 / 3_600.0), "{}", c.core_hours);
    assert!(close(c.core_hours_sampled, 2_000.0 / 3_600.0), "{}", c.core_hours_sampled);
    assert!(close(c.core_hours_sampled_frac.unwrap(), 1.0 / 3.0));
    assert_eq!((c.gpu_jobs, c.gpu_hours, c.gpu_hours_sampled_frac), (0, 0.0, None));
    assert_eq!((c.period_start, c.period_end), (0, 10_000));
    assert_eq!(c.text, "33 % of the 1.7 core-hours were sampled; 1 job had no samples.");
}

#[test]
fn a_job_crossing_the_period_start_counts_whole_as_its_reports_do() {
    // Started 500 s before the period, ended in it: the period reports it, so it counts whole.
    let period = Period { start: 10_000, end: 20_000 };
    let mut across = job(1, "alice", 9_500, Some(10_500));
    across.alloc_cpus = 1;
    assert!(crate::analysis::load::belongs_to(&across, period));
    let across = sampled(JobInput::new(across), StepId::BATCH, 9_500, 10_500);
    let c = PeriodCoverage::of(period, &analysed(&[across]), &params());
    assert!(close(c.core_hours, 1_000.0 / 3_600.0), "{}", c.core_hours);
    assert!(close(c.core_hours_sampled_frac.unwrap(), 1.0));
    assert_eq!(c.text, "100 % of the 0.3 core-hours were sampled; every job had samples.");
}

#[test]
fn a_gpu_read_by_two_steps_counts_once_and_gpu_jobs_without_readings_are_counted() {
    // 2 GPUs for 1 000 s, 60 % of the run sampled; GPU 0 read by the batch step and by step 0.
    let mut gpu = job(1, "alice", 1_000, Some(2_000));
    gpu.alloc_tres = Tres(vec![("cpu".into(), 4), ("gres/gpu".into(), 2)]);
    let input = sampled(JobInput::new(gpu.clone()), StepId::BATCH, 1_000, 1_600);
    let input = gpu_read(input, StepId::BATCH, 0, 1_000, 1_600);
    let input = gpu_read(input, StepId(0), 0, 1_000, 1_600);
    // A GPU job with samples but no GPU readings (`[gpu] source = "none"`).
    let mut blind = gpu.clone();
    blind.id = JobId(2);
    let blind = sampled(JobInput::new(blind), StepId::BATCH, 1_000, 2_000);
    let jobs = analysed(&[input, blind]);
    assert_eq!(jobs[0].gpus.len(), 1, "a GPU read by two steps is one GPU");
    let one = job_coverage(&jobs[0]);
    assert!(close(one.gpu_secs, 2_000.0) && close(one.gpu_secs_sampled, 600.0), "{one:?}");
    let c = PeriodCoverage::of(PERIOD, &jobs, &params());
    assert_eq!((c.gpu_jobs, c.gpu_jobs_unsampled), (2, 1));
    assert!(close(c.gpu_hours, 4_000.0 / 3_600.0));
    assert!(close(c.gpu_hours_sampled_frac.unwrap(), 600.0 / 4_000.0));
    assert!(
        c.text.ends_with(" GPUs: 15 % of the 1.1 GPU-hours had readings; 1 of 2 jobs had no GPU readings."),
        "{}",
        c.text
    );
}

#[test]
fn readings_never_count_more_gpus_than_were_allocated() {
    let mut one = job(1, "alice", 1_000, Some(2_000));
    one.alloc_tres = Tres(vec![("cpu".into(), 4), ("gres/gpu".into(), 1)]);
    let input = sampled(JobInput::new(one), StepId::BATCH, 1_000, 2_000);
    let input = gpu_read(gpu_read(input, StepId::BATCH, 0, 1_000, 2_000), StepId::BATCH, 1, 1_000, 2_000);
    let c = job_coverage(&analysed(&[input])[0]);
    assert!(close(c.gpu_secs_sampled, c.gpu_secs) && close(c.gpu_secs, 1_000.0), "{c:?}");
}

#[test]
fn a_corrupt_coverage_figure_is_bounded() {
    let mut a = analysed(&[JobInput::new(job(1, "alice", 1_000, Some(2_000)))]).remove(0);
    for (bad, want) in [(f64::NAN, 0.0), (f64::INFINITY, 0.0), (7.0, 1.0), (-1.0, 0.0)] {
        a.sample_coverage_frac = bad;
        let c = job_coverage(&a);
        assert!(close(c.core_secs_sampled, c.core_secs * want), "{bad}: {c:?}");
    }
}

#[test]
fn the_sentence_reads_well_at_the_edges() {
    let none = PeriodCoverage::of(PERIOD, &[], &params());
    assert_eq!((none.jobs, none.core_hours_sampled_frac), (0, None));
    assert_eq!(none.text, "No jobs in this period.");
    let mut c = PeriodCoverage { jobs: 17, jobs_unsampled: 17, core_hours: 1_234.4, ..PeriodCoverage::default() };
    c.core_hours_sampled_frac = Some(0.0);
    assert_eq!(c.sentence(), "0 % of the 1 234 core-hours were sampled; none of the 17 jobs had samples.");
    c.core_hours_sampled_frac = Some(0.999);
    c.jobs_unsampled = 1;
    assert_eq!(c.sentence(), "> 99 % of the 1 234 core-hours were sampled; 1 job had no samples.");
    c.core_hours_sampled_frac = Some(0.001);
    c.core_hours = 1_234_567.0;
    assert!(c.sentence().starts_with("< 1 % of the 1 234 567 core-hours"), "{}", c.sentence());
    c.core_hours_sampled_frac = None;
    assert_eq!(c.sentence(), "17 jobs with no core-hours allocated yet; 1 job had no samples.");
    assert_eq!(
        (grouped(0), grouped(999), grouped(1_000), grouped(12_345_678)),
        ("0".into(), "999".into(), "1 000".into(), "12 345 678".into())
    );
}

#[test]
fn the_json_names_every_figure_and_reads_back() {
    let mut input = job(1, "alice", 1_000, Some(2_000));
    input.alloc_cpus = 1;
    let c = PeriodCoverage::of(PERIOD, &analysed(&[JobInput::new(input)]), &params());
    let value = serde_json::to_value(&c).unwrap();
    for key in [
        "period_start",
        "period_end",
        "jobs",
        "jobs_sampled",
        "jobs_unsampled",
        "core_hours",
        "core_hours_sampled",
        "core_hours_sampled_frac",
        "gpu_jobs",
        "gpu_jobs_unsampled",
        "gpu_hours",
        "gpu_hours_sampled",
        "gpu_hours_sampled_frac",
        "text",
    ] {
        assert!(value.get(key).is_some(), "{key} missing: {value}");
    }
    assert_eq!(serde_json::from_value::<PeriodCoverage>(value).unwrap(), c);
    // Figures added later read as their defaults from older stored JSON.
    let old: PeriodCoverage = serde_json::from_str(r#"{"jobs": 3, "core_hours": 2.5}"#).unwrap();
    assert_eq!((old.jobs, old.core_hours, old.gpu_hours_sampled_frac), (3, 2.5, None));
}
