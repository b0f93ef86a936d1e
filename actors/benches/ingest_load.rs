//! Ingest throughput through a real server: MUNGE-authenticated reports over HTTP.
//!
//! Run by `scripts/bench/ingest.sh` (which builds the release server first and needs the dev
//! cluster: munged for credentials, SLURM for the node names reports carry). It
//! 1. writes one running job per simulated node into a fresh store (so every sample passes the
//!    plausibility checks against its job's accounting record),
//! 2. starts `turingwatch server` on that store,
//! 3. makes the reports first (each: one node, `TW_STEPS` steps × `TW_SAMPLES` samples 20 s
//!    apart, with its own MUNGE credential from libmunge), so making them costs the server
//!    nothing during the run,
//! 4. posts them for `TW_SECS` seconds from `TW_CONNS` keep-alive connections (each from its own
//!    loopback address: the server limits the rate of each peer, as it would on a cluster where
//!    every node has its own), while one more connection asks `GET /api/report` ten times a
//!    second as a user of the site would,
//! 5. prints `ingest: <N> step-samples/s, <M> reports/s, p99 ack <P> ms` and the site's latency.
//!
//! The simulated nodes report under the cluster's real node names in turn (the dev cluster
//! has three): a sender is a node name and a uid, so each report still has its own id and each
//! simulated node its own job and series. Only answers 200 with every sample stored count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use socket2::{Domain, Socket, Type};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turingwatch::job::{JobId, JobRecord, StepId};
use turingwatch::munge::{payload_for, LibMunge, CREDENTIAL_HEADER};
use turingwatch::sample::StepSample;
use turingwatch::store::Store;
use turingwatch::wire::format::{encode_batch, Batch, StepBatch, VERSION};
use turingwatch::wire::INGEST_PATH;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Settings {
    bin: String,
    nodes: u64,
    steps: u64,
    samples: u64,
    secs: u64,
    conns: u64,
    port: u16,
    node_names: Vec<String>,
    /// Reports made before the run: enough for this many reports a second.
    max_rate: u64,
}

/// A prepared report: its body, its credential, and how many step samples it holds.
struct Prepared {
    body: Vec<u8>,
    credential: String,
    samples: u64,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let settings = Settings {
        bin: std::env::var("TW_BIN").unwrap_or_else(|_| "target/release/turingwatch".into()),
        nodes: env_u64("TW_NODES", 1_000),
        steps: env_u64("TW_STEPS", 50),
        samples: env_u64("TW_SAMPLES", 3),
        secs: env_u64("TW_SECS", 60),
        conns: env_u64("TW_CONNS", 32),
        port: env_u64("TW_PORT", 18_870) as u16,
        node_names: std::env::var("TW_NODE_NAMES")
            .unwrap_or_else(|_| "n1,n2,n3".into())
            .split(',')
            .map(str::to_string)
            .collect(),
        max_rate: env_u64("TW_MAX_RATE", 700),
    };
    let dir = std::env::temp_dir().join(format!("tw-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let now = turingwatch::clock::unix_now();
    let rounds = (settings.max_rate * settings.secs).div_ceil(settings.nodes);
    // Samples of the last round end a minute before now; jobs started before the first.
    let span = rounds * settings.samples * 20;
    let first_at = now - span - 60;
    write_jobs(&dir, &settings, first_at - 600);
    let mut server = start_server(&dir, &settings);
    let t0 = Instant::now();
    let reports = prepare(&settings, rounds, first_at);
    eprintln!("ingest bench: {} reports made in {:.1} s", reports.len(), t0.elapsed().as_secs_f64());
    let before = server_cpu_secs(server.id());
    let outcome = run(&settings, &reports);
    let cpu = server_cpu_secs(server.id()) - before;
    let peak_rss_mib = peak_rss_kib(server.id()) as f64 / 1024.0;
    eprintln!(
        "ingest bench: the server used {:.2} cores on average during the run (user + system), peak RSS {peak_rss_mib:.0} MiB",
        cpu / outcome.elapsed
    );
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    let size = std::fs::metadata(dir.join("db.redb")).map(|m| m.len()).unwrap_or(0);
    outcome.print(&settings, size);
    if std::env::var_os("TW_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`, clock ticks of 1/100 s).
fn server_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; the rest starts at field 3 (state).
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of process `pid`, KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn write_jobs(dir: &std::path::Path, settings: &Settings, start: u64) {
    let store = Store::open(&dir.join("db.redb")).expect("store");
    let jobs: Vec<JobRecord> = (0..settings.nodes)
        .map(|i| {
            let node = &settings.node_names[(i as usize) % settings.node_names.len()];
            JobRecord {
                name: "bench".into(),
                account: "dev".into(),
                partition: "debug".into(),
                state: "RUNNING".into(),
                end_at: None,
                node_list: node.clone(),
                node_count: 1,
                alloc_cpus: 64,
                time_limit_secs: Some(86_400),
                ..JobRecord::finished(job_id(i), "alice", start, 0)
            }
        })
        .collect();
    store.upsert_jobs(&jobs, &[], None).expect("jobs");
}

fn job_id(node: u64) -> u64 {
    50_000_000 + node
}

fn start_server(dir: &std::path::Path, settings: &Settings) -> Child {
    let config = dir.join("turingwatch.toml");
    let text = format!(
        "[store]\npath = \"{d}/db.redb\"\n[web]\nbind = \"127.0.0.1:{port}\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        d = dir.display(),
        port = settings.port
    );
    std::fs::write(&config, text).expect("config");
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let child = Command::new(&settings.bin)
        .arg("--config")
        .arg(&config)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", settings.bin));
    let addr = format!("127.0.0.1:{}", settings.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "server did not listen on {addr}; see {}/server.log", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// The reports, round by round: round `r` of node `i` carries samples `r × samples ..` of each
/// of its job's steps, so every series arrives in time order.
fn prepare(settings: &Settings, rounds: u64, first_at: u64) -> Vec<Prepared> {
    let munge = LibMunge::load(None).expect("libmunge.so.2 (install libmunge2)");
    let mut out = Vec::with_capacity((rounds * settings.nodes) as usize);
    for round in 0..rounds {
        for i in 0..settings.nodes {
            let node = settings.node_names[(i as usize) % settings.node_names.len()].clone();
            let steps = (0..settings.steps)
                .map(|s| StepBatch {
                    job: JobId(job_id(i)),
                    step: StepId(s as u32),
                    samples: (0..settings.samples)
                        .map(|k| {
                            let n = round * settings.samples + k;
                            StepSample {
                                at: first_at + n * 20,
                                // One busy core per step, 10 % of it in the kernel.
                                cpu_user_cs: n * 20 * 90,
                                cpu_sys_cs: n * 20 * 10,
                                rss_kib: 10_240 + (s * 97 + n) % 512,
                                resident_kib: 10_240 + (s * 97 + n) % 512,
                                minor_faults: n * 300,
                                read_kib: n * 4,
                                write_kib: n * 8,
                                processes: 1,
                                threads: 2,
                                cpus: 1,
                                ..StepSample::default()
                            }
                        })
                        .collect(),
                    gpus: Vec::new(),
                    apps: if round == 0 { vec!["bench-app".into()] } else { Vec::new() },
                })
                .collect();
            let batch =
                Batch { version: VERSION, id: (i << 32) | round, node, made_at: turingwatch::clock::unix_now(), steps };
            let body = encode_batch(&batch);
            let credential = munge.encode(payload_for(&body).as_bytes()).expect("munge_encode (is munged running?)");
            out.push(Prepared { body, credential, samples: settings.steps * settings.samples });
        }
    }
    out
}

#[derive(Default)]
struct Outcome {
    elapsed: f64,
    ok_reports: u64,
    ok_samples: u64,
    stored_samples: u64,
    acks_ms: Vec<f64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    site_ms: Vec<f64>,
    site_statuses: std::collections::BTreeMap<u16, u64>,
    ran_out: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Outcome {
    fn print(mut self, settings: &Settings, store_bytes: u64) {
        self.acks_ms.sort_by(f64::total_cmp);
        self.site_ms.sort_by(f64::total_cmp);
        eprintln!(
            "ingest bench: {} simulated nodes, {} steps × {} samples per report, {} connections, {:.1} s; answers {:?}; \
             step samples stored {} of {} acknowledged; store file {:.1} MB{}",
            settings.nodes,
            settings.steps,
            settings.samples,
            settings.conns,
            self.elapsed,
            self.statuses,
            self.stored_samples,
            self.ok_samples,
            store_bytes as f64 / 1e6,
            if self.ran_out { "; RAN OUT of prepared reports (raise TW_MAX_RATE)" } else { "" }
        );
        println!(
            "ingest: {:.0} step-samples/s, {:.0} reports/s, p99 ack {:.0} ms",
            self.stored_samples as f64 / self.elapsed,
            self.ok_reports as f64 / self.elapsed,
            percentile(&self.acks_ms, 0.99)
        );
        println!(
            "site: GET /api/report p50 {:.1} ms, p99 {:.1} ms over {} requests, answers {:?}",
            percentile(&self.site_ms, 0.5),
            percentile(&self.site_ms, 0.99),
            self.site_ms.len(),
            self.site_statuses
        );
    }
}

/// A keep-alive HTTP/1.1 connection from one loopback address.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(from: [u8; 4], port: u16) -> std::io::Result<Connection> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&SocketAddr::from((from, 0)).into())?;
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends one request; returns the status and the body.
    fn request(&mut self, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn run(settings: &Settings, reports: &[Prepared]) -> Outcome {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.secs);
    std::thread::scope(|scope| {
        for c in 0..settings.conns {
            let (next, stop, outcome) = (&next, &stop, Arc::clone(&outcome));
            scope.spawn(move || {
                let from = [127, 0, 1 + (c / 250) as u8, 1 + (c % 250) as u8];
                let mut conn = Connection::open(from, settings.port).expect("connect");
                let (mut acks, mut statuses) = (Vec::new(), std::collections::BTreeMap::new());
                let (mut ok_reports, mut ok_samples, mut stored) = (0u64, 0u64, 0u64);
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(report) = reports.get(i) else {
                        stop.store(true, Ordering::Relaxed);
                        outcome.lock().unwrap().ran_out = true;
                        break;
                    };
                    let head = format!(
                        "POST {INGEST_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
                         {CREDENTIAL_HEADER}: {}\r\nContent-Length: {}\r\n\r\n",
                        report.credential,
                        report.body.len()
                    );
                    let t = Instant::now();
                    let answer = conn.request(&head, &report.body);
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let (status, body) = answer.unwrap_or_else(|_| {
                        conn = Connection::open(from, settings.port).expect("reconnect");
                        (0, String::new())
                    });
                    *statuses.entry(status).or_insert(0u64) += 1;
                    if status == 200 {
                        acks.push(ms);
                        ok_reports += 1;
                        ok_samples += report.samples;
                        stored += serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["stored_samples"].as_u64())
                            .unwrap_or(0);
                    }
                }
                let mut o = outcome.lock().unwrap();
                o.acks_ms.extend(acks);
                o.ok_reports += ok_reports;
                o.ok_samples += ok_samples;
                o.stored_samples += stored;
                for (s, n) in statuses {
                    *o.statuses.entry(s).or_insert(0) += n;
                }
            });
        }
        let (stop, outcome) = (&stop, Arc::clone(&outcome));
        scope.spawn(move || {
            let mut conn = Connection::open([127, 0, 0, 1], settings.port).expect("connect");
            let head = "GET /api/report HTTP/1.1\r\nHost: 127.0.0.1\r\nX-AuthUser: alice\r\n\r\n";
            let (mut times, mut statuses) = (Vec::new(), std::collections::BTreeMap::new());
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let status = conn.request(head, b"").map(|(s, _)| s).unwrap_or_else(|_| {
                    conn = Connection::open([127, 0, 0, 1], settings.port).expect("reconnect");
                    0
                });
                times.push(t.elapsed().as_secs_f64() * 1e3);
                *statuses.entry(status).or_insert(0u64) += 1;
                std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
            }
            let mut o = outcome.lock().unwrap();
            o.site_ms = times;
            o.site_statuses = statuses;
        });
    });
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap());
    outcome.elapsed = started.elapsed().as_secs_f64();
    outcome
}
