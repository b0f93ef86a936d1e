//! Every redb table, declared once, with its key layout.
//!
//! Keys are redb tuples of fixed-width integers (and strings where a name is the key), so range
//! scans follow numeric order: "all of job J" is `(J, ..)`, "all of period P" is `(P, ..)`.
//! Values that are records are postcard-encoded with a leading format byte (see `records.rs`);
//! samples are encoded blocks (see `codec.rs`). Times are UTC unix seconds.

use redb::TableDefinition;

/// Small named numbers: `schema_version`, `import_watermark`, counters.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Job id → job record. Schema 1–2 only: schema 3 keeps jobs in `JOB_BLOCKS`.
pub const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");

/// Job id / 16 → the jobs of those ids with their steps (see `job_blocks`; each job a
/// `job_codec` value). Added in schema 3.
pub const JOB_BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("job_blocks");

/// (job id, step id) → step record. Schema 1–2 only: schema 3 keeps a job's steps in its value.
pub const STEPS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("steps");

/// (end time or `u64::MAX` while running, job id) → (). Schema 1–2 only.
pub const JOBS_BY_END: TableDefinition<(u64, u64), ()> = TableDefinition::new("jobs_by_end");

/// (user, job id) → (). Schema 2 only.
pub const JOBS_BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("jobs_by_user");

/// (end time / `END_BUCKET_SECS`, job id / `ID_BUCKET`) → sorted (end time or `u64::MAX` while
/// running, job id) pairs: jobs that ran in a window (see `postings`). Added in schema 3.
pub const JOBS_BY_END_BUCKETS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("jobs_by_end_buckets");

/// (user, job id / `ID_BUCKET`) → sorted job ids: a user's jobs. Added in schema 3.
pub const JOBS_BY_USER_BUCKETS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("jobs_by_user_buckets");

/// Node name → node number (interned, so sample keys stay small).
pub const NODES: TableDefinition<&str, u32> = TableDefinition::new("nodes");

/// Node number → node name.
pub const NODE_NAMES: TableDefinition<u32, &str> = TableDefinition::new("node_names");

/// (job, step, node, hour start) → encoded block of step samples within that hour.
pub const SAMPLE_BLOCKS: TableDefinition<(u64, u32, u32, u64), &[u8]> = TableDefinition::new("sample_blocks");

/// (hour start, job, step, node) → (): which blocks hold samples of an hour. Schema 1–3 only
/// (never read; dropped by schema 4).
pub const SAMPLE_HOURS: TableDefinition<(u64, u64, u32, u32), ()> = TableDefinition::new("sample_blocks_by_time");

/// (job, step, node, hour start) → encoded block of GPU readings within that hour.
pub const GPU_BLOCKS: TableDefinition<(u64, u32, u32, u64), &[u8]> = TableDefinition::new("gpu_blocks");

/// (job, step, application name) → (): programs seen in a step, on any node.
pub const APP_USAGE: TableDefinition<(u64, u32, &str), ()> = TableDefinition::new("app_usage");

/// (job, step, node) → CPUs in the step's cpuset on that node. Schema 1–3 only (never written
/// or read; dropped by schema 4).
pub const STEP_CPUS: TableDefinition<(u64, u32, u32), u32> = TableDefinition::new("step_cpus");

/// Period start → period record.
pub const PERIODS: TableDefinition<u64, &[u8]> = TableDefinition::new("periods");

/// (period start, user) → that user's findings in the period.
pub const FINDINGS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("findings");

/// Period start → the period's sampling coverage as JSON text (`analysis::coverage`; the
/// analysis owns its content). Created by the first write, so it needs no migration; a period
/// refreshed before it existed has no entry until its next refresh.
pub const PERIOD_COVERAGE: TableDefinition<u64, &str> = TableDefinition::new("period_coverage");

/// (period start, user) → outbox entry (queued / sent / failed) of that user's report mail.
pub const OUTBOX: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("outbox");

/// (period start, user) → next attempt time, for `queued` outbox entries only: the mailer's
/// once-a-second look costs the queue's length, not the outbox's whole history. Derived from
/// `outbox` (written in the same transactions) and rebuilt from it when the mailer starts.
pub const OUTBOX_QUEUED: TableDefinition<(u64, &str), u64> = TableDefinition::new("outbox_queued");

/// (job, step, node) → who writes that series: 1 the service's scrapers, 2 the job's owner (see
/// `ingest.rs`: the service's series win). Created by the first write that needs it and read only
/// in write transactions, so it needs no migration; a series stored before it existed has no
/// entry and is treated as nobody's (the first report claims it).
pub const SERIES_SOURCE: TableDefinition<(u64, u32, u32), u8> = TableDefinition::new("series_source");

/// (sender, report id) → time received: reports already stored, so a resend is not stored twice.
pub const REPORTS_SEEN: TableDefinition<(&str, u64), u64> = TableDefinition::new("reports_seen");

/// User → that user's own mail settings (`mail_prefs.rs`: opted out, quiet weekdays), written
/// from the site. Created by the first write, so it needs no migration.
pub const MAIL_PREFS: TableDefinition<&str, &[u8]> = TableDefinition::new("mail_prefs");

/// (job, step, node) → summary of a step series whose raw blocks aged out (`downsample.rs`: at
/// most 200 points of min / mean / max). Written by the retention pass (`retention.rs`) in the
/// transaction that deletes the raw blocks; created by the first write, so it needs no migration.
pub const SAMPLE_SUMMARIES: TableDefinition<(u64, u32, u32), &[u8]> = TableDefinition::new("sample_summaries");

/// (job, step, node) → summary of a GPU series whose raw blocks aged out, as `sample_summaries`.
pub const GPU_SUMMARIES: TableDefinition<(u64, u32, u32), &[u8]> = TableDefinition::new("gpu_summaries");

/// (last sample time, job, step, node, kind 0 samples / 1 GPU) → (): summaries by age, so the
/// retention pass deletes those past `[store] summary_retention` without reading the others.
pub const SUMMARY_AGE: TableDefinition<(u64, u64, u32, u32, u8), ()> = TableDefinition::new("summary_age");

/// `meta` key of the schema version.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// `meta` key of the number of jobs stored (schema 3 on: `JOB_BLOCKS` has one entry per block).
pub const JOB_COUNT_KEY: &str = "job_count";

/// `meta` key of the accounting import watermark (end of the last committed window).
pub const IMPORT_WATERMARK_KEY: &str = "import_watermark";

/// Length of a sample block, seconds (one hour: small enough to rewrite on every report).
pub const BLOCK_SECS: u64 = 3_600;

/// The block a time falls into.
pub fn block_start(at: u64) -> u64 {
    at - at % BLOCK_SECS
}
