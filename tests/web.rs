//! The report site end to end: jobs really run on the dev cluster (as alice and bob); their
//! cgroup/proc counters, sampled while they run, go into a store with a period and reports;
//! the real server imports the jobs from sacct (its accounting importer) and serves them; and
//! real headless Chromium (via chromedriver) looks at the site as alice, bob and an admin.
//!
//! The identity header is added by Chromium (CDP `Network.setExtraHTTPHeaders`) on loopback,
//! a trusted proxy address; a spoofed header from an untrusted address (127.0.0.2) is refused.
//! Screenshots go to `test-artifacts/web/`.

use crate::util::*;

mod mail_settings;
mod pages;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use turingwatch::job::{JobId, StepId};
use turingwatch::sample::StepSample;
use turingwatch::store::{PeriodRecord, Store, UserReport};

const SERVER_PORT: u16 = 18410;
const DRIVER_PORT: u16 = 18411;

/// Kills a child process when the test ends, however it ends.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `curl` from `source` (an address on lo) with an optional identity; returns (status, body).
fn curl(source: &str, user: Option<&str>, path: &str) -> (u16, Value) {
    curl_port(SERVER_PORT, source, user, path)
}

/// `curl` to the site on `port`; returns (status, JSON body).
pub(crate) fn curl_port(port: u16, source: &str, user: Option<&str>, path: &str) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "--interface", source, "-w", "\n%{http_code}"]);
    if let Some(u) = user {
        cmd.args(["-H", &format!("X-AuthUser: {u}")]);
    }
    let out = run(cmd.arg(format!("http://127.0.0.1:{port}{path}")));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Samples the batch step once a second until its cgroup is gone: CPU time from /proc of the
/// step's task processes (utime+stime+cutime+cstime, in 100 Hz ticks = centiseconds; SLURM here
/// keeps no cpuacct cgroup per job), resident memory from the cgroup v1 memory.stat.
pub(crate) fn sample_while_running(job: u64, user: &str, timeout: Duration) -> (String, Vec<StepSample>) {
    let uid = String::from_utf8_lossy(&run(Command::new("id").args(["-u", user])).stdout).trim().to_string();
    let deadline = Instant::now() + timeout;
    let mut node = String::new();
    let mut samples: Vec<StepSample> = Vec::new();
    while Instant::now() < deadline {
        if node.is_empty() {
            let out = run(Command::new("squeue").args(["-h", "-j", &job.to_string(), "-o", "%N"]));
            node = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if !node.is_empty() {
            let dir = format!("/sys/fs/cgroup/memory/slurm_{node}/uid_{uid}/job_{job}/step_batch");
            // The tasks live in task_<n> below the step (slurmstepd itself sits in the step).
            let procs: String = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("task_"))
                .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).ok())
                .collect::<Vec<_>>()
                .join("\n");
            let mem = std::fs::read_to_string(format!("{dir}/memory.stat"));
            match (procs, mem) {
                (procs, Ok(mem)) if !procs.trim().is_empty() => {
                    let (mut user_cs, mut sys_cs) = (0, 0);
                    for pid in procs.split_whitespace() {
                        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
                        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
                        // After ")": state is field 0, utime 11, stime 12, cutime 13, cstime 14.
                        user_cs += f[11] + f[13];
                        sys_cs += f[12] + f[14];
                    }
                    let rss = mem
                        .lines()
                        .find_map(|l| l.strip_prefix("total_rss ").and_then(|v| v.trim().parse::<u64>().ok()))
                        .unwrap_or(0);
                    let at = now();
                    samples.retain(|s| s.at != at);
                    samples.push(StepSample {
                        at,
                        cpu_user_cs: user_cs,
                        cpu_sys_cs: sys_cs,
                        rss_kib: rss / 1024,
                        ..StepSample::default()
                    });
                }
                _ if !samples.is_empty() => break,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    (node, samples)
}

pub(crate) fn report(period_start: u64, user: &str, job: u64) -> UserReport {
    UserReport {
        period_start,
        user: user.into(),
        json: json!({"user": user, "jobs": [job]}).to_string(),
        html: format!(
            "<html><body><h1>Cluster usage of {user}</h1><p>Your jobs:</p><table><tr><th>Job</th><th>Name</th>\
             <th>CPUs</th></tr><tr><td>{job}</td><td>tw-web</td><td>1</td></tr></table><h2>Tips</h2><p>See the site.</p>\
             </body></html>"
        ),
        text: String::new(),
        has_findings: true,
        updated_at: now(),
    }
}

/// A chromedriver session, driven with curl (the W3C WebDriver protocol is JSON over HTTP).
pub(crate) struct Browser {
    session: String,
    driver_port: u16,
    server_port: u16,
    _driver: Guard,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        Browser::start_on(profile, DRIVER_PORT, SERVER_PORT)
    }

    /// A session on chromedriver at `driver_port`, for the site at `server_port`.
    pub(crate) fn start_on(profile: &Path, driver_port: u16, server_port: u16) -> Browser {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Guard(driver);
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let mut session = String::new();
        assert!(
            eventually(Duration::from_secs(20), || {
                let v = wd_call("POST", &format!("http://127.0.0.1:{driver_port}/session"), Some(&caps));
                session = v["value"]["sessionId"].as_str().unwrap_or("").to_string();
                !session.is_empty()
            }),
            "no chromedriver session"
        );
        Browser { session, driver_port, server_port, _driver: driver }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("http://127.0.0.1:{}/session/{}{path}", self.driver_port, self.session);
        wd_call(method, &url, body)["value"].clone()
    }

    pub(crate) fn cdp(&self, cmd: &str, params: Value) {
        self.call("POST", "/goog/cdp/execute", Some(&json!({"cmd": cmd, "params": params})));
    }

    /// Loads the site afresh as `user` (the header rides on every request the page makes).
    pub(crate) fn open_as(&self, user: &str, fragment: &str) {
        self.open_url_as(user, &format!("http://127.0.0.1:{}/{fragment}", self.server_port));
    }

    /// Loads any page as `user` (the header rides on every request, to any host).
    pub(crate) fn open_url_as(&self, user: &str, url: &str) {
        self.cdp("Network.setExtraHTTPHeaders", json!({"headers": {"X-AuthUser": user}}));
        self.call("POST", "/url", Some(&json!({"url": "about:blank"})));
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    pub(crate) fn eval(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    /// Waits until `script` returns true; panics with the page text if it never does.
    pub(crate) fn wait_for(&self, what: &str, script: &str) {
        let ok = eventually(Duration::from_secs(15), || self.eval(script) == Value::Bool(true));
        assert!(ok, "{what}: page says {:?}", self.eval("return document.body.innerText.slice(0, 600)"));
    }

    pub(crate) fn text(&self) -> String {
        self.eval("return document.body.innerText").as_str().unwrap_or("").to_string()
    }

    fn screenshot(&self, name: &str) {
        self.screenshot_to("web", name);
    }

    /// Saves a screenshot as `test-artifacts/<dir>/<name>.png`.
    pub(crate) fn screenshot_to(&self, dir: &str, name: &str) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = decode_base64(b64.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(artifact_dir(dir).join(format!("{name}.png")), png).unwrap();
    }

    /// Bytes the page and everything it loaded took on the wire (the cache is disabled).
    pub(crate) fn transferred(&self) -> u64 {
        self.eval(
            "var t = performance.getEntriesByType('navigation')[0].transferSize;\
             performance.getEntriesByType('resource').forEach(function (r) { t += r.transferSize; }); return t;",
        )
        .as_u64()
        .unwrap_or(0)
    }
}

/// The job ids the jobs page lists.
fn listed_ids(browser: &Browser) -> Vec<String> {
    let ids = browser.eval(
        "return Array.prototype.map.call(document.querySelectorAll('#jobs tr.job-row td:first-child'), \
         function (td) { return td.innerText.trim(); })",
    );
    ids.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

fn wd_call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "60", "-X", method, "-H", "Content-Type: application/json", url]);
    if let Some(b) = body {
        cmd.args(["-d", &b.to_string()]);
    }
    serde_json::from_slice(&run(&mut cmd).stdout).unwrap_or(Value::Null)
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Whether Chromium and chromedriver are installed; without them a test is skipped, except
/// where e2e tests are required (CI), where it fails.
pub(crate) fn browser_available() -> bool {
    let present = Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !present {
        assert!(!e2e_required(), "chromium and chromedriver are required (scripts/setup.sh installs them)");
        eprintln!("skipping: chromium/chromedriver not installed");
    }
    present
}

#[test]
fn site_shows_each_user_their_jobs_and_admins_everything_in_chromium() {
    if !cluster() {
        return;
    }
    if !browser_available() {
        return;
    }
    let dir = test_dir("web_site_chromium");

    // Real jobs: alice burns two cores and holds ~200 MiB; bob idles on one core.
    let alice_job = sbatch(
        Some("alice"),
        &["-c", "2", "--mem=1G", "-t", "2", "-J", "tw-web-burn"],
        "timeout 6 yes >/dev/null & timeout 6 yes >/dev/null & \
         python3 -c 'import time; b = bytearray(200 << 20); time.sleep(6)'; wait",
    );
    let bob_job = sbatch(Some("bob"), &["-c", "1", "--mem=300M", "-t", "1", "-J", "tw-web-idle"], "sleep 3");
    let (node, samples) = sample_while_running(alice_job, "alice", Duration::from_secs(60));
    assert!(samples.len() >= 3, "only {} cgroup samples of job {alice_job} on {node:?}", samples.len());
    wait_job_done(alice_job, Duration::from_secs(60));
    wait_job_done(bob_job, Duration::from_secs(60));

    // Samples, a period and the users' reports go in first (the store has one writer at a
    // time); the server's accounting importer then brings the jobs themselves from sacct.
    let store_path = dir.join("store.redb");
    let start = now() - 86_400;
    {
        let store = Store::open(&store_path).unwrap();
        let tagged: Vec<_> = samples.iter().map(|s| (JobId(alice_job), StepId::BATCH, s.clone())).collect();
        store.append_samples(&node, &tagged).unwrap();
        store.put_period(&PeriodRecord { start, end: start + 2 * 86_400, closed: false, updated_at: now() }).unwrap();
        store.put_reports(start, &[report(start, "alice", alice_job), report(start, "bob", bob_job)]).unwrap();
    }
    std::fs::write(
        dir.join("tw.toml"),
        format!(
            "[store]\npath = \"{}\"\n[web]\nbind = \"127.0.0.1:{SERVER_PORT}\"\nadmins = [\"root\"]\n\
             [findings]\nmin_runtime = \"1s\"\n[accounting]\ninterval = \"10s\"\nfirst_window = \"2h\"\n\
             [mail]\ntransport = \"file\"\nfile_dir = \"{}\"\ndomain = \"example.org\"\n",
            store_path.display(),
            dir.join("mail-out").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let _server = Guard(
        turingwatch()
            .arg("--config")
            .arg(dir.join("tw.toml"))
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    assert!(
        eventually(Duration::from_secs(20), || curl("127.0.0.1", None, "/healthz").0 == 200),
        "server did not come up: {}",
        read(&dir.join("server.log"))
    );

    let (a, b) = (alice_job.to_string(), bob_job.to_string());
    let imported = eventually(Duration::from_secs(60), || {
        let (_, page) = curl("127.0.0.1", Some("root"), "/api/jobs?page_size=500");
        let ids: Vec<u64> = page["jobs"].as_array().into_iter().flatten().filter_map(|j| j["id"].as_u64()).collect();
        ids.contains(&alice_job) && ids.contains(&bob_job)
    });
    assert!(imported, "the importer did not bring jobs {a} and {b}: {}", read(&dir.join("server.log")));

    // The API by hand: spoofed header from an untrusted address, foreign data, own data.
    for path in ["/api/user", "/api/periods", "/api/report", "/api/jobs", &format!("/api/jobs/{a}"), "/api/data"] {
        let (status, body) = curl("127.0.0.2", Some("root"), path);
        assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "spoofed {path}: {body}");
        assert_eq!(curl("127.0.0.1", None, path).0, 401, "anonymous {path}");
    }
    assert_eq!(curl("127.0.0.1", Some("bob"), &format!("/api/jobs/{a}")).0, 404);
    assert_eq!(curl("127.0.0.1", Some("bob"), "/api/report?user=alice").0, 403);
    assert_eq!(curl("127.0.0.1", Some("bob"), "/api/jobs?user=alice").0, 403);
    let (status, detail) = curl("127.0.0.1", Some("alice"), &format!("/api/jobs/{a}"));
    assert_eq!(status, 200, "{detail}");
    let cores: Vec<f64> =
        detail["series"][0]["cores"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).collect();
    // The host's two real cores are shared by the emulated nodes and other tests, so how busy
    // the two `yes` were varies; what must hold: some use was seen, never more than allocated,
    // and the plotted CPU time is not more than sacct's TotalCPU for the job.
    let peak = cores.iter().cloned().fold(0.0, f64::max);
    assert!(peak > 0.05 && peak <= 2.2, "cores in use of a 2-CPU job: {cores:?}");
    let t: Vec<u64> = detail["series"][0]["t"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let plotted_cpu_secs: f64 = (1..t.len()).map(|i| cores[i] * (t[i] - t[i - 1]) as f64).sum();
    let batch = detail["steps"].as_array().unwrap().iter().find(|s| s["step"] == "batch").expect("batch step");
    let sacct_cpu_secs = batch["total_cpu_secs"].as_f64().unwrap();
    assert!(plotted_cpu_secs <= sacct_cpu_secs * 1.2 + 1.0, "{plotted_cpu_secs} s plotted, sacct {sacct_cpu_secs} s");
    assert_eq!(detail["cores_requested_per_node"], 2.0);

    let browser = Browser::start(&dir.join("chromium-profile"));
    browser.cdp("Network.enable", json!({}));
    browser.cdp("Network.setCacheDisabled", json!({"cacheDisabled": true}));

    // alice: her report (weighed), her jobs, one job's plots.
    browser.open_as("alice", "#/report");
    browser.wait_for("alice's report", "return !!document.querySelector('iframe.report')");
    std::thread::sleep(Duration::from_millis(500));
    let bytes = browser.eval(
        "var t = performance.getEntriesByType('navigation')[0].transferSize;\
         performance.getEntriesByType('resource').forEach(function (r) { t += r.transferSize; }); return t;",
    );
    let bytes = bytes.as_u64().unwrap_or(0);
    assert!(bytes > 1_000 && bytes <= 300_000, "report page transferred {bytes} bytes");
    eprintln!("alice's report page: {bytes} bytes transferred");
    browser.wait_for(
        "job ids in the report link to the job page",
        &format!(
            "var d = document.querySelector('iframe.report').contentDocument;\
             return !!d && !!d.querySelector('a[href$=\"#/job/{a}\"]') && document.querySelectorAll('.toc a').length == 2"
        ),
    );
    browser.screenshot("alice-report");
    browser.open_as("alice", "#/jobs");
    browser.wait_for("alice's jobs", "return document.querySelectorAll('#jobs tr.job-row').length > 0");
    // The listed ids (the page text also holds times such as 7:47, which may contain an id).
    let ids = listed_ids(&browser);
    assert!(ids.contains(&a) && !ids.contains(&b), "alice's list: {ids:?}");
    browser.screenshot("alice-jobs");
    browser.open_as("alice", &format!("#/job/{a}"));
    browser.wait_for(
        "alice's job plots",
        "return !!document.querySelector('#plot-cores canvas') \
         && document.querySelector('#plot-cores .u-legend').textContent.indexOf('allocated per node') >= 0 \
         && document.querySelector('#plot-mem .u-legend').textContent.indexOf('requested per node') >= 0",
    );
    assert!(browser.text().contains("tw-web-burn"));
    browser.screenshot("alice-job");
    browser.eval("document.querySelector('h2:nth-of-type(2)').scrollIntoView(); return true");
    browser.screenshot("alice-job-plot");
    browser.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    browser.open_as("alice", &format!("#/job/{a}"));
    browser.wait_for("phone-width plots", "return !!document.querySelector('#plot-cores canvas')");
    let fits = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth + 1");
    assert_eq!(fits, Value::Bool(true), "the job page scrolls sideways on a phone");
    browser.screenshot("alice-job-phone");
    browser.cdp("Emulation.clearDeviceMetricsOverride", json!({}));

    // bob: only his job; alice's job is not found.
    browser.open_as("bob", "#/jobs");
    browser.wait_for("bob's jobs", "return document.querySelectorAll('#jobs tr.job-row').length > 0");
    let ids = listed_ids(&browser);
    assert!(ids.contains(&b) && !ids.contains(&a), "bob's list: {ids:?}");
    browser.screenshot("bob-jobs");
    browser.open_as("bob", &format!("#/job/{a}"));
    browser.wait_for("bob refused", "return !!document.querySelector('.error')");
    assert!(browser.text().contains(&format!("no job {a}")), "{}", browser.text());
    browser.screenshot("bob-denied");

    // root (admin): both jobs, and both users in the overview.
    browser.open_as("root", "#/jobs");
    browser.wait_for("root's jobs", "return document.querySelectorAll('#jobs tr.job-row').length >= 2");
    let ids = listed_ids(&browser);
    assert!(ids.contains(&a) && ids.contains(&b), "root's list: {ids:?}");
    browser.screenshot("root-jobs");
    browser.open_as("root", "#/admin");
    browser.wait_for("overview", "return document.querySelectorAll('#pivot tr.pivot-row').length >= 2");
    let text = browser.text();
    assert!(text.contains("alice") && text.contains("bob"), "overview: {text}");
    browser.screenshot("root-overview");

    // Energy (#19), last, as it replaces the hand-made reports above with the analysis's own:
    // the running server analyses the period and mails bob, whose job idled on its core.
    energy_is_measured_mailed_and_shown(&dir, &browser, start, bob_job);
    browser.call("DELETE", "", None);
}

/// `turingwatch analyze` and `turingwatch mail` through the running server (root: an admin of
/// its API); then bob's mail names his wasted kWh and CO2e and the factors, the API and the
/// pages show the job's energy (the estimate checked against a hand calculation from the job's
/// own accounting figures), and the admins' ranking and outcome table have him.
fn energy_is_measured_mailed_and_shown(dir: &Path, browser: &Browser, start: u64, bob_job: u64) {
    let b = bob_job.to_string();
    let config = dir.join("tw.toml");
    let text = |out: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let analyze = run(turingwatch().arg("--config").arg(&config).args(["analyze", "--period", &start.to_string()]));
    // The configured period that holds `start` (the server's weekly one, not the hand-made
    // period above): `period <start> .. <end>: …`.
    let period = text(&analyze)
        .lines()
        .find_map(|l| {
            l.strip_prefix("period ").and_then(|r| r.split_once(" ..")).and_then(|(p, _)| p.parse::<u64>().ok())
        })
        .unwrap_or_else(|| panic!("no period in {}", text(&analyze)));
    assert!(analyze.status.success() && text(&analyze).contains("outcomes: "), "{}", text(&analyze));
    let mail = run(turingwatch().arg("--config").arg(&config).args([
        "mail",
        "--period",
        &period.to_string(),
        "--user",
        "bob",
    ]));
    assert!(mail.status.success() && text(&mail).contains("bob: sent"), "{}", text(&mail));
    let files: Vec<_> = std::fs::read_dir(dir.join("mail-out")).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one mail, to bob");
    let received = crate::mail::parse_mime(&read(&files[0].path()));
    let plain = received.parts.get("text/plain").cloned().unwrap_or_default();
    let energy = plain.lines().find(|l| l.starts_with("Energy: ")).unwrap_or_else(|| panic!("no Energy line: {plain}"));
    assert!(
        energy.contains(
            "went to what was allocated and not used; estimated from the site's power factors \
                         (factors: 12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4, 300 g CO2e/kWh)"
        ),
        "{energy}"
    );
    // bob's jobs of this period (other tests' too, on the shared cluster) idle: the ones to look
    // at first each give their own energy and waste.
    let worst = plain.split("THE JOBS TO LOOK AT FIRST").nth(1).unwrap_or_else(|| panic!("no worst jobs: {plain}"));
    let worst = worst.lines().take_while(|l| !l.starts_with("SUGGESTED") && !l.starts_with("ALL JOBS"));
    let lines: Vec<&str> = worst.filter(|l| l.trim_start().starts_with("Energy ")).collect();
    let job_line = lines.first().unwrap_or_else(|| panic!("no job energy line: {plain}"));
    assert!(job_line.contains(" wasted, estimated") && job_line.contains("CO2e"), "{job_line}");

    // The job's energy by hand from its own accounting figures (Green Algorithms, the defaults).
    let (status, detail) = curl("127.0.0.1", Some("bob"), &format!("/api/jobs/{b}"));
    assert_eq!(status, 200, "{detail}");
    let (s, e) = (&detail["summary"], &detail["energy"]);
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu = f(&s["cpu_frac"]).clamp(0.0, 1.0);
    let (req_gb, used_gb) = (f(&s["req_mem_bytes"]) / 1e9, f(&s["mem_used_bytes"]) / 1e9);
    let unused_gb = if s["mem_used_bytes"].is_null() { 0.0 } else { (req_gb - used_gb).max(0.0) };
    let hours = f(&s["elapsed_secs"]) / 3_600.0;
    let cores = f(&s["alloc_cpus"]);
    let kwh = hours * (cores * 12.0 * cpu + req_gb * 0.3725) * 1.4 / 1_000.0;
    let wasted = hours * (cores * 12.0 * (1.0 - cpu) + unused_gb * 0.3725) * 1.4 / 1_000.0;
    assert!(cpu < 0.2 && hours > 0.0, "bob's job idled: {s}");
    assert_eq!(e["source"], "estimated", "{e}");
    assert!((f(&e["kwh"]) - kwh).abs() <= 1e-9 + 1e-6 * kwh, "{e} vs {kwh}");
    assert!((f(&e["wasted_kwh"]) - wasted).abs() <= 1e-9 + 1e-6 * wasted && wasted > 0.0, "{e} vs {wasted}");
    assert!((f(&e["wasted_co2e_g"]) - wasted * 300.0).abs() <= 1e-6, "{e}");
    assert_eq!(e["factors"], "12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4, 300 g CO2e/kWh");

    // The admins' ranking and outcomes: bob is there, his mail counts; nobody else may look.
    let (status, ranking) = curl("127.0.0.1", Some("root"), &format!("/api/admin/energy?period={period}"));
    assert_eq!(status, 200, "{ranking}");
    let bob = ranking["users"].as_array().unwrap().iter().find(|r| r["name"] == "bob").cloned().unwrap_or(Value::Null);
    assert!(f(&bob["wasted_kwh"]) >= wasted - 1e-9, "bob in the ranking: {ranking}");
    let (status, outcomes) = curl("127.0.0.1", Some("root"), "/api/admin/outcomes");
    assert_eq!(status, 200, "{outcomes}");
    let cpu_kind = outcomes["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "cpu_underuse").cloned();
    let cpu_kind = cpu_kind.unwrap_or_else(|| panic!("bob's mailed CPU underuse is tracked: {outcomes}"));
    assert_eq!((cpu_kind["mailed"]["pairs"].as_u64(), cpu_kind["mailed"]["followed"].as_u64()), (Some(1), Some(0)));
    for path in [format!("/api/admin/energy?period={period}"), "/api/admin/outcomes".to_string()] {
        assert_eq!(curl("127.0.0.1", Some("bob"), &path).0, 403, "{path}");
        assert_eq!(curl("127.0.0.2", Some("root"), &path).0, 403, "spoofed {path}");
    }

    // The pages: bob's job and report, root's overview.
    browser.open_as("bob", &format!("#/job/{b}"));
    browser.wait_for("bob's job energy", "return !!document.querySelector('#energy')");
    let card = browser.eval("return document.querySelector('#energy').innerText");
    let card = card.as_str().unwrap_or("");
    assert!(card.contains("Wasted") && card.contains("estimated") && card.contains("PUE 1.4"), "{card}");
    browser.screenshot("bob-job-energy");
    browser.open_as("bob", &format!("#/report?period={period}"));
    browser.wait_for("bob's period energy", "return !!document.querySelector('#report-energy')");
    browser.wait_for(
        "the mail body in the report names the factors",
        "var d = document.querySelector('iframe.report').contentDocument;\
         return !!d && d.body.innerText.indexOf('12 W/core, 0.3725 W/GB') >= 0",
    );
    browser.open_as("root", &format!("#/admin?period={period}"));
    browser.wait_for("energy ranking", "return document.querySelectorAll('#energy-table tr.energy-row').length >= 1");
    browser.wait_for(
        "outcome table",
        "return Array.prototype.some.call(document.querySelectorAll('#outcomes-table tr.outcome-row'), \
         function (r) { return r.innerText.indexOf('CPU Underusage') >= 0; })",
    );
    let text = browser.text();
    assert!(text.contains("bob") && text.contains("Do the mails change anything?"), "{text}");
    browser.eval("document.querySelector('#energy-ranking').scrollIntoView(); return true");
    browser.screenshot("root-energy-outcomes");
}
