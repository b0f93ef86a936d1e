//! `turingwatch job` as users run it: it never creates a store, asks the server's client API
//! (MUNGE-authenticated) when one runs, and falls back to SLURM's accounting with one line.

use crate::util::{cluster, run, sbatch, test_dir, wait_job_done};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Port of this file's servers (and, closed, of "no server here").
const PORT: u16 = 18_700;
const CLOSED_PORT: u16 = 18_701;

/// `turingwatch <args>` as `user`, in `cwd`, with `env` set.
fn as_user(user: &str, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--", "env", "-u", "TURINGWATCH_CONFIG"]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_turingwatch")).args(args).current_dir(cwd);
    run(&mut cmd)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn job_in_an_empty_directory_creates_no_store() {
    if !cluster() {
        return;
    }
    let dir = test_dir("client_job_creates_no_store");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let id = sbatch(Some("alice"), &["--time=1", "--ntasks=1"], "true");
    wait_job_done(id, Duration::from_secs(90));
    // The default config: `[store] path = ./turingwatch.db`; no server on the web port.
    let bind = format!("127.0.0.1:{CLOSED_PORT}");
    let out = as_user("alice", &dir, &[("TURINGWATCH_WEB_BIND", &bind)], &["job", &id.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("Job ID: {id}")) && stdout.contains("Source: SLURM accounting"), "{stdout}");
    assert!(entries(&dir).is_empty(), "turingwatch job left {:?} in {}", entries(&dir), dir.display());
}
