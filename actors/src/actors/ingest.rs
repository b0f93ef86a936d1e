//! `POST /ingest/v1/report`: scraper reports, authenticated by MUNGE, stored exactly once.
//!
//! Order of checks, each with its own clear HTTP error and a log line, none of which can reach
//! the store or crash the server. Before the body is read (`wire::admission`): a credential
//! header of MUNGE's shape (401), the peer's rate (429), a free slot among the requests in
//! flight (503). Then the body, within a deadline (408) and a size (413); the
//! credential itself through `unmunge` — forged, expired, or replayed (401), the credential
//! bound to this body's digest (401), its age (401), the report's format (400). Then
//! authorisation: a service user may report any job; any other uid only the steps of jobs it
//! owns, where ownership comes from trusted sources (the store's accounting record, else SLURM),
//! never from the report, each distinct job looked up once (at most `MAX_JOBS_PER_BATCH`), owners
//! and unknown jobs cached (`OwnerCache`). Foreign steps are dropped and counted; a batch with
//! nothing left is refused (403). Refusals are counted in memory (`/metrics`), never in the store:
//! a flood of refused requests costs no commit. Then plausibility, in the store's transaction
//! (`Store::store_checked_batch`, `sample::plausible`): each sample must fit its job's run,
//! CPUs and node, refusals are counted by reason (`samples_refused_total`) and never stored, and
//! a series the service's scrapers report cannot be touched by an owner's report. The answer 200
//! is sent only after the commit.

use super::shared::Shared;
use crate::job::JobId;
use crate::munge::{decode_credential, payload_for, MungeError, CREDENTIAL_HEADER};
use crate::sample::plausible::Limits;
use crate::slurm::SlurmRunner;
use crate::store::{BatchContent, Checks, Stored};
use crate::wire::admission::{credential_shape_ok, OwnerCache, RateLimiter, MAX_JOBS_PER_BATCH};
use crate::wire::format::{decode_batch, Batch};
use crate::wire::INGEST_PATH;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests a second one peer may make, and its burst (a node sends one batch per interval; a
/// scraper draining its spool after an outage sends them back to back).
const PEER_RATE: f64 = 50.0;
const PEER_BURST: f64 = 200.0;
/// Batches being read, checked or stored at once; more are answered 503 (the scraper keeps them).
const MAX_IN_FLIGHT: usize = 64;
/// Longest time a body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(20);
/// How long "no such job" is believed (a job that just started shows up soon after).
const NEGATIVE_OWNER_TTL: Duration = Duration::from_secs(60);

/// State shared by every worker: the rate of each peer, the slots in flight, job owners.
pub struct IngestState {
    limiter: Mutex<RateLimiter>,
    slots: tokio::sync::Semaphore,
    owners: Mutex<OwnerCache>,
}

impl Default for IngestState {
    fn default() -> Self {
        IngestState {
            limiter: Mutex::new(RateLimiter::new(PEER_RATE, PEER_BURST, 100_000)),
            slots: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            owners: Mutex::new(OwnerCache::new(200_000, NEGATIVE_OWNER_TTL)),
        }
    }
}

/// Adds the ingest endpoint to the HTTP app, with `state` shared by every worker.
pub fn configure(state: web::Data<IngestState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state).route(INGEST_PATH, web::post().to(ingest_report));
    }
}

async fn refuse(shared: &Shared, status: actix_web::http::StatusCode, reason: &str, detail: &str) -> HttpResponse {
    tracing::warn!(status = status.as_u16(), reason, detail, "report refused");
    let metric = if detail.contains("Replayed") { "replayed" } else { reason };
    shared.metrics.reject(metric);
    HttpResponse::build(status).content_type("text/plain").body(format!("{reason}: {detail}\n"))
}

async fn ingest_report(
    request: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
    state: web::Data<IngestState>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let config = &shared.config.ingest;
    let Some(credential) = request.headers().get(CREDENTIAL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
    else {
        return refuse(&shared, StatusCode::UNAUTHORIZED, "unauthenticated", "no MUNGE credential header").await;
    };
    if !credential_shape_ok(&credential) {
        return refuse(&shared, StatusCode::UNAUTHORIZED, "unauthenticated", "not a MUNGE credential").await;
    }
    if let Some(peer) = request.peer_addr().map(|a| a.ip()) {
        let allowed = state.limiter.lock().map(|mut l| l.allow(peer, Instant::now())).unwrap_or(true);
        if !allowed {
            return refuse(&shared, StatusCode::TOO_MANY_REQUESTS, "rate_limited", &format!("{peer} sends too fast"))
                .await;
        }
    }
    let Ok(_slot) = state.slots.try_acquire() else {
        return refuse(&shared, StatusCode::SERVICE_UNAVAILABLE, "busy", "too many batches in flight; resend later")
            .await;
    };
    let max = config.max_report_bytes;
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let Ok(chunk) = chunk else {
                return Err((StatusCode::BAD_REQUEST, "malformed", "body could not be read".to_string()));
            };
            if (body.len() + chunk.len()) as u64 > max {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "oversized", format!("more than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = match tokio::time::timeout(BODY_DEADLINE, read).await {
        Ok(Ok(body)) => body,
        Ok(Err((status, reason, detail))) => return refuse(&shared, status, reason, &detail).await,
        Err(_) => {
            let detail = format!("body not received within {} s", BODY_DEADLINE.as_secs());
            return refuse(&shared, StatusCode::REQUEST_TIMEOUT, "slow_body", &detail).await;
        }
    };
    let decoded = match decode_credential(&config.unmunge_command, &credential, Duration::from_secs(10)).await {
        Ok(decoded) => decoded,
        Err(MungeError::Refused { status }) => {
            return refuse(&shared, StatusCode::UNAUTHORIZED, "unauthenticated", &format!("MUNGE: {status}")).await
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot check MUNGE credentials");
            return HttpResponse::ServiceUnavailable().body("cannot check credentials now\n");
        }
    };
    if decoded.payload != payload_for(&body) {
        return refuse(&shared, StatusCode::UNAUTHORIZED, "unauthenticated", "credential was made for another body")
            .await;
    }
    let age = crate::clock::unix_now().saturating_sub(decoded.encoded_at);
    if age > config.max_credential_age.get().as_secs() {
        return refuse(&shared, StatusCode::UNAUTHORIZED, "unauthenticated", &format!("credential is {age} s old"))
            .await;
    }
    let report = match decode_batch(&body) {
        Ok(report) => report,
        Err(err) => return refuse(&shared, StatusCode::BAD_REQUEST, "malformed", &err.to_string()).await,
    };
    let service =
        crate::service_user::ServiceUsers::of_this_process(&config.service_users).trusts(&decoded.user, decoded.uid);
    let jobs: std::collections::BTreeSet<JobId> = report.steps.iter().map(|s| s.job).collect();
    if jobs.len() > MAX_JOBS_PER_BATCH {
        let detail = format!("{} jobs in one batch (at most {MAX_JOBS_PER_BATCH})", jobs.len());
        return refuse(&shared, StatusCode::BAD_REQUEST, "malformed", &detail).await;
    }
    let (report, rejected) =
        if service { (report, 0) } else { keep_own_steps(&shared, &state, report, &jobs, decoded.uid).await };
    if rejected > 0 {
        tracing::warn!(uid = decoded.uid, user = %decoded.user, rejected, node = %report.node.chars().take(64).collect::<String>(), "report steps of other users' jobs refused");
        shared.metrics.reject("foreign_job");
        shared.metrics.report_steps_rejected_total.add(rejected as u64);
        if report.steps.is_empty() {
            return HttpResponse::Forbidden().body(format!(
                "forbidden: uid {} may report only its own jobs ({rejected} steps refused)\n",
                decoded.uid
            ));
        }
    }
    let report_node: String = report.node.chars().take(64).collect();
    let sender = format!("{}/{}", report.node, decoded.uid);
    let samples = report.sample_count();
    let (id, node) = (report.id, report.node.clone());
    let content = content_of(report);
    let store = shared.store.clone();
    // Every sample is checked against its job's accounting record and the series' previous
    // sample in the store's transaction; only what passes is stored (`sample::plausible`).
    let stored = web::block(move || {
        let limits = Limits::default();
        let checks = Checks { limits: &limits, from_service: service, plausibility: true };
        store.store_checked_batch(&sender, id, crate::clock::unix_now(), &node, &content, &checks)
    })
    .await;
    match stored {
        Ok(Ok(ingested)) => {
            shared.metrics.reports_received_total.inc();
            shared.metrics.samples_stored_total.add(ingested.samples);
            shared.metrics.refuse_samples(&ingested.refused);
            let refused = ingested.refused.total();
            if refused > 0 {
                let reasons: Vec<String> =
                    ingested.refused.by_reason().map(|(r, n)| format!("{}={n}", r.as_str())).collect();
                tracing::warn!(uid = decoded.uid, user = %decoded.user, node = %report_node, refused, reasons = %reasons.join(","), "implausible samples refused");
            }
            if ingested.corrupt_blocks > 0 {
                tracing::error!(
                    blocks = ingested.corrupt_blocks,
                    "corrupt sample blocks replaced while storing a report"
                );
            }
            let outcome = if ingested.stored == Stored::New { "stored" } else { "duplicate" };
            tracing::info!(report_id = format!("{id:016x}"), samples, outcome, rejected, refused, "report received");
            HttpResponse::Ok().json(serde_json::json!({
                "outcome": outcome,
                "samples": samples,
                "stored_samples": ingested.samples,
                "refused_samples": refused,
                "rejected_steps": rejected,
            }))
        }
        Ok(Err(err)) => {
            shared.metrics.reject("store_error");
            tracing::error!(error = %err, "cannot store a report");
            HttpResponse::InternalServerError().body("store error; resend later\n")
        }
        Err(err) => {
            tracing::error!(error = %err, "store task failed");
            HttpResponse::InternalServerError().body("store error; resend later\n")
        }
    }
}

/// Drops the steps of jobs `uid` does not own (each of the batch's distinct `jobs` looked up
/// once); returns what is left and how many steps were dropped.
async fn keep_own_steps(
    shared: &Shared,
    state: &IngestState,
    mut report: Batch,
    jobs: &std::collections::BTreeSet<JobId>,
    uid: u32,
) -> (Batch, usize) {
    let mut own = std::collections::BTreeSet::new();
    for &job in jobs {
        if job_owner(shared, state, job).await == Some(uid) {
            own.insert(job);
        }
    }
    let before = report.steps.len();
    let foreign: Vec<u64> = jobs.iter().filter(|j| !own.contains(j)).map(|j| j.0).take(16).collect();
    if !foreign.is_empty() {
        tracing::debug!(uid, jobs = ?foreign, "jobs the sender does not own");
    }
    report.steps.retain(|step| own.contains(&step.job));
    let rejected = before - report.steps.len();
    (report, rejected)
}

/// The uid owning a job: the accounting record in the store, else `squeue`, else `sacct`; the
/// answer, "unknown" included (briefly), is cached.
async fn job_owner(shared: &Shared, state: &IngestState, job: JobId) -> Option<u32> {
    if let Some(known) = state.owners.lock().ok().and_then(|c| c.get(job, Instant::now())) {
        return known;
    }
    let store = shared.store.clone();
    let from_store = web::block(move || store.job(job)).await.ok().and_then(|r| r.ok()).flatten().and_then(|j| j.uid);
    let answer = match from_store {
        Some(uid) => Ok(Some(uid)),
        None => owner_from_slurm(&SlurmRunner::new(&shared.config.slurm), job).await,
    };
    match answer {
        Ok(uid) => {
            // "Nobody knows this job" is cached too (briefly): a batch naming many unknown ids
            // costs SLURM calls once, not per batch. A failed SLURM call is not an answer.
            if let Ok(mut owners) = state.owners.lock() {
                owners.put(job, uid, Instant::now());
            }
            uid
        }
        Err(()) => None,
    }
}

/// The owner from `squeue`, else `sacct`: `Ok(None)` when both answered and neither knows the
/// job, `Err` when neither could answer.
async fn owner_from_slurm(slurm: &SlurmRunner, job: JobId) -> Result<Option<u32>, ()> {
    let id = job.to_string();
    let squeue = slurm.run("squeue", &["-h".into(), "-j".into(), id.clone(), "-o".into(), "%U".into()]).await;
    let squeue_answered = squeue.is_ok();
    if let Some(uid) = squeue.ok().and_then(|out| out.lines().next()?.trim().parse().ok()) {
        return Ok(Some(uid));
    }
    let sacct =
        slurm.run("sacct", &["-n".into(), "-X".into(), "-P".into(), "-j".into(), id, "-o".into(), "UID".into()]).await;
    match sacct {
        Ok(out) => Ok(out.lines().next().and_then(|l| l.trim().parse().ok())),
        Err(_) if squeue_answered => Ok(None),
        Err(_) => Err(()),
    }
}

fn content_of(report: Batch) -> BatchContent {
    let mut content = BatchContent::default();
    for step in report.steps {
        content.samples.extend(step.samples.into_iter().map(|s| (step.job, step.step, s)));
        content.gpus.extend(step.gpus.into_iter().map(|g| (step.job, step.step, g)));
        content.apps.extend(step.apps.into_iter().map(|a| (step.job, step.step, a)));
    }
    content
}
