//! Sampled figures against SLURM's own accounting, on the real dev cluster: scrapers on every
//! node (as a node agent runs them, every second) feed a server; then `turingwatch job --json`
//! must give
//! - a CPU burner's sampled CPU time within 5 % of sacct's TotalCPU (the job is fully sampled),
//! - a two-task memory hog's sampled resident peak within 5 % of sacct's summed task peaks
//!   (`TRESUsageInTot` mem, seff's figure),
//! - for a job that writes a file three times its memory request, page cache kept apart from
//!   resident memory, and no "Memory Oversubscribe" although the kernel charged it up to its
//!   limit (the finding used to fire on every such job).

use crate::scrape_support::{terminate, Setup};
use crate::util::{cluster, eventually, run, sbatch, wait_job_done};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PORT: u16 = 18_720;

/// A busy loop of `secs` seconds holding `mib` MiB (touched: bytearray zero-fills).
fn burn(mib: u64, secs: u64) -> String {
    format!(
        "python3 -c 'import time; b = bytearray({mib} << 20); t = time.time() + {secs}\nwhile time.time() < t: pass'"
    )
}

/// `turingwatch job ID <args>` as the job's owner runs it, with the test's config.
fn as_owner(setup: &Setup, user: &str, id: u64, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--", env!("CARGO_BIN_EXE_turingwatch"), "--config"]).arg(&setup.config);
    cmd.args(["job", &id.to_string(), "--server", &setup.url()]).args(args);
    run(&mut cmd)
}

/// The job as its owner's `turingwatch job --json` gives it, from the server.
fn job_json(setup: &Setup, user: &str, id: u64) -> serde_json::Value {
    let mut last = String::new();
    let mut found = None;
    let known = eventually(Duration::from_secs(60), || {
        let out = as_owner(setup, user, id, &["--json"]);
        last = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        // The server must have imported the finished record and hold the samples.
        let done = v["source"] == "server" && v["job"]["end_at"].is_u64() && v["job"]["samples"].as_u64() > Some(5);
        found = Some(v);
        done
    });
    assert!(known, "the server never had job {id} finished with samples: {last}");
    found.unwrap()["job"].clone()
}

fn nodes_sum(job: &serde_json::Value, field: &str) -> f64 {
    job["nodes"].as_array().unwrap().iter().map(|n| n[field].as_f64().unwrap()).sum()
}

#[test]
fn sampled_cpu_time_and_resident_peaks_match_accounting_and_page_cache_is_not_memory() {
    if !cluster() {
        return;
    }
    let setup = Setup::new("sampled_goals", PORT, "[accounting]\ninterval = \"10s\"\nfirst_window = \"1h\"\n");
    let server = setup.server();
    let log = |name: &str| std::fs::File::create(setup.dir.join(name)).unwrap();
    let mut scrapers: Vec<Child> = ["n1", "n2", "n3"]
        .iter()
        .map(|node| {
            setup
                .turingwatch()
                .args(["scrape", "--node", node, "--interval", "1s", "--duration", "15m"])
                .stdout(Stdio::null())
                .stderr(log(&format!("scrape-{node}.log")))
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let burner = sbatch(Some("alice"), &["-J", "tw-goal-burn", "-n1", "-c1", "--mem=300M", "-t", "5"], &burn(50, 60));
    let hog = sbatch(
        Some("alice"),
        &["-J", "tw-goal-hog", "-N1", "-n2", "--mem=1G", "-t", "5"],
        &format!("srun {}", burn(300, 40)),
    );
    // Writes 900 MiB (the kernel reclaims the cache at the 300 MiB limit), then holds 50 MiB.
    let file = "/tmp/tw-goal-stream-$SLURM_JOB_ID";
    let stream = sbatch(
        Some("bob"),
        &["-J", "tw-goal-stream", "-n1", "--mem=300M", "-t", "5"],
        &format!("dd if=/dev/zero of={file} bs=1M count=900 status=none; {}; rm -f {file}", burn(50, 20)),
    );
    for id in [burner, hog, stream] {
        assert_eq!(wait_job_done(id, Duration::from_secs(240)), "COMPLETED", "job {id}");
    }
    std::thread::sleep(Duration::from_secs(5)); // the scrapers' last reports
    for s in &mut scrapers {
        terminate(s);
    }

    let b = job_json(&setup, "alice", burner);
    let sampled_cpu = nodes_sum(&b, "cpu_secs");
    let total_cpu = b["total_cpu_ms"].as_f64().unwrap() / 1000.0;
    eprintln!("burner {burner}: sampled CPU {sampled_cpu:.2} s, sacct TotalCPU {total_cpu:.2} s");
    assert!((sampled_cpu - total_cpu).abs() <= 0.05 * total_cpu, "burner: sampled {sampled_cpu} s vs {total_cpu} s");

    let h = job_json(&setup, "alice", hog);
    let sampled_peak = nodes_sum(&h, "peak_mem_bytes");
    let sacct_peak = h["mem_used_bytes"].as_f64().unwrap();
    eprintln!(
        "hog {hog}: sampled resident peak {:.1} MiB, sacct summed task peaks {:.1} MiB",
        sampled_peak / 1048576.0,
        sacct_peak / 1048576.0
    );
    assert!((sampled_peak - sacct_peak).abs() <= 0.05 * sacct_peak, "hog: {sampled_peak} vs {sacct_peak}");

    let s = job_json(&setup, "bob", stream);
    let (resident, cache, charged) =
        (nodes_sum(&s, "peak_mem_bytes"), nodes_sum(&s, "peak_cache_bytes"), nodes_sum(&s, "peak_charged_bytes"));
    let mib = |b: f64| b / 1048576.0;
    eprintln!(
        "streamer {stream}: resident {:.1} MiB, page cache up to {:.1} MiB, charged {:.1} MiB, findings {}",
        mib(resident),
        mib(cache),
        mib(charged),
        s["findings"]
    );
    assert!(mib(cache) > 100.0, "the streamer's page cache was not seen: {s}");
    assert!(mib(charged) > 250.0, "the cgroup charged the streamer its cache: {s}");
    assert!(mib(resident) < 120.0, "resident memory must exclude the cache: {s}");
    let kinds: Vec<&str> = s["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(!kinds.contains(&"memory_oversubscribed"), "page cache is not oversubscription: {kinds:?}");
    let text = as_owner(&setup, "bob", stream, &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("peak resident memory") && text.contains("page cache up to"), "{text}");
    server.stop();
}
