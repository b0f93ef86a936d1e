//! The original's deployment modes end to end on the dev cluster, each run as the user who
//! would run it (alice), not root: the user's job template (`scripts/user_submission`) and the
//! long SLURM job (`scripts/slurm_scraping_job`). The systemd mode is tested in `deploy.rs`.

use crate::scrape_support::*;
use crate::util::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use turingwatch::job::{JobId, StepId};

fn as_user(user: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--"]);
    cmd
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The template's private server, in alice's job: only alice's accounting, files only she can
/// read (bob tries), a random port in a 0600 file, no identity header trusted.
#[test]
fn the_user_template_keeps_its_server_private_and_imports_only_the_users_jobs() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("user_template_private_server", 18_630, "");
    // bob's job is in the same accounting window; alice's server must not import it. An earlier
    // job of alice's is, and must be.
    let alices_earlier = sbatch(Some("alice"), &["--time=1", "--mem=50M"], "true");
    wait_job_done(alices_earlier, Duration::from_secs(60));
    let bobs = sbatch(Some("bob"), &["--time=2", "--mem=50M"], "sleep 20");
    std::thread::sleep(Duration::from_secs(5)); // windowed sacct shows new jobs a few seconds late
    let path = short_user_template(&setup.dir);
    let tw_dir = setup.dir.join("alice-tw"); // made by alice's job
    let out = run(as_user("alice")
        .arg("env")
        .arg(format!("TURINGWATCH={}", env!("CARGO_BIN_EXE_turingwatch")))
        .arg("TW_INTERVAL=1s")
        .arg(format!("TW_DIR={}", tw_dir.display()))
        .args(["sbatch", "--parsable", "--mem=500M"])
        .arg(format!("--output={}", setup.dir.join("job.out").display()))
        .arg(&path));
    assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
    let job: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // While it runs: the port is random and only alice may read it; the web pages trust no header.
    let port_file = tw_dir.join("port");
    assert!(eventually(Duration::from_secs(60), || port_file.exists()), "no port file");
    assert_eq!(mode_of(&port_file), 0o600);
    let port: u16 = eventually(Duration::from_secs(5), || !read(&port_file).trim().is_empty())
        .then(|| read(&port_file).trim().parse().unwrap())
        .unwrap();
    assert!(!run(as_user("bob").arg("cat").arg(&port_file)).status.success(), "bob read the port file");
    let answer = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-AuthUser: alice"])
        .arg(format!("http://127.0.0.1:{port}/api/user")));
    let code = String::from_utf8_lossy(&answer.stdout).to_string();
    assert!(code == "401" || code == "403", "an identity header was trusted on a shared node: {code}");
    let state = wait_job_done(job, Duration::from_secs(120));
    assert_eq!(state, "COMPLETED", "{}", read(&setup.dir.join("job.out")));
    cancel(bobs);

    // Everything it wrote is alice's alone.
    assert_eq!(mode_of(&tw_dir), 0o700);
    for name in ["turingwatch.redb", "turingwatch.toml", "server.log", "port"] {
        let file = tw_dir.join(name);
        assert_eq!(mode_of(&file) & 0o077, 0, "{name} is readable by others");
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), 1001, "{name}");
    }
    let spool = tw_dir.join("spool");
    assert_eq!(mode_of(&spool) & 0o077, 0, "the spool is open to others");
    let bob_reads = run(as_user("bob").arg("cat").arg(tw_dir.join("turingwatch.redb")));
    assert!(!bob_reads.status.success(), "bob read alice's store");
    let bob_lists = run(as_user("bob").arg("ls").arg(&tw_dir));
    assert!(!bob_lists.status.success(), "bob listed alice's directory");

    let store = turingwatch::store::Store::open(&tw_dir.join("turingwatch.redb")).unwrap();
    assert!(store.job(JobId(alices_earlier)).unwrap().is_some(), "alice's own job is not imported");
    assert!(store.job(JobId(bobs)).unwrap().is_none(), "bob's job was imported into alice's server");
    assert!(store.job_ids_of_user("bob").unwrap().is_empty());
    let series = store.samples_of_job(JobId(job)).unwrap();
    let numbered: Vec<_> = series.iter().filter(|(k, _)| k.step.is_numbered()).collect();
    assert_eq!(numbered.len(), 1, "series {:?}", series.keys().collect::<Vec<_>>());
}

/// The long SLURM job, submitted by an ordinary user with `run.sh`: a server and a distributor in
/// one job; the distributor's scrapers sample the user's other job into that server, and cancelling
/// the long job cancels the scrapers too.
#[test]
fn the_long_slurm_job_runs_server_and_distributor_and_samples_the_users_jobs() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("long_slurm_job_mode", 18_640, "");
    let burn_log = setup.dir.join("burn.log");
    // A user of its own: the distributor samples every job of its user, and the other tests'
    // jobs are alice's and bob's.
    let user = "twlong";
    if !run(Command::new("id").arg(user)).status.success() {
        run(Command::new("useradd").args(["--create-home", user]));
    }
    let burner = python_job(user, Some("n2"), "200M", &burner_program(100, &burn_log));
    wait_running(burner, Duration::from_secs(90));
    let out = run(as_user(user)
        .arg("env")
        .arg(format!("TURINGWATCH_BIN={}", env!("CARGO_BIN_EXE_turingwatch")))
        .arg("TURINGWATCH_PORT=18640")
        .arg("bash")
        .arg(repo_root().join("scripts/slurm_scraping_job/run.sh"))
        .arg(&setup.config)
        .args(["--parsable", "--mem=1G", "--time=5"])
        .arg(format!("--output={}", setup.dir.join("long.out").display()))
        .current_dir(&setup.dir));
    assert!(out.status.success(), "run.sh: {}", String::from_utf8_lossy(&out.stderr));
    let long: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Scraper jobs on nodes with a free CPU, scraper steps in the user's own jobs on packed ones.
    let scrapers = || {
        let jobs = run(Command::new("squeue").args(["-h", "-n", "tw-test-18640", "-o", "%i %u %T"]));
        let steps = run(Command::new("squeue").args(["-h", "-s", "-o", "%i %j %u"]));
        let steps = String::from_utf8_lossy(&steps.stdout);
        let steps: String = steps.lines().filter(|l| l.contains(" tw-scraper ")).map(|l| format!("{l}\n")).collect();
        format!("{}{steps}", String::from_utf8_lossy(&jobs.stdout)).trim().to_string()
    };
    // The user asks the in-job server about the burner (`turingwatch job`, MUNGE as the user)
    // until its samples are there.
    let stored = eventually(Duration::from_secs(100), || {
        let out = run(as_user(user)
            .arg(env!("CARGO_BIN_EXE_turingwatch"))
            .args(["job", &burner.to_string(), "--json", "--server", "http://127.0.0.1:18640"])
            .current_dir("/tmp"));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["source"] == "server" && v["job"]["samples"].as_u64().unwrap_or(0) >= 3)
    });
    let log = || std::fs::read_to_string(setup.dir.join("long.out")).unwrap_or_default();
    assert!(stored, "no samples reached the in-job server; scrapers: {}\n{}", scrapers(), log());
    assert!(scrapers().contains(user), "the scrapers are not {user}'s: {}", scrapers());
    cancel(long);
    wait_job_done(long, Duration::from_secs(60));
    let gone = eventually(Duration::from_secs(40), || scrapers().is_empty());
    assert!(gone, "scraper jobs outlived the long job: {}\n{}", scrapers(), log());
    cancel(burner);
    let samples = step_samples(&setup.store(), burner, StepId::BATCH, "n2");
    assert!(samples.len() >= 3, "only {} samples of {user}'s job\n{}", samples.len(), log());
}
