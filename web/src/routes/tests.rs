//! The endpoints against an in-memory backend: identity, who sees what, errors, limits.

use super::*;
use crate::api::{EnergyRow, JobDetail, JobSummary, OutcomesView, PeriodCoverage, StoredReport};
use crate::backend::{Coordination, LocalFuture};
use crate::listing::tests::summary;
use actix_web::body::to_bytes;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, App};
use serde_json::Value;
use std::net::SocketAddr;

struct Fake {
    jobs: Vec<JobSummary>,
    coordination_fails: bool,
    /// Bumped to make the analysis "rewrite" the reports.
    generation: std::sync::atomic::AtomicU64,
    /// Jobs loaded in full (samples, analysis).
    loads: std::sync::atomic::AtomicU64,
}

impl Backend for Fake {
    fn periods(&self) -> Result<Vec<PeriodInfo>, BackendError> {
        Ok(vec![
            PeriodInfo { start: 1000, end: 2000, closed: true, updated_at: 2000 },
            PeriodInfo { start: 2000, end: 3000, closed: false, updated_at: 2500 },
        ])
    }
    fn period_coverage(&self, period_start: u64) -> Result<Option<PeriodCoverage>, BackendError> {
        Ok((period_start == 1000).then(|| PeriodCoverage {
            jobs: 20,
            jobs_unsampled: 17,
            core_hours: 1_234.0,
            core_hours_sampled_frac: Some(0.42),
            text: "42 % of the 1 234 core-hours were sampled; 17 jobs had no samples.".into(),
            ..PeriodCoverage::default()
        }))
    }
    fn report(&self, period_start: u64, user: &str) -> Result<Option<StoredReport>, BackendError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let json = if user == "bob" { "not json".to_string() } else { format!("{{\"user\":\"{user}\"}}") };
        Ok(["alice", "bob", "carol"].contains(&user).then(|| StoredReport {
            period_start,
            user: user.into(),
            json,
            html: format!("<p>report of {user} for {period_start}, version {generation}</p>"),
            has_findings: true,
            updated_at: period_start + 10 + generation,
        }))
    }
    fn jobs(&self, query: &JobQuery) -> Result<Vec<JobSummary>, BackendError> {
        Ok(self
            .jobs
            .iter()
            .filter(|j| query.users.as_ref().is_none_or(|u| u.contains(&j.user)))
            .filter(|j| j.start_at.is_some_and(|s| s < query.to) && j.end_at.is_none_or(|e| e >= query.from))
            .cloned()
            .collect())
    }
    fn job_owner(&self, id: u64) -> Result<Option<(String, String)>, BackendError> {
        Ok(self.jobs.iter().find(|j| j.id == id).map(|j| (j.user.clone(), j.account.clone())))
    }
    fn job(&self, id: u64) -> Result<Option<JobDetail>, BackendError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.jobs.iter().find(|j| j.id == id).map(|j| JobDetail {
            summary: j.clone(),
            steps: vec![],
            findings: vec![],
            cores_requested_per_node: 2.0,
            mem_requested_per_node_bytes: None,
            series: vec![],
            gpu_series: vec![],
            sampled_memory: None,
            energy: None,
        }))
    }
    fn coordination(&self) -> LocalFuture<Result<Arc<Coordination>, BackendError>> {
        let fails = self.coordination_fails;
        Box::pin(async move {
            if fails {
                return Err(BackendError::Slurm("sacctmgr timed out".into()));
            }
            let mut c = Coordination::default();
            c.accounts_of.insert("carol".into(), ["physics".to_string()].into());
            c.users_of.insert("physics".into(), ["alice".to_string(), "carol".to_string()].into());
            c.users_of.insert("chem".into(), ["bob".to_string()].into());
            Ok(Arc::new(c))
        })
    }
    fn energy_ranking(&self, period_start: u64) -> Result<(Vec<EnergyRow>, Vec<EnergyRow>, String), BackendError> {
        let row = |name: &str, wasted_kwh: f64| EnergyRow {
            name: name.into(),
            jobs: 1,
            kwh: 2.0 * wasted_kwh,
            co2e_g: 600.0 * wasted_kwh,
            wasted_kwh,
            wasted_co2e_g: 300.0 * wasted_kwh,
        };
        let users = if period_start == 1000 { vec![row("bob", 3.0), row("alice", 1.0)] } else { vec![] };
        Ok((users, vec![row("chem", 3.0)], "12 W/core".into()))
    }
    fn outcomes(&self) -> Result<OutcomesView, BackendError> {
        Ok(OutcomesView {
            periods: 2,
            method: "Wilson".into(),
            holdout_share: 0.2,
            unreadable_reports: 0,
            kinds: vec![],
        })
    }
}

fn jobs() -> Vec<JobSummary> {
    let mut a = summary(11, "alice", "COMPLETED", 1500, 3.0);
    a.account = "physics".into();
    let mut a2 = summary(12, "alice", "FAILED", 2500, 1.0);
    a2.account = "physics".into();
    let mut b = summary(21, "bob", "COMPLETED", 1600, 9.0);
    b.account = "chem".into();
    vec![a, a2, b]
}

fn config() -> WebConfig {
    WebConfig { admins: vec!["root".into()], max_page_size: 100, ..WebConfig::default() }
}

const TRUSTED: &str = "127.0.0.1:40000";
const STRANGER: &str = "10.1.2.3:40000";

async fn get_with(fails: bool, uri: &str, peer: &str, user: Option<&str>) -> ServiceResponse {
    let state = web::Data::new(WebState::new(
        &config(),
        Arc::new(Fake {
            jobs: jobs(),
            coordination_fails: fails,
            generation: Default::default(),
            loads: Default::default(),
        }),
    ));
    let app = test::init_service(App::new().configure(mount(state))).await;
    let mut req = test::TestRequest::get().uri(uri).peer_addr(peer.parse::<SocketAddr>().unwrap());
    if let Some(u) = user {
        req = req.insert_header(("X-AuthUser", u));
    }
    app.call(req.to_request()).await.unwrap()
}

async fn get(uri: &str, peer: &str, user: Option<&str>) -> ServiceResponse {
    get_with(false, uri, peer, user).await
}

async fn body(resp: ServiceResponse) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body()).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const ENDPOINTS: &[&str] =
    &["/api/user", "/api/periods", "/api/report", "/api/jobs", "/api/jobs/11", "/api/data?period=1000"];

#[actix_web::test]
async fn every_endpoint_refuses_a_spoofed_header_and_wants_a_login() {
    for uri in ENDPOINTS {
        let (status, b) = body(get(uri, STRANGER, Some("root")).await).await;
        assert_eq!(status, 403, "{uri}");
        assert_eq!(b["error"], "forbidden", "{uri}");
        assert!(b["message"].as_str().unwrap().contains("10.1.2.3"), "{uri}: {b}");
        let (status, b) = body(get(uri, TRUSTED, None).await).await;
        assert_eq!(status, 401, "{uri}");
        assert_eq!(b["error"], "unauthorized", "{uri}");
        let (status, _) = body(get(uri, TRUSTED, Some("alice")).await).await;
        assert_eq!(status, 200, "{uri}");
    }
}

#[actix_web::test]
async fn a_job_page_is_authorised_before_the_job_is_loaded() {
    let fake = Arc::new(Fake {
        jobs: jobs(),
        coordination_fails: false,
        generation: Default::default(),
        loads: Default::default(),
    });
    let state = web::Data::new(WebState::new(&config(), fake.clone()));
    let app = test::init_service(App::new().configure(mount(state))).await;
    let ask = |user: &'static str| {
        test::TestRequest::get()
            .uri("/api/jobs/11")
            .peer_addr(TRUSTED.parse::<SocketAddr>().unwrap())
            .insert_header(("X-AuthUser", user))
            .to_request()
    };
    let loads = || fake.loads.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(app.call(ask("bob")).await.unwrap().status().as_u16(), 404);
    assert_eq!(loads(), 0, "bob's request loaded alice's job");
    assert_eq!(app.call(ask("alice")).await.unwrap().status().as_u16(), 200);
    assert_eq!(loads(), 1);
}

#[actix_web::test]
async fn every_endpoint_hides_other_users_data() {
    let cases = [
        ("/api/report?user=bob", 403),
        ("/api/jobs?user=bob", 403),
        ("/api/jobs/21", 404),
        ("/api/report?user=root", 403),
    ];
    for (uri, want) in cases {
        let (status, b) = body(get(uri, TRUSTED, Some("alice")).await).await;
        assert_eq!(status, want, "{uri}: {b}");
    }
    let (_, me) = body(get("/api/user", TRUSTED, Some("alice")).await).await;
    assert_eq!(me["admin"], false);
    assert_eq!(me["visible_users"], serde_json::json!([]));
    let (_, page) = body(get("/api/jobs", TRUSTED, Some("alice")).await).await;
    let ids: Vec<u64> = page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [12, 11]);
    let (_, data) = body(get("/api/data?period=1000", TRUSTED, Some("alice")).await).await;
    let users: Vec<&str> = data["rows"].as_array().unwrap().iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice"]);
    // The periods list holds nothing personal.
    let (status, _) = body(get("/api/periods", TRUSTED, Some("mallory")).await).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn admins_see_everyone_and_coordinators_their_accounts() {
    let (status, r) = body(get("/api/report?user=bob&period=1000", TRUSTED, Some("root")).await).await;
    assert_eq!(status, 200);
    assert_eq!(r["user"], "bob");
    assert_eq!(r["data"], Value::Null, "bob's stored JSON does not parse");
    assert_eq!(r["data_raw"], "not json");
    let (_, page) = body(get("/api/jobs?sort=-wasted", TRUSTED, Some("root")).await).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["jobs"][0]["id"], 21);
    let (status, _) = body(get("/api/jobs/21", TRUSTED, Some("root")).await).await;
    assert_eq!(status, 200);

    let (_, me) = body(get("/api/user", TRUSTED, Some("carol")).await).await;
    assert_eq!(me["coordinator_of"], serde_json::json!(["physics"]));
    assert_eq!(me["visible_users"], serde_json::json!(["alice"]));
    let (status, r) = body(get("/api/report?user=alice", TRUSTED, Some("carol")).await).await;
    assert_eq!((status, r["user"].as_str()), (200, Some("alice")));
    assert_eq!(r["period"]["start"], 2000, "the latest period by default");
    assert_eq!(body(get("/api/report?user=bob", TRUSTED, Some("carol")).await).await.0, 403);
    assert_eq!(body(get("/api/jobs/11", TRUSTED, Some("carol")).await).await.0, 200);
    assert_eq!(body(get("/api/jobs/21", TRUSTED, Some("carol")).await).await.0, 404);
    // Without sacctmgr's answer a coordinator is an ordinary user.
    assert_eq!(body(get_with(true, "/api/report?user=alice", TRUSTED, Some("carol")).await).await.0, 403);
}

#[actix_web::test]
async fn only_admins_get_the_energy_ranking_and_the_outcomes() {
    let (status, r) = body(get("/api/admin/energy?period=1000", TRUSTED, Some("root")).await).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["period"]["start"].as_u64(), r["factors"].as_str()), (Some(1000), Some("12 W/core")));
    assert_eq!(r["users"][0]["name"], "bob");
    assert_eq!(r["accounts"][0]["wasted_kwh"], 3.0);
    // The latest period by default; an unknown one is 404.
    let (status, r) = body(get("/api/admin/energy", TRUSTED, Some("root")).await).await;
    assert_eq!((status, r["period"]["start"].as_u64()), (200, Some(2000)));
    assert_eq!(get("/api/admin/energy?period=1234", TRUSTED, Some("root")).await.status().as_u16(), 404);
    assert_eq!(get("/api/admin/energy?period=x", TRUSTED, Some("root")).await.status().as_u16(), 400);
    let (status, o) = body(get("/api/admin/outcomes", TRUSTED, Some("root")).await).await;
    assert_eq!((status, o["holdout_share"].as_f64()), (200, Some(0.2)));
    // Users and coordinators are refused; no login, or a spoofed header, gets nothing.
    for uri in ["/api/admin/energy?period=1000", "/api/admin/outcomes"] {
        for user in ["alice", "carol"] {
            let (status, r) = body(get(uri, TRUSTED, Some(user)).await).await;
            assert_eq!((status, r["error"].as_str()), (403, Some("forbidden")), "{uri} {user}: {r}");
        }
        assert_eq!(get(uri, TRUSTED, None).await.status().as_u16(), 401, "{uri}");
        assert_eq!(get(uri, STRANGER, Some("root")).await.status().as_u16(), 403, "{uri}");
    }
}

#[actix_web::test]
async fn only_admins_get_the_periods_sampling_coverage() {
    let (status, data) = body(get("/api/data?period=1000", TRUSTED, Some("root")).await).await;
    assert_eq!(status, 200);
    assert_eq!(data["coverage"]["jobs_unsampled"], 17);
    assert_eq!(data["coverage"]["core_hours_sampled_frac"], 0.42);
    assert_eq!(data["coverage"]["text"], "42 % of the 1 234 core-hours were sampled; 17 jobs had no samples.");
    // A period not analysed yet has none.
    let (_, data) = body(get("/api/data?period=2000", TRUSTED, Some("root")).await).await;
    assert_eq!(data["coverage"], Value::Null);
    // Users and coordinators see their rows, never the cluster's totals.
    for user in ["alice", "carol"] {
        let (status, data) = body(get("/api/data?period=1000", TRUSTED, Some(user)).await).await;
        assert_eq!((status, &data["coverage"]), (200, &Value::Null), "{user}");
        assert!(!data["rows"].as_array().unwrap().is_empty(), "{user}");
    }
}

#[actix_web::test]
async fn listings_filter_sort_page_and_bound_their_size() {
    let (_, page) = body(get("/api/jobs?period=2000&state=failed", TRUSTED, Some("alice")).await).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["jobs"][0]["id"], 12);
    let (_, page) = body(get("/api/jobs?page_size=1&page=2&sort=id", TRUSTED, Some("alice")).await).await;
    assert_eq!((page["total"].as_u64(), page["jobs"][0]["id"].as_u64()), (Some(2), Some(12)));
    for uri in ["/api/jobs?page_size=101", "/api/jobs?page=0", "/api/jobs?sort=secret", "/api/report?period=x"] {
        let (status, b) = body(get(uri, TRUSTED, Some("alice")).await).await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(b["error"], "bad_request", "{uri}");
    }
    assert_eq!(body(get("/api/report?period=999", TRUSTED, Some("alice")).await).await.0, 404);
    assert_eq!(body(get("/api/report?user=../../etc", TRUSTED, Some("root")).await).await.0, 400);
    let long = format!("/api/jobs?state={}", "x".repeat(2000));
    assert_eq!(body(get(&long, TRUSTED, Some("alice")).await).await.0, 414);
}

#[actix_web::test]
async fn errors_are_json_and_answers_are_compressed() {
    let (status, b) = body(get("/api/nothing", TRUSTED, Some("alice")).await).await;
    assert_eq!((status, b["error"].as_str()), (404, Some("not_found")));
    let state = web::Data::new(WebState::new(
        &config(),
        Arc::new(Fake {
            jobs: jobs(),
            coordination_fails: false,
            generation: Default::default(),
            loads: Default::default(),
        }),
    ));
    let app = test::init_service(App::new().configure(mount(state))).await;
    let req = test::TestRequest::post()
        .uri("/api/report")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", "alice"))
        .to_request();
    let (status, b) = body(app.call(req).await.unwrap()).await;
    assert_eq!((status, b["error"].as_str()), (405, Some("method_not_allowed")));
    let req = test::TestRequest::get()
        .uri("/api/jobs")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", "alice"))
        .append_header(("X-AuthUser", "root"))
        .to_request();
    assert_eq!(app.call(req).await.unwrap().status(), 400, "two identity headers are ambiguous");
    let req = test::TestRequest::get()
        .uri("/api/jobs")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", "alice"))
        .insert_header(("Accept-Encoding", "gzip"))
        .to_request();
    let resp = app.call(req).await.unwrap();
    assert_eq!(resp.headers().get("content-encoding").unwrap(), "gzip");
}

#[actix_web::test]
async fn the_ui_is_embedded_small_and_has_no_traversal() {
    let resp = get("/", STRANGER, None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("script-src 'self'"));
    for uri in ["/static/app.js", "/static/plot.js", "/static/app.css", "/static/tips.json"] {
        let resp = get(uri, TRUSTED, None).await;
        assert_eq!(resp.status(), 200, "{uri}");
        let etag = resp.headers().get("etag").unwrap().clone();
        let state = web::Data::new(WebState::new(
            &config(),
            Arc::new(Fake {
                jobs: jobs(),
                coordination_fails: false,
                generation: Default::default(),
                loads: Default::default(),
            }),
        ));
        let app = test::init_service(App::new().configure(mount(state))).await;
        let again = test::TestRequest::get().uri(uri).insert_header(("If-None-Match", etag)).to_request();
        assert_eq!(app.call(again).await.unwrap().status(), 304, "{uri}");
    }
    for uri in ["/static/..%2FCargo.toml", "/static/../Cargo.toml", "/static/%2e%2e/src/lib.rs", "/static/"] {
        assert_eq!(get(uri, TRUSTED, None).await.status(), 404, "{uri}");
    }
    let tips: Value = serde_json::from_slice(include_bytes!("../../assets/tips.json")).unwrap();
    assert!(tips.as_array().unwrap().iter().all(|t| t["title"].is_string() && t["text"].is_string()));
    assert!(assets::total_bytes() < 100_000, "UI is {} bytes", assets::total_bytes());
}

#[actix_web::test]
async fn reports_are_served_gzip_from_cache_until_the_analysis_rewrites_them() {
    let fake = Arc::new(Fake {
        jobs: jobs(),
        coordination_fails: false,
        generation: Default::default(),
        loads: Default::default(),
    });
    let backend: Arc<dyn Backend> = fake.clone();
    let state = web::Data::new(WebState::new(&config(), backend));
    let app = test::init_service(App::new().configure(mount(state))).await;
    let fetch = |gzip: bool| {
        let mut req = test::TestRequest::get()
            .uri("/api/report")
            .peer_addr(TRUSTED.parse().unwrap())
            .insert_header(("X-AuthUser", "alice"));
        if gzip {
            req = req.insert_header(("Accept-Encoding", "gzip"));
        }
        req.to_request()
    };
    let plain = to_bytes(app.call(fetch(false)).await.unwrap().into_body()).await.unwrap();
    let resp = app.call(fetch(true)).await.unwrap();
    assert_eq!(resp.headers().get("content-encoding").unwrap(), "gzip");
    let packed = to_bytes(resp.into_body()).await.unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut unpacked).unwrap();
    assert_eq!(unpacked, plain);
    assert!(String::from_utf8_lossy(&plain).contains("version 0"));
    fake.generation.store(1, std::sync::atomic::Ordering::SeqCst);
    let again = to_bytes(app.call(fetch(false)).await.unwrap().into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&again).contains("version 1"), "stale report served");
}
