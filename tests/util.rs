//! Shared test plumbing: per-test directories, the binary under test, the dev SLURM cluster.
//!
//! `TURINGWATCH_E2E=1` (set by `.ci/run`) makes a missing real part a failure; without it,
//! tests that need SLURM print why and return early, so `cargo test` works on a laptop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh, empty directory named after the test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("turingwatch-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Where tests leave artefacts worth keeping (screenshots, logs): `test-artifacts/` at the root.
pub fn artifact_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("test-artifacts").join(name);
    std::fs::create_dir_all(&dir).expect("create artifact dir");
    dir
}

/// The `turingwatch` binary built for this test run.
pub fn turingwatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turingwatch"));
    cmd.env_remove("TURINGWATCH_CONFIG");
    // Relative defaults (results_dir, mail file_dir) must land in scratch space, not the repo.
    let scratch = std::env::temp_dir().join("turingwatch-tests").join("cwd");
    let _ = std::fs::create_dir_all(&scratch);
    cmd.current_dir(scratch);
    cmd
}

/// Runs a command and returns its output, panicking with its stderr if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Whether end-to-end tests must have every real part.
pub fn e2e_required() -> bool {
    std::env::var("TURINGWATCH_E2E").is_ok_and(|v| v == "1")
}

/// Makes sure the dev cluster runs (starting it with the project's script when needed).
/// Returns false when SLURM is not available and not required (the test should return).
pub fn cluster() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let state = UP.get_or_init(|| {
        if Command::new("sinfo").arg("--version").output().is_err() && !e2e_required() {
            return Err("SLURM is not installed".into());
        }
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/dev-cluster.sh"))
            .arg("start")
            .output()
            .map_err(|e| format!("cannot run dev-cluster.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("dev-cluster.sh start failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    match state {
        Ok(()) => true,
        Err(why) if e2e_required() => panic!("the dev SLURM cluster is required: {why}"),
        Err(why) => {
            eprintln!("skipping: {why} (set TURINGWATCH_E2E=1 to make this a failure)");
            false
        }
    }
}

/// Submits a batch job (`sbatch --parsable`), optionally as another user; returns its id.
pub fn sbatch(user: Option<&str>, args: &[&str], script: &str) -> u64 {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sbatch"]);
            c
        }
        None => Command::new("sbatch"),
    };
    cmd.args(["--parsable", "--chdir=/tmp", "--output=/dev/null"]).args(args).arg("--wrap").arg(script);
    let out = run(&mut cmd);
    assert!(out.status.success(), "sbatch failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().split(';').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("sbatch said {text:?}"))
}

/// Polls `sacct -j ID -X` until the job has left the running states; returns its state.
///
/// `timeout` is the job's own budget: time it spends PENDING does not count
/// (up to ten minutes), because the dev cluster is shared by tests running at
/// once and a job may wait for another test's job to free a node.
pub fn wait_job_done(id: u64, timeout: Duration) -> String {
    let started = Instant::now();
    let most_pending = Duration::from_secs(600);
    let mut deadline = started + timeout;
    loop {
        let out = run(Command::new("sacct").args(["-j", &id.to_string(), "-X", "-n", "-P", "--format=State"]));
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let word = state.split_whitespace().next().unwrap_or("").to_string();
        if !word.is_empty()
            && !["PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING"].contains(&word.as_str())
        {
            return word;
        }
        if word == "PENDING" && started.elapsed() < most_pending {
            deadline = deadline.max(Instant::now() + timeout);
        }
        assert!(Instant::now() < deadline, "job {id} still {state:?} after {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Polls until `cond` holds or the timeout passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// Reads a file to a string, panicking with the path on failure.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
