//! Asking SLURM's accounting (`sacct`) for jobs: a time window for the importer and the
//! `accounting` tool, or one job for `turingwatch job`.
//!
//! Decisions (verified on the 22.05 dev cluster):
//! - `-P --noheader --noconvert --delimiter=0x1f`, JobName last: see `sacct_parse`.
//! - No `--duplicates`: a requeued job keeps its JobIDRaw, and we want only its latest record,
//!   which is what sacct shows without `-D`; the store is keyed by JobIDRaw.
//! - No `--state` filter: with `-s`, sacct changes what `-S/-E` select. Without it, `-S/-E`
//!   select jobs *active* in the window (running at some time in it, or ended in it), which is
//!   what an incremental import needs: a job seen RUNNING is selected again once it ends.
//!   PENDING job lines are dropped by the parser.
//! - Times are handed to sacct and read back in the local time zone of this process, which the
//!   child inherits, so both directions agree.

use crate::job::{JobRecord, StepRecord};
use crate::slurm::delimited::{canonicalize, Delimiter};
use crate::slurm::sacct_parse::{parse_sacct, records_match_ids, SacctBatch, DELIMITER, FIELDS};
use crate::slurm::{SlurmError, SlurmRunner};

/// Why sacct gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SacctError {
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("{0:?} is not a job id (expected forms: 123, 123_4, 123+1)")]
    BadJobId(String),
    #[error("time {0} cannot be shown in the local time zone")]
    BadTime(u64),
}

impl SacctError {
    /// Whether retrying later may help (slurmdbd down, timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SacctError::Slurm(e) if e.is_unreachable())
    }
}

/// Which jobs to ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// Start, unix seconds.
    pub from: u64,
    /// End, unix seconds.
    pub to: u64,
    /// Only this user's jobs (else `--allusers`).
    pub user: Option<String>,
}

/// `sacct` as SLURM's local time (`YYYY-MM-DDTHH:MM:SS`).
pub fn sacct_time(unix: u64, tz: &jiff::tz::TimeZone) -> Result<String, SacctError> {
    let ts = jiff::Timestamp::from_second(i64::try_from(unix).map_err(|_| SacctError::BadTime(unix))?)
        .map_err(|_| SacctError::BadTime(unix))?;
    Ok(ts.to_zoned(tz.clone()).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string())
}

fn common_args(runner: &SlurmRunner, delimiter: &Delimiter) -> Vec<String> {
    let mut args = vec![
        "--noheader".to_string(),
        "--parsable2".to_string(),
        format!("--delimiter={}", delimiter.as_str()),
        "--noconvert".to_string(),
        format!("--format={}", FIELDS.join(",")),
    ];
    if let Some(cluster) = runner.cluster() {
        args.push(format!("--clusters={cluster}"));
    }
    args
}

/// The arguments for a window query with absolute start/end given as sacct time strings.
pub fn window_args(
    runner: &SlurmRunner,
    delimiter: &Delimiter,
    start: &str,
    end: &str,
    user: Option<&str>,
) -> Vec<String> {
    let mut args = common_args(runner, delimiter);
    args.push(format!("--starttime={start}"));
    args.push(format!("--endtime={end}"));
    match user {
        Some(user) => args.push(format!("--user={user}")),
        None => args.push("--allusers".to_string()),
    }
    args
}

/// The output of sacct for jobs active in `window` (all states; PENDING lines are dropped by
/// the parser), as text the parser reads unambiguously. The importer parses it part by part
/// while it stores, see `accounting::import_text`.
///
/// Fast path: the fields 0x1f-separated, checked against the same query's list of job and step
/// ids (`records_match_ids`; JobIDRaw holds no user text). Only when they differ — some job's
/// text holds line breaks or separators shaped like records, or accounting changed between the
/// two calls — is the window read again with a random delimiter and cut by `delimited` (about
/// twice the cost, and safe whatever the jobs hold).
pub async fn fetch_window_text(
    runner: &SlurmRunner,
    window: &Window,
    tz: &jiff::tz::TimeZone,
) -> Result<String, SacctError> {
    let (from, to) = (sacct_time(window.from, tz)?, sacct_time(window.to, tz)?);
    let plain = Delimiter::fixed(&DELIMITER.to_string());
    let args = window_args(runner, &plain, &from, &to, window.user.as_deref());
    let text = lossy(runner.run_bytes("sacct", &args).await?);
    let mut id_args: Vec<String> =
        args.iter().filter(|a| !a.starts_with("--format=") && !a.starts_with("--delimiter=")).cloned().collect();
    id_args.push("--format=JobIDRaw".to_string());
    let ids = runner.run("sacct", &id_args).await?;
    if records_match_ids(&text, &ids) {
        return Ok(text);
    }
    tracing::warn!(
        from = window.from,
        to = window.to,
        "sacct's records differ from its list of ids (a job's text holds line breaks or separators, \
         or accounting changed meanwhile); reading the window again with a random delimiter"
    );
    let delimiter = Delimiter::random();
    let args = window_args(runner, &delimiter, &from, &to, window.user.as_deref());
    run_sacct(runner, &args, &delimiter).await
}

/// Text from bytes, invalid UTF-8 replaced by U+FFFD (and logged): never fatal, and a
/// replacement cannot make a separator or a line break.
fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
            tracing::warn!(
                replaced = text.matches('\u{fffd}').count(),
                "sacct output is not all UTF-8; invalid bytes replaced"
            );
            text
        }
    }
}

/// Runs sacct with a per-call random delimiter and returns its records as canonical text (one
/// record per line, 0x1f between fields, no control characters in any field: see `delimited`),
/// so nothing a user typed into a job can shift a field or forge a record.
async fn run_sacct(runner: &SlurmRunner, args: &[String], delimiter: &Delimiter) -> Result<String, SacctError> {
    let raw = runner.run_bytes("sacct", args).await?;
    let canonical = canonicalize(&raw, delimiter, FIELDS.len());
    if canonical.fields_replaced > 0 {
        tracing::warn!(
            fields = canonical.fields_replaced,
            not_utf8 = canonical.fields_not_utf8,
            "sacct fields held control characters or invalid UTF-8; replaced by U+FFFD"
        );
    }
    if let Some(leftover) = &canonical.leftover {
        tracing::warn!(text = %leftover, "sacct output ended in a partial record; ignored");
    }
    Ok(canonical.text)
}

/// Runs sacct with prepared arguments and parses its output.
pub async fn fetch_with_args(
    runner: &SlurmRunner,
    args: &[String],
    delimiter: &Delimiter,
    tz: &jiff::tz::TimeZone,
    imported_at: u64,
) -> Result<SacctBatch, SacctError> {
    let text = run_sacct(runner, args, delimiter).await?;
    let batch = parse_sacct(&text, tz, imported_at);
    for skipped in &batch.skipped {
        tracing::warn!(line = skipped.line, field = skipped.field, reason = %skipped.reason, text = %skipped.text, "sacct line skipped");
    }
    Ok(batch)
}

/// Whether `job` is one of the id forms users type: `123`, `123_4`, `123+1`.
pub fn is_job_id(job: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match job.split_once(['_', '+']) {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(job),
    }
}

/// One job by the id a user typed (`123`, `123_4`, `123+1`), with its steps; `None` when
/// accounting does not know it (or it is still pending). For an array or het job's bare id, the
/// record printed with exactly that id wins, else the one whose JobIDRaw it is.
pub async fn fetch_job(
    runner: &SlurmRunner,
    job: &str,
    tz: &jiff::tz::TimeZone,
) -> Result<Option<(JobRecord, Vec<StepRecord>)>, SacctError> {
    if !is_job_id(job) {
        return Err(SacctError::BadJobId(job.to_string()));
    }
    let delimiter = Delimiter::random();
    let mut args = common_args(runner, &delimiter);
    args.push(format!("--jobs={job}"));
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let batch = fetch_with_args(runner, &args, &delimiter, tz, now).await?;
    Ok(pick_job(batch, job))
}

fn pick_job(batch: SacctBatch, job: &str) -> Option<(JobRecord, Vec<StepRecord>)> {
    let raw: Option<u64> = job.parse().ok();
    let position = batch
        .jobs
        .iter()
        .position(|(j, _)| j.display_id == job)
        .or_else(|| batch.jobs.iter().position(|(j, _)| Some(j.id.0) == raw));
    position.and_then(|i| batch.jobs.into_iter().nth(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use turingwatch_config::{SlurmConfig, Span};

    const WINDOW_FIXTURE: &str = include_str!("../../../tests/fixtures/sacct/window.txt");

    #[test]
    fn job_id_forms() {
        for ok in ["123", "123_4", "123+1"] {
            assert!(is_job_id(ok), "{ok}");
        }
        for bad in ["", "12a", "_4", "123_", "1.batch", "1,2", "-1"] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_id_a_user_typed_picks_the_right_record() {
        let tz = jiff::tz::TimeZone::UTC;
        let pick = |id: &str| pick_job(parse_sacct(WINDOW_FIXTURE, &tz, 0), id).map(|(j, _)| j.display_id);
        assert_eq!(pick("6_1").as_deref(), Some("6_1"));
        assert_eq!(pick("6").as_deref(), Some("6_2")); // raw id 6 is the last array task
        assert_eq!(pick("8+1").as_deref(), Some("8+1"));
        assert_eq!(pick("10").as_deref(), Some("6_1"));
        assert_eq!(pick("999"), None);
    }

    #[test]
    fn window_arguments_and_times() {
        let runner = SlurmRunner::new(&SlurmConfig {
            bin_dir: String::new(),
            command_timeout: Span::secs(5),
            cluster: "dev".into(),
        });
        let tz = jiff::tz::TimeZone::UTC;
        assert_eq!(sacct_time(1_795_644_165, &tz).unwrap(), "2026-11-25T22:02:45");
        let d = Delimiter::random();
        let args = window_args(&runner, &d, "a", "b", None);
        assert!(args.contains(&"--allusers".to_string()) && args.contains(&"--clusters=dev".to_string()));
        assert!(args.contains(&"--starttime=a".to_string()) && args.contains(&"--endtime=b".to_string()));
        assert!(args.iter().any(|a| a.ends_with(",JobName")));
        assert!(window_args(&runner, &d, "a", "b", Some("bob")).contains(&"--user=bob".to_string()));
        assert!(args.contains(&format!("--delimiter={}", d.as_str())));
    }

    /// Through a stand-in `sacct` that records its arguments and prints the window fixture.
    #[actix_rt::test]
    async fn fetch_job_asks_for_the_id_and_picks_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tw-fetch-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("window.txt"), WINDOW_FIXTURE).unwrap();
        let d = dir.display();
        let print = crate::slurm::delimited::shell_print_with_given_delimiter(&format!("{d}/window.txt"));
        let script = format!("#!/bin/sh\necho \"$@\" > {d}/args\n{print}");
        std::fs::write(dir.join("sacct"), script).unwrap();
        std::fs::set_permissions(dir.join("sacct"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let runner = SlurmRunner::new(&SlurmConfig {
            bin_dir: d.to_string(),
            command_timeout: Span::secs(10),
            cluster: String::new(),
        });
        let tz = jiff::tz::TimeZone::UTC;
        let (job, steps) = fetch_job(&runner, "8+1", &tz).await.unwrap().unwrap();
        assert_eq!((job.id.0, job.het_offset, steps.len()), (9, Some(1), 1));
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        assert!(args.contains("--jobs=8+1") && !args.contains("--starttime"), "{args}");
        assert!(fetch_job(&runner, "999", &tz).await.unwrap().is_none());
        assert!(matches!(fetch_job(&runner, "1;rm", &tz).await, Err(SacctError::BadJobId(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
