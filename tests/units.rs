//! Units that boot: each systemd unit's `ExecStart` runs as its `User=` with only what the unit
//! makes writable writable, and each role does its job — the server answers and stores, the
//! distributor places a scraper job on the dev cluster that reports an ordinary user's running
//! job, the node agent (root) does the same for another, and report mail goes out over SMTP and
//! over Postfix's sendmail.
//!
//! There is no systemd here (PID 1 is not systemd), so the sandbox is built with bubblewrap from
//! the unit files themselves, parsed at test time (drop-ins appended as systemd does):
//! `ProtectSystem=strict` is `--ro-bind / /`; `PrivateTmp=` a tmpfs on /tmp and /var/tmp;
//! `ProtectHome=yes` tmpfs over /home, /root and /run/user; `PrivateDevices=yes` a minimal
//! /dev (else the host's); `StateDirectory=`/`RuntimeDirectory=`/`LogsDirectory=` are created
//! as systemd creates them (owned by `User=`, `*DirectoryMode=`), bound writable at
//! /var/lib|/run|/var/log/<name> and named in `$STATE_DIRECTORY` etc.; `ReadWritePaths=` are
//! bound writable (a missing one without `-` fails, as the unit would); `WorkingDirectory=`,
//! `UMask=`, `SupplementaryGroups=` and, for root units, `CapabilityBoundingSet=` are applied;
//! `User=`/`Group=` through `setpriv`. bubblewrap always sets no_new_privs, so
//! `NoNewPrivileges=yes` holds for every unit (which is what breaks setgid postdrop).
//! Only the two install paths are substituted: `/usr/local/bin/turingwatch` by the binary under
//! test and `/etc/turingwatch/` by the test's directory (scraper jobs run outside the sandbox and
//! are handed the config path).

use crate::mail::{received, seed_previous_period, seeded_job, smtp_sink};
use crate::scrape_support::{hog_program, python_job, step_samples, wait_running};
use crate::util::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use turingwatch::job::{JobId, StepId};
use turingwatch::store::Store;

/// The `[Service]` settings of a unit plus drop-ins, in file order.
#[derive(Debug, Default)]
struct Unit {
    name: String,
    settings: Vec<(String, String)>,
}

impl Unit {
    /// `systemd/<name>` and the named drop-ins of `systemd/<name>.d/`.
    fn load(name: &str, dropins: &[&str]) -> Unit {
        let dir = repo_root().join("systemd");
        let mut unit = Unit { name: name.into(), settings: Vec::new() };
        unit.parse(&read(&dir.join(name)));
        for d in dropins {
            unit.parse(&read(&dir.join(format!("{name}.d")).join(d)));
        }
        unit
    }

    fn parse(&mut self, text: &str) {
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
            } else if let (Some((k, v)), "Service") = (line.split_once('='), section.as_str()) {
                self.settings.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }

    /// The value of a single-valued setting (the last assignment wins).
    fn get(&self, key: &str) -> Option<&str> {
        self.settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A list-valued setting: every assignment appends its words; an empty one resets.
    fn list(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.settings {
            if k == key {
                if v.is_empty() {
                    out.clear();
                }
                out.extend(v.split_whitespace().map(str::to_string));
            }
        }
        out
    }

    fn yes(&self, key: &str) -> bool {
        matches!(self.get(key), Some("yes" | "true" | "1" | "on"))
    }
}

/// Where the two install paths point in this test: a copy of the binary and the config, in the
/// test's directory (visible, read-only, inside the sandbox's private /tmp, and to scraper jobs
/// outside it).
struct Install {
    binary: String,
    etc: PathBuf,
    root: PathBuf,
}

impl Install {
    fn new(root: &Path) -> Install {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let binary = bin.join("turingwatch");
        std::fs::copy(env!("CARGO_BIN_EXE_turingwatch"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        Install { binary: binary.display().to_string(), etc: root.join("etc"), root: root.to_path_buf() }
    }
}

impl Install {
    fn map(&self, word: &str) -> String {
        word.replace("/usr/local/bin/turingwatch", &self.binary)
            .replace("/etc/turingwatch/", &format!("{}/", self.etc.display()))
    }
}

/// A unit's main process, running in its sandbox; SIGKILLed on drop if still running.
struct Booted {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Booted {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// `systemctl stop`: SIGTERM to the main process, then wait (SIGKILL after 30 s).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the pid our own sandbox reported for the unit's main process.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        let exited = eventually(Duration::from_secs(30), || self.child.try_wait().ok().flatten().is_some());
        if !exited {
            let _ = self.child.kill();
        }
        self.child.wait().ok()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
        }
    }
}

fn ids(user: &str) -> (u32, u32, String) {
    let id = |flag: &str| {
        let out = run(Command::new("id").args([flag, user]));
        assert!(out.status.success(), "no user {user}: create it (useradd --system {user})");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (id("-u").parse().unwrap(), id("-g").parse().unwrap(), id("-G"))
}

fn gid_of(group: &str) -> u32 {
    let out = run(Command::new("getent").args(["group", group]));
    assert!(out.status.success(), "no group {group} (is its package installed? scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout).split(':').nth(2).and_then(|g| g.trim().parse().ok()).unwrap()
}

/// Binds `host` writable at `target` inside the sandbox. bubblewrap cannot create a mount
/// point on the read-only root, so when `target` does not exist its parent is covered by a
/// tmpfs that re-binds (read-only) everything the host has there, and is made read-only again.
fn bind_rw(args: &mut Vec<String>, host: &Path, target: &Path) {
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
    if target.exists() {
        push(&["--bind", &host.display().to_string(), &target.display().to_string()]);
        return;
    }
    let parent = target.parent().unwrap();
    push(&["--tmpfs", &parent.display().to_string()]);
    for entry in std::fs::read_dir(parent).unwrap().flatten() {
        let p = entry.path().display().to_string();
        match std::fs::read_link(entry.path()) {
            Ok(link) => push(&["--symlink", &link.display().to_string(), &p]),
            Err(_) => push(&["--ro-bind", &p, &p]),
        }
    }
    push(&["--bind", &host.display().to_string(), &target.display().to_string()]);
    push(&["--remount-ro", &parent.display().to_string()]);
}

/// Runs `unit`'s ExecStart in its sandbox; `root` holds the directories systemd would create.
fn boot(unit: &Unit, root: &Path, install: &Install, extra_env: &[(&str, &str)], log_name: &str) -> Booted {
    let user = unit.get("User").unwrap_or("root").to_string();
    let (uid, primary_gid, groups) = ids(&user);
    let gid = unit.get("Group").map_or(primary_gid, gid_of);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("USER".into(), user.clone());
    env.insert("LOGNAME".into(), user.clone());
    let mut args: Vec<String> = Vec::new();
    let push = |args: &mut Vec<String>, a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
    match unit.get("ProtectSystem") {
        Some("strict") => push(&mut args, &["--ro-bind", "/", "/"]),
        other => panic!("{}: ProtectSystem={other:?}: this test emulates strict only", unit.name),
    }
    if unit.yes("PrivateDevices") {
        push(&mut args, &["--dev", "/dev"]);
    } else {
        push(&mut args, &["--dev-bind", "/dev", "/dev"]);
    }
    if unit.yes("PrivateTmp") {
        push(&mut args, &["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]);
    }
    // The test's install paths (binary, config), read-only (under /tmp, which PrivateTmp hides).
    // (bubblewrap would make the missing parents 0700: make them traversable, as on the host)
    let mut parents: Vec<&Path> = install.root.ancestors().skip(1).filter(|p| p.parent().is_some()).collect();
    parents.reverse();
    for p in parents {
        push(&mut args, &["--perms", "0755", "--dir", &p.display().to_string()]);
    }
    let install_root = install.root.display().to_string();
    push(&mut args, &["--ro-bind", &install_root, &install_root]);
    if unit.yes("ProtectHome") {
        for p in ["/home", "/root", "/run/user"] {
            if Path::new(p).exists() {
                push(&mut args, &["--tmpfs", p]);
            }
        }
    }
    // The directories systemd creates and makes writable, owned by the unit's user.
    for (key, base, var) in [
        ("StateDirectory", "/var/lib", "STATE_DIRECTORY"),
        ("RuntimeDirectory", "/run", "RUNTIME_DIRECTORY"),
        ("LogsDirectory", "/var/log", "LOGS_DIRECTORY"),
    ] {
        let names = unit.list(key);
        if names.is_empty() {
            continue;
        }
        let mode = unit.get(&format!("{key}Mode")).map_or(0o755, |m| u32::from_str_radix(m, 8).unwrap());
        let mut targets = Vec::new();
        for name in names {
            let host = root.join(base.trim_start_matches('/')).join(&name);
            std::fs::create_dir_all(&host).unwrap();
            let out = run(Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(&host));
            assert!(out.status.success());
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).unwrap();
            let target = Path::new(base).join(&name);
            bind_rw(&mut args, &host, &target);
            targets.push(target.display().to_string());
        }
        env.insert(var.into(), targets.join(":"));
    }
    for path in unit.list("ReadWritePaths") {
        let (optional, path) = path.strip_prefix('-').map_or((false, path.as_str()), |p| (true, p));
        if Path::new(path).exists() {
            push(&mut args, &["--bind", path, path]);
        } else {
            assert!(optional, "{}: ReadWritePaths={path} does not exist: the unit would not start", unit.name);
        }
    }
    if let Some(dir) = unit.get("WorkingDirectory") {
        push(&mut args, &["--chdir", dir]);
    }
    if let Some(file) = unit.get("EnvironmentFile") {
        let path = install.map(file.trim_start_matches('-'));
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                if let Some((k, v)) = line.split_once('=') {
                    env.insert(k.trim().into(), v.trim().into());
                }
            }
        } else {
            assert!(file.starts_with('-'), "{}: EnvironmentFile={file} missing", unit.name);
        }
    }
    for (k, v) in extra_env {
        env.insert(k.to_string(), v.to_string());
    }
    if user == "root" {
        // The bounding set of a root unit is all it has (e.g. the node agent's ptrace and read-search).
        if unit.get("CapabilityBoundingSet").is_some() {
            push(&mut args, &["--cap-drop", "ALL"]);
            for cap in unit.list("CapabilityBoundingSet") {
                push(&mut args, &["--cap-add", &cap]);
            }
        }
    } else {
        let home = run(Command::new("getent").args(["passwd", &user]));
        let home = String::from_utf8_lossy(&home.stdout).split(':').nth(5).unwrap_or("/").to_string();
        env.insert("HOME".into(), home);
    }
    // ExecStart's prefixes (-, @, +, !) are on the program only.
    let exec: Vec<String> = unit
        .get("ExecStart")
        .unwrap()
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| install.map(if i == 0 { w.trim_start_matches(['-', '@', '+', '!']) } else { w }))
        .collect();
    let umask = unit.get("UMask").unwrap_or("0022");
    // sh prints its pid (the main process's, after the execs) before becoming the service.
    let mut inner: Vec<String> =
        vec!["sh".into(), "-c".into(), format!("echo \"unit-pid $$\" >&2; umask {umask}; exec \"$@\""), "sh".into()];
    if user != "root" {
        let mut supplementary: Vec<String> = groups.split_whitespace().map(str::to_string).collect();
        for g in unit.list("SupplementaryGroups") {
            supplementary.push(gid_of(&g).to_string());
        }
        inner.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            format!("--groups={}", supplementary.join(",")),
            "--inh-caps=-all".into(),
            "--".into(),
        ]);
    }
    inner.extend(exec);
    let log = root.join(format!("{log_name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new("bwrap")
        .args(&args)
        .arg("--die-with-parent")
        .arg("--")
        .args(&inner)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("bwrap (apt-get install bubblewrap; scripts/setup.sh does)");
    let mut pid = None;
    let started = eventually(Duration::from_secs(10), || {
        pid = read(&log).lines().find_map(|l| l.strip_prefix("unit-pid ").and_then(|p| p.trim().parse().ok()));
        pid.is_some() || child.try_wait().ok().flatten().is_some()
    });
    let Some(pid) = pid.filter(|_| started) else {
        let _ = child.kill();
        panic!("{} did not start in its sandbox:\n{}", unit.name, read(&log));
    };
    Booted { child, pid, log }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = crate::server::http_get(port, "/metrics")?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Points of `job`'s first plotted series, asked of the server's API as `user` (the reverse
/// proxy's identity header, from loopback, a trusted proxy by default).
fn plotted_points(port: u16, user: &str, job: u64) -> usize {
    let out = run(Command::new("curl")
        .args(["-s", "--max-time", "5", "-H", &format!("X-AuthUser: {user}")])
        .arg(format!("http://127.0.0.1:{port}/api/jobs/{job}")));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["series"][0]["t"].as_array().map_or(0, Vec::len)
}

/// Reports set aside as refused in a spool root (`<root>/<node>/rejected/*`).
fn refused_reports(root: &Path) -> std::collections::BTreeSet<PathBuf> {
    let nodes = std::fs::read_dir(root).into_iter().flatten().flatten();
    nodes
        .flat_map(|n| std::fs::read_dir(n.path().join("rejected")).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect()
}

/// The dev node with the most idle CPUs (a scraper job needs one beside the user's job).
fn idlest_node() -> String {
    let out = run(Command::new("sinfo").args(["-h", "-N", "-o", "%N %C"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let idle = |l: &str| l.split_whitespace().nth(1).and_then(|c| c.split('/').nth(1)?.parse::<u32>().ok());
    text.lines().max_by_key(|l| idle(l).unwrap_or(0)).and_then(|l| l.split_whitespace().next()).unwrap().to_string()
}

fn config(etc: &Path, port: u16, mail: &str) -> PathBuf {
    std::fs::create_dir_all(etc).unwrap();
    let path = etc.join("turingwatch.toml");
    // The store, results and mail-out keep their relative defaults: they land in the unit's
    // WorkingDirectory, its state directory. [scrape] spool_dir keeps its default (empty).
    let text = format!(
        "[accounting]\nfirst_window = \"1h\"\ninterval = \"10s\"\n\
         [scrape]\nserver_url = \"http://127.0.0.1:{port}\"\ninterval = \"1s\"\nreport_every = \"2s\"\n\
         time_per_node = \"40s\"\nconcurrent_nodes = 3\n\
         [distributor]\njob_name = \"tw-units-{port}\"\nround_interval = \"3s\"\nallocation_timeout = \"40s\"\n\
         [analysis]\nperiod = \"1m\"\ntimezone = \"UTC\"\n[findings]\nmin_runtime = \"5s\"\n\
         [mail]\n{mail}\nfrom = \"HPC Team <hpc@example.org>\"\ndomain = \"example.org\"\nrate_limit = \"1s\"\nrate_jitter = \"0s\"\n\
         [web]\nbind = \"127.0.0.1:{port}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// The server's store, seeded (as root, before the unit starts, as an admin restoring one
/// would) with a closed-able previous period in which `user` wasted a CPU; returns the period.
fn seed(root: &Path, user: &str, job: u64) -> u64 {
    let state = root.join("var/lib/turingwatch");
    std::fs::create_dir_all(&state).unwrap();
    seed_previous_period(&state.join("turingwatch.db"), |start| {
        let mut j = seeded_job(job, user, start + 5, 40);
        j.alloc_cpus = 2;
        j.usage.total_cpu_ms = 100;
        vec![j]
    })
}

fn no_bwrap() -> bool {
    if Command::new("bwrap").arg("--version").output().is_ok() {
        return false;
    }
    assert!(!e2e_required(), "bubblewrap is required (scripts/setup.sh installs it)");
    eprintln!("skipping: no bwrap");
    true
}

/// The server and the distributor as `turingwatch` with the example defaults (nothing about
/// users or the spool configured): alice's job is sampled by a scraper job the distributor
/// placed, bob's by the node agent as root, and a report mail goes out over SMTP.
#[test]
fn the_units_boot_and_each_role_works_as_shipped() {
    if no_bwrap() || !cluster() {
        return;
    }
    let dir = test_dir("units_boot");
    let (port, smtp) = (18_600, 18_601);
    let install = Install::new(&dir);
    config(&install.etc, port, &format!("transport = \"smtp\"\nsmtp_server = \"127.0.0.1\"\nsmtp_port = {smtp}"));
    let sink = smtp_sink(&dir, smtp);
    let period = seed(&dir, "twunitsmtp", 9_600_001);

    let server_unit = Unit::load("turingwatch.server.service", &[]);
    assert_eq!(server_unit.get("User"), Some("turingwatch"), "the server runs as the service user");
    let mut server = boot(&server_unit, &dir, &install, &[], "server");
    let answers = eventually(Duration::from_secs(30), || {
        !server.running() || metric(port, "turingwatch_reports_received_total").is_some()
    });
    assert!(answers && server.running(), "the server unit does not answer HTTP:\n{}", server.log());

    // Report mail over SMTP: the seeded period closes and its mail goes out.
    let mailed = eventually(Duration::from_secs(40), || {
        !server.running()
            || received(&sink.maildir).iter().any(|m| m.headers.get("to").is_some_and(|t| t.contains("twunitsmtp@")))
    });
    assert!(mailed && server.running(), "no report mail over SMTP:\n{}", server.log());
    let mail = received(&sink.maildir).into_iter().find(|m| m.raw.contains("twunitsmtp@")).unwrap();
    assert_eq!(mail.headers["message-id"], format!("<turingwatch.{period}.twunitsmtp@example.org>"));

    // The distributor places a scraper job (as turingwatch) that samples alice's running job.
    let alice = python_job("alice", Some(&idlest_node()), "100M", &hog_program(30, 60));
    let alice_node = wait_running(alice, Duration::from_secs(60));
    let (tw_uid, _, _) = ids("turingwatch");
    let spool = PathBuf::from(format!("/var/tmp/turingwatch-{tw_uid}"));
    let refused_before = refused_reports(&spool);
    let distributor_unit = Unit::load("turingwatch.distributor.service", &[]);
    assert_eq!(distributor_unit.get("User"), Some("turingwatch"));
    let mut distributor = boot(&distributor_unit, &dir, &install, &[], "distributor");
    let stored =
        eventually(Duration::from_secs(90), || !distributor.running() || plotted_points(port, "alice", alice) >= 3);
    let job_name = format!("tw-units-{port}");
    let scrapers =
        run(Command::new("sacct").args(["-n", "-P", "-X", "--name", &job_name, "--format=JobID,User,State,NodeList"]));
    let scrapers = String::from_utf8_lossy(&scrapers.stdout).to_string();
    assert!(
        stored && distributor.running(),
        "no samples stored from scraper jobs ({scrapers}):\nserver:\n{}\ndistributor:\n{}",
        server.log(),
        distributor.log()
    );
    distributor.stop();
    let cancelled = eventually(Duration::from_secs(30), || {
        let out = run(Command::new("squeue").args(["-h", "-n", &job_name, "-o", "%i"]));
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(cancelled, "the distributor left its scraper jobs behind");
    assert!(scrapers.lines().any(|l| l.contains("|turingwatch|")), "scraper jobs not run as turingwatch: {scrapers}");
    // Their spool: the default, a private directory of the service user (no unit made one).
    let meta = std::fs::symlink_metadata(&spool).expect("the scraper jobs' default spool");
    assert!(meta.is_dir() && meta.uid() == tw_uid && meta.mode() & 0o777 == 0o700, "{meta:?}");
    let refused = refused_reports(&spool);
    assert!(refused.is_subset(&refused_before), "reports were refused: {:?}", refused.difference(&refused_before));

    // The node agent (root, its own state directory) samples bob's job on its node.
    let bob = python_job("bob", None, "100M", &hog_program(30, 40));
    let bob_node = wait_running(bob, Duration::from_secs(60));
    let agent_unit = Unit::load("turingwatch-scrape.service", &[]);
    assert_eq!(agent_unit.get("User"), None, "the node agent runs as root");
    // SLURMD_NODENAME names the emulated node (every dev node is this host), as a site's
    // EnvironmentFile could.
    let mut agent = boot(&agent_unit, &dir, &install, &[("SLURMD_NODENAME", &bob_node)], "agent");
    let agent_stored =
        eventually(Duration::from_secs(60), || !agent.running() || plotted_points(port, "bob", bob) >= 3);
    let agent_alive = agent.running();
    let agent_status = agent.stop();
    assert!(agent_stored && agent_alive, "the node agent stored nothing:\n{}\nserver:\n{}", agent.log(), server.log());
    assert!(agent_status.is_some_and(|s| s.success()), "node agent exit {agent_status:?}:\n{}", agent.log());
    let agent_spool = dir.join("var/lib/turingwatch-scrape/spool").join(&bob_node);
    assert!(agent_spool.is_dir(), "the node agent spools in its state directory");
    let status = server.stop();
    assert!(status.is_some_and(|s| s.success()), "server exit {status:?}:\n{}", server.log());
    crate::scrape_support::cancel(alice);
    crate::scrape_support::cancel(bob);
    drop(sink);

    let store = Store::open(&dir.join("var/lib/turingwatch/turingwatch.db")).unwrap();
    let alice_samples = step_samples(&store, alice, StepId::BATCH, &alice_node);
    assert!(alice_samples.len() >= 3, "{} samples of alice's job from the scraper jobs", alice_samples.len());
    let bob_samples = step_samples(&store, bob, StepId::BATCH, &bob_node);
    assert!(bob_samples.len() >= 2, "{} samples of bob's job from the node agent", bob_samples.len());
    assert!(store.samples_of_job(JobId(alice)).unwrap().iter().all(|(k, _)| k.node == alice_node));
    // What the server writes lands in its state directory (relative defaults, WorkingDirectory),
    // owned by the service user, unreadable by others (UMask=0027).
    let bundle = std::fs::metadata(dir.join(format!("var/lib/turingwatch/analysis_result/{period}.tar.gz"))).unwrap();
    assert_eq!((bundle.uid(), bundle.mode() & 0o007), (tw_uid, 0), "the result bundle: {:o}", bundle.mode());
}

/// The server unit with the sendmail drop-in sends a report mail through Debian's Postfix
/// (`/usr/sbin/sendmail` → setgid postdrop → /var/spool/postfix/maildrop) under the unit's
/// NoNewPrivileges and ProtectSystem=strict.
#[test]
fn the_server_unit_with_the_sendmail_dropin_mails_through_postfix() {
    if no_bwrap() {
        return;
    }
    if !Path::new("/usr/sbin/postdrop").exists() {
        assert!(!e2e_required(), "Postfix is required (scripts/setup.sh installs it)");
        return;
    }
    let dir = test_dir("units_sendmail");
    let port = 18_602;
    let install = Install::new(&dir);
    config(&install.etc, port, "transport = \"sendmail\"");
    let period = seed(&dir, "twunitsendmail", 9_600_002);
    let unit = Unit::load("turingwatch.server.service", &["sendmail.conf"]);
    let mut server = boot(&unit, &dir, &install, &[], "server");
    let sent = eventually(Duration::from_secs(60), || {
        !server.running() || metric(port, "turingwatch_mails_sent_total").is_some_and(|n| n >= 1.0)
    });
    let sent = sent && metric(port, "turingwatch_mails_sent_total").is_some_and(|n| n >= 1.0);
    let failed = metric(port, "turingwatch_mails_failed_total");
    server.stop();
    assert!(sent, "sendmail did not take the mail (failed: {failed:?}):\n{}", server.log());
    // Postfix has it: in the maildrop (no Postfix master runs here to pick it up) or beyond.
    let message_id = format!("<turingwatch.{period}.twunitsendmail@example.org>");
    let maildrop = Path::new("/var/spool/postfix/maildrop");
    let mut found = None;
    for entry in std::fs::read_dir(maildrop).unwrap().flatten() {
        let out = run(Command::new("postcat").arg(entry.path()));
        if String::from_utf8_lossy(&out.stdout).contains(&message_id) {
            found = Some(entry.path());
        }
    }
    let master = Command::new("postfix").arg("status").output().is_ok_and(|o| o.status.success());
    match found {
        Some(path) => {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.uid(), ids("turingwatch").0, "queued by the service user");
            assert!(meta.mode() & 0o044 != 0, "Postfix's pickup must be able to read it: {:o}", meta.mode());
            let _ = std::fs::remove_file(path);
        }
        None => assert!(master, "{message_id} is not in Postfix's maildrop:\n{}", server.log()),
    }
}

/// A scraper that cannot start (run as the service user, as a distributor-placed scraper job
/// is) exits with the configuration-error code and one line on stderr naming the key and the
/// fix — the "Permission denied" on /var/spool/turingwatch, a spool that is not
/// writable, and a server URL that is not http://host:port.
#[test]
fn a_scraper_that_cannot_start_says_which_key_to_fix() {
    let dir = test_dir("units_cannot_start");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let install = Install::new(&dir);
    let readonly = dir.join("readonly-spool");
    std::fs::create_dir_all(readonly.join("n1")).unwrap();
    let cases = [
        ("spool_dir = \"/var/spool/turingwatch\"\nserver_url = \"http://127.0.0.1:9\"", "[scrape] spool_dir"),
        (&*format!("spool_dir = \"{}\"\nserver_url = \"http://127.0.0.1:9\"", readonly.display()), "not writable"),
        ("server_url = \"https://head:8443\"", "[scrape] server_url"),
    ];
    for (i, (scrape, want)) in cases.iter().enumerate() {
        let config = dir.join(format!("case{i}.toml"));
        std::fs::write(&config, format!("[scrape]\n{scrape}\n")).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(Command::new("runuser")
            .args(["-u", "turingwatch", "--"])
            .arg(&install.binary)
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "scrape", "--node", "n1", "--duration", "2s"])
            .current_dir("/"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line: Vec<&str> = stderr.lines().filter(|l| l.starts_with("turingwatch: ")).collect();
        assert_eq!(out.status.code(), Some(78), "case {i}: {stderr}");
        assert_eq!(line.len(), 1, "case {i}: one line: {stderr}");
        assert!(line[0].contains(want) && line[0].contains("set "), "case {i}: {}", line[0]);
    }
}
