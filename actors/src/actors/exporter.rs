//! The exporter actor: turns the rows each report's commit stored (the [`Intake`] the ingest
//! handler fills) into per-job/step series, keeps the latest sample of every running step for
//! `GET /metrics/jobs`, and, when `[export] remote_write_url` is set, sends them as Prometheus
//! remote-write.
//!
//! Every second it drains the intake. A job's user and account come from the store's job
//! record, else from one `squeue` call for all of a tick's unknown jobs (a running job is not
//! in the store until the next accounting import); rows wait for that answer at most
//! `OWNER_WAIT`, then go out without user and account. Points wait in a bounded buffer
//! (`[export] max_buffered_samples`, the oldest dropped and counted when full) and are sent
//! every `[export] interval`, at most `MAX_PER_REQUEST` a request, one request at a time. A
//! connection error or a 5xx/429 answer keeps them and retries after a growing delay
//! (`Backoff`, 1 s to 60 s); any other 4xx means the receiver will never take them: they are
//! dropped and counted. The metrics are `turingwatch_export_*` on `/metrics`.

use super::shared::Shared;
use crate::backoff::Backoff;
use crate::export::series::{Live, Owner, Pending, Point, StepKey};
use crate::export::{remote_write, Arrived, Intake};
use crate::job::JobId;
use crate::slurm::SlurmRunner;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the intake is drained.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait for a job's owner before its rows go out without user and account.
const OWNER_WAIT: Duration = Duration::from_secs(60);
/// How long a job squeue did not know is not asked about again.
const UNKNOWN_RETRY: Duration = Duration::from_secs(20);
/// Values per remote-write request.
const MAX_PER_REQUEST: usize = 20_000;
/// Owners remembered (cleared when full: they are looked up again).
const MAX_OWNERS: usize = 100_000;
/// A step whose latest sample is older than this is no longer shown in `/metrics/jobs`.
pub const LIVE_FOR: Duration = Duration::from_secs(300);

/// The latest samples of running steps, shared with the `/metrics/jobs` handler.
pub type LiveView = Arc<Mutex<Live>>;

/// The exporter actor.
pub struct Exporter {
    shared: Shared,
    intake: Arc<Intake>,
    live: LiveView,
    url: String,
    headers: Vec<(String, String)>,
    pending: Pending,
    waiting: Vec<(Instant, Arrived)>,
    owners: HashMap<JobId, Owner>,
    unknown: HashMap<JobId, Instant>,
    resolving: bool,
    sending: bool,
    last_send: Instant,
    next_try: Instant,
    backoff: Backoff,
}

impl Exporter {
    /// An exporter for `shared`'s `[export]`; `bearer` is the receiver's token (read from
    /// `bearer_token_file` at start).
    pub fn new(shared: Shared, intake: Arc<Intake>, live: LiveView, bearer: Option<String>) -> Exporter {
        let export = &shared.config.export;
        let mut headers: Vec<(String, String)> =
            remote_write::HEADERS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(token) = bearer {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        let max = usize::try_from(export.max_buffered_samples).unwrap_or(usize::MAX);
        Exporter {
            url: export.remote_write_url.clone(),
            pending: Pending::new(max),
            shared,
            intake,
            live,
            headers,
            waiting: Vec::new(),
            owners: HashMap::new(),
            unknown: HashMap::new(),
            resolving: false,
            sending: false,
            last_send: Instant::now(),
            next_try: Instant::now(),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.waiting.extend(self.intake.drain().into_iter().map(|a| (now, a)));
        self.resolve(ctx);
        self.release(now);
        if let Ok(mut live) = self.live.lock() {
            live.prune(crate::clock::unix_now().saturating_sub(LIVE_FOR.as_secs()));
        }
        self.shared.metrics.export_pending.set(self.pending.len() as u64);
        if self.url.is_empty() {
            // No receiver: the live view is all; nothing is buffered.
            self.pending.take(usize::MAX);
            return;
        }
        let due = now.duration_since(self.last_send) >= self.shared.config.export.interval.get()
            || self.pending.len() >= MAX_PER_REQUEST;
        if !self.sending && !self.pending.is_empty() && due && now >= self.next_try {
            self.send(ctx);
        }
    }

    /// Asks the store, then squeue, about jobs of waiting rows whose owner is not known.
    fn resolve(&mut self, ctx: &mut Context<Self>) {
        if self.resolving {
            return;
        }
        let now = Instant::now();
        let jobs: HashSet<JobId> = self
            .waiting
            .iter()
            .flat_map(|(_, a)| a.rows.samples.iter().map(|r| r.0).chain(a.rows.gpus.iter().map(|r| r.0)))
            .filter(|j| !self.owners.contains_key(j))
            .filter(|j| self.unknown.get(j).is_none_or(|t| now.duration_since(*t) >= UNKNOWN_RETRY))
            .collect();
        if jobs.is_empty() {
            return;
        }
        self.resolving = true;
        let store = self.shared.store.clone();
        let slurm = SlurmRunner::new(&self.shared.config.slurm);
        let work = async move { owners_of(store, slurm, jobs.into_iter().collect()).await };
        ctx.spawn(work.into_actor(self).map(|(found, missing), act, _| {
            act.resolving = false;
            if act.owners.len() + found.len() > MAX_OWNERS {
                act.owners.clear();
            }
            act.owners.extend(found);
            let now = Instant::now();
            act.unknown.retain(|_, t| now.duration_since(*t) < UNKNOWN_RETRY);
            act.unknown.extend(missing.into_iter().map(|j| (j, now)));
        }));
    }

    /// Turns waiting rows whose owners are known (or who waited long enough) into points.
    fn release(&mut self, now: Instant) {
        let known = |a: &Arrived, owners: &HashMap<JobId, Owner>| {
            a.rows.samples.iter().all(|r| owners.contains_key(&r.0))
                && a.rows.gpus.iter().all(|r| owners.contains_key(&r.0))
        };
        let waiting = std::mem::take(&mut self.waiting);
        let mut points: Vec<Point> = Vec::new();
        let Ok(mut live) = self.live.lock() else {
            self.waiting = waiting;
            return;
        };
        for (since, arrived) in waiting {
            if !known(&arrived, &self.owners) && now.duration_since(since) < OWNER_WAIT {
                self.waiting.push((since, arrived));
                continue;
            }
            let owner = |job: JobId| self.owners.get(&job).cloned().unwrap_or_default();
            let mut rows = arrived.rows.samples;
            rows.sort_by_key(|r| r.2.at);
            for (job, step, sample) in rows {
                let key = StepKey { job, step, node: arrived.node.clone() };
                points.extend(live.step(key, &owner(job), &sample));
            }
            for (job, step, reading) in arrived.rows.gpus {
                let key = StepKey { job, step, node: arrived.node.clone() };
                points.extend(live.gpu(key, &owner(job), &reading));
            }
        }
        drop(live);
        if !self.url.is_empty() {
            let dropped = self.pending.extend(points);
            self.dropped(dropped, "export buffer full: oldest values dropped");
        }
    }

    fn dropped(&self, n: u64, why: &str) {
        if n > 0 {
            self.shared.metrics.export_dropped_total.add(n);
            tracing::warn!(values = n, "{why}");
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>) {
        let batch = self.pending.take(MAX_PER_REQUEST);
        let body = match remote_write::body(&crate::export::series::to_series(&batch)) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "cannot compress a remote-write request; its values are dropped");
                self.dropped(batch.len() as u64, "values dropped");
                return;
            }
        };
        self.sending = true;
        self.last_send = Instant::now();
        let url = self.url.clone();
        let headers = self.headers.clone();
        let timeout = self.shared.config.export.timeout.get();
        let post = async move {
            actix_web::rt::task::spawn_blocking(move || {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                crate::wire::send::post(&url, "", &headers, &body, timeout)
            })
            .await
        };
        ctx.spawn(post.into_actor(self).map(move |answer, act, _| {
            act.sending = false;
            let n = batch.len() as u64;
            let metrics = &act.shared.metrics;
            match answer {
                Ok(Ok(answer)) if (200..300).contains(&answer.status) => {
                    metrics.export_samples_sent_total.add(n);
                    act.backoff.reset();
                    tracing::debug!(values = n, "remote write delivered");
                }
                Ok(Ok(answer)) if answer.status != 429 && (400..500).contains(&answer.status) => {
                    metrics.export_requests_failed_total.inc();
                    tracing::error!(status = answer.status, body = %answer.body, values = n, "the remote-write receiver refused values; they are dropped");
                    act.dropped(n, "values refused by the receiver");
                }
                other => {
                    metrics.export_requests_failed_total.inc();
                    let why = match other {
                        Ok(Ok(answer)) => format!("answered {}: {}", answer.status, answer.body),
                        Ok(Err(err)) => err.to_string(),
                        Err(err) => err.to_string(),
                    };
                    let wait = act.backoff.next_delay();
                    tracing::warn!(error = %why, values = n, retry_in_s = wait.as_secs_f64(), "remote write failed; kept for a retry");
                    act.next_try = Instant::now() + wait;
                    let dropped = act.pending.put_back(batch);
                    act.dropped(dropped, "export buffer full: oldest values dropped");
                }
            }
            act.shared.metrics.export_pending.set(act.pending.len() as u64);
        }));
    }
}

/// The owners of `jobs`: the store's records, then one squeue call for the rest
/// (`%A|%u|%a`); returns those found and those neither knows.
async fn owners_of(
    store: Arc<crate::store::Store>,
    slurm: SlurmRunner,
    jobs: Vec<JobId>,
) -> (Vec<(JobId, Owner)>, Vec<JobId>) {
    let asked = jobs.clone();
    let stored = actix_web::rt::task::spawn_blocking(move || {
        asked
            .into_iter()
            .filter_map(|j| store.job(j).ok().flatten().map(|r| (j, Owner { user: r.user, account: r.account })))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut found: HashMap<JobId, Owner> = stored.into_iter().collect();
    let rest: Vec<JobId> = jobs.iter().copied().filter(|j| !found.contains_key(j)).collect();
    if !rest.is_empty() {
        let list = rest.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(",");
        let args = ["-h".into(), "-j".into(), list, "-o".into(), "%A|%u|%a".into()];
        match slurm.run("squeue", &args).await {
            Ok(text) => {
                for line in text.lines() {
                    let mut parts = line.trim().splitn(3, '|');
                    let (Some(id), Some(user), Some(account)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    if let Ok(id) = id.trim().parse::<u64>() {
                        found.insert(JobId(id), Owner { user: user.trim().into(), account: account.trim().into() });
                    }
                }
            }
            Err(err) => tracing::debug!(error = %err, "squeue for exported jobs' owners failed"),
        }
    }
    let missing = jobs.into_iter().filter(|j| !found.contains_key(j)).collect();
    (found.into_iter().collect(), missing)
}

impl Actor for Exporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.url.is_empty() {
            tracing::info!(url = %self.url, "remote-write export on");
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl actix::Supervised for Exporter {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sending = false;
        self.resolving = false;
    }
}

/// Reads a token file (trimmed); an empty path is no token.
pub fn read_token(path: &str, key: &str) -> anyhow::Result<Option<String>> {
    use anyhow::Context as _;
    if path.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path} ([export] {key})"))?;
    let token = text.trim().to_string();
    anyhow::ensure!(
        !token.is_empty() && !token.contains(['\r', '\n']),
        "{path} ([export] {key}) holds no single-line token"
    );
    Ok(Some(token))
}

/// Who may read `GET /metrics/jobs`, which shows every running job's user and account: a
/// scraper sending `Authorization: Bearer <[export] jobs_token_file>`, or a `[web] admins`
/// user named by the identity header from a `[web] trusted_proxies` peer (the web site's rule
/// for seeing everyone). Anyone else gets 401 (no credentials) or 403.
pub struct JobsAccess {
    token_digest: Option<[u8; 32]>,
    proxies: turingwatch_web::identity::TrustedProxies,
    header: String,
    domains: Vec<String>,
    admins: Vec<String>,
}

impl JobsAccess {
    pub fn new(config: &turingwatch_config::Config, token: Option<String>) -> JobsAccess {
        JobsAccess {
            token_digest: token.map(|t| digest(t.as_bytes())),
            proxies: turingwatch_web::identity::TrustedProxies::new(&config.web.trusted_proxies),
            header: config.web.identity_header.clone(),
            domains: config.web.identity_domains.clone(),
            admins: config.web.admins.clone(),
        }
    }

    /// `Ok` when the request may read the view, else the status to answer and why.
    pub fn check(
        &self,
        peer: Option<std::net::IpAddr>,
        authorization: Option<&[u8]>,
        identity: Option<&[u8]>,
    ) -> Result<(), (u16, String)> {
        if let Some(auth) = authorization {
            let given = auth.strip_prefix(b"Bearer ").map(|t| digest(t.trim_ascii()));
            return match (given, self.token_digest) {
                // Digests compared: equal length, no early exit on the secret's bytes.
                (Some(given), Some(want)) if given == want => Ok(()),
                _ => Err((403, "the bearer token is not [export] jobs_token_file's".into())),
            };
        }
        let resolved =
            turingwatch_web::identity::resolve_caller(&self.proxies, &self.header, &self.domains, peer, identity);
        match resolved {
            Ok(user) if self.admins.contains(&user) => Ok(()),
            Ok(user) => Err((403, format!("{user} is not one of [web] admins"))),
            Err(turingwatch_web::identity::IdentityError::Missing { .. }) => {
                Err((401, "send a bearer token ([export] jobs_token_file) or log in as an admin".into()))
            }
            Err(err) => Err((403, err.to_string())),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// `GET /metrics/jobs`: the running jobs' latest samples as Prometheus text ([`Live::render`]).
pub async fn jobs_endpoint(
    request: actix_web::HttpRequest,
    live: actix_web::web::Data<LiveView>,
    access: actix_web::web::Data<JobsAccess>,
) -> actix_web::HttpResponse {
    let headers = request.headers();
    let auth = headers.get(actix_web::http::header::AUTHORIZATION).map(|v| v.as_bytes());
    let identity = headers.get(access.header.as_str()).map(|v| v.as_bytes());
    if let Err((status, why)) = access.check(request.peer_addr().map(|a| a.ip()), auth, identity) {
        tracing::warn!(status, reason = %why, "/metrics/jobs refused");
        let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::FORBIDDEN);
        return actix_web::HttpResponse::build(status).content_type("text/plain").body(format!("{why}\n"));
    }
    let text = live.lock().map(|l| l.render()).unwrap_or_default();
    actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_or_an_admin_through_the_proxy_reads_the_jobs_view() {
        let mut config = turingwatch_config::Config::default();
        config.web.admins = vec!["root2".into()];
        let access = JobsAccess::new(&config, Some("s3cret".into()));
        let local = Some("127.0.0.1".parse().unwrap());
        let far = Some("10.1.2.3".parse().unwrap());
        assert_eq!(access.check(far, Some(b"Bearer s3cret"), None), Ok(()));
        assert_eq!(access.check(far, Some(b"Bearer s3cret\n"), None), Ok(()));
        assert_eq!(access.check(far, Some(b"Bearer wrong"), None).unwrap_err().0, 403);
        assert_eq!(access.check(far, Some(b"Basic czNjcmV0"), None).unwrap_err().0, 403);
        assert_eq!(access.check(far, None, None).unwrap_err().0, 401);
        assert_eq!(access.check(local, None, Some(b"root2")), Ok(()));
        assert_eq!(access.check(local, None, Some(b"alice")).unwrap_err().0, 403);
        assert_eq!(access.check(far, None, Some(b"root2")).unwrap_err().0, 403, "identity only from a proxy");
        let no_token = JobsAccess::new(&config, None);
        assert_eq!(no_token.check(far, Some(b"Bearer "), None).unwrap_err().0, 403);
    }
}
