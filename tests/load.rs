//! Ingest under a pre-authentication flood: slow bodies holding connections open and junk
//! credentials at a high rate. The server's descriptors and memory stay bounded, nothing is
//! committed to the store, and the web API keeps answering within 50 ms at the 99th percentile.
//! Runs alone (scripts/test.sh `serial`): it measures latency on a 2-core machine.

use crate::scrape_support::Setup;
use crate::util::e2e_required;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SLOW_BODIES: usize = 200;
const FLOOD_SECS: u64 = 25;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn digest(path: &std::path::Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap_or_default()).to_vec()
}

/// One request; the status, or 0 when the connection failed.
fn request(port: u16, head: &str, body: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).is_err() {
        return 0;
    }
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn slow_bodies_and_junk_credentials_cost_no_commit_and_leave_the_web_fast() {
    if std::env::var_os("TURINGWATCH_LOAD_TEST").is_none() && !e2e_required() {
        return;
    }
    let setup = Setup::new("preauth_load", 18_245, "[accounting]\ninterval = \"1h\"\nfirst_window = \"1h\"\n");
    let server = setup.server();
    let pid = server.pid();
    let port = setup.port;
    // The start's accounting import and period bookkeeping are done before the flood.
    let settled =
        crate::util::eventually(Duration::from_secs(60), || setup.server_log().contains("accounting import committed"));
    assert!(settled, "{}", setup.server_log());
    std::thread::sleep(Duration::from_secs(3));
    let db = setup.dir.join("db.redb");
    let before = digest(&db);
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    // Slow bodies: a credential of MUNGE's shape, a large Content-Length, a byte a second.
    let slow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let head = "POST /ingest/v1/report HTTP/1.1\r\nHost: x\r\nX-Munge-Credential: MUNGE:QUFBQUFBQUE=:\r\n\
                        Content-Length: 1000000\r\n\r\n";
            let mut streams: Vec<TcpStream> = (0..SLOW_BODIES)
                .filter_map(|_| {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                    s.write_all(head.as_bytes()).ok()?;
                    Some(s)
                })
                .collect();
            let opened = streams.len();
            while !stop.load(Ordering::Relaxed) {
                streams.retain_mut(|s| s.write_all(b"x").is_ok());
                std::thread::sleep(Duration::from_secs(1));
            }
            opened
        })
    };
    // Junk credentials as fast as two threads can send them, with and without a header.
    let flood: Vec<_> = (0..2)
        .map(|i| {
            let (stop, statuses) = (stop.clone(), statuses.clone());
            std::thread::spawn(move || {
                let body = vec![b'j'; 100];
                let head = if i == 0 {
                    "POST /ingest/v1/report HTTP/1.0\r\nX-Munge-Credential: MUNGE:anVuaw==:\r\nContent-Length: 100\r\n\r\n"
                } else {
                    "POST /ingest/v1/report HTTP/1.0\r\nX-Munge-Credential: not munge\r\nContent-Length: 100\r\n\r\n"
                };
                while !stop.load(Ordering::Relaxed) {
                    let status = request(port, head, &body);
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    // Meanwhile a user's browser asks the API, and the server's descriptors and memory are read.
    let (mut latencies, mut fds_max, mut rss_max) = (Vec::new(), 0, 0);
    let api = "GET /api/jobs HTTP/1.0\r\nHost: x\r\nX-AuthUser: alice\r\n\r\n";
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(FLOOD_SECS) {
        let t = Instant::now();
        let status = request(port, api, b"");
        latencies.push(t.elapsed());
        assert_eq!(status, 200, "the API answered {status} under load");
        fds_max = fds_max.max(open_fds(pid));
        rss_max = rss_max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let opened = slow.join().unwrap();
    for t in flood {
        t.join().unwrap();
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let statuses = statuses.lock().unwrap().clone();
    let sent: u64 = statuses.values().sum();
    eprintln!(
        "pre-auth load: {opened} slow bodies, {sent} junk requests in {FLOOD_SECS} s ({statuses:?}); API p50 {:?} p99 {p99:?} over {} requests; fds {fds_before} -> max {fds_max}; RSS {rss_before} -> max {rss_max} KiB",
        latencies[latencies.len() / 2],
        latencies.len()
    );
    assert_eq!(opened, SLOW_BODIES);
    assert!(sent > 1_000, "the flood was real: {statuses:?}");
    assert!(!statuses.contains_key(&200), "no junk was accepted: {statuses:?}");
    assert!(p99 <= Duration::from_millis(50), "API p99 {p99:?} under the flood");
    assert!(fds_max <= fds_before + SLOW_BODIES + 64, "descriptors: {fds_before} -> {fds_max}");
    assert!(rss_max <= rss_before + 256 * 1024, "memory: {rss_before} -> {rss_max} KiB");
    // Slow connections are dropped by the body deadline; their descriptors come back.
    let released = crate::util::eventually(Duration::from_secs(30), || open_fds(pid) <= fds_before + 16);
    assert!(released, "descriptors after the flood: {} (before {fds_before})", open_fds(pid));
    // Read while the server runs (its shutdown writes the store, as it should).
    assert_eq!(digest(&db), before, "a refused request committed something to the store");
    server.stop();
}
