//! The parser on output recorded from the dev cluster (`tests/fixtures/sacct/README.md` says
//! which job each id is and how it was captured). Expected values are read off the fixture lines.

use super::*;

const WINDOW: &str = include_str!("../../../tests/fixtures/sacct/window.txt");
const RUNNING: &str = include_str!("../../../tests/fixtures/sacct/running.txt");
const MULTILINE: &str = include_str!("../../../tests/fixtures/sacct/multiline.txt");
const MALFORMED: &str = include_str!("../../../tests/fixtures/sacct/malformed.txt");

fn parse(text: &str) -> SacctBatch {
    parse_sacct(text, &jiff::tz::TimeZone::UTC, 7)
}

fn job(batch: &SacctBatch, raw: u64) -> &(JobRecord, Vec<StepRecord>) {
    batch.jobs.iter().find(|(j, _)| j.id == JobId(raw)).unwrap_or_else(|| panic!("job {raw} missing"))
}

#[test]
fn window_fixture_parses_every_job_and_step() {
    let batch = parse(WINDOW);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    let ids: Vec<u64> = batch.jobs.iter().map(|(j, _)| j.id.0).collect();
    assert_eq!(ids, [5, 7, 8, 9, 10, 6, 11, 12, 13]);
    let steps: usize = batch.jobs.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(steps, 27 - 9);
}

#[test]
fn odd_job_name_and_numbered_steps() {
    let batch = parse(WINDOW);
    let (j, steps) = job(&batch, 5);
    assert_eq!(j.name, "we|ird name ünï");
    assert_eq!(j.user, "alice");
    assert_eq!(j.uid, Some(1001));
    assert_eq!((j.account.as_str(), j.partition.as_str(), j.qos.as_str()), ("dev", "debug", "normal"));
    assert_eq!(j.state, "COMPLETED");
    assert_eq!(j.start_at, Some(1_795_644_161));
    assert_eq!(j.end_at, Some(1_795_644_165));
    assert_eq!(j.elapsed_secs, 4);
    assert_eq!(j.time_limit_secs, None); // UNLIMITED
    assert_eq!(j.usage.total_cpu_ms, 122);
    assert_eq!(j.usage.user_cpu_ms, 26);
    assert_eq!(j.usage.system_cpu_ms, 96);
    assert_eq!(j.req_mem_bytes, Some(100 << 20));
    assert_eq!(j.req_mem, Some(MemRequest::PerNode(100 << 20)));
    assert_eq!(j.alloc_tres.get("billing"), Some(1));
    // The job line has no MaxRSS: the batch step's peak is taken, with where it peaked.
    assert_eq!(j.usage.max_rss_bytes, Some(62_058_496));
    assert_eq!((j.usage.max_rss_node.as_str(), j.usage.max_rss_task), ("n1", Some(0)));
    assert_eq!(j.usage.max_vmsize_bytes, Some(224_702_464));
    assert_eq!(j.usage.max_disk_read_bytes, Some((0.09f64 * 1048576.0).round() as u64));
    assert_eq!(j.work_dir, "/tmp");
    assert!(j.submit_line.contains("-J we|ird name ünï"), "{}", j.submit_line);
    assert_eq!(j.family_key(), format!("we|ird name ünï\u{1f}{}", j.submit_line));
    let ids: Vec<StepId> = steps.iter().map(|s| s.step).collect();
    assert_eq!(ids, [StepId::BATCH, StepId::EXTERN, StepId(0), StepId(1)]);
    let step1 = &steps[3];
    assert_eq!((step1.name.as_str(), step1.submit_line.as_str()), ("sleep", "srun -n1 sleep 1"));
    assert_eq!(step1.tres_usage_in_tot.get("mem"), Some(3_244_032));
    assert_eq!(step1.tres_usage_in_max.get("fs/disk"), Some(6977));
    assert_eq!(step1.task_count, 1);
}

#[test]
fn array_tasks_and_het_components_keep_their_parts() {
    let batch = parse(WINDOW);
    let (a1, _) = job(&batch, 10);
    assert_eq!((a1.display_id.as_str(), a1.array_job_id, a1.array_task_id), ("6_1", Some(6), Some(1)));
    let (a2, _) = job(&batch, 6);
    assert_eq!((a2.display_id.as_str(), a2.array_job_id, a2.array_task_id), ("6_2", Some(6), Some(2)));
    // --mem-per-cpu=60M -c2: 22.05 prints ReqMem 120M without suffix; AllocTRES says the same.
    assert_eq!(a1.req_mem_bytes, Some(120 << 20));
    assert_eq!(a1.alloc_cpus, 2);
    let (h1, h1_steps) = job(&batch, 9);
    assert_eq!((h1.display_id.as_str(), h1.het_job_id, h1.het_offset), ("8+1", Some(8), Some(1)));
    assert_eq!(h1.time_limit_secs, Some(300));
    assert_eq!(h1_steps.iter().map(|s| s.step).collect::<Vec<_>>(), [StepId::EXTERN]);
    let (h0, _) = job(&batch, 8);
    assert_eq!((h0.het_job_id, h0.het_offset, h0.array_job_id), (Some(8), Some(0), None));
}

#[test]
fn failed_multi_node_job() {
    let batch = parse(WINDOW);
    let (j, steps) = job(&batch, 7);
    assert_eq!((j.state.as_str(), j.exit_code, j.exit_signal), ("FAILED", 3, 0));
    assert_eq!((j.node_list.as_str(), j.node_count, j.alloc_cpus), ("n[1,3]", 2, 2));
    // --mem=50M -N2: the whole job holds 100M.
    assert_eq!(j.req_mem_bytes, Some(100 << 20));
    assert_eq!(j.req_mem, Some(MemRequest::PerNode(50 << 20)));
    let step0 = steps.iter().find(|s| s.step == StepId(0)).unwrap();
    assert_eq!((step0.node_count, step0.task_count, step0.node_list.as_str()), (2, 2, "n[1,3]"));
    // Two tasks: MaxRSS is the larger task's, AveRSS their mean.
    assert_eq!(step0.usage.max_rss_bytes, Some(3_244_032));
    assert_eq!(step0.usage.ave_rss_bytes, Some(3_096_576));
    assert_eq!(j.usage.max_rss_bytes, Some(3_387_392)); // the batch step peaked highest
}

#[test]
fn cancelled_before_start_and_memory_hog() {
    let batch = parse(WINDOW);
    let (c, steps) = job(&batch, 11);
    assert_eq!((c.state.as_str(), c.state_detail.as_str()), ("CANCELLED", "CANCELLED by 0"));
    assert_eq!((c.start_at, c.node_list.as_str(), c.time_limit_secs), (None, "", None));
    assert!(c.alloc_tres.0.is_empty());
    assert_eq!(c.req_mem_bytes, Some(50 << 20)); // from ReqTRES when nothing was allocated
    assert!(steps.is_empty() && c.usage.max_rss_bytes.is_none());
    let (hog, _) = job(&batch, 12);
    assert_eq!(hog.usage.max_rss_bytes, Some(219_496_448));
    assert_eq!(hog.time_limit_secs, Some(120));
    let (direct, direct_steps) = job(&batch, 13);
    assert_eq!((direct.name.as_str(), direct.user.as_str()), ("direct srun", "bob"));
    assert_eq!(direct_steps.iter().map(|s| s.step).collect::<Vec<_>>(), [StepId::EXTERN, StepId(0)]);
}

#[test]
fn a_job_still_shown_pending_is_left_for_the_next_window() {
    let batch = parse(RUNNING);
    assert!(batch.jobs.is_empty(), "{:?}", batch.jobs);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
}

#[test]
fn malformed_lines_are_reported_and_the_rest_is_kept() {
    let batch = parse(MALFORMED);
    let reported: Vec<(usize, &str)> = batch.skipped.iter().map(|e| (e.line, e.field)).collect();
    assert_eq!(reported, [(4, "line"), (7, "ElapsedRaw"), (17, "MaxRSS")]);
    assert_eq!(batch.skipped[1].text, "abc");
    assert!(batch.skipped[2].to_string().contains("12Q"), "{}", batch.skipped[2]);
    let ids: Vec<u64> = batch.jobs.iter().map(|(j, _)| j.id.0).collect();
    assert_eq!(ids, [5, 8, 9, 10, 6, 11, 12, 13]);
    // Job 5's steps survive the garbage line between them; 10 keeps only its extern step.
    assert_eq!(job(&batch, 5).1.len(), 4);
    assert_eq!(job(&batch, 10).1.iter().map(|s| s.step).collect::<Vec<_>>(), [StepId::EXTERN]);
}

#[test]
fn a_name_containing_the_delimiter_is_rejoined() {
    let line = WINDOW.lines().find(|l| l.starts_with("13\u{1f}")).unwrap();
    let odd = format!("{line}\u{1f}tail");
    let batch = parse(&odd);
    assert!(batch.skipped.is_empty());
    assert_eq!(batch.jobs[0].0.name, "direct srun\u{fffd}tail");
}

#[test]
fn memory_request_suffixes_are_normalised_per_job() {
    let none = Tres::default();
    assert_eq!(
        normalise_req_mem(Some((4 << 30, MemScope::PerCpu)), &none, &none, 2, 4),
        (Some(MemRequest::PerCpu(4 << 30)), Some(16 << 30))
    );
    assert_eq!(
        normalise_req_mem(Some((4 << 30, MemScope::PerNode)), &none, &none, 2, 4),
        (Some(MemRequest::PerNode(4 << 30)), Some(8 << 30))
    );
    let alloc = Tres(vec![("mem".into(), 5 << 30)]);
    assert_eq!(normalise_req_mem(Some((4 << 30, MemScope::PerNode)), &alloc, &none, 1, 1).1, Some(5 << 30));
    assert_eq!(normalise_req_mem(None, &none, &none, 1, 1), (None, None));
}

#[test]
fn a_submit_line_with_newlines_stays_one_record() {
    let batch = parse(MULTILINE);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    assert_eq!(batch.jobs.len(), 1);
    let (j, steps) = &batch.jobs[0];
    assert_eq!(j.name, "two lines");
    assert!(j.submit_line.ends_with("--wrap echo a\nsrun -n1 true\necho b"), "{:?}", j.submit_line);
    assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), [StepId::BATCH, StepId::EXTERN, StepId(0)]);
    // A record cut short for good is reported once, and the next record is still read.
    let cut: String = MULTILINE.lines().take(1).chain(MULTILINE.lines().skip(3)).collect::<Vec<_>>().join("\n");
    let batch = parse(&cut);
    assert_eq!(
        batch.skipped.iter().map(|e| (e.line, e.field)).collect::<Vec<_>>(),
        [(1, "line"), (2, "JobIDRaw"), (3, "JobIDRaw"), (4, "JobIDRaw")]
    );
}

#[test]
fn parts_parsed_one_by_one_give_what_the_whole_gives() {
    let tz = jiff::tz::TimeZone::UTC;
    let cut = MULTILINE.lines().take(1).chain(MULTILINE.lines().skip(3)).collect::<Vec<_>>().join("\n");
    let crlf = WINDOW.replace('\n', "\r\n");
    for text in [WINDOW, RUNNING, MULTILINE, MALFORMED, cut.as_str(), crlf.as_str(), ""] {
        let whole = parse(text);
        for part_bytes in [1, 100, 700, 3_000, 1 << 20] {
            let parts = split_parts(text, part_bytes);
            assert_eq!(parts.iter().map(|p| p.text).collect::<String>(), text);
            let (mut jobs, mut skipped) = (Vec::new(), Vec::new());
            for part in &parts {
                assert!(part.text.is_empty() || !part.text.starts_with('\n'));
                let batch = parse_sacct_part(part.text, &tz, 7, part.lines_before);
                jobs.extend(batch.jobs);
                skipped.extend(batch.skipped);
            }
            assert_eq!(jobs, whole.jobs, "{part_bytes}");
            assert_eq!(skipped, whole.skipped, "{part_bytes}");
        }
    }
    // Small parts cut before every job line, never before a step or a continuation line.
    let parts = split_parts(MULTILINE, 1);
    assert!(parts.iter().all(|p| p.text.split('\u{1f}').next().is_some_and(|id| !id.contains('.'))));
    assert!(split_parts(WINDOW, 1).len() > 5);
}

#[test]
fn fields_are_split_like_splitn() {
    let pieces = ["", "a", "ünï", "12345678", "x\u{1f}y", "1234567"];
    for count in [0usize, 1, 7, 8, 9, 35, 36, 37, 40] {
        for (n, piece) in pieces.iter().enumerate() {
            let line: String = (0..=count)
                .map(|i| pieces[(n + i) % pieces.len()].replace('\u{1f}', ""))
                .collect::<Vec<_>>()
                .join("\u{1f}");
            let line = format!("{piece}{line}");
            let mut expected = [""; FIELDS.len()];
            for (slot, value) in expected.iter_mut().zip(line.splitn(FIELDS.len(), DELIMITER)) {
                *slot = value;
            }
            assert_eq!(split_fields(&line), expected, "{line:?}");
        }
    }
}

#[test]
fn memory_used_is_the_sum_of_task_peaks_per_step_the_largest_step() {
    let batch = parse(include_str!("../../../tests/fixtures/sacct/multitask.txt"));
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    let used = |raw| {
        let u = &job(&batch, raw).0.usage;
        (u.mem_used_bytes, u.mem_node_peak_bytes, u.max_rss_bytes)
    };
    // 54: -N1 -n2 --mem=1G, 2 × 300 MB: TRESUsageInTot mem of step 0 (two tasks' peaks).
    assert_eq!(used(54), (Some(634_855_424), Some(634_855_424), Some(317_427_712)));
    // 55: the same with --mem-per-cpu=700M (AllocTRES mem 1400M).
    assert_eq!(used(55).0, Some(634_855_424));
    assert_eq!(job(&batch, 55).0.req_mem_bytes, Some(1_400 << 20));
    // 56: -N2 -n2: 22.05's total holds one task only; MaxRSS × NTasks is the sum; one task a node.
    assert_eq!(used(56), (Some(634_855_424), Some(317_427_712), Some(317_427_712)));
    assert_eq!(job(&batch, 56).0.req_mem_bytes, Some(2 << 30));
    // 58: one node, unequal tasks (100 and 200 MB): the exact sum, below reportseff's MaxRSS × 2.
    assert_eq!(used(58).0, Some(320_274_432));
    // Steps carry their own figures.
    let (_, steps) = job(&batch, 54);
    let step0 = steps.iter().find(|s| s.step == StepId(0)).unwrap();
    assert_eq!(step0.usage.mem_used_bytes, Some(634_855_424));
}

#[test]
fn scraper_steps_in_a_users_job_are_left_out_with_their_cpu_time() {
    let plain = parse(WINDOW);
    let (job5, steps5) = job(&plain, 5);
    let step1 = steps5.iter().find(|s| s.step == StepId(1)).unwrap();
    // The same job, its step 1 named like our scraper steps.
    let mut j = job5.clone();
    let mut steps = steps5.clone();
    steps.iter_mut().find(|s| s.step == StepId(1)).unwrap().name = crate::slurm::SCRAPER_STEP_NAME.into();
    drop_scraper_steps(&mut j, &mut steps);
    assert!(!steps.iter().any(|s| s.step == StepId(1)), "the scraper step is dropped");
    assert_eq!(steps.len(), steps5.len() - 1);
    assert_eq!(j.usage.total_cpu_ms, job5.usage.total_cpu_ms - step1.usage.total_cpu_ms);
    // A batch step is never taken for a scraper, whatever its name.
    let mut steps = steps5.clone();
    steps[0].name = crate::slurm::SCRAPER_STEP_NAME.into();
    drop_scraper_steps(&mut job5.clone(), &mut steps);
    assert_eq!(steps.len(), steps5.len());
}

#[test]
fn a_users_huge_name_submit_line_and_work_dir_are_cut_to_their_bounds() {
    let first = WINDOW.lines().next().unwrap_or_default();
    let mut fields: Vec<String> = first.split(DELIMITER).map(str::to_string).collect();
    fields[NAME] = "ñ".repeat(100_000);
    fields[SUBMIT_LINE] = format!("sbatch --wrap {}", "x".repeat(2 << 20));
    fields[WORK_DIR] = format!("/home/{}", "d".repeat(70_000));
    let line = fields.join(&DELIMITER.to_string());
    let batch = parse(&line);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    let (j, _) = job(&batch, 5);
    assert!(j.name.len() <= MAX_NAME_BYTES && j.name.starts_with('ñ') && j.name.ends_with('\u{2026}'));
    assert!(j.submit_line.len() <= MAX_SUBMIT_LINE_BYTES && j.submit_line.starts_with("sbatch --wrap xx"));
    assert!(j.work_dir.len() <= MAX_WORK_DIR_BYTES && j.work_dir.starts_with("/home/dd"));
    // Ordinary text is kept whole.
    let whole = parse(WINDOW);
    assert_eq!(job(&whole, 5).0.name, "we|ird name ünï");
}
