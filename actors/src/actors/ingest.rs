//! `POST /ingest/v1/report`: scraper reports, authenticated by MUNGE, stored exactly once.
//!
//! Order of checks, each with its own clear HTTP error and a log line, none of which can reach
//! the store or crash the server: a credential header (401), the body size (413), the
//! credential itself through `unmunge` — forged, expired, or replayed (401), the credential
//! bound to this body's digest (401), its age (401), the report's format (400). Then
//! authorisation: a service user may report any job; any other uid only the steps of jobs it
//! owns, where ownership comes from trusted sources (the store's accounting record, else SLURM),
//! never from the report. Foreign steps are dropped and counted (`meta.ingest_rejected_steps`);
//! a report with nothing left is refused (403). Then plausibility, in the store's transaction
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
use crate::wire::format::{decode_batch, Batch};
use crate::wire::INGEST_PATH;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// `meta` counter of report steps refused for lack of ownership.
pub const REJECTED_STEPS_KEY: &str = "ingest_rejected_steps";
/// `meta` counter of whole reports refused (auth, size, format).
pub const REJECTED_REPORTS_KEY: &str = "ingest_rejected_reports";

/// Per-worker state: job owners already looked up.
#[derive(Default)]
pub struct IngestState {
    owners: Mutex<HashMap<JobId, u32>>,
}

/// Adds the ingest endpoint to the HTTP app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(IngestState::default())).route(INGEST_PATH, web::post().to(ingest_report));
}

async fn refuse(shared: &Shared, status: actix_web::http::StatusCode, reason: &str, detail: &str) -> HttpResponse {
    tracing::warn!(status = status.as_u16(), reason, detail, "report refused");
    let metric = if detail.contains("Replayed") { "replayed" } else { reason };
    shared.metrics.reject(metric);
    let store = shared.store.clone();
    let _ = web::block(move || store.bump_counter(REJECTED_REPORTS_KEY, 1)).await;
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
    let max = config.max_report_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refuse(&shared, StatusCode::BAD_REQUEST, "malformed", "body could not be read").await;
        };
        if (body.len() + chunk.len()) as u64 > max {
            return refuse(&shared, StatusCode::PAYLOAD_TOO_LARGE, "oversized", &format!("more than {max} bytes"))
                .await;
        }
        body.extend_from_slice(&chunk);
    }
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
    let service = config.service_users.contains(&decoded.user);
    let (report, rejected) =
        if service { (report, 0) } else { keep_own_steps(&shared, &state, report, decoded.uid).await };
    if rejected > 0 {
        tracing::warn!(uid = decoded.uid, user = %decoded.user, rejected, node = %report.node.chars().take(64).collect::<String>(), "report steps of other users' jobs refused");
        shared.metrics.reject("foreign_job");
        let store = shared.store.clone();
        let _ = web::block(move || store.bump_counter(REJECTED_STEPS_KEY, rejected as u64)).await;
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

/// Drops the steps of jobs `uid` does not own; returns what is left and how many were dropped.
async fn keep_own_steps(shared: &Shared, state: &IngestState, mut report: Batch, uid: u32) -> (Batch, usize) {
    let before = report.steps.len();
    let mut kept = Vec::with_capacity(before);
    for step in std::mem::take(&mut report.steps) {
        if job_owner(shared, state, step.job).await == Some(uid) {
            kept.push(step);
        }
    }
    report.steps = kept;
    let rejected = before - report.steps.len();
    (report, rejected)
}

/// The uid owning a job: the accounting record in the store, else `squeue`, else `sacct`.
async fn job_owner(shared: &Shared, state: &IngestState, job: JobId) -> Option<u32> {
    if let Some(uid) = state.owners.lock().ok().and_then(|m| m.get(&job).copied()) {
        return Some(uid);
    }
    let store = shared.store.clone();
    let from_store = web::block(move || store.job(job)).await.ok().and_then(|r| r.ok()).flatten().and_then(|j| j.uid);
    let uid = match from_store {
        Some(uid) => Some(uid),
        None => owner_from_slurm(&SlurmRunner::new(&shared.config.slurm), job).await,
    }?;
    if let Ok(mut owners) = state.owners.lock() {
        owners.insert(job, uid);
    }
    Some(uid)
}

async fn owner_from_slurm(slurm: &SlurmRunner, job: JobId) -> Option<u32> {
    let id = job.to_string();
    let squeue = slurm.run("squeue", &["-h".into(), "-j".into(), id.clone(), "-o".into(), "%U".into()]).await;
    if let Some(uid) = squeue.ok().and_then(|out| out.lines().next()?.trim().parse().ok()) {
        return Some(uid);
    }
    let sacct =
        slurm.run("sacct", &["-n".into(), "-X".into(), "-P".into(), "-j".into(), id, "-o".into(), "UID".into()]).await;
    sacct.ok().and_then(|out| out.lines().next()?.trim().parse().ok())
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
