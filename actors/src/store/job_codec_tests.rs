//! The compact job and steps encodings: exact round trips on recorded sacct output, old format-1
//! values still read, and corrupt values rejected without a panic.

use super::*;
use crate::slurm::sacct_parse::parse_sacct;
use crate::store::records::encode_record;

const WINDOW: &str = include_str!("../../../tests/fixtures/sacct/window.txt");
const MALFORMED: &str = include_str!("../../../tests/fixtures/sacct/malformed.txt");

fn fixture_jobs() -> Vec<(JobRecord, Vec<StepRecord>)> {
    let tz = jiff::tz::TimeZone::UTC;
    let mut jobs = parse_sacct(WINDOW, &tz, 7).jobs;
    jobs.extend(parse_sacct(MALFORMED, &tz, 8).jobs);
    // Odd values: extremes, unknown TRES names, a state detail unlike the state.
    let (mut odd, mut steps) = jobs[0].clone();
    odd.end_at = Some(u64::MAX);
    odd.submit_at = Some(u64::MAX - 1);
    odd.start_at = Some(0);
    odd.eligible_at = None;
    odd.uid = Some(u32::MAX);
    odd.req_mem = Some(MemRequest::PerCpu(u64::MAX));
    odd.req_tres = Tres(vec![("gres/fpga".into(), 3), ("cpu".into(), u64::MAX)]);
    odd.state_detail = "CANCELLED by 0".into();
    steps[0].tres_usage_in_max = Tres(vec![("gres/fpga".into(), 1), ("fs/weird".into(), 2), ("gres/fpga".into(), 5)]);
    steps[1].start_at = None;
    steps[1].end_at = Some(1);
    jobs.push((odd, steps));
    jobs
}

#[test]
fn jobs_and_steps_round_trip_exactly() {
    for (job, steps) in fixture_jobs() {
        let mut sorted: Vec<&StepRecord> = steps.iter().collect();
        sorted.sort_by_key(|s| s.step);
        let mut buf = Vec::new();
        encode_job(&job, &sorted, &mut buf);
        assert_eq!(decode_job(&buf).unwrap(), job);
        assert_eq!(job_end(&buf).unwrap(), job.end_at);
        let decoded = decode_job_steps(job.id, &buf).unwrap();
        assert_eq!(decoded.iter().collect::<Vec<_>>(), sorted);
    }
    // A job part too long for the 3-byte length prefix.
    let (mut long, _) = fixture_jobs().swap_remove(0);
    long.submit_line = "x".repeat(3 << 20);
    let mut buf = Vec::new();
    encode_job(&long, &[], &mut buf);
    assert_eq!(decode_job(&buf).unwrap(), long);
    assert!(decode_job_steps(long.id, &buf).unwrap().is_empty());
}

#[test]
fn format_1_job_values_still_decode() {
    for (mut job, _) in fixture_jobs() {
        // Format 1 predates the derived memory figures: they read back as absent.
        job.usage.mem_used_bytes = None;
        job.usage.mem_node_peak_bytes = None;
        let old = encode_record(&job);
        assert_eq!(old[0], 1);
        assert_eq!(decode_job(&old).unwrap(), job);
        assert_eq!(job_end(&old).unwrap(), job.end_at);
        assert!(decode_job_steps(job.id, &old).unwrap().is_empty());
    }
}

#[test]
fn the_compact_forms_are_much_smaller() {
    let (mut new, mut old) = (0, 0);
    for (job, steps) in fixture_jobs() {
        let mut buf = Vec::new();
        encode_job(&job, &steps.iter().collect::<Vec<_>>(), &mut buf);
        new += buf.len();
        old += encode_record(&job).len() + steps.iter().map(|s| encode_record(s).len()).sum::<usize>();
    }
    assert!(new * 10 < old * 7, "{new} bytes against {old}");
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let (job, steps) = fixture_jobs().swap_remove(0);
    let mut value = Vec::new();
    encode_job(&job, &steps.iter().collect::<Vec<_>>(), &mut value);
    for cut in 0..value.len() {
        assert!(decode_job_steps(job.id, &value[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = value.clone();
    trailing.push(0);
    assert!(decode_job_steps(job.id, &trailing).is_err());
    for i in 0..value.len() {
        let mut flipped = value.clone();
        flipped[i] ^= 0xff;
        let _ = decode_job(&flipped);
        let _ = decode_job_steps(job.id, &flipped);
        let _ = job_end(&flipped);
    }
    assert!(matches!(decode_job(&[9]), Err(RecordError::UnknownFormat(9))));
    assert!(decode_job(&[JOB_FORMAT, 0xff]).is_err());
    assert!(decode_job(&[JOB_FORMAT, 0x80, 0x80, 0]).is_err());
}
