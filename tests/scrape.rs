//! Scraping on the real dev cluster: what the scraper sees (`--once --json`), scrapers placed by
//! the distributor through SLURM measuring a CPU burner and a memory hog into the store, and
//! the spool delivering a server outage's reports exactly once.

use crate::scrape_support::*;
use crate::util::{cluster, run, wait_job_done};
use std::process::Stdio;
use std::time::Duration;
use turingwatch::job::StepId;
use turingwatch::wire::format::decode_batch;

const HOG_MIB: u64 = 400;

fn once_json(setup: &Setup, node: &str) -> serde_json::Value {
    let out = run(setup.turingwatch().args(["scrape", "--once", "--json", "--interval", "2s", "--node", node]));
    assert!(out.status.success(), "scrape --once failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn step_of<'a>(json: &'a serde_json::Value, job: u64, step: &str) -> Option<&'a serde_json::Value> {
    json["steps"].as_array()?.iter().find(|s| s["job"] == job && s["step"] == step)
}

#[test]
fn distributor_placed_scrapers_measure_a_burner_and_a_hog() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("distributor_placed_scrapers_measure_a_burner_and_a_hog", 18210, "");
    let burn_log = setup.dir.join("burn.log");
    // Both run until the scrapers have had their time (the file `stop`), however long each
    // waited behind other tests' jobs to start: a fixed run time let the hog end before the
    // distributor started when it had started 40 s before the burner.
    let stop = setup.dir.join("stop");
    let burner = python_job("alice", Some("n2"), "200M", &burner_until(&stop, 110, &burn_log));
    let hog = python_job("bob", Some("n3"), "700M", &hog_until(HOG_MIB, &stop, 110));
    wait_running(burner, Duration::from_secs(90));
    wait_running(hog, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3));

    // First what an admin sees directly on each node.
    let n2 = once_json(&setup, "n2");
    assert_eq!(n2["finder"], "cgroup_v1");
    let burn = step_of(&n2, burner, "batch").unwrap_or_else(|| panic!("burner not seen on n2: {n2}"));
    assert!(burn["cores_in_use"].as_f64().unwrap() > 0.2, "{burn}");
    assert_eq!(burn["apps"], serde_json::json!(["python3"]));
    assert_eq!(burn["uid"], 1001);
    // Where the dev cluster runs jobacct_gather/cgroup, steps have cpuacct cgroups, read instead
    // of every process's /proc files.
    let cpuacct = std::path::Path::new("/sys/fs/cgroup/cpuacct/slurm_n2").is_dir();
    assert_eq!(burn["cpu_source"], if cpuacct { "cgroup" } else { "processes" }, "{burn}");
    assert!(step_of(&n2, hog, "batch").is_none(), "n2's scraper must not see n3's job");
    let n3 = once_json(&setup, "n3");
    let hog_step = step_of(&n3, hog, "batch").unwrap_or_else(|| panic!("hog not seen on n3: {n3}"));
    let rss = hog_step["sample"]["rss_kib"].as_f64().unwrap();
    let want = (HOG_MIB * 1024) as f64;
    assert!((rss - want).abs() <= want * 0.1, "hog RSS {rss} KiB vs {want} KiB allocated");

    // Then scrapers placed by the distributor through SLURM, reporting to the server.
    let server = setup.server();
    let distributor_log = setup.dir.join("distributor.log");
    let mut distributor = setup
        .turingwatch()
        .args(["distribute", "--only-nodes", "n2,n3", "--scraper-output"])
        .arg(setup.dir.join("scraper-%j.out"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&distributor_log).unwrap())
        .spawn()
        .unwrap();
    // A scraper job on each node, or a scraper step where the node's CPUs are all allocated.
    let placed_on = |node: &str| {
        let log = crate::util::read(&distributor_log);
        log.lines().any(|l| {
            (l.contains("scraper job submitted") || l.contains("scraper step started"))
                && l.contains(&format!("node={node}"))
        })
    };
    let placed = crate::util::eventually(Duration::from_secs(60), || placed_on("n2") && placed_on("n3"));
    assert!(placed, "no scraper placed on n2 and n3:\n{}", crate::util::read(&distributor_log));
    // One scraper pass (time_per_node 20 s, sampling every second, reporting every 3 s), then
    // the jobs end.
    std::thread::sleep(Duration::from_secs(25));
    std::fs::write(&stop, "").unwrap();
    wait_job_done(burner, Duration::from_secs(60));
    wait_job_done(hog, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4)); // the scrapers' next report
    terminate(&mut distributor);
    let name = "tw-test-18210";
    let left = crate::util::eventually(Duration::from_secs(30), || {
        let out = run(std::process::Command::new("squeue").args(["-h", "-n", name, "-o", "%i"]));
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(left, "the distributor left scraper jobs behind after stopping");
    server.stop();

    let store = setup.store();
    let samples = step_samples(&store, burner, StepId::BATCH, "n2");
    assert!(samples.len() >= 5, "only {} burner samples; server log:\n{}", samples.len(), setup.server_log());
    assert!(samples.windows(2).all(|w| w[0].at < w[1].at), "timestamps must increase");
    let log = read_burn_log(&burn_log);
    let covered: Vec<_> = samples.iter().filter(|s| burned_at(&log, s.at as f64 + 0.02).is_some()).collect();
    assert!(covered.len() >= 5, "burner log does not cover the samples");
    let (first, last) = (covered[0], covered[covered.len() - 1]);
    let wall = (last.at - first.at) as f64;
    let scraped = ((last.cpu_user_cs + last.cpu_sys_cs) - (first.cpu_user_cs + first.cpu_sys_cs)) as f64 / 100.0 / wall;
    let burned =
        (burned_at(&log, last.at as f64 + 0.02).unwrap() - burned_at(&log, first.at as f64 + 0.02).unwrap()) / wall;
    eprintln!("burner: scraped {scraped:.3} cores, burned {burned:.3} cores over {wall} s");
    assert!((scraped - burned).abs() <= burned * 0.1, "scraped {scraped:.3} cores vs burned {burned:.3}");
    assert!(first.cpus == 1 && first.processes >= 2, "{first:?}");

    let hog_samples = step_samples(&store, hog, StepId::BATCH, "n3");
    let peak = hog_samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64;
    eprintln!("hog: peak RSS {peak} KiB for {want} KiB allocated, {} samples", hog_samples.len());
    assert!((peak - want).abs() <= want * 0.1, "hog RSS {peak} KiB vs {want} KiB");
    let apps = store.apps_of_job(turingwatch::job::JobId(hog)).unwrap();
    assert!(apps.iter().any(|(_, a)| a == "python3"), "{apps:?}");
}

#[test]
fn a_scraper_started_while_the_server_is_down_spools_and_delivers_exactly_once() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("a_scraper_started_while_the_server_is_down_spools_and_delivers_exactly_once", 18211, "");
    let job = python_job("alice", None, "100M", &hog_program(20, 7));
    let node = wait_running(job, Duration::from_secs(90));
    let scrape = |secs: &str| {
        let out = run(setup.turingwatch().args(["scrape", "--node", &node, "--interval", "1s", "--duration", secs]));
        assert!(out.status.success(), "scraper failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    // The server is not running: everything goes to the spool.
    scrape("4s");
    let spool = setup.dir.join("spool").join(&node);
    let files: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!files.is_empty(), "nothing spooled");
    let mut spooled = 0;
    let mut ids = Vec::new();
    for file in &files {
        let report = decode_batch(&std::fs::read(file).unwrap()).unwrap();
        spooled += report.steps.iter().filter(|s| s.job.0 == job).map(|s| s.samples.len()).sum::<usize>();
        ids.push(report.id);
    }
    assert!(spooled >= 3, "only {spooled} samples of job {job} spooled");
    let lost_ack = setup.dir.join("lost-ack.twr");
    std::fs::copy(&files[0], &lost_ack).unwrap();
    wait_job_done(job, Duration::from_secs(60));

    // The server comes up: the next scraper run delivers the spool.
    let server = setup.server();
    scrape("1s");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "spool not emptied");
    // A report whose acknowledgement was lost is sent again: stored once.
    std::fs::copy(&lost_ack, spool.join(files[0].file_name().unwrap())).unwrap();
    scrape("1s");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    server.stop();
    let log = setup.server_log();
    assert_eq!(log.matches("outcome=\"duplicate\"").count(), 1, "{log}");

    let store = setup.store();
    let stored: usize = store.samples_of_job(turingwatch::job::JobId(job)).unwrap().values().map(Vec::len).sum();
    assert_eq!(stored, spooled, "every spooled sample exactly once");
    for id in ids {
        assert!(store.report_seen(&format!("{node}/0"), id).unwrap(), "report {id:x} not marked");
    }
}

#[test]
fn the_user_mode_template_scrapes_the_users_own_job_into_a_private_server() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("the_user_mode_template_scrapes_the_users_own_job_into_a_private_server", 18213, "");
    let path = short_user_template(&setup.dir);
    let tw_dir = setup.dir.join("user"); // written by alice's job
    std::fs::create_dir(&tw_dir).unwrap();
    std::fs::set_permissions(&tw_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = run(std::process::Command::new("runuser")
        .args(["-u", "alice", "--", "env"])
        .arg(format!("TURINGWATCH={}", env!("CARGO_BIN_EXE_turingwatch")))
        .arg("TW_INTERVAL=1s")
        .arg(format!("TW_DIR={}", tw_dir.display()))
        .arg(format!("TW_PORT={}", setup.port))
        .args(["sbatch", "--parsable", "--mem=500M"])
        .arg(format!("--output={}", setup.dir.join("job.out").display()))
        .arg(&path));
    assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
    let job: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let state = wait_job_done(job, Duration::from_secs(120));
    assert_eq!(state, "COMPLETED", "{}", crate::util::read(&setup.dir.join("job.out")));
    let store = turingwatch::store::Store::open(&tw_dir.join("turingwatch.redb")).unwrap();
    let series = store.samples_of_job(turingwatch::job::JobId(job)).unwrap();
    // Two srun steps ran (the workload and the scrapers, numbered in whichever order they
    // started); only the workload may be reported, never the scraper's own step.
    let numbered: Vec<_> = series.iter().filter(|(k, _)| k.step.is_numbered()).collect();
    assert_eq!(numbered.len(), 1, "series {:?}", series.keys().collect::<Vec<_>>());
    let (workload, samples) = numbered[0];
    assert!(samples.len() >= 4, "workload step samples: {}", samples.len());
    let apps = store.apps_of_job(turingwatch::job::JobId(job)).unwrap();
    assert!(apps.contains(&(workload.step, "python3".to_string())), "{apps:?}");
}

#[test]
fn a_server_running_the_distributor_places_scrapers_and_cancels_them_on_sigterm() {
    if !cluster() {
        return;
    }
    let setup = Setup::new(
        "a_server_running_the_distributor_places_scrapers_and_cancels_them_on_sigterm",
        18214,
        "in_server = true\n",
    );
    let burn_log = setup.dir.join("burn.log");
    // Runs alone (scripts/test.sh serial): the in-server distributor is not limited to n1. The
    // burner outlives a scraper job left pending behind a leftover job (then cancelled).
    let burner = python_job("alice", Some("n1"), "200M", &burner_program(110, &burn_log));
    wait_running(burner, Duration::from_secs(90));
    let server = setup.server();
    let name = "tw-test-18214";
    let squeue_ours = || {
        let out = run(std::process::Command::new("squeue").args(["-h", "-n", name, "-o", "%i %N %T"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // A scraper job on n1, or, where n1's CPUs are all allocated (a job left by another test), a
    // scraper step inside the burner: either way the burner is sampled into this server.
    let step_line = format!("scraper step started job_id={burner} node=n1");
    let placed = crate::util::eventually(Duration::from_secs(90), || {
        squeue_ours().contains("n1 RUNNING") || setup.server_log().contains(&step_line)
    });
    assert!(placed, "the server's allocation actor placed no scraper on n1: {}\n{}", squeue_ours(), setup.server_log());
    let metrics_show_it = crate::util::eventually(Duration::from_secs(20), || {
        let out = run(std::process::Command::new("curl").args(["-sf", &format!("{}/metrics", setup.url())]));
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            (l.starts_with("turingwatch_scraper_jobs{state=\"running\"}")
                || l.starts_with("turingwatch_scraper_steps_running "))
                && !l.ends_with(" 0")
        })
    });
    assert!(metrics_show_it, "/metrics counts neither a running scraper job nor a running scraper step");
    // Samples flow while the burner runs; then SIGTERM must cancel the scraper jobs.
    std::thread::sleep(Duration::from_secs(6));
    server.stop();
    let our_steps = || scraper_steps(Some(burner));
    let left = crate::util::eventually(Duration::from_secs(30), || squeue_ours().is_empty() && our_steps() == 0);
    assert!(left, "scraper jobs or steps left after the server stopped: {} / {} steps", squeue_ours(), our_steps());
    let log = setup.server_log();
    assert!(log.contains("cancelling our scraper jobs"), "{log}");
    cancel(burner);
    let samples = step_samples(&setup.store(), burner, StepId::BATCH, "n1");
    assert!(samples.len() >= 3, "only {} burner samples reached the server; log:\n{log}", samples.len());
}
