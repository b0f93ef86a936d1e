//! SLURM's controller goes away while the distributor allocates: its rounds fail and are logged,
//! it keeps running, and when slurmctld is back it places scrapers again; stopping it cancels
//! them. slurmctld is shared by every test, so this runs alone (see scripts/test.sh) and a guard
//! always starts slurmctld again.

use crate::scrape_support::*;
use crate::util::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts slurmctld again when dropped, whatever the test did.
struct ControllerGuard;

impl Drop for ControllerGuard {
    fn drop(&mut self) {
        if !run(Command::new("scontrol").arg("ping")).status.success()
            || String::from_utf8_lossy(&run(Command::new("scontrol").arg("ping")).stdout).contains("DOWN")
        {
            let _ = Command::new("/usr/sbin/slurmctld").status();
        }
        eventually(Duration::from_secs(30), controller_up);
    }
}

fn controller_up() -> bool {
    let out = run(Command::new("scontrol").arg("ping"));
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
}

fn metric(port: u16, name: &str) -> u64 {
    crate::server::http_get(port, "/metrics")
        .and_then(|(_, body)| body.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()))
        .unwrap_or(0)
}

#[test]
fn the_distributor_rides_out_a_slurmctld_outage() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("distributor_slurmctld_outage", 18_070, "");
    let job = python_job("alice", Some("n3"), "100M", &hog_program(30, 90));
    wait_running(job, Duration::from_secs(90));
    let server = setup.server();
    let _guard = ControllerGuard;

    // The controller goes away before the distributor's first round.
    let pid = std::fs::read_to_string("/run/slurm/slurmctld.pid").unwrap();
    run(Command::new("kill").arg(pid.trim()));
    assert!(eventually(Duration::from_secs(20), || !controller_up()), "slurmctld did not stop");
    let mut distributor = setup
        .turingwatch()
        .args(["distribute", "--only-nodes", "n3", "--scraper-output"])
        .arg(setup.dir.join("scraper-%j.out"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(setup.dir.join("distributor.log")).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(12));
    assert!(distributor.try_wait().unwrap().is_none(), "the distributor exited while slurmctld was down");
    let log = read(&setup.dir.join("distributor.log"));
    assert!(log.contains("failed"), "failures should be logged: {log}");

    // The controller returns: scrapers are placed and samples arrive.
    run(&mut Command::new("/usr/sbin/slurmctld"));
    assert!(eventually(Duration::from_secs(30), controller_up), "slurmctld did not come back");
    let name = "tw-test-18070";
    let placed = eventually(Duration::from_secs(90), || {
        let out = run(Command::new("squeue").args(["-h", "-n", name, "-o", "%i"]));
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(placed, "no scraper placed after slurmctld returned: {}", read(&setup.dir.join("distributor.log")));
    let counted = eventually(Duration::from_secs(30), || {
        metric(18_070, "turingwatch_scraper_jobs{state=\"running\"} ")
            + metric(18_070, "turingwatch_scraper_jobs{state=\"pending\"} ")
            > 0
    });
    assert!(counted, "/metrics does not count the scraper job");
    let stored = eventually(Duration::from_secs(60), || metric(18_070, "turingwatch_samples_stored_total ") > 0);
    assert!(stored, "no samples from the placed scraper: {}", setup.server_log());

    terminate(&mut distributor);
    let gone = eventually(Duration::from_secs(30), || {
        let out = run(Command::new("squeue").args(["-h", "-n", name, "-o", "%i"]));
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(gone, "scraper jobs left behind after the distributor stopped");
    server.stop();
    cancel(job);
}
