//! The endpoints against an in-memory backend: identity, who sees what, errors, limits.

use super::*;
use crate::api::{EnergyRow, JobDetail, JobSummary, MailPrefs, OutcomesView, PeriodCoverage, StoredReport};
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
    /// Mail settings by user.
    prefs: std::sync::Mutex<std::collections::BTreeMap<String, MailPrefs>>,
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
            step_series: vec![],
            gpu_series: vec![],
            sampled_memory: None,
            energy: None,
        }))
    }
    fn mail_prefs(&self, user: &str) -> Result<MailPrefs, BackendError> {
        let stored = self.prefs.lock().unwrap().get(user).cloned();
        Ok(MailPrefs {
            opted_out_by_admin: user == "dave",
            ..stored.unwrap_or(MailPrefs { user: user.into(), ..MailPrefs::default() })
        })
    }
    fn set_mail_prefs(&self, prefs: &MailPrefs) -> Result<(), BackendError> {
        let stored = MailPrefs { updated_at: Some(77), ..prefs.clone() };
        self.prefs.lock().unwrap().insert(prefs.user.clone(), stored);
        Ok(())
    }
    fn all_mail_prefs(&self) -> Result<(Vec<MailPrefs>, Vec<String>), BackendError> {
        Ok((self.prefs.lock().unwrap().values().cloned().collect(), vec!["dave".into()]))
    }
    fn site_quiet_days(&self) -> Vec<String> {
        vec!["sun".into()]
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
            prefs: Default::default(),
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
        prefs: Default::default(),
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
            prefs: Default::default(),
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
    for uri in [
        "/static/app.js",
        "/static/charts.js",
        "/static/cluster.js",
        "/static/uPlot.iife.min.js",
        "/static/uPlot.min.css",
        "/static/uPlot-LICENSE.txt",
        "/static/app.css",
        "/static/tips.json",
    ] {
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
                prefs: Default::default(),
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
    // uPlot (51 KB minified) is most of it; the report page's weight is measured in Chromium.
    assert!(assets::total_bytes() < 150_000, "UI is {} bytes", assets::total_bytes());
    // The vendored library is the pinned release, its licence kept beside it.
    let uplot = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
    assert!(uplot.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
    assert!(include_str!("../../assets/vendor/uplot/LICENSE").contains("MIT License"));
    assert!(include_str!("../../assets/vendor/uplot/VENDORED.md").contains("**1.6.32**"));
    assert!(!include_str!("../../assets/index.html").contains("//"), "index.html loads nothing from elsewhere");
}

#[actix_web::test]
async fn reports_are_served_gzip_from_cache_until_the_analysis_rewrites_them() {
    let fake = Arc::new(Fake {
        jobs: jobs(),
        coordination_fails: false,
        generation: Default::default(),
        loads: Default::default(),
        prefs: Default::default(),
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

async fn text(resp: ServiceResponse) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = to_bytes(resp.into_body()).await.unwrap();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

#[actix_web::test]
async fn csv_tables_follow_the_json_access_rules() {
    // alice's jobs only, all of them (no paging), sorted as asked.
    let (status, kind, csv) = text(get("/api/jobs?format=csv&sort=id&page_size=1", TRUSTED, Some("alice")).await).await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"), "{csv}");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,display_id,name,user,"));
    assert!(lines[1].starts_with("11,11,job11,alice,") && lines[2].starts_with("12,12,job12,alice,"), "{csv}");
    assert!(!csv.contains("bob"));
    // Someone else's jobs: refused as in JSON (an error body in JSON).
    let (status, kind, _) = text(get("/api/jobs?format=csv&user=bob", TRUSTED, Some("alice")).await).await;
    assert_eq!((status, kind.as_str()), (403, "application/json"));
    assert_eq!(get("/api/jobs?format=csv", STRANGER, Some("alice")).await.status(), 403);
    assert_eq!(get("/api/jobs?format=csv", TRUSTED, None).await.status(), 401);
    assert_eq!(get("/api/jobs?format=xlsx", TRUSTED, Some("alice")).await.status(), 400);
    // The data table: rows the caller may see; the admin sees all of the period's.
    let (_, _, mine) = text(get("/api/data?period=1000&format=csv", TRUSTED, Some("bob")).await).await;
    assert_eq!(mine.split("\r\n").filter(|l| !l.is_empty()).count(), 2, "{mine}");
    assert!(mine.contains(",bob,") && !mine.contains("alice"), "{mine}");
    let (status, _, all) = text(get("/api/data?period=1000&format=csv", TRUSTED, Some("root")).await).await;
    assert_eq!(status, 200);
    assert!(all.contains(",bob,") && all.contains(",alice,"), "{all}");
    let (status, kind, _) = text(get("/api/data?period=1000&format=json", TRUSTED, Some("root")).await).await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
}

fn settings_get(user: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri("/api/settings")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", user))
}

fn settings_post(user: &str, token: Option<&str>, headers: &[(&str, &str)], body: &str) -> test::TestRequest {
    let mut req = test::TestRequest::post()
        .uri("/api/settings")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", user))
        .insert_header(("Host", "hpc.example.org"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string());
    if let Some(t) = token {
        req = req.insert_header(("X-CSRF-Token", t));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    req
}

#[actix_web::test]
async fn settings_change_only_with_the_token_from_the_same_origin_and_only_ones_own() {
    let fake = Arc::new(Fake {
        jobs: jobs(),
        coordination_fails: false,
        generation: Default::default(),
        loads: Default::default(),
        prefs: Default::default(),
    });
    let state = web::Data::new(WebState::new(&config(), fake.clone()));
    let app = test::init_service(App::new().configure(mount(state))).await;
    let (status, alice) = body(app.call(settings_get("alice").to_request()).await.unwrap()).await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["prefs"]["opted_out"], false);
    assert_eq!(alice["site_quiet_days"], serde_json::json!(["sun"]));
    let token = alice["csrf_token"].as_str().unwrap().to_string();
    let (_, bob) = body(app.call(settings_get("bob").to_request()).await.unwrap()).await;
    let bob_token = bob["csrf_token"].as_str().unwrap().to_string();
    assert_ne!(token, bob_token);
    let same = [("Origin", "https://hpc.example.org"), ("Sec-Fetch-Site", "same-origin")];
    let body_ok = r#"{"opted_out": true, "quiet_days": ["sat", "mon", "sat"]}"#;

    // Refused: no token, a wrong one, bob's, another origin, a cross-site fetch, not JSON.
    for (what, req) in [
        ("no token", settings_post("alice", None, &same, body_ok)),
        ("wrong token", settings_post("alice", Some("deadbeef"), &same, body_ok)),
        ("bob's token", settings_post("alice", Some(&bob_token), &same, body_ok)),
        ("foreign origin", settings_post("alice", Some(&token), &[("Origin", "https://evil.example")], body_ok)),
        ("cross-site", settings_post("alice", Some(&token), &[("Sec-Fetch-Site", "cross-site")], body_ok)),
    ] {
        let (status, err) = body(app.call(req.to_request()).await.unwrap()).await;
        assert_eq!((status, err["error"].as_str()), (403, Some("csrf")), "{what}: {err}");
    }
    let form = test::TestRequest::post()
        .uri("/api/settings")
        .peer_addr(TRUSTED.parse().unwrap())
        .insert_header(("X-AuthUser", "alice"))
        .insert_header(("X-CSRF-Token", token.as_str()))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("opted_out=true")
        .to_request();
    assert_eq!(app.call(form).await.unwrap().status(), 415);
    assert!(fake.prefs.lock().unwrap().is_empty(), "nothing refused was stored");

    // alice cannot change bob's settings, even with her valid token.
    let (status, err) = body(
        app.call(settings_post("alice", Some(&token), &same, r#"{"user": "bob", "opted_out": true}"#).to_request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert!(fake.prefs.lock().unwrap().get("bob").is_none());
    // Bad days and unknown fields are refused.
    for bad in [r#"{"opted_out": false, "quiet_days": ["caturday"]}"#, r#"{"opted_out": false, "admin": true}"#, "[]"] {
        assert_eq!(
            app.call(settings_post("alice", Some(&token), &same, bad).to_request()).await.unwrap().status(),
            400,
            "{bad}"
        );
    }

    // Accepted: her own, from her page; days cleaned up.
    let (status, saved) =
        body(app.call(settings_post("alice", Some(&token), &same, body_ok).to_request()).await.unwrap()).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["prefs"]["quiet_days"], serde_json::json!(["mon", "sat"]));
    let stored = fake.prefs.lock().unwrap().get("alice").cloned().unwrap();
    assert!(stored.opted_out && stored.user == "alice");
    // Naming herself is fine; a client that says nothing of its origin needs the token only.
    let own = r#"{"user": "alice", "opted_out": false}"#;
    assert_eq!(app.call(settings_post("alice", Some(&token), &[], own).to_request()).await.unwrap().status(), 200);
    assert!(!fake.prefs.lock().unwrap().get("alice").unwrap().opted_out);

    // Admins see who chose what; others may not.
    let all = |user: &str| {
        test::TestRequest::get()
            .uri("/api/settings/all")
            .peer_addr(TRUSTED.parse().unwrap())
            .insert_header(("X-AuthUser", user))
            .to_request()
    };
    let (status, listing) = body(app.call(all("root")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(listing["users"][0]["user"], "alice");
    assert_eq!(listing["opted_out_by_admin"], serde_json::json!(["dave"]));
    assert_eq!(app.call(all("alice")).await.unwrap().status(), 403);
    // A spoofed identity from an untrusted address writes nothing.
    let spoofed = test::TestRequest::post()
        .uri("/api/settings")
        .peer_addr(STRANGER.parse().unwrap())
        .insert_header(("X-AuthUser", "bob"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body_ok)
        .to_request();
    assert_eq!(app.call(spoofed).await.unwrap().status(), 403);
    assert!(fake.prefs.lock().unwrap().get("bob").is_none());
}
