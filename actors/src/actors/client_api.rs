//! `GET /client/v1/jobs/{id}`: one job's stored data for `turingwatch job`, authenticated by
//! MUNGE (the format is `client::JobAnswer`, documented in `docs/design.md`, "Client API"); and
//! the admin API — `GET /client/v1/admin/status`, `POST /client/v1/admin/analyze`,
//! `POST /client/v1/admin/mail` — through which `turingwatch status`, `analyze` and `mail` run
//! on the server's store while it holds it (`crate::admin`). Admin credentials also bind the
//! body's digest; admins are root, the server's own user and `[web] admins` (else 403).
//!
//! Order of checks, each with its own HTTP error and a log line, bounded like ingest: a
//! credential header of MUNGE's shape (401), the peer's rate (429), a free slot among the
//! requests in flight (503), a job id of digits (400); then the credential (`munge::Decoder`:
//! forged, expired or replayed, 401), made for this very request — method and path,
//! `munge::client_payload` (401) — and not older than `[ingest] max_credential_age` (401). The
//! caller's uid comes from the credential only. Then the job: unknown to the store (404);
//! visible to its owner (the uid of the store's accounting record), to `[web] admins`, and to
//! coordinators of its account (sacctmgr's list, with `[web] coordinators_see_accounts`), to
//! nobody else (403). The store is read and the answer serialised off the async threads.

use super::shared::Shared;
use crate::client::{parse_job_id, JobAnswer};
use crate::metrics::Metrics;
use crate::munge::{client_body_payload, client_payload, Decoder, MungeError, CREDENTIAL_HEADER};
use crate::wire::admission::{credential_shape_ok, RateLimiter};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turingwatch_web::backend::Backend;

/// Requests a second one peer may make, and its burst (a user runs the command by hand; a
/// script over many jobs gets its answers at this pace).
const PEER_RATE: f64 = 20.0;
const PEER_BURST: f64 = 60.0;
/// Requests being checked or answered at once; more are answered 503.
const MAX_IN_FLIGHT: usize = 16;
/// Longest wait for munged.
const MUNGE_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by every worker: each peer's rate, the slots in flight, the MUNGE decoder.
pub struct ClientApiState {
    limiter: Mutex<RateLimiter>,
    slots: tokio::sync::Semaphore,
    decoder: Decoder,
    /// The site's backend, for SLURM's coordinator list (one cache for both).
    backend: Arc<dyn Backend>,
}

impl ClientApiState {
    /// The state for the `[ingest]` MUNGE settings (the same decoder choice as ingest).
    pub fn new(config: &turingwatch_config::IngestConfig, backend: Arc<dyn Backend>) -> ClientApiState {
        ClientApiState {
            limiter: Mutex::new(RateLimiter::new(PEER_RATE, PEER_BURST, 100_000)),
            slots: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            decoder: Decoder::new(&config.munge_library, &config.unmunge_command, MUNGE_TIMEOUT),
            backend,
        }
    }
}

/// Adds the client API to the HTTP app, with `state` shared by every worker.
pub fn configure(state: web::Data<ClientApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .route("/client/v1/jobs/{id}", web::get().to(job))
            .route(crate::client::ADMIN_STATUS_PATH, web::get().to(admin_status))
            .route(crate::client::ADMIN_ANALYZE_PATH, web::post().to(admin_analyze))
            .route(crate::client::ADMIN_MAIL_PATH, web::post().to(admin_mail));
    }
}

/// A refusal, logged and counted in `/metrics` (`client_requests_refused_total{reason}`).
fn refuse(metrics: &Metrics, status: StatusCode, reason: &str, detail: &str) -> HttpResponse {
    metrics.client_refused(reason);
    tracing::warn!(status = status.as_u16(), reason, detail, "client request refused");
    HttpResponse::build(status).content_type("text/plain").body(format!("{reason}: {detail}\n"))
}

/// Who asks, from a credential checked in the order of the module doc.
struct Caller {
    uid: u32,
    user: String,
}

/// Checks the credential of a request for `method path` (with `body`'s digest when it has one);
/// the refusal to send otherwise. The slot is held by the caller for the request's life.
async fn authenticate<'a>(
    request: &HttpRequest,
    state: &'a ClientApiState,
    shared: &Shared,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(Caller, tokio::sync::SemaphorePermit<'a>), HttpResponse> {
    let Some(credential) = request.headers().get(CREDENTIAL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
    else {
        return Err(refuse(&shared.metrics, StatusCode::UNAUTHORIZED, "unauthenticated", "no MUNGE credential header"));
    };
    if !credential_shape_ok(&credential) {
        return Err(refuse(&shared.metrics, StatusCode::UNAUTHORIZED, "unauthenticated", "not a MUNGE credential"));
    }
    if let Some(peer) = request.peer_addr().map(|a| a.ip()) {
        let allowed = state.limiter.lock().map(|mut l| l.allow(peer, Instant::now())).unwrap_or(true);
        if !allowed {
            return Err(refuse(
                &shared.metrics,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("{peer} asks too fast"),
            ));
        }
    }
    let Ok(slot) = state.slots.try_acquire() else {
        return Err(refuse(
            &shared.metrics,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests in flight; ask again later",
        ));
    };
    let decoded = match state.decoder.decode(&credential).await {
        Ok(decoded) => decoded,
        Err(MungeError::Refused { status }) => {
            return Err(refuse(
                &shared.metrics,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &format!("MUNGE: {status}"),
            ))
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot check MUNGE credentials");
            return Err(HttpResponse::ServiceUnavailable().body("cannot check credentials now\n"));
        }
    };
    let expected = match body {
        Some(body) => client_body_payload(method, path, body),
        None => client_payload(method, path),
    };
    if decoded.payload != expected {
        return Err(refuse(
            &shared.metrics,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "credential was made for another request",
        ));
    }
    let age = crate::clock::unix_now().saturating_sub(decoded.encoded_at);
    if age > shared.config.ingest.max_credential_age.get().as_secs() {
        return Err(refuse(
            &shared.metrics,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            &format!("credential is {age} s old"),
        ));
    }
    Ok((Caller { uid: decoded.uid, user: decoded.user }, slot))
}

async fn job(
    request: HttpRequest,
    id: web::Path<String>,
    shared: web::Data<Shared>,
    state: web::Data<ClientApiState>,
) -> HttpResponse {
    let Some(job_id) = parse_job_id(&id) else {
        let shown: String = id.chars().take(32).collect();
        return refuse(&shared.metrics, StatusCode::BAD_REQUEST, "bad_id", &format!("{shown:?} is not a job id"));
    };
    let (decoded, _slot) =
        match authenticate(&request, &state, &shared, "GET", &crate::client::job_path(job_id), None).await {
            Ok(caller) => caller,
            Err(refusal) => return refusal,
        };
    let admin = shared.config.web.admins.contains(&decoded.user);
    let (uid, user) = (decoded.uid, decoded.user.clone());
    let store = shared.store.clone();
    let record = match web::block(move || store.job(job_id)).await {
        Ok(Ok(Some(record))) => record,
        Ok(Ok(None)) => {
            tracing::info!(job = job_id.0, uid = decoded.uid, "client asked for a job the store does not have");
            return HttpResponse::NotFound()
                .content_type("text/plain")
                .body(format!("no job {} in the store\n", job_id.0));
        }
        Ok(Err(err)) => {
            tracing::error!(job = job_id.0, error = %err, "cannot read a job for a client");
            return HttpResponse::InternalServerError().body("store error; ask again later\n");
        }
        Err(err) => {
            tracing::error!(error = %err, "client job task failed");
            return HttpResponse::InternalServerError().body("store error; ask again later\n");
        }
    };
    let owner = match record.uid {
        Some(owner) => owner == uid,
        None => record.user == user,
    };
    // A coordinator sees the jobs of the accounts they coordinate, as on the site; the list
    // comes from sacctmgr (cached), asked only for someone else's job, and a failed lookup
    // grants nothing.
    let coordinator = !admin && !owner && shared.config.web.coordinators_see_accounts && {
        match state.backend.coordination().await {
            Ok(c) => c.accounts_coordinated_by(&user).contains(&record.account),
            Err(err) => {
                tracing::warn!(error = %err, user = %user, "coordinator list unavailable; granting own jobs only");
                false
            }
        }
    };
    let store = shared.store.clone();
    let answer = web::block(move || -> Result<Answer, crate::store::StoreError> {
        if !admin && !owner && !coordinator {
            return Ok(Answer::Foreign(record.user));
        }
        let input = crate::analysis::load::load_job(&store, record)?;
        let samples: usize = input.samples.values().map(Vec::len).sum();
        match serde_json::to_vec(&JobAnswer::from_input(&input)) {
            Ok(body) => Ok(Answer::Data { body, samples }),
            Err(err) => {
                tracing::error!(error = %err, "cannot serialise a job's data");
                Ok(Answer::Unserialisable)
            }
        }
    })
    .await;
    match answer {
        Ok(Ok(Answer::Data { body, samples })) => {
            tracing::info!(job = job_id.0, uid = decoded.uid, user = %decoded.user, admin, coordinator, samples, bytes = body.len(), "client job answered");
            HttpResponse::Ok().content_type("application/json").body(body)
        }
        Ok(Ok(Answer::Foreign(owner))) => refuse(
            &shared.metrics,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{} (uid {}) may not see job {} of {owner}", decoded.user, decoded.uid, job_id.0),
        ),
        Ok(Ok(Answer::Unserialisable)) => HttpResponse::InternalServerError().body("cannot serialise the job\n"),
        Ok(Err(err)) => {
            tracing::error!(job = job_id.0, error = %err, "cannot read a job for a client");
            HttpResponse::InternalServerError().body("store error; ask again later\n")
        }
        Err(err) => {
            tracing::error!(error = %err, "client job task failed");
            HttpResponse::InternalServerError().body("store error; ask again later\n")
        }
    }
}

enum Answer {
    Data { body: Vec<u8>, samples: usize },
    Foreign(String),
    Unserialisable,
}

/// Whether `caller` may run admin commands: root, the user the server runs as (the service
/// account the units run the CLI as), or one of `[web] admins`.
fn is_admin(caller: &Caller, shared: &Shared) -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    let own = unsafe { libc::getuid() };
    caller.uid == 0 || caller.uid == own || shared.config.web.admins.contains(&caller.user)
}

/// Authenticates an admin command; the refusal otherwise (403 for a known non-admin).
async fn admin<'a>(
    request: &HttpRequest,
    state: &'a ClientApiState,
    shared: &Shared,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(Caller, tokio::sync::SemaphorePermit<'a>), HttpResponse> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let (caller, slot) = authenticate(request, state, shared, method, path, body).await?;
    if !is_admin(&caller, shared) {
        return Err(refuse(
            &shared.metrics,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{} (uid {}) is not an admin of this server", caller.user, caller.uid),
        ));
    }
    Ok((caller, slot))
}

fn admin_answer<T: serde::Serialize>(what: &str, caller: &Caller, result: Result<T, String>) -> HttpResponse {
    match result {
        Ok(value) => {
            tracing::info!(command = what, uid = caller.uid, user = %caller.user, "admin command answered");
            HttpResponse::Ok().json(value)
        }
        Err(err) => {
            tracing::warn!(command = what, uid = caller.uid, error = %err, "admin command failed");
            HttpResponse::UnprocessableEntity().content_type("text/plain").body(format!("{what} failed: {err}\n"))
        }
    }
}

async fn admin_status(
    request: HttpRequest,
    shared: web::Data<Shared>,
    state: web::Data<ClientApiState>,
) -> HttpResponse {
    let (caller, _slot) = match admin(&request, &state, &shared, crate::client::ADMIN_STATUS_PATH, None).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let s = shared.clone();
    let result =
        web::block(move || crate::admin::status(&s.config, &s.store, Some(&s.metrics)).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    admin_answer("status", &caller, result)
}

/// An admin POST: its size, its credential (bound to `path` and the body), then its options.
async fn admin_post<'a, T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
    body: &[u8],
    state: &'a ClientApiState,
    shared: &Shared,
    path: &str,
) -> Result<(Caller, tokio::sync::SemaphorePermit<'a>, T), HttpResponse> {
    if body.len() > crate::client::MAX_ADMIN_BODY {
        return Err(refuse(&shared.metrics, StatusCode::PAYLOAD_TOO_LARGE, "oversized", "admin options over 16 KiB"));
    }
    let (caller, slot) = admin(request, state, shared, path, Some(body)).await?;
    match serde_json::from_slice(body) {
        Ok(options) => Ok((caller, slot, options)),
        Err(err) => Err(refuse(&shared.metrics, StatusCode::BAD_REQUEST, "bad_request", &err.to_string())),
    }
}

async fn admin_analyze(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    state: web::Data<ClientApiState>,
) -> HttpResponse {
    let path = crate::client::ADMIN_ANALYZE_PATH;
    let (caller, _slot, req) = match admin_post::<AnalyzeRequest>(&request, &body, &state, &shared, path).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let s = shared.clone();
    let result = web::block(move || crate::admin::analyze(&s.config, &s.store, &req.period).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    admin_answer("analyze", &caller, result)
}

async fn admin_mail(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    state: web::Data<ClientApiState>,
) -> HttpResponse {
    let path = crate::client::ADMIN_MAIL_PATH;
    let (caller, _slot, req) =
        match admin_post::<crate::admin::MailRequest>(&request, &body, &state, &shared, path).await {
            Ok(c) => c,
            Err(refusal) => return refusal,
        };
    tracing::info!(uid = caller.uid, user = %caller.user, period = %req.period, dry_run = req.dry_run, resend = req.resend, "mail by hand");
    let result = crate::admin::mail(&shared.config, shared.store.clone(), &req).await.map_err(|e| e.to_string());
    admin_answer("mail", &caller, result)
}

/// `turingwatch analyze`'s options.
#[derive(serde::Deserialize)]
struct AnalyzeRequest {
    period: String,
}
