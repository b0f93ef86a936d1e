//! `turingwatch job` as users run it: it never creates a store, asks the server's client API
//! (MUNGE-authenticated) when one runs, and falls back to SLURM's accounting with one line.

use crate::scrape_support::{cancel, hog_program, python_job, wait_running, Setup};
use crate::util::{cluster, eventually, run, sbatch, test_dir, wait_job_done};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use turingwatch::munge::{client_payload, CREDENTIAL_HEADER};

/// Port of this file's servers (and, closed, of "no server here").
const PORT: u16 = 18_700;
const CLOSED_PORT: u16 = 18_701;
const ADMIN_PORT: u16 = 18_702;
const COORD_PORT: u16 = 18_703;

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

/// `turingwatch job ID --json` as `user` with the test's config: (source, samples, stderr).
fn job_json(setup: &Setup, user: &str, id: u64, extra: &[&str]) -> (String, u64, String) {
    let config = setup.config.to_string_lossy().into_owned();
    let id = id.to_string();
    let mut args = vec!["--config", config.as_str(), "job", id.as_str(), "--json"];
    args.extend_from_slice(extra);
    let out = as_user(user, &setup.dir, &[], &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Neither the server nor sacct may know a job that has just started (callers retry, or
    // check the source they got).
    if !out.status.success() {
        return (format!("failed: {stderr}"), 0, stderr);
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let source = value["source"].as_str().unwrap_or_default().to_string();
    (source, value["job"]["samples"].as_u64().unwrap_or(0), stderr)
}

/// The lines `turingwatch job` itself writes to stderr (log lines of SLURM's adapter aside).
fn own_lines(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.starts_with("turingwatch job:")).count()
}

/// A credential `user` makes for `payload`.
fn credential(user: &str, payload: &str) -> String {
    let out = run(Command::new("runuser").args(["-u", user, "--", "munge", "-s", payload]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `GET path` with a credential header; the status.
fn get_status(port: u16, path: &str, credential: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{CREDENTIAL_HEADER}: {credential}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {answer:?}"))
}

/// alice sees her running job's samples through the server, and so does an admin; bob is refused and gets what
/// sacct shows; a credential for another request, a replayed one, a bad id are refused; with
/// the server down the fallback says so.
#[test]
fn job_asks_the_server_as_the_credentialed_user() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("client_job_asks_the_server", PORT, "");
    // root is one of `[web] admins`: it may see any job.
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen("[web]\n", "[web]\nadmins = [\"root\"]\n", 1);
    std::fs::write(&setup.config, text).unwrap();
    let id = python_job("alice", Some("n1"), "200M", &hog_program(50, 60));
    wait_running(id, Duration::from_secs(90));
    let server = setup.server();
    // alice's scraper on n1 reports her job (as tests/ingest.rs does).
    let spool = setup.dir.join("alice-spool");
    let out = run(Command::new("runuser")
        .args(["-u", "alice", "--"])
        .arg(env!("CARGO_BIN_EXE_turingwatch"))
        .arg("--config")
        .arg(&setup.config)
        .args(["scrape", "--node", "n1", "--interval", "1s", "--duration", "3s", "--spool-dir"])
        .arg(&spool));
    assert!(out.status.success(), "alice's scraper failed: {}", String::from_utf8_lossy(&out.stderr));

    let mut last = (String::new(), 0, String::new());
    let seen = eventually(Duration::from_secs(90), || {
        last = job_json(&setup, "alice", id, &[]);
        last.0 == "server" && last.1 > 0
    });
    assert!(seen, "alice's job {id} never came from the server with samples: {last:?}\n{}", setup.server_log());
    assert!(last.2.is_empty(), "no fallback line when the server answers: {}", last.2);

    // bob: refused by the server, told so in one line, shown what sacct shows.
    let (source, samples, stderr) = job_json(&setup, "bob", id, &[]);
    assert_eq!((source.as_str(), samples), ("slurm", 0), "{stderr}");
    assert!(stderr.contains("refused: 403") && own_lines(&stderr) == 1, "{stderr}");

    // An admin gets anyone's job.
    let (source, samples, stderr) = job_json(&setup, "root", id, &[]);
    assert!(source == "server" && samples > 0, "root ([web] admins): {source} {samples} {stderr}");

    // The credential binds the request, once: another job's path, a replay, a bad id.
    let path = format!("/client/v1/jobs/{id}");
    let other = credential("alice", &client_payload("GET", &format!("/client/v1/jobs/{}", id + 1)));
    assert_eq!(get_status(PORT, &path, &other), 401);
    let good = credential("alice", &client_payload("GET", &path));
    assert_eq!(get_status(PORT, &path, &good), 200);
    assert_eq!(get_status(PORT, &path, &good), 401, "a replayed credential must be refused");
    let junk = credential("alice", &client_payload("GET", "/client/v1/jobs/1x"));
    assert_eq!(get_status(PORT, "/client/v1/jobs/1x", &junk), 400);
    assert_eq!(get_status(PORT, &path, "not-munge"), 401);

    // Server down: the fallback names why.
    server.stop();
    let (source, _, stderr) = job_json(&setup, "alice", id, &[]);
    assert_eq!(source, "slurm", "{stderr}");
    assert!(stderr.contains("unreachable") && own_lines(&stderr) == 1, "{stderr}");
    // --server wins over the config.
    let closed = format!("http://127.0.0.1:{CLOSED_PORT}");
    let (_, _, stderr) = job_json(&setup, "alice", id, &["--server", &closed]);
    assert!(stderr.contains(&closed), "{stderr}");
    cancel(id);
}

#[test]
fn admin_commands_run_through_the_running_server_for_admins_only() {
    if !cluster() {
        return;
    }
    let setup = Setup::new(
        "client_admin_commands",
        ADMIN_PORT,
        "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n[mail]\ndomain = \"example.org\"\n",
    );
    let server = setup.server();
    let root = |args: &[&str]| run(setup.turingwatch().args(args));
    let text =
        |out: &Output| format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The server holds the store; root's commands go through its admin API.
    let status = root(&["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["source"], "server", "{value}");
    assert!(value["actor_restarts"].as_array().is_some_and(|a| !a.is_empty()), "{value}");
    let analyze = root(&["analyze"]);
    assert!(analyze.status.success(), "analyze while the server runs: {}", text(&analyze));
    assert!(String::from_utf8_lossy(&analyze.stdout).contains("coverage:"), "{}", text(&analyze));
    let preview = root(&["mail", "--period", "current", "--dry-run"]);
    assert!(preview.status.success(), "{}", text(&preview));

    // alice is no admin: refused, and nothing falls back to opening the store.
    let config = setup.config.to_string_lossy().into_owned();
    let alice = as_user("alice", &setup.dir, &[], &["--config", &config, "analyze"]);
    assert!(!alice.status.success(), "alice ran analyze: {}", text(&alice));
    assert!(text(&alice).contains("403") && text(&alice).contains("not an admin"), "{}", text(&alice));
    assert!(setup.server_log().contains("is not an admin"), "the refusal is logged");
    let (_, metrics) = crate::server::http_get(setup.port, "/metrics").expect("GET /metrics");
    let forbidden = metrics.lines().find_map(|l| {
        l.strip_prefix("turingwatch_client_requests_refused_total{reason=\"forbidden\"} ")?.parse::<u64>().ok()
    });
    assert!(forbidden.is_some_and(|n| n >= 1), "the refusal is counted: {metrics}");
    server.stop();

    // The server stopped: the same command opens the store itself, saying so.
    let local = root(&["status"]);
    assert!(local.status.success(), "{}", text(&local));
    assert!(text(&local).contains("no server at") && text(&local).contains("source: store"), "{}", text(&local));
    // No server and no store: status fails saying so, and creates no store.
    let nowhere = setup.dir.join("nowhere.redb");
    let none = run(setup.turingwatch().env("TURINGWATCH_STORE_PATH", &nowhere).args(["status"]));
    assert!(!none.status.success() && text(&none).contains("nowhere.redb"), "{}", text(&none));
    assert!(!nowhere.exists(), "status created a store");
}

/// Makes `user` (a local account) if absent and gives it an association in `account`.
fn slurm_user(user: &str, account: &str) {
    if !run(Command::new("id").arg(user)).status.success() {
        let made = run(Command::new("useradd").args(["--create-home", user]));
        assert!(made.status.success(), "useradd {user}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let added = run(Command::new("sacctmgr").args(["-i", "add", "user", user, &format!("account={account}")]));
    let said = String::from_utf8_lossy(&added.stdout).to_string() + &String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success() || said.contains("Nothing new"), "sacctmgr add user {user}: {said}");
}

#[test]
fn a_coordinator_sees_the_jobs_of_the_account_they_coordinate_and_no_other() {
    if !cluster() {
        return;
    }
    // An account of its own, so no other test's user gains rights: twcoord coordinates twlab,
    // whose member twmember runs a job; bob (of account dev) coordinates nothing.
    let account = "twlab";
    let listed = run(Command::new("sacctmgr").args(["-n", "-P", "list", "account", account, "format=account"]));
    if String::from_utf8_lossy(&listed.stdout).trim() != account {
        let made =
            run(Command::new("sacctmgr").args(["-i", "add", "account", account, "description=tw", "organization=tw"]));
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    slurm_user("twcoord", account);
    slurm_user("twmember", account);
    let coord = run(Command::new("sacctmgr").args([
        "-i",
        "add",
        "coordinator",
        &format!("account={account}"),
        "names=twcoord",
    ]));
    let said = String::from_utf8_lossy(&coord.stdout).to_string() + &String::from_utf8_lossy(&coord.stderr);
    assert!(coord.status.success() || said.contains("Nothing new"), "sacctmgr add coordinator: {said}");

    let setup =
        Setup::new("client_coordinator", COORD_PORT, "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n");
    let server = setup.server();
    let job = sbatch(Some("twmember"), &["--time=1", "--ntasks=1", &format!("--account={account}")], "sleep 2");
    wait_job_done(job, Duration::from_secs(90));
    // The coordinator asks the server (retrying until it has imported the job).
    let mut last = String::new();
    let seen = eventually(Duration::from_secs(60), || {
        let (source, _, stderr) = job_json(&setup, "twcoord", job, &[]);
        last = format!("{source}: {stderr}");
        source == "server"
    });
    assert!(seen, "the coordinator did not get job {job} of twmember from the server: {last}");
    // bob coordinates nothing: the server refuses, and he falls back to what sacct shows anyone.
    let (source, _, stderr) = job_json(&setup, "bob", job, &[]);
    assert!(stderr.contains("403") && source != "server", "bob: {source} {stderr}");
    assert!(setup.server_log().contains("coordinator=true"), "the answer names the coordinator right");
    server.stop();
}
