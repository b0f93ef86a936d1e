//! The accounting import against the real dev cluster: jobs of every shape reach the store with
//! the values sacct shows, across a `kill -9` of the server, and across an outage of slurmdbd.

use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `turingwatch server` child with JSON logs in a file; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn start(dir: &Path, port: u16, log_name: &str) -> Server {
        let config = dir.join("turingwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\npath = \"{}\"\n[web]\nbind = \"127.0.0.1:{port}\"\n[accounting]\ninterval = \"10s\"\n\
                 first_window = \"1h\"\nreconnect_max = 5\nreconnect_wait = \"1s\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
                dir.join("store.redb").display()
            ),
        )
        .unwrap();
        let log = dir.join(log_name);
        let child = turingwatch()
            .arg("--config")
            .arg(&config)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start server");
        Server { child, log }
    }

    fn events(&self, message: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Waits for a committed import whose window ends at or after `until`.
    pub(crate) fn wait_import(&self, until: u64, timeout: Duration) {
        let ok = eventually(timeout, || {
            self.events("accounting import committed").iter().any(|e| e["until"].as_u64().is_some_and(|u| u >= until))
        });
        assert!(ok, "no import up to {until} within {timeout:?}; log:\n{}", read(&self.log));
    }

    pub(crate) fn stop(mut self) {
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exit {status}; log:\n{}", read(&self.log));
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// `[DD-][HH:]MM:SS[.mmm]` → ms, written independently of the crate's parser.
fn sacct_ms(text: &str) -> u64 {
    let (days, rest) = text.split_once('-').map_or((0, text), |(d, r)| (d.parse().unwrap(), r));
    let (clock, ms) = rest.split_once('.').map_or((rest, 0), |(c, f)| (c, f.parse().unwrap()));
    let secs = clock.split(':').fold(0u64, |acc, p| acc * 60 + p.parse::<u64>().unwrap());
    (days * 86_400 + secs) * 1000 + ms
}

/// What sacct says now: raw id → (state word, exit code, TotalCPU ms, largest step MaxRSS).
fn sacct_truth(ids: &[u64]) -> BTreeMap<u64, (String, String, u64, Option<u64>)> {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let out = run(Command::new("sacct").args([
        "-j",
        &list.join(","),
        "-n",
        "-P",
        "--noconvert",
        "--format=JobIDRaw,State,ExitCode,TotalCPU,MaxRSS",
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut truth = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        match f[0].split_once('.') {
            None => {
                let state = f[1].split_whitespace().next().unwrap().to_string();
                truth.insert(f[0].parse().unwrap(), (state, f[2].to_string(), sacct_ms(f[3]), None));
            }
            Some((job, _)) => {
                let rss: Option<u64> = f[4].parse().ok();
                let entry = truth.get_mut(&job.parse::<u64>().unwrap()).unwrap();
                entry.3 = entry.3.max(rss);
            }
        }
    }
    truth
}

fn stored(dir: &Path, ids: &[u64]) -> Value {
    let mut cmd = turingwatch();
    cmd.args(["debug", "store-jobs", "--db"]).arg(dir.join("store.redb"));
    cmd.args(ids.iter().map(u64::to_string));
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every id is stored once, with state, exit code, CPU time and MaxRSS equal to sacct's.
fn assert_store_matches_sacct(dir: &Path, ids: &[u64]) {
    let truth = sacct_truth(ids);
    let doc = stored(dir, ids);
    let jobs = doc["jobs"].as_array().unwrap();
    let found: BTreeSet<u64> = jobs.iter().map(|j| j["job"]["id"].as_u64().unwrap()).collect();
    assert_eq!(found, ids.iter().copied().collect(), "stored jobs differ from submitted: {doc}");
    for entry in jobs {
        let job = &entry["job"];
        let id = job["id"].as_u64().unwrap();
        let (state, exit, cpu_ms, max_rss) = &truth[&id];
        assert_eq!(entry["in_user_index"], 1, "job {id} indexed more than once");
        assert_eq!(job["state"].as_str().unwrap(), state, "job {id} state");
        assert_eq!(format!("{}:{}", job["exit_code"], job["exit_signal"]), *exit, "job {id} exit");
        assert_eq!(job["total_cpu_ms"].as_u64().unwrap(), *cpu_ms, "job {id} TotalCPU");
        assert_eq!(job["max_rss_bytes"].as_u64(), *max_rss, "job {id} MaxRSS");
        assert!(job["end_at"].as_u64().is_some(), "job {id} stored unfinished");
    }
}

fn wait_all_done(ids: &[u64]) {
    for id in ids {
        wait_job_done(*id, Duration::from_secs(90));
    }
}

/// The latest End of the jobs, once sacct has one for each (after an outage of slurmdbd the
/// record arrives in several updates).
fn end_of(ids: &[u64]) -> u64 {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let mut latest = None;
    let settled = eventually(Duration::from_secs(30), || {
        let out = run(Command::new("sacct").args(["-j", &list.join(","), "-X", "-n", "-P", "--format=End"]));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ends: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let out = run(Command::new("date").args(["-d", l.trim(), "+%s"]));
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            })
            .collect();
        latest = ends.iter().copied().max();
        ends.len() == ids.len()
    });
    assert!(settled, "sacct has no End for some of {ids:?}");
    latest.unwrap()
}

fn wait_running(id: u64) {
    let ok = eventually(Duration::from_secs(60), || {
        let out = run(Command::new("squeue").args(["-h", "-j", &id.to_string(), "-o", "%T"]));
        String::from_utf8_lossy(&out.stdout).trim() == "RUNNING"
    });
    assert!(ok, "job {id} never ran");
}

#[test]
fn jobs_of_every_shape_survive_a_kill_and_match_sacct() {
    if !cluster() {
        return;
    }
    let dir = test_dir("accounting_shapes");
    let server = Server::start(&dir, 18101, "server-1.log");
    server.wait_import(0, Duration::from_secs(30));

    let burner =
        sbatch(Some("alice"), &["-J", "tw-burn", "--mem=50M"], "timeout 3 sh -c 'while :; do :; done' || true");
    let hog = sbatch(
        Some("alice"),
        &["-J", "tw-hog", "--mem=400M"],
        "python3 -c 'b=bytearray(200*2**20); import time; time.sleep(2)'",
    );
    let failing = sbatch(Some("bob"), &["-J", "tw-fail", "--mem=50M"], "exit 3");
    let steps = sbatch(Some("bob"), &["-J", "tw|steps ünï x", "--mem=50M"], "srun -n1 true; srun -n1 sleep 1");
    let array = sbatch(Some("alice"), &["-J", "tw-array", "--mem=50M", "--array=1-2"], "sleep 1");
    let cancelled = sbatch(Some("bob"), &["-J", "tw-cancel", "--mem=50M"], "sleep 60");
    wait_running(cancelled);
    run(Command::new("scancel").arg(cancelled.to_string()));
    let mut ids = vec![burner, hog, failing, steps, cancelled];
    wait_all_done(&ids);
    let mut task_ids: Vec<u64> = Vec::new();
    let both_tasks = eventually(Duration::from_secs(90), || {
        let out =
            run(Command::new("sacct").args(["-j", &array.to_string(), "-X", "-n", "-P", "--format=JobIDRaw,JobID"]));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // Tasks that have started have their own `ID_N` line; pending ones show as `ID_[N]`.
        task_ids =
            text.lines().filter(|l| !l.contains('[')).filter_map(|l| l.split('|').next()?.parse().ok()).collect();
        task_ids.len() == 2
    });
    assert!(both_tasks, "array {array} tasks: {task_ids:?}");
    wait_all_done(&task_ids);
    ids.extend(&task_ids);

    // Killed between two imports (the interval is 10 s, an import takes milliseconds).
    server.kill_9();
    // A job that runs and ends while no server runs must still arrive.
    let while_down = sbatch(Some("alice"), &["-J", "tw-while-down", "--mem=50M"], "sleep 1");
    wait_job_done(while_down, Duration::from_secs(60));
    ids.push(while_down);

    let last_end = end_of(&ids);
    let server = Server::start(&dir, 18103, "server-2.log");
    server.wait_import(last_end + 6, Duration::from_secs(60));
    server.stop();

    assert_store_matches_sacct(&dir, &ids);
    let doc = stored(&dir, &ids);
    let by_id = |id: u64| doc["jobs"].as_array().unwrap().iter().find(|j| j["job"]["id"] == id).unwrap().clone();
    let multi = by_id(steps);
    assert_eq!(multi["job"]["name"], "tw|steps ünï x");
    let step_ids: Vec<u64> = multi["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert!(step_ids.contains(&0) && step_ids.contains(&1), "steps of the multi-step job: {step_ids:?}");
    assert!(by_id(hog)["job"]["max_rss_bytes"].as_u64().unwrap() >= 200 << 20);
    assert_eq!(by_id(failing)["job"]["state"], "FAILED");
    assert_eq!(by_id(cancelled)["job"]["state"], "CANCELLED");
    // The burner shares two real cores with everyone's builds: it burns, but how much varies.
    assert!(by_id(burner)["job"]["total_cpu_ms"].as_u64().unwrap() >= 100);
    let array_parts: BTreeSet<u64> =
        task_ids.iter().map(|t| by_id(*t)["job"]["array_job_id"].as_u64().unwrap()).collect();
    assert_eq!(array_parts, BTreeSet::from([array]));
    assert!(doc["watermark"].as_u64().unwrap() >= last_end + 6);
}

/// Stops slurmdbd; restarts it when dropped, even if the test fails.
struct SlurmdbdOutage;

impl SlurmdbdOutage {
    fn begin() -> SlurmdbdOutage {
        let pid = std::fs::read_to_string("/run/slurm/slurmdbd.pid").expect("slurmdbd pid file");
        let out = run(Command::new("kill").arg(pid.trim()));
        assert!(out.status.success(), "cannot stop slurmdbd: {}", String::from_utf8_lossy(&out.stderr));
        SlurmdbdOutage
    }
}

impl Drop for SlurmdbdOutage {
    fn drop(&mut self) {
        let started = Instant::now();
        // The old daemon may take a moment to exit and free its port.
        while started.elapsed() < Duration::from_secs(20) {
            let _ = Command::new("/usr/sbin/slurmdbd").status();
            if eventually(Duration::from_secs(3), || {
                Command::new("sacctmgr").args(["-n", "list", "cluster"]).output().is_ok_and(|o| o.status.success())
            }) {
                return;
            }
        }
        eprintln!("slurmdbd did not come back within 20 s");
    }
}

#[test]
fn a_slurmdbd_outage_is_backed_off_and_the_missed_window_imported() {
    if !cluster() {
        return;
    }
    let dir = test_dir("accounting_outage");
    let server = Server::start(&dir, 18104, "server.log");
    server.wait_import(0, Duration::from_secs(30));
    let outage = SlurmdbdOutage::begin();
    let outage_started = unix_now();
    // slurmctld takes jobs without slurmdbd and hands their records over when it is back.
    let during = sbatch(Some("alice"), &["-J", "tw-during-outage", "--mem=50M"], "sleep 1");
    let failed_once =
        eventually(Duration::from_secs(20), || !server.events("accounting import failed, retrying").is_empty());
    let left_queue = eventually(Duration::from_secs(20), || {
        let out = run(Command::new("squeue").args(["-h", "-j", &during.to_string()]));
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    drop(outage);
    assert!(failed_once, "the importer never reported the outage; log:\n{}", read(&server.log));
    assert!(left_queue, "job {during} did not finish during the outage");
    assert!(unix_now() - outage_started < 30, "the outage lasted too long");
    wait_job_done(during, Duration::from_secs(60));
    let end = end_of(&[during]);
    server.wait_import(end.max(unix_now()) + 6, Duration::from_secs(60));
    let retries = server.events("accounting import failed, retrying");
    assert!(retries.iter().all(|r| r["wait_secs"].as_f64().is_some()), "{retries:?}");
    server.stop();
    assert_store_matches_sacct(&dir, &[during]);
}

#[test]
fn print_only_lists_a_window_as_text_and_json_without_a_store() {
    if !cluster() {
        return;
    }
    let dir = test_dir("accounting_print_only");
    let config = dir.join("turingwatch.toml");
    std::fs::write(&config, format!("[store]\npath = \"{}\"\n", dir.join("store.redb").display())).unwrap();
    let id = sbatch(Some("bob"), &["-J", "tw|print ünï", "--mem=50M"], "srun -n1 true");
    wait_job_done(id, Duration::from_secs(60));
    let print = |args: &[&str]| {
        let out = run(turingwatch().arg("--config").arg(&config).arg("accounting").args(args));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Window queries lag a few seconds behind a job's end.
    let mut json = Value::Null;
    let listed = eventually(Duration::from_secs(20), || {
        json = serde_json::from_str(&print(&["--since", "10m", "--user", "bob", "--json"])).unwrap();
        json["jobs"].as_array().unwrap().iter().any(|j| j["job"]["id"] == id)
    });
    assert!(listed, "job {id} not listed: {json}");
    let entry = json["jobs"].as_array().unwrap().iter().find(|j| j["job"]["id"] == id).unwrap();
    assert_eq!(entry["job"]["name"], "tw|print ünï");
    assert_eq!(entry["job"]["user"], "bob");
    let truth = sacct_truth(&[id]);
    assert_eq!(entry["job"]["state"].as_str().unwrap(), truth[&id].0);
    let steps: Vec<&Value> = entry["steps"].as_array().unwrap().iter().collect();
    assert!(steps.iter().any(|s| s["step"] == 0), "{steps:?}");
    assert!(json["jobs"].as_array().unwrap().iter().all(|j| j["job"]["user"] == "bob"));
    let text = print(&["--since", "10m", "--until", "now", "--user", "bob"]);
    assert!(text.lines().any(|l| l.starts_with(&format!("{id} ")) && l.contains("\"tw|print ünï\"")), "{text}");
    assert!(text.contains("would be imported"), "{text}");
    assert!(!dir.join("store.redb").exists(), "print-only mode created the store");
}
