//! Plumbing for the scraping and ingest tests: a server child process with its own config and
//! port, jobs that burn CPU or hold memory, and reading the store after the server stopped.

use crate::util::{run, test_dir, turingwatch};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use turingwatch::job::JobId;
use turingwatch::store::Store;

/// A test's directory (world-writable: jobs of alice and bob write their logs here) and config.
pub struct Setup {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
}

impl Setup {
    /// Writes a config for a server on `port` with fast scraping.
    pub fn new(name: &str, port: u16, extra: &str) -> Setup {
        let dir = test_dir(name);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = dir.join("turingwatch.toml");
        let text = format!(
            "[store]\npath = \"{d}/db.redb\"\n[web]\nbind = \"127.0.0.1:{port}\"\n[scrape]\nspool_dir = \"{d}/spool\"\n\
             interval = \"1s\"\nreport_every = \"3s\"\ntime_per_node = \"20s\"\nconcurrent_nodes = 2\n\
             [distributor]\njob_name = \"tw-test-{port}\"\nround_interval = \"5s\"\nallocation_timeout = \"40s\"\n{extra}",
            d = dir.display()
        );
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        Setup { dir, config, port }
    }

    /// The binary with this config.
    pub fn turingwatch(&self) -> Command {
        let mut cmd = turingwatch();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Starts `turingwatch server` and waits until it listens.
    pub fn server(&self) -> Server {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = self.turingwatch().arg("server").stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        let addr = format!("127.0.0.1:{}", self.port);
        let up = crate::util::eventually(Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok());
        assert!(up, "server did not listen on {addr}: {}", self.server_log());
        Server { child }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Opens the store (the server must be stopped: redb allows one process).
    pub fn store(&self) -> Store {
        Store::open(&self.dir.join("db.redb")).unwrap()
    }
}

/// A running server; stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        terminate(&mut self.child);
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is cut.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM, then wait (SIGKILL after 20 s).
pub fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Submits a job as `user` running a Python program (1 CPU, `mem`), optionally on `node`.
pub fn python_job(user: &str, node: Option<&str>, mem: &str, program: &str) -> u64 {
    let script = format!("exec python3 -c '{}'", program.replace('\'', "'\\''"));
    let mut args = vec!["--ntasks=1", "--cpus-per-task=1", "--time=2"];
    let mem_arg = format!("--mem={mem}");
    args.push(&mem_arg);
    let node_arg;
    if let Some(node) = node {
        node_arg = format!("--nodelist={node}");
        args.push(&node_arg);
    }
    crate::util::sbatch(Some(user), &args, &script)
}

/// Burns one CPU for `secs`, logging `wall_time cpu_time` every 0.1 s to `log`.
pub fn burner_program(secs: u32, log: &Path) -> String {
    burner(secs, log, None)
}

/// Like [`burner_program`], but ends early once the file `stop` exists (looked for every 0.1 s):
/// for a test that needs the job running until it has seen enough, whenever the job started.
pub fn burner_until(stop: &Path, max_secs: u32, log: &Path) -> String {
    burner(max_secs, log, Some(stop))
}

fn burner(secs: u32, log: &Path, stop: Option<&Path>) -> String {
    let stop_check =
        stop.map_or(String::new(), |stop| format!("        if os.path.exists(\"{}\"): break\n", stop.display()));
    format!(
        "import os,time\nf=open(\"{}\",\"w\")\nt0=time.time()\nlast=0\nwhile True:\n    now=time.time()\n    if now-last>=0.1:\n        f.write(\"%f %f\\n\"%(now,time.process_time()));f.flush();last=now\n{stop_check}    if now-t0>{secs}: break\n",
        log.display()
    )
}

/// Holds `mib` MiB written (so resident) for `secs`.
pub fn hog_program(mib: u64, secs: u32) -> String {
    format!("import time\nb=b\"x\"*({mib}*1024*1024)\ntime.sleep({secs})\n")
}

/// Like [`hog_program`], but lets go once the file `stop` exists (looked for every 0.2 s).
pub fn hog_until(mib: u64, stop: &Path, max_secs: u32) -> String {
    format!(
        "import os,time\nb=b\"x\"*({mib}*1024*1024)\nt0=time.time()\nwhile time.time()-t0<{max_secs} and not os.path.exists(\"{}\"):\n    time.sleep(0.2)\n",
        stop.display()
    )
}

/// Scraper steps (`tw-scraper`) squeue lists: in job `job`, or in every job.
pub fn scraper_steps(job: Option<u64>) -> usize {
    let mut args = vec!["-h".to_string(), "-s".into(), "-o".into(), "%i %j".into()];
    if let Some(job) = job {
        args.extend(["-j".to_string(), job.to_string()]);
    }
    let out = run(Command::new("squeue").args(&args));
    let suffix = format!(" {}", turingwatch::slurm::SCRAPER_STEP_NAME);
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with(&suffix)).count()
}

/// Waits until a job runs; returns its node.
pub fn wait_running(id: u64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = run(Command::new("squeue").args(["-h", "-j", &id.to_string(), "-o", "%T|%N"]));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some(node) = text.strip_prefix("RUNNING|") {
            return node.to_string();
        }
        assert!(Instant::now() < deadline, "job {id} not running after {timeout:?}: {text:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Cancels our own test job (never anyone else's).
pub fn cancel(id: u64) {
    let _ = Command::new("scancel").arg(id.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Samples of one step of a job on a node, in time order.
pub fn step_samples(
    store: &Store,
    job: u64,
    step: turingwatch::job::StepId,
    node: &str,
) -> Vec<turingwatch::sample::StepSample> {
    store
        .samples_of_job(JobId(job))
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.step == step && k.node == node)
        .flat_map(|(_, v)| v)
        .collect()
}

/// The burner's own CPU seconds at wall time `t`, interpolated from its log.
pub fn burned_at(log: &[(f64, f64)], t: f64) -> Option<f64> {
    let i = log.iter().position(|(w, _)| *w >= t)?;
    if i == 0 {
        return None;
    }
    let ((w0, c0), (w1, c1)) = (log[i - 1], log[i]);
    Some(c0 + (c1 - c0) * (t - w0) / (w1 - w0))
}

/// Reads a burner log.
pub fn read_burn_log(path: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// `scripts/user_submission/submit.sh` with its example workload and time limit shortened for a
/// test, written to `dir/submit.sh`.
pub fn short_user_template(dir: &Path) -> PathBuf {
    let template = crate::util::read(&crate::util::repo_root().join("scripts/user_submission/submit.sh"));
    let script = template
        .replace("while time.time() - t < 30: pass", "while time.time() - t < 8: pass")
        .replace("#SBATCH --time=00:30:00", "#SBATCH --time=00:02:00");
    assert_ne!(script, template, "the template's example workload changed; update this test");
    let path = dir.join("submit.sh");
    std::fs::write(&path, script).unwrap();
    path
}
