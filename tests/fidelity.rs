//! Fidelity end to end: `turingwatch job ID --json` against `reportseff` (PyPI, the tool users
//! run; installed by `scripts/setup.sh`) on the job shapes users have: serial, several processes
//! in one task, several tasks on one node, `--mem-per-cpu`, two nodes, an array task, a
//! cancelled job, a TIMEOUT, an OOM-killed job, each component of a heterogeneous job. CPU and memory efficiency must agree within 1
//! percentage point.
//!
//! reportseff reads TotalCPU to whole seconds (it drops the milliseconds sacct prints) and
//! rounds to 0.1 %; the CPU comparison allows exactly what that drops, computed from the job's
//! own TotalCPU, on top of the 1 point. Our CPU figure is also checked against seff's formula on
//! sacct's raw numbers. Memory is reportseff's MaxRSS × NTasks for the tasks here (equal tasks),
//! which is the sum of the tasks' peaks: on two nodes 22.05's TRESUsageInTot (seff's figure)
//! counts one node's task only, see `job::step_memory`.
//!
//! The jobs run at once (the dev cluster has 3 nodes of 2 CPUs; SLURM packs them), so the whole
//! module takes about two minutes.

use crate::util::*;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A busy loop of `secs` seconds holding `mib` MiB (touched: bytearray zero-fills).
fn burn(mib: u64, secs: u64) -> String {
    format!(
        "python3 -c 'import time; b = bytearray({mib} << 20); t = time.time() + {secs}\nwhile time.time() < t: pass'"
    )
}

struct Shape {
    name: &'static str,
    args: Vec<String>,
    script: String,
    /// What `turingwatch job` and reportseff are given, one per part compared: the job id
    /// plus `""`, the array task's `_N`, or a heterogeneous job's components `+0`, `+1`.
    id_suffixes: &'static [&'static str],
    /// The states the job may end in (OOM: COMPLETED where cgroups do not enforce memory).
    states: &'static [&'static str],
}

fn shapes() -> Vec<Shape> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        // Longest first, so it starts first: killed at the 1-minute limit (+ up to 30 s).
        Shape {
            name: "timeout",
            args: s(&["-n1", "--mem=200M", "-t", "1"]),
            script: burn(50, 600),
            id_suffixes: &[""],
            states: &["TIMEOUT"],
        },
        Shape {
            name: "cancelled",
            args: s(&["-n1", "--mem=200M", "-t", "5"]),
            script: burn(50, 600),
            id_suffixes: &[""],
            states: &["CANCELLED"],
        },
        Shape {
            name: "oom",
            args: s(&["-n1", "--mem=100M", "-t", "5"]),
            // Runs a few seconds first: a job killed within its first second has no elapsed time.
            script: format!("{}; python3 -c \"b = b'x' * (400 << 20); import time; time.sleep(5)\"", burn(20, 10)),
            id_suffixes: &[""],
            states: &["OUT_OF_MEMORY", "FAILED", "COMPLETED"],
        },
        Shape {
            name: "serial, no time limit",
            args: s(&["-n1", "-c1", "--mem=400M"]),
            script: burn(200, 30),
            id_suffixes: &[""],
            states: &["COMPLETED"],
        },
        Shape {
            name: "2 processes in one task (-c2)",
            args: s(&["-n1", "-c2", "--mem=1G", "-t", "5"]),
            script: format!("{b} & {b} & wait", b = burn(200, 30)),
            id_suffixes: &[""],
            states: &["COMPLETED"],
        },
        Shape {
            name: "2 tasks on one node (-N1 -n2 --mem=1G)",
            args: s(&["-N1", "-n2", "--mem=1G", "-t", "5"]),
            script: format!("srun {}", burn(300, 30)),
            id_suffixes: &[""],
            states: &["COMPLETED"],
        },
        Shape {
            name: "--mem-per-cpu (-N1 -n2 --mem-per-cpu=700M)",
            args: s(&["-N1", "-n2", "--mem-per-cpu=700M", "-t", "5"]),
            script: format!("srun {}", burn(300, 30)),
            id_suffixes: &[""],
            states: &["COMPLETED"],
        },
        Shape {
            name: "two nodes (-N2 -n2 --mem=1G)",
            args: s(&["-N2", "-n2", "--mem=1G", "-t", "5"]),
            script: format!("srun {}", burn(300, 30)),
            id_suffixes: &[""],
            states: &["COMPLETED"],
        },
        Shape {
            name: "array task (--array=3-3)",
            args: s(&["-n1", "--mem=400M", "-t", "5", "--array=3-3"]),
            script: burn(100, 30),
            id_suffixes: &["_3"],
            states: &["COMPLETED"],
        },
        Shape {
            name: "heterogeneous job (-n1 --mem=200M : -n1 --mem=300M, srun --het-group=0,1)",
            args: s(&["-n1", "--mem=200M", "-t", "5", ":", "-n1", "--mem=300M", "-t", "5"]),
            script: format!("srun --het-group=0,1 {}", burn(100, 30)),
            id_suffixes: &["+0", "+1"],
            states: &["COMPLETED"],
        },
    ]
}

/// reportseff's `State CPUEff MemEff TimeEff` of one job; `None` for its `---`.
///
/// reportseff takes no `ID+K`: a heterogeneous job's component is asked for by its own raw id
/// (sacct's JobIDRaw), and reportseff prints it as `ID+K`.
fn reportseff(id: &str) -> (String, Option<f64>, Option<f64>, Option<f64>) {
    let query = if id.contains('+') {
        let out = run(Command::new("sacct").args(["-j", id, "-X", "-n", "-P", "--format=JobIDRaw"]));
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string()
    } else {
        id.to_string()
    };
    let out =
        run(Command::new("reportseff").args(["--no-color", "--format", "JobID,State,CPUEff,MemEff,TimeEff", &query]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "reportseff {id}: {text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("reportseff has no line for {id}: {text}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let pct = |t: &str| t.strip_suffix('%').map(|n| n.parse::<f64>().unwrap());
    (f[1].to_string(), pct(f[2]), pct(f[3]), pct(f[4]))
}

fn job_json(config: &Path, id: &str) -> serde_json::Value {
    let out = run(turingwatch().arg("--config").arg(config).args(["job", id, "--json"]));
    assert!(out.status.success(), "turingwatch job {id}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_running(id: u64) {
    let running = eventually(Duration::from_secs(300), || {
        let out = run(Command::new("squeue").args(["-h", "-j", &id.to_string(), "-o", "%T"]));
        String::from_utf8_lossy(&out.stdout).trim() == "RUNNING"
    });
    assert!(running, "job {id} did not start");
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |p| format!("{p:.1} %"))
}

#[test]
fn every_job_shape_agrees_with_reportseff() {
    if !cluster() {
        return;
    }
    if Command::new("reportseff").arg("--version").output().is_err() {
        assert!(!e2e_required(), "reportseff is not installed (scripts/setup.sh installs it)");
        eprintln!("skipping: reportseff is not installed");
        return;
    }
    let dir = test_dir("fidelity");
    let config = dir.join("turingwatch.toml");
    // No store: `turingwatch job` asks SLURM's accounting, as for any job seff knows.
    std::fs::write(&config, format!("[store]\npath = \"{}/store.redb\"\n", dir.display())).unwrap();

    let shapes = shapes();
    let mut ids = Vec::new();
    for shape in &shapes {
        // The name first: a heterogeneous job's options after `:` are its second component's.
        let name = format!("tw-fid-{}", ids.len());
        let mut args: Vec<&str> = vec!["-J", &name];
        args.extend(shape.args.iter().map(String::as_str));
        ids.push(sbatch(Some("alice"), &args, &shape.script));
    }
    let cancelled = ids[1];
    wait_running(cancelled);
    std::thread::sleep(Duration::from_secs(15));
    run(Command::new("scancel").arg(cancelled.to_string()));
    for id in &ids {
        wait_job_done(*id, Duration::from_secs(240));
    }

    let mut table = String::from(
        "| shape | state | CPU reportseff | CPU turingwatch | memory reportseff | memory turingwatch | time reportseff | time turingwatch |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    let parts = shapes.iter().zip(&ids).flat_map(|(shape, id)| shape.id_suffixes.iter().map(move |x| (shape, id, x)));
    for (shape, id, suffix) in parts {
        let id = format!("{id}{suffix}");
        // sacct may show the job's steps a moment after the job line settles.
        let (rs_state, rs_cpu, rs_mem, rs_time) = {
            let mut got = reportseff(&id);
            for _ in 0..20 {
                if got.2.is_some_and(|m| m > 0.0) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
                got = reportseff(&id);
            }
            got
        };
        let v = job_json(&config, &id);
        let j = &v["job"];
        let e = &j["efficiency"];
        let state = j["state"].as_str().unwrap().to_string();
        let tw_cpu = e["cpu_frac"].as_f64().map(|f| f * 100.0);
        let tw_mem = e["mem_frac"].as_f64().map(|f| f * 100.0);
        let tw_time = e["time_frac"].as_f64().map(|f| f * 100.0);
        let _ = writeln!(
            table,
            "| {}{} | {state} | {} | {} | {} | {} | {} | {} |",
            shape.name,
            if suffix.starts_with('+') { format!(", component {suffix}") } else { String::new() },
            pct(rs_cpu),
            pct(tw_cpu),
            pct(rs_mem),
            pct(tw_mem),
            pct(rs_time),
            pct(tw_time)
        );
        if !shape.states.contains(&state.as_str()) {
            failures.push(format!("{}: state {state}, expected one of {:?}", shape.name, shape.states));
        }
        if rs_state != state {
            failures.push(format!("{}: state {state} vs reportseff {rs_state}", shape.name));
        }
        // CPU: reportseff's `---` is its 0 (it prints a zero figure as missing).
        let (total_ms, elapsed, cpus) = (
            j["total_cpu_ms"].as_u64().unwrap(),
            j["elapsed_secs"].as_u64().unwrap(),
            j["alloc_cpus"].as_u64().unwrap(),
        );
        let core_secs = (elapsed * cpus) as f64;
        match tw_cpu {
            None => {
                // Only a job without elapsed time has none (reportseff prints `---` too).
                if core_secs > 0.0 || rs_cpu.is_some() || e["cpu_no_data"] != "no_elapsed_time" {
                    failures.push(format!("{}: no CPU figure: {e}; reportseff {rs_cpu:?}", shape.name));
                }
            }
            Some(tw) => {
                // seff's formula on sacct's raw numbers, exactly.
                let seff = total_ms as f64 / 1000.0 / core_secs * 100.0;
                if (tw - seff).abs() > 1e-6 {
                    failures.push(format!("{}: CPU {tw:.3} % vs seff's formula {seff:.3} %", shape.name));
                }
                let dropped = (total_ms % 1000) as f64 / 1000.0 / core_secs * 100.0;
                let rs = rs_cpu.unwrap_or(0.0);
                if (tw - rs).abs() > 1.0 + dropped + 0.05 {
                    failures.push(format!(
                        "{}: CPU {tw:.2} % vs reportseff {rs:.1} % (its whole-second TotalCPU drops {dropped:.2} points)",
                        shape.name
                    ));
                }
            }
        }
        match (tw_mem, rs_mem) {
            (Some(tw), Some(rs)) if (tw - rs).abs() <= 1.0 => {}
            (tw, rs) => failures.push(format!("{}: memory {tw:?} % vs reportseff {rs:?} %", shape.name)),
        }
        match (tw_time, rs_time) {
            (Some(tw), Some(rs)) if (tw - rs).abs() <= 1.0 => {}
            (None, None) => assert_eq!(e["time_no_data"], "unlimited", "{}: {e}", shape.name),
            (tw, rs) => failures.push(format!("{}: time {tw:?} % vs reportseff {rs:?} %", shape.name)),
        }
    }
    eprintln!("{table}");
    std::fs::write(artifact_dir("fidelity").join("reportseff-vs-turingwatch.md"), &table).unwrap();
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
