//! The harness itself, proved against the real dev cluster: a job goes in with sbatch and comes
//! out finished in sacct.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn sbatch_job_finishes_and_shows_in_sacct() {
    if !cluster() {
        return;
    }
    let id = sbatch(Some("alice"), &["-J", "harness-check", "-w", "n2"], "echo hello; sleep 1");
    assert_eq!(wait_job_done(id, Duration::from_secs(60)), "COMPLETED");
    // Just after the end, 22.05 can briefly show the job line as `allocation`: poll until settled.
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(20), || {
        let out = run(Command::new("sacct").args([
            "-j",
            &id.to_string(),
            "-X",
            "-n",
            "-P",
            "--format=JobName,User,NodeList,ExitCode",
        ]));
        last = String::from_utf8_lossy(&out.stdout).trim().to_string();
        last == "harness-check|alice|n2|0:0"
    });
    assert!(settled, "sacct shows {last:?}");
}

#[test]
fn every_emulated_node_is_idle_or_in_use() {
    if !cluster() {
        return;
    }
    let out = run(Command::new("sinfo").args(["-h", "-N", "-o", "%N %t"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let nodes: Vec<&str> = text.lines().collect();
    assert!(nodes.len() >= 3, "{text}");
    for line in nodes {
        assert!(line.ends_with("idle") || line.ends_with("mix") || line.ends_with("alloc"), "{line}");
    }
}
