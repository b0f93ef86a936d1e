//! The server process as an admin runs it: starts, answers health and metrics, stops cleanly on
//! SIGTERM, and refuses a bad configuration with exit code 78 instead of restart-looping.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `turingwatch server` child with its own config, store and port.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts a server with `extra` TOML appended to a minimal config; waits for /healthz.
    pub fn start(name: &str, port: u16, extra: &str) -> ServerProcess {
        let dir = test_dir(name);
        let config = dir.join("turingwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\npath = \"{store}\"\n[web]\nbind = \"127.0.0.1:{port}\"\n{extra}\n",
                store = dir.join("store.redb").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = turingwatch()
            .arg("server")
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn server");
        let server = ServerProcess { child, port, dir };
        assert!(
            eventually(Duration::from_secs(20), || http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)),
            "server did not come up: {}",
            std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
        );
        server
    }

    /// Sends SIGTERM and waits; returns the exit code and how long the stop took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let start = Instant::now();
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        (status.code(), start.elapsed())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The status line and headers of one request (`method path`, no body).
fn http_head(port: u16, method: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n").map_or(text.clone(), |(h, _)| h.to_string()))
}

#[test]
fn metrics_are_scraped_and_sigterm_stops_cleanly() {
    let mut server = ServerProcess::start("server_metrics", 18051, "");
    let (status, body) = http_get(server.port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    // Every answer, whoever serves it (metrics, health, the API's errors, ingest's refusals, the
    // site), tells browsers not to sniff its type.
    for (method, path) in
        [("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/api/user"), ("POST", "/ingest/v1/report"), ("GET", "/")]
    {
        let head = http_head(server.port, method, path).expect("answer");
        assert!(head.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{method} {path}:\n{head}");
    }
    for name in [
        "turingwatch_import_lag_seconds",
        "turingwatch_reports_rejected_total{reason=\"unauthenticated\"}",
        "turingwatch_samples_stored_total",
        "turingwatch_scraper_jobs{state=\"pending\"}",
        "turingwatch_mails_sent_total",
        "turingwatch_store_size_bytes",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    let size: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("turingwatch_store_size_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("store size value");
    assert!(size > 0, "store size should be measured");
    // The accounting importer runs at start against the dev cluster and reports its progress.
    if cluster() {
        let value = |body: &str, name: &str| -> u64 {
            body.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
        };
        let imported = eventually(Duration::from_secs(60), || {
            http_get(server.port, "/metrics").is_some_and(|(_, body)| {
                value(&body, "turingwatch_import_last_success_timestamp_seconds ") > 0
                    && value(&body, "turingwatch_jobs_imported_total ") > 0
            })
        });
        assert!(imported, "no import reported in /metrics: {}", read(&server.dir.join("server.log")));
    }
    let (code, took) = server.terminate();
    assert_eq!(code, Some(0), "server log: {}", read(&server.dir.join("server.log")));
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
}

#[test]
fn invalid_config_exits_78_without_starting() {
    let dir = test_dir("server_bad_config");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[web]\nbind = \"not an address\"\n").unwrap();
    let out = run(turingwatch().arg("server").arg("--config").arg(&config).stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.bind"));
}
