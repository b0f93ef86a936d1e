//! `POST /ingest/v1/report`: scraper reports, authenticated by MUNGE, stored exactly once.
//!
//! Order of checks, each with its own clear HTTP error and a log line, none of which can reach
//! the store or crash the server. Before the body is read (`wire::admission`): a credential
//! header of MUNGE's shape (401), the peer's rate (429), a free slot among the requests in
//! flight (503). Then the body, within a deadline (408) and a size (413); the credential itself
//! (`munge::Decoder`: libmunge in-process, a bounded number at once) — forged, expired, or
//! replayed (401), the credential bound to this body's digest (401), its age (401), the report's
//! format (400). Then where it comes from: the node it names must be one SLURM knows (403) and,
//! with `[ingest] bind_nodes`, the host that encoded the credential or sent it (403,
//! `admission::sent_from_node`); the node's memory bounds its samples. Then authorisation: a
//! service user may report any job; any other uid only the steps of jobs it owns, where
//! ownership comes from trusted sources (the store's accounting record, else SLURM), never from
//! the report: each distinct job looked up once (at most `MAX_JOBS_PER_BATCH`), all a batch's
//! unknown jobs in one `squeue` and one `sacct` call, owners, unknown jobs and nodes cached, and
//! SLURM lookups within a per-uid budget, so invented job ids or node names cannot turn into
//! SLURM load. Foreign steps are dropped and counted; a batch with nothing left is refused
//! (403). Refusals are counted in memory (`/metrics`), never in the store: a flood of refused
//! requests costs no commit. Then plausibility, in the store's transaction
//! (`Store::store_checked_batch`, `sample::plausible`): each sample must fit its job's run,
//! CPUs and nodes, refusals are counted by reason (`samples_refused_total`) and never stored,
//! and a series the service's scrapers report cannot be touched by an owner's report. The answer
//! 200 is sent only after the commit.

use super::group_commit::{CommitError, GroupCommitter, Pending};
use super::shared::Shared;
use crate::job::JobId;
use crate::munge::{payload_for, Decoder, MungeError, CREDENTIAL_HEADER};
use crate::sample::plausible::Limits;
use crate::slurm::{node_info, SlurmRunner};
use crate::store::{BatchContent, Checks, Ingested, StoreError, Stored, StoredRows};
use crate::wire::admission::{
    credential_shape_ok, node_name_shape_ok, sent_from_node, NodeCache, NodeFacts, OwnerCache, RateLimiter,
    MAX_JOBS_PER_BATCH,
};
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
pub const MAX_IN_FLIGHT: usize = 64;
/// Longest time a body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(20);
/// How long "no such job" is believed (a job that just started shows up soon after).
const NEGATIVE_OWNER_TTL: Duration = Duration::from_secs(60);
/// How long a node's addresses and memory are believed, and "no such node".
const NODE_TTL: Duration = Duration::from_secs(600);
const NEGATIVE_NODE_TTL: Duration = Duration::from_secs(60);
/// SLURM lookups (one `scontrol`, or one `squeue` + `sacct` pair) a uid may cause a second, and
/// its burst. A node's scraper needs one when a job starts; a flood of invented ids gets no more.
const LOOKUP_RATE: f64 = 0.5;
const LOOKUP_BURST: f64 = 20.0;
/// Longest wait for munged.
const MUNGE_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by every worker: the rate of each peer, the slots in flight, the MUNGE
/// decoder, job owners and nodes already looked up, each uid's budget of SLURM lookups.
pub struct IngestState {
    limiter: Mutex<RateLimiter>,
    slots: tokio::sync::Semaphore,
    owners: Mutex<OwnerCache>,
    nodes: Mutex<NodeCache>,
    lookups: Mutex<RateLimiter<u32>>,
    decoder: Decoder,
    /// Where the rows a commit stored go for the export (`actors::exporter`).
    export: Option<std::sync::Arc<crate::export::Intake>>,
    /// The thread that stores reports in groups; without it each is stored alone.
    committer: Option<GroupCommitter>,
}

impl IngestState {
    /// The state for `[ingest]` settings (loads libmunge, or says why not).
    pub fn new(config: &turingwatch_config::IngestConfig) -> IngestState {
        IngestState {
            limiter: Mutex::new(RateLimiter::new(PEER_RATE, PEER_BURST, 100_000)),
            slots: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            owners: Mutex::new(OwnerCache::new(200_000, NEGATIVE_OWNER_TTL)),
            nodes: Mutex::new(NodeCache::new(100_000, NODE_TTL, NEGATIVE_NODE_TTL)),
            lookups: Mutex::new(RateLimiter::new(LOOKUP_RATE, LOOKUP_BURST, 100_000)),
            decoder: Decoder::new(&config.munge_library, &config.unmunge_command, MUNGE_TIMEOUT),
            export: None,
            committer: None,
        }
    }

    /// Stores reports through `committer` (group commit) instead of one transaction each.
    pub fn with_group_commit(mut self, committer: GroupCommitter) -> IngestState {
        self.committer = Some(committer);
        self
    }

    /// Hands the rows each commit stores to `intake` (the exporter's).
    pub fn with_export(mut self, intake: std::sync::Arc<crate::export::Intake>) -> IngestState {
        self.export = Some(intake);
        self
    }

    /// Takes one SLURM lookup from `uid`'s budget.
    fn may_look_up(&self, uid: u32) -> bool {
        self.lookups.lock().map(|mut l| l.allow(uid, Instant::now())).unwrap_or(false)
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
    let decoded = match state.decoder.decode(&credential).await {
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
    let mut limits = Limits::default();
    if !report.steps.is_empty() {
        let peer = request.peer_addr().map(|a| a.ip());
        match check_node(&shared, &state, &report.node, &decoded, peer).await {
            Ok(facts) => limits.mem_kib = facts.memory_bound_kib().unwrap_or(limits.mem_kib),
            Err(refusal) => return refusal,
        }
    }
    let (report, rejected) = if service {
        (report, 0)
    } else {
        match keep_own_steps(&shared, &state, report, &jobs, decoded.uid).await {
            Ok(kept) => kept,
            Err(refusal) => return refusal,
        }
    };
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
    let export_node = node.clone();
    let keep = state.export.is_some();
    let received_at = crate::clock::unix_now();
    // Every sample is checked against its job's accounting record and the series' previous
    // sample in the store's transaction; only what passes is stored (`sample::plausible`).
    // Reports that arrive together are committed together (`group_commit`).
    let stored: Result<Result<(Ingested, StoredRows), StoreError>, String> = match &state.committer {
        Some(committer) => {
            let pending =
                Pending { sender, report_id: id, received_at, node, content, limits, from_service: service, keep };
            match committer.store(pending).await {
                Ok(done) => Ok(Ok(done)),
                Err(CommitError::Store(err)) => Ok(Err(err)),
                Err(CommitError::Full) => {
                    return refuse(&shared, StatusCode::SERVICE_UNAVAILABLE, "busy", "store queue full; resend later")
                        .await
                }
                Err(err @ CommitError::Gone) => Err(err.to_string()),
            }
        }
        None => {
            let store = shared.store.clone();
            web::block(move || {
                let checks = Checks { limits: &limits, from_service: service, plausibility: true };
                store.store_checked_batch_rows(&sender, id, received_at, &node, &content, &checks)
            })
            .await
            .map_err(|err| err.to_string())
        }
    };
    match stored {
        Ok(Ok((ingested, rows))) => {
            // Committed: what was stored may be exported (never blocks; a full intake drops
            // its oldest rows and counts them).
            if let Some(intake) = &state.export {
                let arrived = crate::export::Arrived { node: export_node, rows, received_at: crate::clock::unix_now() };
                shared.metrics.export_dropped_total.add(intake.push(arrived));
            }
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

/// What SLURM says of the node a report names, once it is known to be a node SLURM has and
/// (with `[ingest] bind_nodes`) the one that sent the report; else the answer to send.
async fn check_node(
    shared: &Shared,
    state: &IngestState,
    node: &str,
    decoded: &crate::munge::Decoded,
    peer: Option<std::net::IpAddr>,
) -> Result<NodeFacts, HttpResponse> {
    use actix_web::http::StatusCode;
    let shown: String = node.chars().take(64).collect();
    if !node_name_shape_ok(node) {
        return Err(
            refuse(shared, StatusCode::FORBIDDEN, "unknown_node", &format!("{shown:?} is not a node name")).await
        );
    }
    let cached = state.nodes.lock().ok().and_then(|c| c.get(node, Instant::now()));
    let facts = match cached {
        Some(facts) => facts,
        None => {
            if !state.may_look_up(decoded.uid) {
                let detail = format!("uid {} asked about too many unknown nodes or jobs; resend later", decoded.uid);
                return Err(refuse(shared, StatusCode::TOO_MANY_REQUESTS, "lookup_budget", &detail).await);
            }
            match node_facts(&SlurmRunner::new(&shared.config.slurm), node).await {
                Ok(facts) => {
                    if let Ok(mut nodes) = state.nodes.lock() {
                        nodes.put(node, facts.clone(), Instant::now());
                    }
                    facts
                }
                Err(err) => {
                    tracing::error!(node = %shown, error = %err, "cannot ask SLURM about a report's node");
                    return Err(HttpResponse::ServiceUnavailable().body("cannot check the node now; resend later\n"));
                }
            }
        }
    };
    let Some(facts) = facts else {
        let detail = format!("SLURM has no node {shown:?}");
        return Err(refuse(shared, StatusCode::FORBIDDEN, "unknown_node", &detail).await);
    };
    if shared.config.ingest.bind_nodes && !sent_from_node(&facts, decoded.encode_addr, peer) {
        let encode = decoded.encode_addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        let from = peer.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        let detail = format!(
            "report for node {shown} made on {encode}, sent from {from}: neither is that node ([ingest] bind_nodes)"
        );
        return Err(refuse(shared, StatusCode::FORBIDDEN, "wrong_node", &detail).await);
    }
    Ok(facts)
}

/// `scontrol show node` and the node's addresses (NodeAddr, NodeHostName and the name itself,
/// resolved): `Ok(None)` for a node SLURM does not know.
async fn node_facts(slurm: &SlurmRunner, node: &str) -> Result<Option<NodeFacts>, crate::slurm::SlurmError> {
    let Some(shown) = node_info::show_node(slurm, node).await? else { return Ok(None) };
    let mut addrs = Vec::new();
    for name in [shown.addr.as_str(), shown.hostname.as_str(), node] {
        if name.is_empty() {
            continue;
        }
        if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            addrs.push(ip);
            continue;
        }
        // A name that does not resolve adds nothing; the others may still match.
        if let Ok(Ok(found)) = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((name, 0))).await {
            addrs.extend(found.map(|a| a.ip()));
        }
    }
    addrs.sort();
    addrs.dedup();
    Ok(Some(NodeFacts { addrs, real_memory_kib: shown.real_memory_mib.map(|m| m.saturating_mul(1024)) }))
}

/// Drops the steps of jobs `uid` does not own (each of the batch's distinct `jobs` looked up
/// once); returns what is left and how many steps were dropped, or the refusal to send when the
/// jobs cannot be looked up now.
async fn keep_own_steps(
    shared: &Shared,
    state: &IngestState,
    mut report: Batch,
    jobs: &std::collections::BTreeSet<JobId>,
    uid: u32,
) -> Result<(Batch, usize), HttpResponse> {
    let owners = job_owners(shared, state, jobs, uid).await?;
    let own: std::collections::BTreeSet<JobId> =
        jobs.iter().copied().filter(|j| owners.get(j).copied().flatten() == Some(uid)).collect();
    let before = report.steps.len();
    let foreign: Vec<u64> = jobs.iter().filter(|j| !own.contains(j)).map(|j| j.0).take(16).collect();
    if !foreign.is_empty() {
        tracing::debug!(uid, jobs = ?foreign, "jobs the sender does not own");
    }
    report.steps.retain(|step| own.contains(&step.job));
    let rejected = before - report.steps.len();
    Ok((report, rejected))
}

/// The uid owning each of `jobs`: the cache, else the accounting record in the store, else
/// SLURM — all the rest in one `squeue` and one `sacct` call, within `uid`'s lookup budget. The
/// answers, "unknown" included (briefly), are cached.
async fn job_owners(
    shared: &Shared,
    state: &IngestState,
    jobs: &std::collections::BTreeSet<JobId>,
    uid: u32,
) -> Result<std::collections::HashMap<JobId, Option<u32>>, HttpResponse> {
    let mut owners = std::collections::HashMap::new();
    let mut unknown: Vec<JobId> = Vec::new();
    if let Ok(cache) = state.owners.lock() {
        let now = Instant::now();
        for &job in jobs {
            match cache.get(job, now) {
                Some(answer) => {
                    owners.insert(job, answer);
                }
                None => unknown.push(job),
            }
        }
    }
    if unknown.is_empty() {
        return Ok(owners);
    }
    let store = shared.store.clone();
    let asked = unknown.clone();
    let stored = web::block(move || {
        asked.into_iter().map(|job| (job, store.job(job).ok().flatten().and_then(|j| j.uid))).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut from_store = std::collections::HashSet::new();
    for (job, owner) in stored {
        if let Some(owner) = owner {
            owners.insert(job, Some(owner));
            from_store.insert(job);
        }
    }
    unknown.retain(|j| !from_store.contains(j));
    if unknown.is_empty() {
        cache_owners(state, &owners);
        return Ok(owners);
    }
    if !state.may_look_up(uid) {
        use actix_web::http::StatusCode;
        let detail = format!("uid {uid} asked about too many unknown jobs or nodes; resend later");
        return Err(refuse(shared, StatusCode::TOO_MANY_REQUESTS, "lookup_budget", &detail).await);
    }
    match owners_from_slurm(&SlurmRunner::new(&shared.config.slurm), &unknown).await {
        Ok(found) => {
            for job in unknown {
                owners.insert(job, found.get(&job).copied());
            }
        }
        // A failed SLURM call is not an answer: nothing is cached, the jobs count as not owned.
        Err(()) => tracing::warn!(jobs = unknown.len(), "cannot ask SLURM who owns a report's jobs"),
    }
    cache_owners(state, &owners);
    Ok(owners)
}

fn cache_owners(state: &IngestState, owners: &std::collections::HashMap<JobId, Option<u32>>) {
    if let Ok(mut cache) = state.owners.lock() {
        let now = Instant::now();
        for (&job, &owner) in owners {
            cache.put(job, owner, now);
        }
    }
}

/// The owners `squeue` knows, then `sacct` for the rest, each asked once for all of `jobs`
/// (`%A %U` / `JobIDRaw,UID`: numbers only, no user text). `Err` when neither could answer.
async fn owners_from_slurm(slurm: &SlurmRunner, jobs: &[JobId]) -> Result<std::collections::HashMap<JobId, u32>, ()> {
    fn pairs(text: &str, sep: char, into: &mut std::collections::HashMap<JobId, u32>) {
        for line in text.lines() {
            let mut parts = line.trim().split(sep);
            let (Some(id), Some(uid)) = (parts.next(), parts.next()) else { continue };
            if let (Ok(id), Ok(uid)) = (id.trim().parse::<u64>(), uid.trim().parse::<u32>()) {
                into.insert(JobId(id), uid);
            }
        }
    }
    let list = |jobs: &[JobId]| jobs.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(",");
    let mut found = std::collections::HashMap::new();
    let squeue = slurm.run("squeue", &["-h".into(), "-j".into(), list(jobs), "-o".into(), "%A %U".into()]).await;
    let squeue_answered = match &squeue {
        Ok(text) => {
            pairs(text, ' ', &mut found);
            true
        }
        // squeue asked about one job it does not know says so and exits 1.
        Err(crate::slurm::SlurmError::Failed { stderr, .. }) => stderr.contains("Invalid job id"),
        Err(_) => false,
    };
    let rest: Vec<JobId> = jobs.iter().copied().filter(|j| !found.contains_key(j)).collect();
    if rest.is_empty() {
        return Ok(found);
    }
    let sacct = slurm
        .run(
            "sacct",
            &["-n".into(), "-X".into(), "-P".into(), "-j".into(), list(&rest), "-o".into(), "JobIDRaw,UID".into()],
        )
        .await;
    match sacct {
        Ok(text) => {
            pairs(&text, '|', &mut found);
            Ok(found)
        }
        Err(_) if squeue_answered => Ok(found),
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
