//! Authenticated ingest: a user may report only their own jobs; a report without a valid MUNGE
//! credential (absent, forged, made for another body, replayed), oversized or malformed gets a
//! clear HTTP error and never reaches the store.

use crate::scrape_support::*;
use crate::util::{cluster, run};
use std::time::Duration;
use turingwatch::job::{JobId, StepId};
use turingwatch::munge::{encode_credential, CREDENTIAL_HEADER};
use turingwatch::sample::StepSample;
use turingwatch::wire::format::{encode_batch, Batch, StepBatch, VERSION};
use turingwatch::wire::send::post;

fn report_of(job: u64, node: &str) -> Vec<u8> {
    encode_batch(&Batch {
        version: VERSION,
        id: rand_id(),
        node: node.into(),
        made_at: 0,
        steps: vec![StepBatch {
            job: JobId(job),
            step: StepId::BATCH,
            samples: vec![StepSample { at: 1_800_000_000, cpu_user_cs: 1, ..Default::default() }],
            gpus: vec![],
            apps: vec![],
        }],
    })
}

fn rand_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Waits until the server's accounting import has passed `now` (so a job running since then is
/// in the store: the checks use its start and CPUs). The server logs JSON.
fn wait_imported_past(setup: &Setup, now: u64) {
    let imported =
        crate::util::eventually(Duration::from_secs(60), || {
            setup.server_log().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| {
                v["message"] == "accounting import committed" && v["until"].as_u64().is_some_and(|u| u >= now + 8)
            })
        });
    assert!(imported, "no import past the job's start: {}", setup.server_log());
}

/// A MUNGE credential alice makes for `body`.
fn alice_credential(body: &[u8]) -> String {
    let payload = turingwatch::munge::payload_for(body);
    let out = run(std::process::Command::new("runuser").args(["-u", "alice", "--", "munge", "-s", &payload]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn send(setup: &Setup, credential: Option<&str>, body: &[u8]) -> (u16, String) {
    let headers: Vec<(&str, &str)> = credential.map(|c| vec![(CREDENTIAL_HEADER, c)]).unwrap_or_default();
    let answer = post(&setup.url(), "/ingest/v1/report", &headers, body, Duration::from_secs(20)).unwrap();
    (answer.status, answer.body)
}

#[test]
fn a_user_cannot_report_another_users_job_and_bad_credentials_are_refused() {
    if !cluster() {
        return;
    }
    let setup = Setup::new(
        "a_user_cannot_report_another_users_job_and_bad_credentials_are_refused",
        18212,
        "[ingest]\nmax_report_bytes = 65536\n",
    );
    let alice_job = python_job("alice", Some("n1"), "100M", &hog_program(10, 25));
    let bob_job = python_job("bob", Some("n1"), "100M", &hog_program(10, 25));
    wait_running(alice_job, Duration::from_secs(90));
    wait_running(bob_job, Duration::from_secs(90));
    let server = setup.server();

    // alice runs a scraper on n1: it sees bob's job too, but the server keeps only alice's.
    let alice_spool = setup.dir.join("alice-spool");
    let out = run(std::process::Command::new("runuser")
        .args(["-u", "alice", "--"])
        .arg(env!("CARGO_BIN_EXE_turingwatch"))
        .arg("--config")
        .arg(&setup.config)
        .args(["scrape", "--node", "n1", "--interval", "1s", "--duration", "3s", "--spool-dir"])
        .arg(&alice_spool));
    assert!(out.status.success(), "alice's scraper failed: {}", String::from_utf8_lossy(&out.stderr));

    // A report of bob's job alone, with alice's valid credential: refused whole.
    let bob_only = report_of(bob_job, "n1");
    let alice_cred = String::from_utf8(
        run(std::process::Command::new("runuser").args([
            "-u",
            "alice",
            "--",
            "munge",
            "-s",
            &turingwatch::munge::payload_for(&bob_only),
        ]))
        .stdout,
    )
    .unwrap();
    let (status, body) = send(&setup, Some(alice_cred.trim()), &bob_only);
    assert_eq!(status, 403, "{body}");

    // No credential, a forged one, one made for another body, a replayed one: 401.
    let body = report_of(alice_job, "n1");
    assert_eq!(send(&setup, None, &body).0, 401);
    assert_eq!(send(&setup, Some("MUNGE:AAAAforgedAAAA:"), &body).0, 401);
    let other = encode_credential("munge", b"another body").unwrap();
    assert_eq!(send(&setup, Some(&other), &body).0, 401);
    let good = encode_credential("munge", &body).unwrap();
    assert_eq!(send(&setup, Some(&good), &body).0, 200);
    let (status, text) = send(&setup, Some(&good), &body);
    assert_eq!(status, 401, "a replayed credential must be refused: {text}");
    assert!(text.contains("Replayed"), "{text}");
    // Malformed and oversized bodies.
    let junk = b"TWRP\xff\xff\xff".to_vec();
    let (status, text) = send(&setup, Some(&encode_credential("munge", &junk).unwrap()), &junk);
    assert_eq!(status, 400, "{text}");
    let big = vec![0u8; 70_000];
    assert_eq!(send(&setup, Some(&encode_credential("munge", &big).unwrap()), &big).0, 413);
    // A header that is not shaped like a MUNGE credential is refused before the body is read.
    assert_eq!(send(&setup, Some("Bearer abc"), &body).0, 401);
    // Refusals are counted in memory, by reason, and never cost a store commit.
    let (_, metrics) = crate::server::http_get(setup.port, "/metrics").expect("GET /metrics");
    let value = |name: &str| -> u64 {
        metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let rejected_steps = value("turingwatch_report_steps_rejected_total");
    assert!(rejected_steps >= 2, "bob's steps were not counted as refused: {rejected_steps}\n{metrics}");
    let rejected_reports = value("turingwatch_reports_rejected_total");
    assert!(rejected_reports >= 7, "refused reports counted: {rejected_reports}\n{metrics}");
    server.stop();

    let store = setup.store();
    let alice_samples: usize = store.samples_of_job(JobId(alice_job)).unwrap().values().map(Vec::len).sum();
    assert!(alice_samples >= 3, "alice's own job: {alice_samples} samples\n{}", setup.server_log());
    assert!(store.samples_of_job(JobId(bob_job)).unwrap().is_empty(), "bob's job was stored from alice's report");
    assert_eq!(store.meta("ingest_rejected_reports").unwrap(), None, "a refusal wrote to the store");
    crate::scrape_support::cancel(alice_job);
    crate::scrape_support::cancel(bob_job);
}

/// The server is killed with SIGKILL while a scraper is reporting, then restarted: the scraper
/// keeps sampling, resends what was not acknowledged, and the store ends up with an unbroken
/// series — no acknowledged sample lost, none stored twice.
#[test]
fn a_server_killed_during_ingest_loses_no_acknowledged_sample() {
    use std::process::Stdio;
    if !cluster() {
        return;
    }
    let setup = Setup::new("server_killed_during_ingest", 18_060, "");
    // On n2: n1 (two CPUs) is for the ownership test, which runs two jobs there at once.
    let job = python_job("bob", Some("n2"), "100M", &hog_program(30, 40));
    let node = wait_running(job, Duration::from_secs(90));
    let server = setup.server();
    let log = std::fs::File::create(setup.dir.join("scraper.log")).unwrap();
    let mut scraper = setup
        .turingwatch()
        // Long enough that the restarted server is back well before the run ends, even on a
        // loaded machine (a debug-build server starting under load has taken over 10 s).
        .args(["scrape", "--node", &node, "--interval", "1s", "--duration", "28s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    server.kill9();
    std::thread::sleep(Duration::from_secs(4));
    let server = setup.server();
    assert!(scraper.wait().unwrap().success(), "{}", crate::util::read(&setup.dir.join("scraper.log")));
    server.stop();
    let scraper_log = crate::util::read(&setup.dir.join("scraper.log"));
    assert!(scraper_log.contains("kept in the spool"), "the kill should have cut a send: {scraper_log}");
    let spool = setup.dir.join("spool").join(&node);
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "reports left unacknowledged in the spool");
    cancel(job);

    let store = setup.store();
    let series = store.samples_of_job(turingwatch::job::JobId(job)).unwrap();
    let batch = series
        .iter()
        .find(|(k, _)| k.step == turingwatch::job::StepId::BATCH && k.node == node)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let times: Vec<u64> = batch.iter().map(|s| s.at).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "one sample per time: {times:?}");
    assert!(times.len() >= 12, "only {} samples over a 28 s run: {times:?}", times.len());
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(gap <= 2, "a {gap} s hole in the series (a report lost across the kill): {times:?}");
}

/// An authenticated ordinary user posts, for their own running job, a CPU leap, 72 000 GPU
/// readings in one hour, samples far outside the job's run and a huge node name: the server
/// stays up and answers, nothing implausible is stored, every block of the job still decodes
/// and the refusals are counted by reason in `/metrics`.
#[test]
fn a_users_hostile_report_of_their_own_job_stores_nothing_implausible() {
    use turingwatch::sample::GpuReading;
    if !cluster() {
        return;
    }
    let setup = Setup::new(
        "hostile_report",
        18_216,
        "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
    );
    let job = python_job("alice", Some("n3"), "100M", &hog_program(10, 60));
    wait_running(job, Duration::from_secs(90));
    let server = setup.server();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    wait_imported_past(&setup, now);
    let hour = now - now % 3_600;
    let gpus: Vec<GpuReading> = (0..3_600u64)
        .flat_map(|t| (0..20u32).map(move |index| GpuReading { at: hour + t, index, ..Default::default() }))
        .collect();
    let step = |samples: Vec<StepSample>, gpus: Vec<GpuReading>| StepBatch {
        job: JobId(job),
        step: StepId::BATCH,
        samples,
        gpus,
        apps: vec!["x".repeat(100_000)],
    };
    let report = |node: String, steps: Vec<StepBatch>| {
        encode_batch(&Batch { version: VERSION, id: rand_id(), node, made_at: now, steps })
    };
    let store_bytes_before = std::fs::metadata(setup.dir.join("db.redb")).unwrap().len();
    let leap = vec![
        StepSample { at: now - 30, cpu_user_cs: 35, ..Default::default() },
        StepSample { at: now - 20, cpu_user_cs: 100, ..Default::default() },
        StepSample { at: now - 10, cpu_user_cs: 400_000_000_000_000, ..Default::default() },
        StepSample { at: now + 86_400, cpu_user_cs: 200, ..Default::default() },
        StepSample { at: 1, cpu_user_cs: 50, ..Default::default() },
    ];
    // Accepted (200) with what is implausible refused: the leaps, 72 000 GPU readings in an
    // hour, a 100 kB application name, and the same job claimed from a node it does not run on.
    let accepted = [
        report("n3".into(), vec![step(leap, gpus)]),
        report("n1".into(), vec![step(vec![StepSample { at: now - 5, ..Default::default() }], vec![])]),
    ];
    for body in &accepted {
        let (status, text) = send(&setup, Some(&alice_credential(body)), body);
        assert_eq!(status, 200, "{text}\n{}", setup.server_log());
    }
    // Then the service's scraper (root) reports the batch step on n3: the series becomes the
    // service's (alice's samples in it are replaced), and nothing alice sends may change it.
    let service = report(
        "n3".into(),
        vec![StepBatch {
            apps: vec![],
            ..step(
                (1..=3u64)
                    .map(|i| StepSample { at: now - 40 + i, cpu_user_cs: 10 * i, ..Default::default() })
                    .collect(),
                vec![],
            )
        }],
    );
    let (status, text) = send(&setup, Some(&encode_credential("munge", &service).unwrap()), &service);
    assert_eq!(status, 200, "{text}");
    let late = report(
        "n3".into(),
        vec![step(vec![StepSample { at: now - 2, cpu_user_cs: 40, ..Default::default() }], vec![])],
    );
    let (status, text) = send(&setup, Some(&alice_credential(&late)), &late);
    assert_eq!(status, 200, "{text}");
    // An 8 MiB application name is more than a report may be: refused before it is stored.
    let huge = encode_batch(&Batch {
        version: VERSION,
        id: rand_id(),
        node: "n3".into(),
        made_at: now,
        steps: vec![StepBatch { apps: vec!["a".repeat(8 << 20)], ..step(vec![], vec![]) }],
    });
    let (status, text) = send(&setup, Some(&alice_credential(&huge)), &huge);
    assert_eq!(status, 413, "{text}");
    // Refused whole (403): a 1 MiB node name, a node SLURM does not have.
    for node in ["n".repeat(1 << 20), "n9".into()] {
        let body = report(node, vec![step(vec![], vec![])]);
        let (status, text) = send(&setup, Some(&alice_credential(&body)), &body);
        assert_eq!(status, 403, "{text}");
        assert!(text.starts_with("unknown_node"), "{text}");
    }
    let store_growth = std::fs::metadata(setup.dir.join("db.redb")).unwrap().len().saturating_sub(store_bytes_before);
    eprintln!("hostile report: the store grew by {store_growth} bytes");
    assert!(store_growth <= 16 << 20, "the store grew by {store_growth} bytes");
    let (status, metrics) = crate::server::http_get(setup.port, "/metrics").expect("the server is up");
    assert_eq!(status, 200);
    let count = |reason: &str| -> u64 {
        let prefix = format!("turingwatch_samples_refused_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
    };
    assert!(count("cpu_leap") >= 1, "{metrics}");
    assert!(count("outside_run") >= 1, "{metrics}");
    assert!(count("block_full") + count("outside_run") >= 72_000 - 65_536, "{metrics}");
    assert!(count("name_too_long") >= 1, "{metrics}");
    assert!(count("not_job_node") >= 1, "{metrics}");
    assert!(count("service_series") >= 1, "{metrics}");
    assert!(metrics.contains("turingwatch_reports_rejected_total{reason=\"unknown_node\"} 2\n"), "{metrics}");
    server.stop();
    cancel(job);

    let store = setup.store();
    let data = store.job_data(JobId(job)).unwrap();
    assert_eq!(data.corrupt_blocks, 0);
    // The service's series on n3 is exactly what the service sent.
    let on_n3: Vec<(u64, u64)> = data
        .samples
        .iter()
        .filter(|(key, _)| key.step == StepId::BATCH && key.node == "n3")
        .flat_map(|(_, v)| v.iter().map(|s| (s.at, s.cpu_user_cs)))
        .collect();
    assert_eq!(on_n3, (1..=3u64).map(|i| (now - 40 + i, 10 * i)).collect::<Vec<_>>(), "{:?}", data.samples.keys());
    let samples: Vec<&StepSample> = data.samples.values().flatten().collect();
    assert!(samples.iter().all(|s| s.cpu_user_cs < 1_000_000_000 && s.at > 1 && s.at <= now + 120), "{samples:?}");
    assert!(data.gpu.values().all(|v| v.len() <= 65_536));
    assert!(data.apps.iter().all(|(_, a)| a.len() <= 256));
}

/// An authenticated user invents 10⁵ job ids and 100 node names: the SLURM commands this costs
/// stay within the per-uid budget, her real job is still accepted, and a period closes and mails
/// go out meanwhile.
#[test]
fn invented_jobs_and_nodes_cost_bounded_slurm_calls_and_the_period_still_mails() {
    use std::os::unix::fs::PermissionsExt;
    if !cluster() {
        return;
    }
    // Every SLURM command the server runs goes through a wrapper that logs it.
    let bin = setup_dir("hostile_flood").join("slurm-bin");
    let calls = setup_dir("hostile_flood").join("slurm-calls.log");
    let setup = Setup::new(
        "hostile_flood",
        18_231,
        &format!(
            "[slurm]\nbin_dir = \"{bin}\"\n[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n\
             [analysis]\nperiod = \"1m\"\ntimezone = \"UTC\"\nresults_dir = \"{d}/results\"\n[findings]\nmin_runtime = \"5s\"\n\
             [mail]\ntransport = \"file\"\nfile_dir = \"{d}/mail-out\"\ndomain = \"example.org\"\nrate_limit = \"1s\"\nrate_jitter = \"0s\"\n\
             [log]\nformat = \"json\"\n",
            bin = bin.display(),
            d = setup_dir("hostile_flood").display()
        ),
    );
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["sacct", "squeue", "scontrol", "sacctmgr", "sinfo", "sbatch", "scancel"] {
        let which = run(std::process::Command::new("bash").args(["-c", &format!("command -v {program}")]));
        let real = String::from_utf8(which.stdout).unwrap();
        let script = format!("#!/bin/sh\necho \"{program} $*\" >> {}\nexec {} \"$@\"\n", calls.display(), real.trim());
        std::fs::write(bin.join(program), script).unwrap();
        std::fs::set_permissions(bin.join(program), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let period = crate::mail::seed_previous_period(&setup.dir.join("db.redb"), |start| {
        let mut job = crate::mail::seeded_job(9_400_001, "twflood", start + 5, 40);
        job.alloc_cpus = 2;
        job.usage.total_cpu_ms = 100;
        vec![job]
    });
    let job = python_job("alice", Some("n3"), "100M", &hog_program(10, 90));
    wait_running(job, Duration::from_secs(90));
    let server = setup.server();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    wait_imported_past(&setup, now);
    let flood_start = std::time::Instant::now();
    let batch = |node: &str, jobs: std::ops::Range<u64>| {
        let steps = jobs
            .map(|id| StepBatch {
                job: JobId(id),
                step: StepId::BATCH,
                samples: vec![StepSample { at: now, ..Default::default() }],
                gpus: vec![],
                apps: vec![],
            })
            .collect();
        encode_batch(&Batch { version: VERSION, id: rand_id(), node: node.into(), made_at: now, steps })
    };
    let mut answers = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..100u64 {
        let body = batch("n3", 800_000_000 + i * 1_000..800_000_000 + (i + 1) * 1_000);
        *answers.entry(send(&setup, Some(&alice_credential(&body)), &body).0).or_default() += 1;
        let body = batch(&format!("fake{i}"), job..job + 1);
        *answers.entry(send(&setup, Some(&alice_credential(&body)), &body).0).or_default() += 1;
    }
    let flood_secs = flood_start.elapsed().as_secs_f64();
    // Her own job, from its node, is still taken (owner and node already known: no lookup).
    let body = batch("n3", job..job + 1);
    let (status, text) = send(&setup, Some(&alice_credential(&body)), &body);
    assert_eq!(status, 200, "{text}");
    let (status, metrics) = crate::server::http_get(setup.port, "/metrics").expect("the server is up");
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    let lookups = log
        .lines()
        .filter(|l| {
            l.starts_with("squeue -h -j") || l.contains("JobIDRaw,UID") || l.starts_with("scontrol -o show node")
        })
        .count();
    // 20 lookups of burst plus one every 2 s, each at most two commands.
    let bound = 2 * (20 + (flood_secs / 2.0).ceil() as usize + 1);
    assert!(lookups <= bound, "{lookups} SLURM lookups in {flood_secs:.0} s (bound {bound}); answers {answers:?}");
    assert!(answers.get(&429).copied().unwrap_or(0) >= 100, "most of the flood is refused: {answers:?}");
    assert!(!metrics.contains("turingwatch_reports_rejected_total{reason=\"lookup_budget\"} 0\n"), "{metrics}");
    // Meanwhile the period closed and its mail went out.
    let mailed = crate::util::eventually(Duration::from_secs(90), || {
        std::fs::read_dir(setup.dir.join("mail-out")).map(|d| d.count() > 0).unwrap_or(false)
    });
    assert!(mailed, "no mail for the period: {}", setup.server_log());
    server.stop();
    cancel(job);
    let store = setup.store();
    assert!(store.periods().unwrap().iter().any(|p| p.start == period && p.closed));
    // No invented job or node left anything in the store.
    assert!(store.job_data(JobId(800_000_000)).unwrap().samples.is_empty());
    eprintln!("flood: {lookups} SLURM lookups in {flood_secs:.1} s, answers {answers:?}");
}

/// The directory `Setup::new(name, …)` makes (and empties).
fn setup_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join("turingwatch-tests").join(name)
}
