//! The server's client API (`GET /client/v1/jobs/{id}`): the JSON it answers and the client
//! that asks it (`turingwatch job`).
//!
//! The answer is one job's stored data — accounting record, steps, step samples, GPU readings,
//! applications — so the CLI runs the same analysis and rendering on it as on a local store
//! (`docs/design.md`, "Client API"). The request is authenticated with a MUNGE credential whose
//! payload binds the method and path ([`crate::munge::client_payload`]): the server takes the
//! caller's uid from it and nothing else. Blocking: the CLI is one request.

use crate::analysis::summary::JobInput;
use crate::job::{JobId, JobRecord, StepId, StepRecord};
use crate::munge::{client_body_payload, client_payload, encode_payload, CREDENTIAL_HEADER};
use crate::sample::{GpuReading, StepSample};
use crate::store::SeriesKey;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::time::Duration;

/// The path of a job's data (the id follows).
pub const JOBS_PATH: &str = "/client/v1/jobs/";

/// The version of [`JobAnswer`] this build writes and reads.
pub const ANSWER_VERSION: u32 = 1;

/// Largest answer the client reads (a job of 8 nodes × 1 000 samples is about 2 MiB).
pub const MAX_ANSWER_BYTES: u64 = 256 << 20;

/// The path for job `id`.
pub fn job_path(id: JobId) -> String {
    format!("{JOBS_PATH}{}", id.0)
}

/// A job id as the API takes it: decimal digits only, at most 20, no leading sign or zero
/// padding tricks beyond what `u64` parses; anything else is not an id.
pub fn parse_job_id(text: &str) -> Option<JobId> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(JobId)
}

/// One series of samples (or GPU readings) of the job: which step on which node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series<T> {
    pub step: StepId,
    pub node: String,
    pub rows: Vec<T>,
}

/// An application seen in a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub step: StepId,
    pub app: String,
}

/// The answer of `GET /client/v1/jobs/{id}` (version 1). The record and steps are in their
/// flat JSON form (the usage figures inline, as `accounting --dry-run --json` prints them);
/// [`parse_answer`] reads it back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobAnswer {
    pub version: u32,
    pub job: JobRecord,
    /// The job's memory as SLURM's tools count it and its largest use on one node (derived
    /// figures the record's JSON leaves out).
    pub mem_used_bytes: Option<u64>,
    pub mem_node_peak_bytes: Option<u64>,
    pub steps: Vec<StepRecord>,
    pub samples: Vec<Series<StepSample>>,
    pub gpus: Vec<Series<GpuReading>>,
    pub apps: Vec<App>,
}

impl JobAnswer {
    /// The answer for a job's stored data.
    pub fn from_input(input: &JobInput) -> JobAnswer {
        let series =
            |(k, rows): (&SeriesKey, &Vec<_>)| Series { step: k.step, node: k.node.clone(), rows: rows.clone() };
        JobAnswer {
            version: ANSWER_VERSION,
            job: input.job.clone(),
            mem_used_bytes: input.job.usage.mem_used_bytes,
            mem_node_peak_bytes: input.job.usage.mem_node_peak_bytes,
            steps: input.steps.clone(),
            samples: input.samples.iter().map(series).collect(),
            gpus: input
                .gpu
                .iter()
                .map(|(k, rows)| Series { step: k.step, node: k.node.clone(), rows: rows.clone() })
                .collect(),
            apps: input.apps.iter().map(|(step, app)| App { step: *step, app: app.clone() }).collect(),
        }
    }

    /// The job's data as the analysis takes it (the derived memory figures restored).
    pub fn into_input(self) -> JobInput {
        let mut job = self.job;
        job.usage.mem_used_bytes = self.mem_used_bytes;
        job.usage.mem_node_peak_bytes = self.mem_node_peak_bytes;
        let id = job.id;
        let mut steps = self.steps;
        for step in &mut steps {
            step.derive_memory();
        }
        let key = |step: StepId, node: String| SeriesKey { job: id, step, node };
        JobInput {
            job,
            steps,
            samples: self.samples.into_iter().map(|s| (key(s.step, s.node), s.rows)).collect(),
            gpu: self.gpus.into_iter().map(|s| (key(s.step, s.node), s.rows)).collect(),
            apps: self.apps.into_iter().map(|a| (a.step, a.app)).collect(),
        }
    }
}

/// Why the server did not give the job's data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("server URL {0:?} is not http://host:port[/path]")]
    BadUrl(String),
    #[error("cannot make a MUNGE credential: {0}")]
    Credential(#[from] crate::munge::MungeError),
    #[error("server {addr} unreachable: {source}")]
    Unreachable { addr: String, source: std::io::Error },
    #[error("talking to server {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("server {addr} answered something that is not HTTP")]
    NotHttp { addr: String },
    #[error("server refused: {status} {body}")]
    Refused { status: u16, body: String },
    #[error("server's answer is not a version-{ANSWER_VERSION} job: {0}")]
    BadAnswer(String),
}

/// Asks the server at `url` for job `id`, with a credential made by `munge_command`.
/// `Ok(None)`: the server does not know the job (404).
pub fn fetch_job(
    url: &str,
    id: JobId,
    munge_command: &str,
    timeout: Duration,
) -> Result<Option<JobAnswer>, ClientError> {
    let (status, body) = call(url, "GET", &job_path(id), None, munge_command, timeout)?;
    match status {
        200 => parse_answer(&body).map(Some),
        404 => Ok(None),
        _ => Err(refused(status, &body)),
    }
}

/// The admin API's paths (`turingwatch status`, `analyze`, `mail` while the server runs).
pub const ADMIN_STATUS_PATH: &str = "/client/v1/admin/status";
pub const ADMIN_ANALYZE_PATH: &str = "/client/v1/admin/analyze";
pub const ADMIN_MAIL_PATH: &str = "/client/v1/admin/mail";

/// Largest request body the admin API takes (a few options).
pub const MAX_ADMIN_BODY: usize = 16 << 10;

/// Sends an admin command (GET without a body, POST with a JSON one) and reads its JSON answer.
pub fn admin_call<T: serde::de::DeserializeOwned>(
    url: &str,
    path: &str,
    body: Option<&[u8]>,
    munge_command: &str,
    timeout: Duration,
) -> Result<T, ClientError> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let (status, answer) = call(url, method, path, body, munge_command, timeout)?;
    if status != 200 {
        return Err(refused(status, &answer));
    }
    serde_json::from_slice(&answer).map_err(|e| ClientError::BadAnswer(e.to_string()))
}

fn refused(status: u16, body: &[u8]) -> ClientError {
    ClientError::Refused { status, body: String::from_utf8_lossy(body).trim().chars().take(300).collect() }
}

/// One request to the server with a credential bound to its method, path and body.
fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    munge_command: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ClientError> {
    let (addr, prefix) = crate::wire::send::parse_url(url).map_err(|_| ClientError::BadUrl(url.to_string()))?;
    let payload = match body {
        Some(body) => client_body_payload(method, path, body),
        None => client_payload(method, path),
    };
    let credential = encode_payload(munge_command, &payload)?;
    let mut stream = crate::wire::send::connect(&addr, timeout)
        .map_err(|source| ClientError::Unreachable { addr: addr.clone(), source })?;
    let io = |source| ClientError::Io { addr: addr.clone(), source };
    let length =
        body.map_or(String::new(), |b| format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    let head = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{length}{CREDENTIAL_HEADER}: {credential}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).map_err(io)?;
    if let Some(body) = body {
        stream.write_all(body).map_err(io)?;
    }
    let mut response = Vec::new();
    stream.take(MAX_ANSWER_BYTES).read_to_end(&mut response).map_err(io)?;
    let (status, body) = split_response(&response).ok_or(ClientError::NotHttp { addr: addr.clone() })?;
    Ok((status, body.to_vec()))
}

/// The [`Usage`](crate::job::Usage) figures a record's flat JSON has inline.
const USAGE_FIELDS: [&str; 10] = [
    "total_cpu_ms",
    "user_cpu_ms",
    "system_cpu_ms",
    "max_rss_bytes",
    "max_rss_node",
    "max_rss_task",
    "ave_rss_bytes",
    "max_vmsize_bytes",
    "max_disk_read_bytes",
    "max_disk_write_bytes",
];

/// Reads a record from its flat JSON (the usage figures moved back under `usage`).
fn from_flat<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ClientError> {
    let serde_json::Value::Object(mut fields) = value else {
        return Err(ClientError::BadAnswer("a record is not an object".into()));
    };
    let mut usage = serde_json::Map::new();
    for name in USAGE_FIELDS {
        if let Some(v) = fields.remove(name) {
            usage.insert(name.to_string(), v);
        }
    }
    fields.insert("usage".into(), serde_json::Value::Object(usage));
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| ClientError::BadAnswer(e.to_string()))
}

/// Reads a version-1 answer, refusing other versions.
pub fn parse_answer(body: &[u8]) -> Result<JobAnswer, ClientError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    #[derive(Deserialize)]
    struct Raw {
        version: u32,
        job: serde_json::Value,
        mem_used_bytes: Option<u64>,
        mem_node_peak_bytes: Option<u64>,
        steps: Vec<serde_json::Value>,
        samples: Vec<Series<StepSample>>,
        gpus: Vec<Series<GpuReading>>,
        apps: Vec<App>,
    }
    let bad = |e: serde_json::Error| ClientError::BadAnswer(e.to_string());
    let version: Version = serde_json::from_slice(body).map_err(bad)?;
    if version.version != ANSWER_VERSION {
        return Err(ClientError::BadAnswer(format!("version {}", version.version)));
    }
    let raw: Raw = serde_json::from_slice(body).map_err(bad)?;
    Ok(JobAnswer {
        version: raw.version,
        job: from_flat(raw.job)?,
        mem_used_bytes: raw.mem_used_bytes,
        mem_node_peak_bytes: raw.mem_node_peak_bytes,
        steps: raw.steps.into_iter().map(from_flat).collect::<Result<_, _>>()?,
        samples: raw.samples,
        gpus: raw.gpus,
        apps: raw.apps,
    })
}

/// The status and body of an HTTP/1.x response (the server sends a sized body; a chunked one
/// is decoded).
fn split_response(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let end = memchr::memmem::find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        return None;
    }
    Some((status, &bytes[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::tests::alice_inputs;

    #[test]
    fn an_answer_round_trips_to_the_same_input() {
        let mut input = alice_inputs().remove(0);
        input.job.usage.mem_used_bytes = Some(1 << 30);
        input.job.usage.mem_node_peak_bytes = Some(1 << 29);
        let key = SeriesKey { job: input.job.id, step: StepId(0), node: "n1".into() };
        input.samples.insert(key.clone(), vec![StepSample { at: 5, rss_kib: 7, ..StepSample::default() }]);
        input.gpu.insert(key, vec![GpuReading { at: 5, ..GpuReading::default() }]);
        input.apps.push((StepId(0), "python3".into()));
        let mut step = StepRecord {
            job: input.job.id,
            step: StepId(0),
            name: "python3".into(),
            state: "COMPLETED".into(),
            exit_code: 0,
            exit_signal: 0,
            start_at: Some(1),
            end_at: Some(9),
            elapsed_secs: 8,
            node_list: "n1".into(),
            node_count: 1,
            task_count: 2,
            alloc_cpus: 2,
            usage: crate::job::Usage { total_cpu_ms: 3, max_rss_bytes: Some(1 << 20), ..Default::default() },
            tres_usage_in_tot: crate::job::Tres(vec![("mem".into(), 3 << 20)]),
            tres_usage_in_max: crate::job::Tres::default(),
            submit_line: "srun python3".into(),
        };
        step.derive_memory();
        assert!(step.usage.mem_used_bytes.is_some());
        input.steps.push(step);
        let json = serde_json::to_vec(&JobAnswer::from_input(&input)).unwrap();
        let back = parse_answer(&json).unwrap().into_input();
        assert_eq!(back.job, input.job);
        assert_eq!(back.steps, input.steps);
        assert_eq!((back.samples, back.gpu, back.apps), (input.samples, input.gpu, input.apps));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["version"], 1);
    }

    #[test]
    fn other_versions_and_junk_are_refused() {
        assert!(matches!(parse_answer(br#"{"version":2}"#), Err(ClientError::BadAnswer(_))));
        assert!(matches!(parse_answer(b"not json"), Err(ClientError::BadAnswer(_))));
        assert!(matches!(parse_answer(br#"{"version":1}"#), Err(ClientError::BadAnswer(_))));
    }

    #[test]
    fn job_ids_are_digits_only() {
        assert_eq!(parse_job_id("42"), Some(JobId(42)));
        for bad in ["", "-1", "+1", "1_2", "4 2", "18446744073709551616", "%34%32", "123456789012345678901"] {
            assert_eq!(parse_job_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn responses_split_and_chunked_is_refused() {
        assert_eq!(split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), Some((200, &b"{}"[..])));
        assert_eq!(split_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}"), None);
        assert_eq!(split_response(b"SSH-2.0"), None);
    }

    #[test]
    fn an_unreachable_server_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        // `true` stands in for munge: it prints nothing, so the credential is empty.
        let err = fetch_job(&format!("http://127.0.0.1:{port}"), JobId(1), "true", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    }
}
