//! The compact, hand-written encoding of a job with its steps (one entry of a `job_blocks` value,
//! see `job_blocks`), for the accounting import's write path.
//!
//! Why not postcard (format 1, still read): a million jobs are imported in one go, and postcard
//! through serde spent more time allocating and copying than the B-tree inserts, and wrote every
//! TRES name and repeated string in full (~710 bytes a job with its steps; ~420 here). Here:
//! - optional fields are one presence bitmap, times are deltas against the submit/start time;
//! - TRES names are their position in [`COMMON_TRES`] (any other name is written out);
//! - a job's state detail, a request TRES list and a step's usage maxima are one byte when they
//!   repeat the state, the allocation and the usage totals (as they usually do);
//! - strings within one job's steps are written once and then referred to by number.
//!
//! A format-2 value is the format byte, the length of the job part, the job part and the steps
//! part, so reading a job skips its steps. The job part starts with the presence bitmap and the
//! end time, so [`job_end`] reads an old record's end (needed to move its index entry) without
//! decoding the rest. Format-1 values (postcard, no steps: those were in the `steps` table
//! before schema 3) are still read. Every decode is checked: a corrupt value is a
//! [`RecordError`], never a panic.

use super::records::{decode_record, RecordError};
use crate::job::{common_tres_index, JobId, JobRecord, MemRequest, StepId, StepRecord, Tres, Usage, COMMON_TRES};
use std::borrow::Cow;

/// Format byte of job values written by this build (1 was postcard, see `records.rs`).
pub const JOB_FORMAT: u8 = 2;

/// Appends the value of a job with its steps (in step-id order) to `out`.
pub fn encode_job(job: &JobRecord, steps: &[&StepRecord], out: &mut Vec<u8>) {
    out.push(JOB_FORMAT);
    // The job part's length, as a 3-byte varint patched in once the part is written.
    let at = out.len();
    out.extend_from_slice(&[0x80, 0x80, 0]);
    encode_job_part(job, out);
    let len = out.len() - at - 3;
    if len < 1 << 21 {
        out[at..at + 3].copy_from_slice(&[(len as u8) | 0x80, ((len >> 7) as u8) | 0x80, (len >> 14) as u8]);
    } else {
        let mut prefix = Vec::new();
        put(&mut prefix, len as u64);
        out.splice(at..at + 3, prefix);
    }
    encode_steps(steps, out);
}

fn encode_job_part(job: &JobRecord, out: &mut Vec<u8>) {
    let submit = job.submit_at.unwrap_or(0);
    let opts = job_options(job);
    let present = opts.iter().enumerate().fold(0u64, |bits, (i, v)| bits | (u64::from(v.is_some()) << i));
    put(out, present);
    for (i, v) in opts.iter().enumerate() {
        if let Some(v) = *v {
            match i {
                0 | 1 => put(out, v),                // end, submit
                2 | 3 => put(out, delta(v, submit)), // eligible, start
                _ => put(out, v),
            }
        }
    }
    for text in [&job.display_id, &job.name, &job.user, &job.account, &job.partition, &job.qos, &job.state] {
        put_str(out, text);
    }
    if job.state_detail == job.state {
        put(out, 0);
    } else {
        put(out, job.state_detail.len() as u64 + 1);
        out.extend_from_slice(job.state_detail.as_bytes());
    }
    for text in [&job.node_list, &job.usage.max_rss_node, &job.submit_line, &job.work_dir] {
        put_str(out, text);
    }
    for v in [job.id.0, job.exit_code.into(), job.exit_signal.into(), job.elapsed_secs, job.node_count.into()] {
        put(out, v);
    }
    let usage = &job.usage;
    for v in [job.alloc_cpus.into(), usage.total_cpu_ms, usage.user_cpu_ms, usage.system_cpu_ms, job.imported_at] {
        put(out, v);
    }
    match job.req_mem {
        None => put(out, 0),
        Some(MemRequest::PerNode(b)) => {
            put(out, 1);
            put(out, b);
        }
        Some(MemRequest::PerCpu(b)) => {
            put(out, 2);
            put(out, b);
        }
    }
    put_tres(out, &job.alloc_tres, None, &mut Vec::new());
    put_tres(out, &job.req_tres, Some(&job.alloc_tres), &mut Vec::new());
}

/// The optional fields of a job in stored order; the first two (end, submit) are absolute.
/// The last two (memory as SLURM counts it) were added without a new format byte: a value
/// written before has their presence bits clear and reads them as absent.
fn job_options(job: &JobRecord) -> [Option<u64>; 19] {
    [
        job.end_at,
        job.submit_at,
        job.eligible_at,
        job.start_at,
        job.array_job_id,
        job.array_task_id.map(u64::from),
        job.het_job_id,
        job.het_offset.map(u64::from),
        job.uid.map(u64::from),
        job.time_limit_secs,
        job.req_mem_bytes,
        job.usage.max_rss_bytes,
        job.usage.max_rss_task.map(u64::from),
        job.usage.ave_rss_bytes,
        job.usage.max_vmsize_bytes,
        job.usage.max_disk_read_bytes,
        job.usage.max_disk_write_bytes,
        job.usage.mem_used_bytes,
        job.usage.mem_node_peak_bytes,
    ]
}

/// A stored job value of any known format, without its steps.
pub fn decode_job(bytes: &[u8]) -> Result<JobRecord, RecordError> {
    match bytes.first() {
        Some(&JOB_FORMAT) => decode_job_v2(split_v2(bytes)?.0),
        _ => decode_record(bytes),
    }
}

/// The steps stored with a job (none in a format-1 value), in step-id order.
pub fn decode_job_steps(job: JobId, bytes: &[u8]) -> Result<Vec<StepRecord>, RecordError> {
    match bytes.first() {
        Some(&JOB_FORMAT) => decode_steps(job, split_v2(bytes)?.1),
        _ => {
            decode_record::<JobRecord>(bytes)?;
            Ok(Vec::new())
        }
    }
}

/// The end time of a stored job value, reading as little of it as its format allows.
pub fn job_end(bytes: &[u8]) -> Result<Option<u64>, RecordError> {
    match bytes.first() {
        Some(&JOB_FORMAT) => {
            let mut r = Reader(split_v2(bytes)?.0);
            let present = r.u64()?;
            Ok(if present & 1 == 1 { Some(r.u64()?) } else { None })
        }
        _ => Ok(decode_record::<JobRecord>(bytes)?.end_at),
    }
}

/// A format-2 value's job part and steps part.
fn split_v2(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let mut r = Reader(bytes.get(1..).unwrap_or_default());
    let len = r.u64()?;
    let job = r.bytes(len)?;
    Ok((job, r.0))
}

fn decode_job_v2(bytes: &[u8]) -> Result<JobRecord, RecordError> {
    let mut r = Reader(bytes);
    let present = r.u64()?;
    let mut opts = [None; 19];
    for (i, slot) in opts.iter_mut().enumerate() {
        if present & (1 << i) != 0 {
            *slot = Some(r.u64()?);
        }
    }
    let submit = opts[1].unwrap_or(0);
    for slot in &mut opts[2..4] {
        *slot = slot.map(|d| undelta(d, submit));
    }
    let opt_small = |v: Option<u64>| v.map(small).transpose();
    let [display_id, name, user, account, partition, qos, state] = [(); 7].map(|_| r.string());
    let state = state?;
    let state_detail = match r.u64()? {
        0 => state.clone(),
        n => r.string_of(n - 1)?,
    };
    let [node_list, max_rss_node, submit_line, work_dir] = [(); 4].map(|_| r.string());
    let [id, exit_code, exit_signal, elapsed_secs, node_count] = [(); 5].map(|_| r.u64());
    let [alloc_cpus, total_cpu_ms, user_cpu_ms, system_cpu_ms, imported_at] = [(); 5].map(|_| r.u64());
    let req_mem = match r.u64()? {
        0 => None,
        1 => Some(MemRequest::PerNode(r.u64()?)),
        2 => Some(MemRequest::PerCpu(r.u64()?)),
        _ => return Err(RecordError::Malformed("memory request kind")),
    };
    let alloc_tres = r.tres(None, &mut Vec::new())?;
    let req_tres = r.tres(Some(&alloc_tres), &mut Vec::new())?;
    r.finish()?;
    Ok(JobRecord {
        id: JobId(id?),
        display_id: display_id?,
        array_job_id: opts[4],
        array_task_id: opt_small(opts[5])?,
        het_job_id: opts[6],
        het_offset: opt_small(opts[7])?,
        name: name?,
        user: user?,
        uid: opt_small(opts[8])?,
        account: account?,
        partition: partition?,
        qos: qos?,
        state,
        state_detail,
        exit_code: small(exit_code?)?,
        exit_signal: small(exit_signal?)?,
        submit_at: opts[1],
        eligible_at: opts[2],
        start_at: opts[3],
        end_at: opts[0],
        time_limit_secs: opts[9],
        elapsed_secs: elapsed_secs?,
        node_list: node_list?,
        node_count: small(node_count?)?,
        alloc_cpus: small(alloc_cpus?)?,
        req_mem,
        req_mem_bytes: opts[10],
        alloc_tres,
        req_tres,
        usage: Usage {
            total_cpu_ms: total_cpu_ms?,
            user_cpu_ms: user_cpu_ms?,
            system_cpu_ms: system_cpu_ms?,
            max_rss_bytes: opts[11],
            max_rss_node: max_rss_node?,
            max_rss_task: opt_small(opts[12])?,
            ave_rss_bytes: opts[13],
            max_vmsize_bytes: opts[14],
            max_disk_read_bytes: opts[15],
            max_disk_write_bytes: opts[16],
            mem_used_bytes: opts[17],
            mem_node_peak_bytes: opts[18],
        },
        submit_line: submit_line?,
        work_dir: work_dir?,
        imported_at: imported_at?,
    })
}

/// Appends the steps part of a job value (steps in step-id order).
fn encode_steps(steps: &[&StepRecord], out: &mut Vec<u8>) {
    put(out, steps.len() as u64);
    let mut strings: Vec<&str> = Vec::new();
    let mut prev_start = 0;
    for s in steps {
        put(out, s.step.0.into());
        for text in [&s.name, &s.state, &s.node_list, &s.usage.max_rss_node, &s.submit_line] {
            put_shared(out, text, &mut strings);
        }
        let opts = step_options(s);
        put(out, opts.iter().enumerate().fold(0, |bits, (i, v)| bits | (u64::from(v.is_some()) << i)));
        let start = s.start_at.unwrap_or(prev_start);
        for (i, v) in opts.iter().enumerate() {
            if let Some(v) = *v {
                put(
                    out,
                    if i == 0 {
                        delta(v, prev_start)
                    } else if i == 1 {
                        delta(v, start)
                    } else {
                        v
                    },
                );
            }
        }
        prev_start = start;
        for v in [s.exit_code.into(), s.exit_signal.into(), s.elapsed_secs, s.node_count.into(), s.task_count.into()] {
            put(out, v);
        }
        for v in [s.alloc_cpus.into(), s.usage.total_cpu_ms, s.usage.user_cpu_ms, s.usage.system_cpu_ms] {
            put(out, v);
        }
        put_tres(out, &s.tres_usage_in_tot, None, &mut strings);
        put_tres(out, &s.tres_usage_in_max, Some(&s.tres_usage_in_tot), &mut strings);
    }
}

fn step_options(s: &StepRecord) -> [Option<u64>; 8] {
    [
        s.start_at,
        s.end_at,
        s.usage.max_rss_bytes,
        s.usage.max_rss_task.map(u64::from),
        s.usage.ave_rss_bytes,
        s.usage.max_vmsize_bytes,
        s.usage.max_disk_read_bytes,
        s.usage.max_disk_write_bytes,
    ]
}

/// The steps of job `job` from the steps part of its value.
fn decode_steps(job: JobId, bytes: &[u8]) -> Result<Vec<StepRecord>, RecordError> {
    let mut r = Reader(bytes);
    let count = r.u64()?;
    // Every step takes more than one byte, which bounds a sane count.
    if count > bytes.len() as u64 {
        return Err(RecordError::Malformed("step count"));
    }
    let mut strings: Vec<&str> = Vec::new();
    let mut steps = Vec::with_capacity(count as usize);
    let mut prev_start = 0;
    for _ in 0..count {
        let step = StepId(small(r.u64()?)?);
        let [name, state, node_list, max_rss_node, submit_line] = [(); 5].map(|_| r.shared(&mut strings));
        let present = r.u64()?;
        let mut opts = [None; 8];
        for (i, slot) in opts.iter_mut().enumerate() {
            if present & (1 << i) != 0 {
                *slot = Some(r.u64()?);
            }
        }
        let start_at = opts[0].map(|d| undelta(d, prev_start));
        let start = start_at.unwrap_or(prev_start);
        let end_at = opts[1].map(|d| undelta(d, start));
        prev_start = start;
        let [exit_code, exit_signal, elapsed_secs, node_count, task_count] = [(); 5].map(|_| r.u64());
        let [alloc_cpus, total_cpu_ms, user_cpu_ms, system_cpu_ms] = [(); 4].map(|_| r.u64());
        let tres_usage_in_tot = r.tres(None, &mut strings)?;
        let tres_usage_in_max = r.tres(Some(&tres_usage_in_tot), &mut strings)?;
        let mut record = StepRecord {
            job,
            step,
            name: name?,
            state: state?,
            exit_code: small(exit_code?)?,
            exit_signal: small(exit_signal?)?,
            start_at,
            end_at,
            elapsed_secs: elapsed_secs?,
            node_list: node_list?,
            node_count: small(node_count?)?,
            task_count: small(task_count?)?,
            alloc_cpus: small(alloc_cpus?)?,
            usage: Usage {
                total_cpu_ms: total_cpu_ms?,
                user_cpu_ms: user_cpu_ms?,
                system_cpu_ms: system_cpu_ms?,
                max_rss_bytes: opts[2],
                max_rss_node: max_rss_node?,
                max_rss_task: opts[3].map(small).transpose()?,
                ave_rss_bytes: opts[4],
                max_vmsize_bytes: opts[5],
                max_disk_read_bytes: opts[6],
                max_disk_write_bytes: opts[7],
                ..Usage::default()
            },
            tres_usage_in_tot,
            tres_usage_in_max,
            submit_line: submit_line?,
        };
        record.derive_memory();
        steps.push(record);
    }
    r.finish()?;
    Ok(steps)
}

fn small(v: u64) -> Result<u32, RecordError> {
    u32::try_from(v).map_err(|_| RecordError::Malformed("number out of range"))
}

/// `v` relative to `base`, zigzag-coded so both directions stay small; exact for any values.
fn delta(v: u64, base: u64) -> u64 {
    let d = v.wrapping_sub(base) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn undelta(z: u64, base: u64) -> u64 {
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    base.wrapping_add(d as u64)
}

fn put(out: &mut Vec<u8>, v: u64) {
    super::columns::put_varint(out, v);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A string of a steps value: 0 is empty, `2n + 1` is the n-th string written before in this
/// value, `2len` is a new string of `len` bytes that follows (and is numbered next).
fn put_shared<'s>(out: &mut Vec<u8>, s: &'s str, strings: &mut Vec<&'s str>) {
    if s.is_empty() {
        put(out, 0);
    } else if let Some(i) = strings.iter().position(|known| *known == s) {
        put(out, 2 * i as u64 + 1);
    } else {
        put(out, 2 * s.len() as u64);
        out.extend_from_slice(s.as_bytes());
        strings.push(s);
    }
}

/// A TRES list: 0 when it equals `same_as`, else its length + 1 and per entry the name (1 + its
/// position in `COMMON_TRES`, or 0 and the name as a shared string) and the value.
fn put_tres<'s>(out: &mut Vec<u8>, tres: &'s Tres, same_as: Option<&Tres>, strings: &mut Vec<&'s str>) {
    if same_as == Some(tres) {
        put(out, 0);
        return;
    }
    put(out, tres.0.len() as u64 + 1);
    for (name, value) in &tres.0 {
        match common_tres_index(name) {
            Some(i) => put(out, i as u64 + 1),
            None => {
                put(out, 0);
                put_shared(out, name, strings);
            }
        }
        put(out, *value);
    }
}

/// A cursor over a value being decoded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u64(&mut self) -> Result<u64, RecordError> {
        super::columns::get_varint(&mut self.0).map_err(|_| RecordError::Malformed("truncated number"))
    }

    fn bytes(&mut self, len: u64) -> Result<&'a [u8], RecordError> {
        let len = usize::try_from(len).map_err(|_| RecordError::Malformed("length"))?;
        if len > self.0.len() {
            return Err(RecordError::Malformed("truncated text"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn str_of(&mut self, len: u64) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.bytes(len)?).map_err(|_| RecordError::Malformed("text is not UTF-8"))
    }

    fn string_of(&mut self, len: u64) -> Result<String, RecordError> {
        Ok(self.str_of(len)?.to_string())
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = self.u64()?;
        self.string_of(len)
    }

    fn shared_str(&mut self, strings: &mut Vec<&'a str>) -> Result<&'a str, RecordError> {
        match self.u64()? {
            0 => Ok(""),
            n if n % 2 == 1 => strings
                .get(usize::try_from(n / 2).unwrap_or(usize::MAX))
                .copied()
                .ok_or(RecordError::Malformed("string")),
            n => {
                let s = self.str_of(n / 2)?;
                strings.push(s);
                Ok(s)
            }
        }
    }

    fn shared(&mut self, strings: &mut Vec<&'a str>) -> Result<String, RecordError> {
        Ok(self.shared_str(strings)?.to_string())
    }

    fn tres(&mut self, same_as: Option<&Tres>, strings: &mut Vec<&'a str>) -> Result<Tres, RecordError> {
        let count = match self.u64()? {
            0 => return same_as.cloned().ok_or(RecordError::Malformed("TRES list")),
            n => n - 1,
        };
        if count > self.0.len() as u64 {
            return Err(RecordError::Malformed("TRES count"));
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = match self.u64()? {
                0 => Cow::Owned(self.shared_str(strings)?.to_string()),
                n => Cow::Borrowed(
                    *COMMON_TRES
                        .get(usize::try_from(n - 1).unwrap_or(usize::MAX))
                        .ok_or(RecordError::Malformed("TRES"))?,
                ),
            };
            out.push((name, self.u64()?));
        }
        Ok(Tres(out))
    }

    fn finish(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
#[path = "job_codec_tests.rs"]
mod tests;
