//! Pure parsing of `sacct` output into job and step records.
//!
//! The output is what `sacct::sacct_args` asks for: `-P --noheader --noconvert` with the ASCII
//! unit separator (0x1f) as delimiter and the fields of [`FIELDS`], JobName last. The separator
//! is used because a job name may contain `|` (the default `-P` delimiter) and spaces; it cannot
//! be typed into a job name by ordinary means, and if a name ever carries one, JobName being last
//! means the extra pieces are rejoined into the name. Verified on 22.05 with a job named
//! `we|ird name ünï` (fixture `window.txt`).
//!
//! We read `-P` text rather than `--json` because 22.05's JSON is wrong where we need it: every
//! normal exit shows as status SUCCESS, return code 0 (its dumper never reads the exit status;
//! `exit 3` is `3:0` in `-P` text), and job-level CPU times are always 0 (`-P`'s job line sums
//! the steps).
//!
//! A malformed line is reported (line number, field, text) and skipped with the steps that
//! belong to it; the rest of the batch is kept. Job lines whose state is PENDING are dropped
//! (with their steps) without an error: pending jobs are not imported, and 22.05 briefly shows a
//! just-started job as PENDING while its steps already run — the next window sees it settled.

use crate::job::{JobId, JobRecord, MemRequest, StepId, StepRecord, Tres, Usage};
use crate::slurm::local_time::LocalTimes;
use crate::slurm::sacct_records::{records, split_fields};
pub use crate::slurm::sacct_records::{records_match_ids, split_parts, LineError, Part, DELIMITER, FIELDS};
use crate::slurm::units::{
    parse_duration_ms, parse_exit_code, parse_memory, parse_time_limit_secs, parse_tres, trim, MemScope,
};
use std::cell::RefCell;

// Field positions (must follow FIELDS).
const RAW: usize = 0;
const JOBID: usize = 1;
const STATE: usize = 2;
const EXIT: usize = 3;
const USER: usize = 4;
const UID: usize = 5;
const ACCOUNT: usize = 6;
const PARTITION: usize = 7;
const QOS: usize = 8;
const SUBMIT: usize = 9;
const ELIGIBLE: usize = 10;
const START: usize = 11;
const END: usize = 12;
const TIMELIMIT: usize = 13;
const ELAPSED: usize = 14;
const NNODES: usize = 15;
const NODELIST: usize = 16;
const ALLOC_CPUS: usize = 17;
const NTASKS: usize = 18;
const REQ_MEM: usize = 19;
const ALLOC_TRES: usize = 20;
const REQ_TRES: usize = 21;
const TOTAL_CPU: usize = 22;
const USER_CPU: usize = 23;
const SYSTEM_CPU: usize = 24;
const MAX_RSS: usize = 25;
const MAX_RSS_NODE: usize = 26;
const MAX_RSS_TASK: usize = 27;
const AVE_RSS: usize = 28;
const MAX_VMSIZE: usize = 29;
const MAX_DISK_READ: usize = 30;
const MAX_DISK_WRITE: usize = 31;
const TRES_IN_TOT: usize = 32;
const TRES_IN_MAX: usize = 33;
const WORK_DIR: usize = 34;
const SUBMIT_LINE: usize = 35;
const NAME: usize = 36;

/// A parsed batch: the jobs with their steps, and the lines that were skipped.
#[derive(Debug, Clone, Default)]
pub struct SacctBatch {
    pub jobs: Vec<(JobRecord, Vec<StepRecord>)>,
    pub skipped: Vec<LineError>,
}

/// Parses a whole sacct output. `imported_at` stamps the job records.
pub fn parse_sacct(text: &str, tz: &jiff::tz::TimeZone, imported_at: u64) -> SacctBatch {
    parse_sacct_part(text, tz, imported_at, 0)
}

/// Parses a part of sacct output that follows `lines_before` lines (so errors name the line of
/// the whole output). `parse_sacct` is the whole output as one part.
pub fn parse_sacct_part(text: &str, tz: &jiff::tz::TimeZone, imported_at: u64, lines_before: usize) -> SacctBatch {
    // Room for every job without growing (a job has a line and usually some step lines);
    // growing a vector of large records copies them all.
    let lines = memchr::memchr_iter(b'\n', text.as_bytes()).count();
    let mut batch = SacctBatch { jobs: Vec::with_capacity(lines / 2 + 1), skipped: Vec::new() };
    // Raw id of the job the following step lines belong to; None after a skipped/pending job.
    let mut current: Option<u64> = None;
    let mut dropped: Option<u64> = None;
    let times = RefCell::new(LocalTimes::new(tz));
    for record in records(text) {
        let (line_no, line) = match record {
            Ok((line_no, line)) => (line_no + lines_before, line),
            Err(mut e) => {
                e.line += lines_before;
                batch.skipped.push(e);
                continue;
            }
        };
        // `records` guarantees at least FIELDS.len() − 1 delimiters, so every slot is filled.
        let fields = split_fields(&line);
        let raw = fields[RAW];
        let ctx = Ctx { line: line_no, fields: &fields, times: &times };
        match crate::slurm::units::split_at_byte(raw, b'.') {
            None => {
                let id = match raw.parse::<u64>() {
                    Ok(id) => id,
                    Err(_) => {
                        batch.skipped.push(ctx.error(RAW, "not a job id".into()));
                        current = None;
                        dropped = None;
                        continue;
                    }
                };
                if word(fields[STATE]) == "PENDING" {
                    current = None;
                    dropped = Some(id);
                    continue;
                }
                match parse_job(&ctx, JobId(id), imported_at) {
                    Ok(job) => {
                        batch.jobs.push((job, Vec::new()));
                        current = Some(id);
                        dropped = None;
                    }
                    Err(e) => {
                        batch.skipped.push(e);
                        current = None;
                        dropped = Some(id);
                    }
                }
            }
            Some((job_part, step_part)) => {
                let job_id = job_part.parse::<u64>().ok();
                if job_id.is_some() && job_id == dropped {
                    continue;
                }
                let Some(job_id) = job_id.filter(|id| Some(*id) == current) else {
                    batch.skipped.push(ctx.error(RAW, "step line without its job line".into()));
                    continue;
                };
                let Some(step) = StepId::parse(step_part) else {
                    batch.skipped.push(ctx.error(RAW, "not a step id".into()));
                    continue;
                };
                match parse_step(&ctx, JobId(job_id), step) {
                    Ok(step) => {
                        if let Some((_, steps)) = batch.jobs.last_mut() {
                            steps.push(step);
                        }
                    }
                    Err(e) => batch.skipped.push(e),
                }
            }
        }
    }
    for (job, steps) in &mut batch.jobs {
        drop_scraper_steps(job, steps);
        fold_steps_into_job(job, steps);
    }
    batch
}

/// Scraper steps in a user's job (numbered steps named [`super::SCRAPER_STEP_NAME`]) are not the
/// user's work: they are dropped and their CPU time taken off the job's (sacct counts every
/// step in the job line's TotalCPU).
pub(crate) fn drop_scraper_steps(job: &mut JobRecord, steps: &mut Vec<StepRecord>) {
    let (scrapers, kept): (Vec<StepRecord>, Vec<StepRecord>) =
        std::mem::take(steps).into_iter().partition(|s| s.step.is_numbered() && s.name == super::SCRAPER_STEP_NAME);
    *steps = kept;
    for s in scrapers {
        let usage = &mut job.usage;
        usage.total_cpu_ms = usage.total_cpu_ms.saturating_sub(s.usage.total_cpu_ms);
        usage.user_cpu_ms = usage.user_cpu_ms.saturating_sub(s.usage.user_cpu_ms);
        usage.system_cpu_ms = usage.system_cpu_ms.saturating_sub(s.usage.system_cpu_ms);
    }
}

/// Memory figures exist per step only (22.05 leaves them empty on the job line): the job gets
/// the largest MaxRSS of its steps with where it peaked, the largest of the other maxima, and
/// the largest of the steps' memory as SLURM counts it (see `job::step_memory`).
pub(crate) fn fold_steps_into_job(job: &mut JobRecord, steps: &[StepRecord]) {
    let usage = &mut job.usage;
    let of_steps = || steps.iter().map(|s| &s.usage);
    if let Some(peak) = of_steps().filter(|u| u.max_rss_bytes.is_some()).max_by_key(|u| u.max_rss_bytes) {
        usage.max_rss_bytes = peak.max_rss_bytes;
        usage.max_rss_node = peak.max_rss_node.clone();
        usage.max_rss_task = peak.max_rss_task;
    }
    let max_of = |f: fn(&Usage) -> Option<u64>| of_steps().filter_map(f).max();
    usage.ave_rss_bytes = usage.ave_rss_bytes.or(max_of(|u| u.ave_rss_bytes));
    usage.max_vmsize_bytes = usage.max_vmsize_bytes.or(max_of(|u| u.max_vmsize_bytes));
    usage.max_disk_read_bytes = usage.max_disk_read_bytes.or(max_of(|u| u.max_disk_read_bytes));
    usage.max_disk_write_bytes = usage.max_disk_write_bytes.or(max_of(|u| u.max_disk_write_bytes));
    usage.mem_used_bytes = usage.mem_used_bytes.or(max_of(|u| u.mem_used_bytes));
    usage.mem_node_peak_bytes = usage.mem_node_peak_bytes.or(max_of(|u| u.mem_node_peak_bytes));
}

/// The fields of one line, with what is needed to report an error in it.
/// Longest job or step name kept (SLURM's database keeps 255 bytes of it anyway).
pub const MAX_NAME_BYTES: usize = 1_024;
/// Longest submit line kept: enough for any real `sbatch`/`srun` line, not for a wrapped script
/// of megabytes.
pub const MAX_SUBMIT_LINE_BYTES: usize = 16 * 1_024;
/// Longest work dir kept (Linux's PATH_MAX).
pub const MAX_WORK_DIR_BYTES: usize = 4_096;

struct Ctx<'a, 't> {
    line: usize,
    fields: &'a [&'a str],
    /// Timestamps are converted through a per-day cache of the zone's offset.
    times: &'a RefCell<LocalTimes<'t>>,
}

impl Ctx<'_, '_> {
    fn error(&self, field: usize, reason: String) -> LineError {
        LineError {
            line: self.line,
            field: FIELDS[field],
            reason,
            text: self.fields[field].chars().take(200).collect(),
        }
    }

    /// A field as text, control characters replaced (`delimited::clean_text`).
    fn text(&self, field: usize) -> String {
        crate::slurm::delimited::clean_text(self.fields[field]).into_owned()
    }

    /// A field a user wrote (job name, submit line, work dir): as [`Ctx::text`], cut to at most
    /// `max` bytes, so one user's job cannot make every stored job, page and mail that shows it
    /// as large as SLURM lets a command line be (megabytes).
    fn user_text(&self, field: usize, max: usize) -> String {
        crate::slurm::delimited::bounded_text(&crate::slurm::delimited::clean_text(self.fields[field]), max)
    }

    fn unit<T>(
        &self,
        field: usize,
        parse: impl Fn(&str) -> Result<T, crate::slurm::units::UnitError>,
    ) -> Result<T, LineError> {
        parse(self.fields[field]).map_err(|e| self.error(field, e.to_string()))
    }

    /// A count; empty is 0.
    fn count(&self, field: usize) -> Result<u32, LineError> {
        let t = trim(self.fields[field]);
        if t.is_empty() {
            return Ok(0);
        }
        t.parse().map_err(|_| self.error(field, "not a count".into()))
    }

    fn optional_u32(&self, field: usize) -> Result<Option<u32>, LineError> {
        let t = trim(self.fields[field]);
        if t.is_empty() {
            return Ok(None);
        }
        t.parse().map(Some).map_err(|_| self.error(field, "not a number".into()))
    }

    fn time(&self, field: usize) -> Result<Option<u64>, LineError> {
        self.unit(field, |t| self.times.borrow_mut().parse(t))
    }

    fn ms(&self, field: usize) -> Result<u64, LineError> {
        Ok(self.unit(field, parse_duration_ms)?.unwrap_or(0))
    }

    fn bytes(&self, field: usize) -> Result<Option<u64>, LineError> {
        Ok(self.unit(field, parse_memory)?.map(|(b, _)| b))
    }

    fn tres(&self, field: usize) -> Result<Tres, LineError> {
        self.unit(field, parse_tres)
    }

    /// A TRES list, copied from `parsed` (field `same`) when its text is the same (the request
    /// usually repeats the allocation, a single task's maxima its totals).
    fn tres_or_same(&self, field: usize, same: usize, parsed: &Tres) -> Result<Tres, LineError> {
        if self.fields[field] == self.fields[same] {
            Ok(parsed.clone())
        } else {
            self.tres(field)
        }
    }

    /// The usage fields of a job or step line.
    fn usage(&self) -> Result<Usage, LineError> {
        Ok(Usage {
            total_cpu_ms: self.ms(TOTAL_CPU)?,
            user_cpu_ms: self.ms(USER_CPU)?,
            system_cpu_ms: self.ms(SYSTEM_CPU)?,
            max_rss_bytes: self.bytes(MAX_RSS)?,
            max_rss_node: self.text(MAX_RSS_NODE),
            max_rss_task: self.optional_u32(MAX_RSS_TASK)?,
            ave_rss_bytes: self.bytes(AVE_RSS)?,
            max_vmsize_bytes: self.bytes(MAX_VMSIZE)?,
            max_disk_read_bytes: self.bytes(MAX_DISK_READ)?,
            max_disk_write_bytes: self.bytes(MAX_DISK_WRITE)?,
            // Derived from the step's totals (`StepRecord::derive_memory`) and folded into the
            // job (`fold_steps_into_job`).
            mem_used_bytes: None,
            mem_node_peak_bytes: None,
        })
    }

    fn node_list(&self) -> String {
        match self.fields[NODELIST] {
            "None assigned" => String::new(),
            other => other.to_string(),
        }
    }
}

fn word(state: &str) -> &str {
    state.split_whitespace().next().unwrap_or("")
}

/// Array and het parts of a display id: `123_4` → array (123, 4); `123+1` → het (123, 1).
fn id_parts(display: &str) -> (Option<u64>, Option<u32>, Option<u64>, Option<u32>) {
    if let Some((job, task)) = display.split_once('_') {
        return (job.parse().ok(), task.parse().ok(), None, None);
    }
    if let Some((job, offset)) = display.split_once('+') {
        return (None, None, job.parse().ok(), offset.parse().ok());
    }
    (None, None, None, None)
}

fn parse_job(ctx: &Ctx<'_, '_>, id: JobId, imported_at: u64) -> Result<JobRecord, LineError> {
    let f = ctx.fields;
    let (exit_code, exit_signal) = ctx.unit(EXIT, parse_exit_code)?;
    let (array_job_id, array_task_id, het_job_id, het_offset) = id_parts(f[JOBID]);
    let node_count = ctx.count(NNODES)?;
    let alloc_cpus = ctx.count(ALLOC_CPUS)?;
    let alloc_tres = ctx.tres(ALLOC_TRES)?;
    let req_tres = ctx.tres_or_same(REQ_TRES, ALLOC_TRES, &alloc_tres)?;
    let req_mem_raw = ctx.unit(REQ_MEM, parse_memory)?;
    let (req_mem, req_mem_bytes) = normalise_req_mem(req_mem_raw, &alloc_tres, &req_tres, node_count, alloc_cpus);
    let uid = ctx.optional_u32(UID)?;
    let elapsed_secs = trim(f[ELAPSED]).parse::<u64>().map_err(|_| ctx.error(ELAPSED, "not seconds".into()))?;
    let name = ctx.user_text(NAME, MAX_NAME_BYTES);
    Ok(JobRecord {
        id,
        display_id: ctx.text(JOBID),
        array_job_id,
        array_task_id,
        het_job_id,
        het_offset,
        name,
        user: ctx.text(USER),
        uid,
        account: ctx.text(ACCOUNT),
        partition: ctx.text(PARTITION),
        qos: ctx.text(QOS),
        state: word(f[STATE]).to_string(),
        state_detail: ctx.text(STATE),
        exit_code,
        exit_signal,
        submit_at: ctx.time(SUBMIT)?,
        eligible_at: ctx.time(ELIGIBLE)?,
        start_at: ctx.time(START)?,
        end_at: ctx.time(END)?,
        time_limit_secs: ctx.unit(TIMELIMIT, parse_time_limit_secs)?,
        elapsed_secs,
        node_list: ctx.node_list(),
        node_count,
        alloc_cpus,
        req_mem,
        req_mem_bytes,
        alloc_tres,
        req_tres,
        usage: ctx.usage()?,
        submit_line: ctx.user_text(SUBMIT_LINE, MAX_SUBMIT_LINE_BYTES),
        work_dir: ctx.user_text(WORK_DIR, MAX_WORK_DIR_BYTES),
        imported_at,
    })
}

/// The memory request as stated, and normalised to bytes for the whole job.
///
/// The whole-job figure comes from AllocTRES `mem` (reliable: SLURM's own total), else ReqTRES
/// `mem`, else ReqMem scaled by its suffix. 22.05 prints ReqMem without a suffix as the job's
/// total (`--mem=50M -N2` shows `100M`, `--mem-per-cpu=60M -c2` shows `120M`), so a plain
/// figure is recorded as per node = total / nodes.
fn normalise_req_mem(
    req_mem: Option<(u64, MemScope)>,
    alloc_tres: &Tres,
    req_tres: &Tres,
    nodes: u32,
    cpus: u32,
) -> (Option<MemRequest>, Option<u64>) {
    let nodes = u64::from(nodes.max(1));
    let request = req_mem.map(|(bytes, scope)| match scope {
        MemScope::PerCpu => MemRequest::PerCpu(bytes),
        MemScope::PerNode => MemRequest::PerNode(bytes),
        MemScope::Plain => MemRequest::PerNode(bytes / nodes),
    });
    let from_req_mem = req_mem.map(|(bytes, scope)| match scope {
        MemScope::PerCpu => bytes.saturating_mul(u64::from(cpus.max(1))),
        MemScope::PerNode => bytes.saturating_mul(nodes),
        MemScope::Plain => bytes,
    });
    let total = alloc_tres.get("mem").or_else(|| req_tres.get("mem")).or(from_req_mem);
    (request, total)
}

fn parse_step(ctx: &Ctx<'_, '_>, job: JobId, step: StepId) -> Result<StepRecord, LineError> {
    let f = ctx.fields;
    let (exit_code, exit_signal) = ctx.unit(EXIT, parse_exit_code)?;
    let elapsed_secs = trim(f[ELAPSED]).parse::<u64>().map_err(|_| ctx.error(ELAPSED, "not seconds".into()))?;
    let mut record = StepRecord {
        job,
        step,
        name: ctx.user_text(NAME, MAX_NAME_BYTES),
        state: word(f[STATE]).to_string(),
        exit_code,
        exit_signal,
        start_at: ctx.time(START)?,
        end_at: ctx.time(END)?,
        elapsed_secs,
        node_list: ctx.node_list(),
        node_count: ctx.count(NNODES)?,
        task_count: ctx.count(NTASKS)?,
        alloc_cpus: ctx.count(ALLOC_CPUS)?,
        usage: ctx.usage()?,
        tres_usage_in_tot: ctx.tres(TRES_IN_TOT)?,
        tres_usage_in_max: Tres::default(),
        submit_line: ctx.user_text(SUBMIT_LINE, MAX_SUBMIT_LINE_BYTES),
    };
    record.tres_usage_in_max = ctx.tres_or_same(TRES_IN_MAX, TRES_IN_TOT, &record.tres_usage_in_tot)?;
    record.derive_memory();
    Ok(record)
}

#[cfg(test)]
#[path = "sacct_parse_tests.rs"]
mod tests;
