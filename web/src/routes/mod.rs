//! Endpoints and who may call them.
//!
//! | route | who | answer |
//! |---|---|---|
//! | `GET /api/user` | anyone logged in | [`UserInfo`] |
//! | `GET /api/periods` | anyone logged in | [`PeriodInfo`] list, oldest first |
//! | `GET /api/report?period=&user=` | own; others' for admins and their coordinators (else 403) | [`ReportView`] |
//! | `GET /api/jobs?period=&user=&state=&sort=&page=&page_size=&format=` | as above | [`crate::api::JobPage`]; `format=csv`: every matching job, sorted, as CSV |
//! | `GET /api/jobs/{id}` | the owner, admins, coordinators of its account (else 404) | [`crate::api::JobDetail`] |
//! | `GET /api/data?period=&format=` | everyone; rows limited to what the caller may see, `coverage` for admins only | [`DataTable`]; `format=csv`: its rows as CSV |
//! | `GET /api/settings` | anyone logged in: their own | [`crate::api::SettingsView`] (with the CSRF token) |
//! | `POST /api/settings` | anyone logged in: their own only, with the token, same origin ([`crate::csrf`]) | [`crate::api::SettingsView`] |
//! | `GET /api/settings/all` | admins (else 403) | [`crate::api::AllSettings`] |
//! | `GET /api/admin/energy?period=` | admins only (else 403) | [`crate::api::EnergyRanking`] |
//! | `GET /api/admin/outcomes` | admins only (else 403) | [`crate::api::OutcomesView`] |
//! | `GET /`, `/static/{file}` | anyone | the embedded UI |
//!
//! Every `/api` answer is JSON (gzip when the client accepts it), errors included, except a
//! table asked for with `format=csv` ([`crate::csv`]: `text/csv; charset=utf-8`, same access
//! rules, same filters). The caller
//! comes from [`crate::identity::resolve_caller`]; a refused identity is 403, none is 401.

use crate::api::{DataTable, ErrorBody, PeriodInfo, ReportView, UserInfo};
use crate::backend::{Backend, BackendError, JobQuery};
use crate::identity::{is_user_name, resolve_caller, Access, IdentityError, TrustedProxies};
use crate::listing::{filter_states, page_of, parse_page, parse_page_size, ListingError, SortOrder};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use turingwatch_config::WebConfig;

mod admin;
mod assets;
mod report_cache;
mod settings;
#[cfg(test)]
mod tests;

/// Longest query string accepted, bytes.
const MAX_QUERY_BYTES: usize = 1024;
/// Largest request body accepted anywhere under `/api` (the one POST is a small JSON object).
const MAX_BODY_BYTES: usize = 1024;

/// What the handlers share: the backend and the identity rules from `[web]`.
pub struct WebState {
    backend: Arc<dyn Backend>,
    proxies: TrustedProxies,
    identity_domains: Vec<String>,
    identity_header: HeaderName,
    /// The header's name as configured, for messages.
    identity_header_text: String,
    admins: BTreeSet<String>,
    coordinators_see_accounts: bool,
    max_page_size: usize,
    reports: report_cache::ReportCache,
    /// Signs the CSRF tokens of `POST /api/settings` (drawn at start).
    csrf: crate::csrf::CsrfKey,
}

impl WebState {
    /// Builds the state from `[web]` (already validated) and a backend.
    pub fn new(config: &WebConfig, backend: Arc<dyn Backend>) -> WebState {
        let identity_header = HeaderName::from_bytes(config.identity_header.as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-authuser"));
        WebState {
            backend,
            proxies: TrustedProxies::new(&config.trusted_proxies),
            identity_domains: config.identity_domains.clone(),
            identity_header,
            identity_header_text: config.identity_header.clone(),
            admins: config.admins.iter().cloned().collect(),
            coordinators_see_accounts: config.coordinators_see_accounts,
            max_page_size: usize::try_from(config.max_page_size).unwrap_or(500).max(1),
            reports: report_cache::ReportCache::default(),
            csrf: crate::csrf::CsrfKey::random(),
        }
    }
}

/// Mounts the site and the API into an App (`App::configure(routes::mount(state))`).
pub fn mount(state: web::Data<WebState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/api")
                .app_data(state)
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .wrap(actix_web::middleware::Compress::default())
                .route("/user", web::get().to(user))
                .route("/periods", web::get().to(periods))
                .route("/report", web::get().to(report))
                .route("/jobs", web::get().to(jobs))
                .route("/jobs/{id}", web::get().to(job))
                .route("/data", web::get().to(data))
                .route("/settings", web::get().to(settings::get))
                .route("/settings", web::post().to(settings::post))
                .route("/settings/all", web::get().to(settings::all))
                .route("/admin/energy", web::get().to(admin::energy))
                .route("/admin/outcomes", web::get().to(admin::outcomes))
                .default_service(web::to(api_fallback)),
        );
        assets::mount(cfg);
    }
}

/// An error answer: status, machine name and a sentence.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).insert_header((header::CACHE_CONTROL, "no-store")).json(ErrorBody {
            status: self.status.as_u16(),
            error: self.kind,
            message: self.message.clone(),
        })
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> ApiError {
        match err {
            IdentityError::UntrustedPeer { .. } => ApiError::forbidden(err.to_string()),
            IdentityError::Missing { .. } => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", err.to_string()),
            IdentityError::Invalid { .. } => ApiError::bad_request(err.to_string()),
            IdentityError::ForeignDomain { .. } => ApiError::forbidden(err.to_string()),
        }
    }
}

impl From<ListingError> for ApiError {
    fn from(err: ListingError) -> ApiError {
        ApiError::bad_request(err.to_string())
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> ApiError {
        tracing::error!(error = %err, "web backend failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the data store could not answer; try again")
    }
}

type ApiResult = Result<HttpResponse, ApiError>;

/// How a table is wanted: `format=` absent or `json`, or `csv`.
fn wants_csv(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("format").map(|f| f.trim()) {
        None | Some("" | "json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("format must be json or csv, got {other:?}"))),
    }
}

/// A CSV answer, offered as a download named `name`.
fn csv(name: &str, body: String) -> ApiResult {
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body))
}

fn json<T: serde::Serialize>(value: &T) -> ApiResult {
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "private, no-store")).json(value))
}

/// Runs a blocking backend call on the blocking pool.
async fn blocking<T, F>(state: &web::Data<WebState>, call: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
    T: Send + 'static,
{
    let backend = Arc::clone(&state.backend);
    match web::block(move || call(backend.as_ref())).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down")),
    }
}

/// The request's query as a map; oversized or malformed queries are refused.
fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    let raw = req.query_string();
    if raw.len() > MAX_QUERY_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    web::Query::<HashMap<String, String>>::from_query(raw)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
}

/// The caller's name, or why there is none.
fn caller(req: &HttpRequest, state: &WebState) -> Result<String, ApiError> {
    let mut values = req.headers().get_all(&state.identity_header);
    let first = values.next();
    if first.is_some() && values.next().is_some() {
        return Err(ApiError::bad_request(format!("more than one {} header", state.identity_header_text)));
    }
    let peer = req.peer_addr().map(|a| a.ip());
    Ok(resolve_caller(
        &state.proxies,
        &state.identity_header_text,
        &state.identity_domains,
        peer,
        first.map(HeaderValue::as_bytes),
    )?)
}

/// What the caller may see. Coordinator rights need sacctmgr's list, so they are looked up only
/// when `need_coordination` (a request about someone else); a failing lookup grants nothing.
async fn access(state: &WebState, user: &str, need_coordination: bool) -> Access {
    let admin = state.admins.contains(user);
    if admin || !need_coordination || !state.coordinators_see_accounts {
        return Access::own(user, admin);
    }
    match state.backend.coordination().await {
        Ok(coordination) => Access::with_coordination(user, false, &coordination),
        Err(err) => {
            tracing::warn!(error = %err, user, "coordinator list unavailable; granting own data only");
            Access::own(user, false)
        }
    }
}

/// The `period=` parameter: a period start in unix seconds, or `None` for the latest period.
fn period_param(q: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    match q.get("period").map(|p| p.trim()).filter(|p| !p.is_empty()) {
        Some(text) => text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("period must be a period start (unix seconds), got {text:?}"))),
        None => Ok(None),
    }
}

/// Picks the wanted period (or the latest) from the list.
fn choose_period(periods: Vec<PeriodInfo>, wanted: Option<u64>) -> Result<PeriodInfo, ApiError> {
    match wanted {
        Some(start) => periods
            .into_iter()
            .find(|p| p.start == start)
            .ok_or_else(|| ApiError::not_found(format!("no period starts at {start}"))),
        None => periods.into_iter().next_back().ok_or_else(|| ApiError::not_found("there are no periods yet")),
    }
}

/// The period named by `period=` (its start, unix seconds), or the latest one.
async fn pick_period(state: &web::Data<WebState>, q: &HashMap<String, String>) -> Result<PeriodInfo, ApiError> {
    let wanted = period_param(q)?;
    choose_period(blocking(state, |b| b.periods()).await?, wanted)
}

/// The `user=` parameter, checked as a name.
fn named_user(q: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    match q.get("user").map(|u| u.trim()).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) if is_user_name(u) => Ok(Some(u.to_string())),
        Some(u) => Err(ApiError::bad_request(format!("{u:?} is not a user name"))),
    }
}

fn refuse_user(user: &str) -> ApiError {
    ApiError::forbidden(format!("you may not see the data of {user}"))
}

async fn user(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    let access = access(&state, &me, true).await;
    json(&UserInfo {
        user: access.user.clone(),
        admin: access.admin,
        coordinator_of: access.coordinator_of.iter().cloned().collect(),
        visible_users: access.coordinated_users.iter().cloned().collect(),
    })
}

async fn periods(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    caller(&req, &state)?;
    json(&blocking(&state, |b| b.periods()).await?)
}

async fn report(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    let q = query(&req)?;
    let whom = named_user(&q)?.unwrap_or_else(|| me.clone());
    let access = access(&state, &me, whom != me).await;
    if !access.may_see_user(&whom) {
        return Err(refuse_user(&whom));
    }
    let wanted = period_param(&q)?;
    // One trip to the blocking pool for both reads: this is the most requested endpoint.
    let name = whom.clone();
    let (periods, stored) = blocking(&state, move |b| {
        let periods = b.periods()?;
        let start = wanted.or_else(|| periods.last().map(|p| p.start));
        let stored = match start {
            Some(start) if periods.iter().any(|p| p.start == start) => b.report(start, &name)?,
            _ => None,
        };
        Ok((periods, stored))
    })
    .await?;
    let period = choose_period(periods, wanted)?;
    let start = period.start;
    let stored =
        stored.ok_or_else(|| ApiError::not_found(format!("no report for {whom} in the period starting at {start}")))?;
    let version = report_cache::Version {
        report_updated_at: stored.updated_at,
        period_updated_at: period.updated_at,
        period_end: period.end,
        period_closed: period.closed,
        sizes: (stored.html.len(), stored.json.len()),
    };
    let encoded = match state.reports.get(start, &whom, &version) {
        Some(hit) => hit,
        None => {
            let (data, data_raw) = match serde_json::from_str::<serde_json::Value>(&stored.json) {
                Ok(value) => (value, None),
                Err(_) => (serde_json::Value::Null, Some(stored.json)),
            };
            let view = ReportView {
                period,
                user: stored.user,
                html: stored.html,
                data,
                data_raw,
                has_findings: stored.has_findings,
                updated_at: stored.updated_at,
            };
            let body = serde_json::to_vec(&view)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
            let encoded = Arc::new(report_cache::Encoded::new(version, body));
            state.reports.put(start, &whom, Arc::clone(&encoded));
            encoded
        }
    };
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header((header::VARY, "Accept-Encoding"));
    let gzip_ok = report_cache::accepts_gzip(req.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    if gzip_ok && !encoded.gzip.is_empty() {
        resp.insert_header((header::CONTENT_ENCODING, "gzip"));
        Ok(resp.body(encoded.gzip.clone()))
    } else {
        Ok(resp.body(encoded.json.clone()))
    }
}

/// The owners a listing covers: the named user (if visible) or everyone the caller may see.
fn listing_users(access: &Access, named: Option<String>) -> Result<Option<Vec<String>>, ApiError> {
    match named {
        Some(u) if access.may_see_user(&u) => Ok(Some(vec![u])),
        Some(u) => Err(refuse_user(&u)),
        None => Ok(access.visible_users()),
    }
}

/// `[from, to)` of the named period, or all time without `period=`.
async fn window(state: &web::Data<WebState>, q: &HashMap<String, String>) -> Result<(u64, u64), ApiError> {
    if q.get("period").is_some_and(|p| !p.trim().is_empty()) {
        let p = pick_period(state, q).await?;
        Ok((p.start, p.end))
    } else {
        Ok((0, u64::MAX))
    }
}

async fn jobs(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    let q = query(&req)?;
    let named = named_user(&q)?;
    let access = access(&state, &me, named.as_ref().is_some_and(|u| *u != me) || named.is_none()).await;
    let users = listing_users(&access, named)?;
    let order = SortOrder::parse(q.get("sort").map_or("", String::as_str))?;
    let as_csv = wants_csv(&q)?;
    let page = parse_page(q.get("page").map(String::as_str))?;
    let page_size = parse_page_size(q.get("page_size").map(String::as_str), state.max_page_size)?;
    let (from, to) = window(&state, &q).await?;
    let query = JobQuery { from, to, users };
    let mut found = blocking(&state, move |b| b.jobs(&query)).await?;
    found.retain(|j| access.may_see_job(&j.user, &j.account));
    filter_states(&mut found, q.get("state").map_or("", String::as_str));
    if as_csv {
        let all = found.len().max(1);
        return csv("jobs.csv", crate::csv::jobs_csv(&page_of(found, order, 1, all).jobs));
    }
    json(&page_of(found, order, page, page_size))
}

async fn job(req: HttpRequest, state: web::Data<WebState>, path: web::Path<String>) -> ApiResult {
    let me = caller(&req, &state)?;
    let text = path.into_inner();
    let id: u64 = text.parse().map_err(|_| ApiError::bad_request(format!("{text:?} is not a job id")))?;
    let not_found = || ApiError::not_found(format!("no job {id} that you may see"));
    // Authorise on the owner alone; only then load samples and analyse.
    let (owner, account) = blocking(&state, move |b| b.job_owner(id)).await?.ok_or_else(not_found)?;
    let access = access(&state, &me, owner != me).await;
    if !access.may_see_job(&owner, &account) {
        return Err(not_found());
    }
    let detail = blocking(&state, move |b| b.job(id)).await?.ok_or_else(not_found)?;
    json(&detail)
}

async fn data(req: HttpRequest, state: web::Data<WebState>) -> ApiResult {
    let me = caller(&req, &state)?;
    let q = query(&req)?;
    let as_csv = wants_csv(&q)?;
    let access = access(&state, &me, true).await;
    let period = pick_period(&state, &q).await?;
    let query = JobQuery { from: period.start, to: period.end, users: access.visible_users() };
    // The coverage sums every user's jobs: only admins see it.
    let (admin, start) = (access.admin, period.start);
    let (mut rows, coverage) = blocking(&state, move |b| {
        let coverage = if admin { b.period_coverage(start)? } else { None };
        Ok((b.jobs(&query)?, coverage))
    })
    .await?;
    rows.retain(|j| access.may_see_job(&j.user, &j.account));
    rows.sort_by_key(|j| j.id);
    if as_csv {
        return csv(&format!("data-{}.csv", period.start), crate::csv::jobs_csv(&rows));
    }
    json(&DataTable { period, rows, coverage })
}

async fn api_fallback(req: HttpRequest) -> ApiResult {
    if req.method() != actix_web::http::Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here; the API is read-only (GET) but for POST /api/settings", req.method()),
        ));
    }
    Err(ApiError::not_found(format!("no such endpoint: {}", req.path())))
}
