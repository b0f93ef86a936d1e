//! Remote-write export against real receivers: a real VictoriaMetrics (Debian's
//! `victoria-metrics`) and a real Prometheus with its remote-write receiver (Debian's
//! `prometheus`), each started by the test. A CPU burner of alice's runs on the dev cluster, a
//! real scraper samples it and reports to a server whose `[export] remote_write_url` is the
//! receiver; the series are then queried back from the receiver: the right labels (job, step,
//! node, user, account; never a pid), CPU seconds that grow to what the burner burned.
//!
//! VictoriaMetrics is started only after the server has failed to reach it for a while: the
//! samples are buffered, retried, and delivered once it is up (the earliest sample predates
//! its start). The Prometheus test also reads `/metrics/jobs` with and without its token.

use crate::scrape_support::{cancel, terminate, Setup};
use crate::util::{cluster, eventually, run, sbatch};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VM_SERVER_PORT: u16 = 18_850;
const VM_PORT: u16 = 18_851;
const PROM_PORT: u16 = 18_852;
const PROM_SERVER_PORT: u16 = 18_853;

/// The labels an exported step series may have.
const ALLOWED_LABELS: &[&str] = &["__name__", "job", "step", "node", "user", "account", "gpu"];

fn start_victoria_metrics(dir: &Path) -> Child {
    let data = dir.join("vm-data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.join("victoria-metrics.log")).unwrap();
    let child = Command::new("victoria-metrics")
        .arg(format!("-httpListenAddr=127.0.0.1:{VM_PORT}"))
        .arg(format!("-storageDataPath={}", data.display()))
        // Recent samples are queryable at once (the default hides the last 30 s).
        .arg("-search.latencyOffset=1s")
        .arg("-search.disableCache")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("victoria-metrics (Debian package victoria-metrics, scripts/setup.sh) must be installed");
    wait_http(VM_PORT, "/health");
    child
}

fn start_prometheus(dir: &Path) -> Child {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{PROM_PORT}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--web.enable-remote-write-receiver")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package prometheus, scripts/setup.sh) must be installed");
    wait_http(PROM_PORT, "/-/ready");
    child
}

fn wait_http(port: u16, path: &str) {
    let up = eventually(Duration::from_secs(60), || get(port, path, &[]).0 == 200);
    assert!(up, "nothing answered 200 on 127.0.0.1:{port}{path}");
}

/// `curl` GET with query parameters (URL-encoded): (status, body).
fn get(port: u16, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    get_with(port, path, params, &[])
}

fn get_with(port: u16, path: &str, params: &[(&str, &str)], headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-G", "--max-time", "10", "-w", "\n%{http_code}"]);
    for (k, v) in params {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// One result of an instant query: (labels, value).
fn query(port: u16, promql: &str) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
    let (status, body) = get(port, "/api/v1/query", &[("query", promql)]);
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let labels = s["metric"].as_object()?.clone();
                    let value = s["value"][1].as_str()?.parse().ok()?;
                    Some((labels, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// alice's job and her account as SLURM has them.
fn account_of(job: u64) -> String {
    let out = run(Command::new("squeue").args(["-h", "-j", &job.to_string(), "-o", "%a"]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Running {
    setup: Setup,
    server: Option<crate::scrape_support::Server>,
    scraper: Child,
    job: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        cancel(self.job);
        terminate(&mut self.scraper);
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// A server exporting to `url`, a scraper on n1 and alice's 60 s CPU burner there.
fn burner_exported_to(name: &str, port: u16, url: &str, extra: &str) -> Running {
    let config = format!(
        "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n[export]\nremote_write_url = \"{url}\"\ninterval = \"2s\"\n{extra}"
    );
    let setup = Setup::new(name, port, &config);
    let server = setup.server();
    let log = std::fs::File::create(setup.dir.join("scrape-n1.log")).unwrap();
    let scraper = setup
        .turingwatch()
        .args(["scrape", "--node", "n1", "--interval", "1s", "--duration", "5m"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let burn = "python3 -c 'import time\nt = time.time() + 60\nwhile time.time() < t: pass'";
    let job = sbatch(Some("alice"), &["-J", "tw-export-burn", "-n1", "-c1", "--mem=200M", "-t", "3", "-w", "n1"], burn);
    Running { setup, server: Some(server), scraper, job }
}

/// Checks a receiver's series of `job`: every label allowed, the right values, CPU seconds
/// growing to at least `min_cpu`.
fn assert_series(port: u16, run: &Running, min_cpu: f64) {
    let job = run.job.to_string();
    let promql = format!("last_over_time(turingwatch_step_cpu_seconds_total{{job=\"{job}\"}}[15m])");
    let mut found = Vec::new();
    let arrived = eventually(Duration::from_secs(150), || {
        found = query(port, &promql);
        found.iter().any(|(_, v)| *v >= min_cpu)
    });
    let log = run.setup.server_log();
    assert!(arrived, "no CPU series of job {job} reaching {min_cpu} s on :{port}: {found:?}\nserver log:\n{log}");
    let (labels, cpu) = found.iter().find(|(_, v)| *v >= min_cpu).unwrap();
    assert_eq!(labels["job"], job.as_str());
    assert_eq!(labels["step"], "batch");
    assert_eq!(labels["node"], "n1");
    assert_eq!(labels["user"], "alice");
    let account = account_of(run.job);
    if !account.is_empty() {
        assert_eq!(labels["account"], account.as_str());
    }
    assert!(*cpu < 200.0, "a one-CPU job for 60 s burned {cpu} s?");
    // Every series of the job: only bounded labels, never a process id.
    let (_, body) = get(port, "/api/v1/series", &[("match[]", &format!("{{job=\"{job}\"}}")), ("start", "0")]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = v["data"].as_array().unwrap();
    assert!(series.len() >= 5, "few series: {body}");
    for s in series {
        for key in s.as_object().unwrap().keys() {
            assert!(ALLOWED_LABELS.contains(&key.as_str()), "label {key} exported: {s}");
        }
    }
    let names: Vec<&str> = series.iter().filter_map(|s| s["__name__"].as_str()).collect();
    for name in ["turingwatch_step_memory_resident_bytes", "turingwatch_step_cpu_cores"] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    let rss = query(port, &format!("last_over_time(turingwatch_step_memory_resident_bytes{{job=\"{job}\"}}[15m])"));
    assert!(rss.iter().any(|(_, v)| *v > 1_000_000.0), "python's resident memory over 1 MB: {rss:?}");
    let cores = query(port, &format!("max_over_time(turingwatch_step_cpu_cores{{job=\"{job}\"}}[15m])"));
    assert!(cores.iter().any(|(_, v)| (0.5..=1.3).contains(v)), "a busy loop keeps about one core busy: {cores:?}");
}

fn server_metric(run: &Running, name: &str) -> f64 {
    let (_, body) = get(run.setup.port, "/metrics", &[]);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1.0)
}

#[test]
fn remote_write_buffers_while_victoria_metrics_is_down_then_delivers() {
    if !cluster() {
        return;
    }
    let url = format!("http://127.0.0.1:{VM_PORT}/api/v1/write");
    let run = burner_exported_to("export_vm", VM_SERVER_PORT, &url, "");
    // The receiver is down: requests fail, values wait.
    let buffered = eventually(Duration::from_secs(90), || {
        server_metric(&run, "turingwatch_export_requests_failed_total") >= 2.0
            && server_metric(&run, "turingwatch_export_pending") > 0.0
    });
    assert!(buffered, "no failed sends with values pending: {}", get(run.setup.port, "/metrics", &[]).1);
    let vm_started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut vm = start_victoria_metrics(&run.setup.dir);
    assert_series(VM_PORT, &run, 20.0);
    // Samples taken while VictoriaMetrics was down arrived too (retried, not lost).
    let (_, export) = get(
        VM_PORT,
        "/api/v1/export",
        &[("match[]", &format!("turingwatch_step_cpu_seconds_total{{job=\"{}\"}}", run.job))],
    );
    let earliest = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["timestamps"].as_array().and_then(|t| t.iter().filter_map(|x| x.as_i64()).min()))
        .min();
    assert!(
        earliest.is_some_and(|t| t < vm_started - 5_000),
        "earliest {earliest:?}, VM started {vm_started}: {export}"
    );
    assert!(server_metric(&run, "turingwatch_export_samples_sent_total") > 0.0);
    assert_eq!(server_metric(&run, "turingwatch_export_dropped_total"), 0.0);
    drop(run);
    terminate(&mut vm);
}

#[test]
fn remote_write_reaches_prometheus_and_jobs_view_needs_its_token() {
    if !cluster() {
        return;
    }
    let started = Instant::now();
    let dir = crate::util::test_dir("export_prom_receiver");
    let mut prom = start_prometheus(&dir);
    let token = dir.join("jobs.token");
    std::fs::write(&token, "tok-export-test\n").unwrap();
    let url = format!("http://127.0.0.1:{PROM_PORT}/api/v1/write");
    let extra = format!("jobs_token_file = \"{}\"\n", token.display());
    let run = burner_exported_to("export_prom", PROM_SERVER_PORT, &url, &extra);
    assert_series(PROM_PORT, &run, 10.0);
    // /metrics/jobs: the running job's latest sample with the same labels, for the token only.
    let job = format!("job=\"{}\"", run.job);
    let (status, body) = get_with(run.setup.port, "/metrics/jobs", &[], &["Authorization: Bearer tok-export-test"]);
    assert_eq!(status, 200, "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with("turingwatch_step_cpu_seconds_total{") && l.contains(&job))
        .unwrap_or_else(|| panic!("no CPU line of {job}: {body}"));
    assert!(
        line.contains("user=\"alice\"") && line.contains("step=\"batch\"") && line.contains("node=\"n1\""),
        "{line}"
    );
    assert!(!body.contains("pid"), "{body}");
    assert_eq!(get(run.setup.port, "/metrics/jobs", &[]).0, 401);
    assert_eq!(get_with(run.setup.port, "/metrics/jobs", &[], &["Authorization: Bearer nope"]).0, 403);
    drop(run);
    terminate(&mut prom);
    eprintln!("prometheus export test took {:?}", started.elapsed());
}
