//! Analysis end to end on the dev cluster: real jobs (one wasting CPU, one wasting memory, one
//! fine) are imported from SLURM accounting by a running server, a 1-minute period closes, its
//! bundle appears with the right files, an SMTP server receives one mail per user naming the
//! wasteful jobs; and `turingwatch job` prints seff's efficiencies computed from sacct's own
//! numbers, both from SLURM (server running, store busy) and from the store.

use crate::mail::{received, smtp_sink};
use crate::util::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `[D-][HH:]MM:SS[.mmm]` → seconds.
fn sacct_secs(text: &str) -> f64 {
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().unwrap(), r),
        None => (0.0, text),
    };
    let parts: Vec<f64> = rest.split(':').map(|p| p.parse::<f64>().unwrap()).collect();
    let secs = match parts.as_slice() {
        [h, m, s] => h * 3600.0 + m * 60.0 + s,
        [m, s] => m * 60.0 + s,
        other => panic!("bad sacct time {text:?}: {other:?}"),
    };
    days * 86_400.0 + secs
}

/// `400M`, `2G`, `400Mc`, `2Gn`, or bytes → (bytes, per-cpu?).
fn sacct_mem(text: &str) -> (f64, bool) {
    let (text, per_cpu) = match text.strip_suffix('c') {
        Some(t) => (t, true),
        None => (text.strip_suffix('n').unwrap_or(text), false),
    };
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let scale = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0f64.powi(4),
        other => panic!("unit {other}"),
    };
    (num.parse::<f64>().unwrap() * scale, per_cpu)
}

/// seff's CPU and memory efficiency from sacct's own numbers.
fn seff_from_sacct(id: u64) -> (f64, f64) {
    let out = run(Command::new("sacct").args([
        "-j",
        &id.to_string(),
        "-n",
        "-P",
        "--noconvert",
        "-o",
        "JobID,Elapsed,TotalCPU,AllocCPUS,ReqMem,MaxRSS,NNodes",
    ]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut cpu = None;
    let mut req = 0.0;
    let mut max_rss = 0.0f64;
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f[0] == id.to_string() {
            let (elapsed, total, cpus) = (sacct_secs(f[1]), sacct_secs(f[2]), f[3].parse::<f64>().unwrap());
            cpu = Some(total / (elapsed * cpus));
            let (bytes, per_cpu) = sacct_mem(f[4]);
            req = if per_cpu { bytes * cpus } else { bytes * f[6].parse::<f64>().unwrap() };
        } else if !f[5].is_empty() {
            max_rss = max_rss.max(sacct_mem(f[5]).0);
        }
    }
    (cpu.unwrap_or_else(|| panic!("no job line for {id}: {text}")), max_rss / req)
}

fn job_json(config: &Path, id: u64) -> serde_json::Value {
    let out = run(turingwatch().arg("--config").arg(config).args(["job", &id.to_string(), "--json"]));
    assert!(out.status.success(), "turingwatch job {id}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_seff_equal(config: &Path, id: u64, source: &str) {
    let (cpu, mem) = seff_from_sacct(id);
    let v = job_json(config, id);
    assert_eq!(v["source"], source, "{v}");
    let e = &v["job"]["efficiency"];
    let (got_cpu, got_mem) = (e["cpu_frac"].as_f64().unwrap(), e["mem_frac"].as_f64().unwrap());
    assert!((got_cpu - cpu).abs() < 1e-9, "job {id}: CPU efficiency {got_cpu} vs seff {cpu}");
    assert!((got_mem - mem).abs() < 1e-9, "job {id}: memory efficiency {got_mem} vs seff {mem}");
}

#[test]
fn wasteful_jobs_are_imported_analysed_bundled_and_mailed() {
    if !cluster() {
        return;
    }
    let dir = test_dir("analysis_end_to_end");
    let sink = smtp_sink(&dir, 18_330);
    let burn = "import time\nb = bytearray({mib} << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nt = time.time() + 20\nwhile time.time() < t: pass\n";
    let cpu_waste = sbatch(Some("alice"), &["-c", "2", "--mem=200M", "-t", "2", "-J", "tw-sleeper"], "sleep 20");
    let fine = sbatch(
        Some("alice"),
        &["-c", "1", "--mem=100M", "-t", "1", "-J", "tw-burner"],
        &format!("python3 -c '{}'", burn.replace("{mib}", "75")),
    );
    let mem_waste = sbatch(
        Some("bob"),
        &["-c", "1", "--mem=2G", "-t", "1", "-J", "tw-hog"],
        &format!("python3 -c '{}'", burn.replace("{mib}", "50")),
    );
    for id in [cpu_waste, fine, mem_waste] {
        assert_eq!(wait_job_done(id, Duration::from_secs(90)), "COMPLETED", "job {id}");
    }

    let config = dir.join("turingwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
path = "{dir}/store.redb"
[accounting]
interval = "10s"
first_window = "10m"
[analysis]
period = "1m"
timezone = "UTC"
results_dir = "{dir}/results"
[findings]
min_runtime = "5s"
[mail]
transport = "smtp"
smtp_server = "127.0.0.1"
smtp_port = 18330
from = "HPC Team <hpc@example.org>"
domain = "example.org"
rate_limit = "1s"
rate_jitter = "0s"
[web]
bind = "127.0.0.1:18331"
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut server =
        turingwatch().arg("--config").arg(&config).arg("server").stdout(Stdio::null()).stderr(log).spawn().unwrap();

    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", 18_331)).is_ok()),
        "server did not start"
    );
    // While the server holds the store, `turingwatch job` asks SLURM, like seff.
    for id in [cpu_waste, fine, mem_waste] {
        assert_seff_equal(&config, id, "slurm");
    }

    let named = |id: u64| {
        move |m: &crate::mail::Received| m.parts.get("text/plain").is_some_and(|t| t.contains(&format!("Job {id} ")))
    };
    let mailed = eventually(Duration::from_secs(150), || {
        let mails = received(&sink.maildir);
        mails.iter().any(named(cpu_waste)) && mails.iter().any(named(mem_waste))
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = server.kill();
    let _ = server.wait();
    let server_log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(mailed, "the wasteful jobs were not mailed; server log:\n{server_log}");

    let mails = received(&sink.maildir);
    let mut ids: Vec<&String> = mails.iter().filter_map(|m| m.headers.get("message-id")).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "a (user, period) was mailed twice");
    for (id, user) in [(cpu_waste, "alice"), (mem_waste, "bob")] {
        let m = mails.iter().find(|m| named(id)(m)).unwrap();
        assert_eq!(m.headers["to"], format!("{user}@example.org"));
        assert!(m.parts.contains_key("text/html") && m.parts["text/html"].contains(&format!("Job {id}</a>")));
    }
    // The fine job is not wasting memory, and ranks after the CPU-wasting one. (Its CPU
    // efficiency depends on how busy the shared dev host is, so it may show CPU underuse.)
    let alice_text = &mails.iter().find(|m| named(cpu_waste)(m)).unwrap().parts["text/plain"];
    let first_section = alice_text.split("ALL JOBS").next().unwrap();
    if let Some(fine_at) = first_section.find(&format!("Job {fine} ")) {
        assert!(first_section.find(&format!("Job {cpu_waste} ")).unwrap() < fine_at, "{alice_text}");
        let fine_entry = &first_section[fine_at + 4..];
        let fine_entry = fine_entry.split("\nJob ").next().unwrap();
        assert!(!fine_entry.contains("Memory Underusage"), "{fine_entry}");
    }
    let cpu_mail = &mails.iter().find(|m| named(cpu_waste)(m)).unwrap().parts["text/plain"];
    assert!(cpu_mail.contains("CPU Underusage") && cpu_mail.contains("--cpus-per-task=1"), "{cpu_mail}");
    let mem_mail = &mails.iter().find(|m| named(mem_waste)(m)).unwrap().parts["text/plain"];
    assert!(mem_mail.contains("Memory Underusage") && mem_mail.contains("--mem="), "{mem_mail}");

    // The bundle of the period the wasteful CPU job ended in.
    let store = turingwatch::store::Store::open(&dir.join("store.redb")).unwrap();
    let job = store.job(turingwatch::job::JobId(cpu_waste)).unwrap().expect("imported");
    let end = job.end_at.unwrap();
    let period = store.periods().unwrap().into_iter().find(|p| p.start <= end && end < p.end).expect("period");
    assert!(period.closed);
    let bundle = dir.join("results").join(format!("{}.tar.gz", period.start));
    let file = std::fs::File::open(&bundle).unwrap();
    let names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(file))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names[0], "raw.json");
    assert!(names.contains(&"alice.mail.header".to_string()) && names.contains(&"alice.mail".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("root.")), "root is skipped: {names:?}");
    drop(store);

    // With the server stopped, the same figures come from the store.
    for id in [cpu_waste, fine, mem_waste] {
        assert_seff_equal(&config, id, "store");
    }
}
