//! Report mail end to end: a period closes in a running server, its bundle appears, and a real
//! SMTP server (aiosmtpd, started by the test) receives one valid MIME mail per user — exactly
//! once, also when the server is killed with SIGKILL in the middle of sending.
//!
//! These tests seed the store through the library (jobs as the accounting import stores them)
//! so they exercise rollover, bundle, outbox and mailer without depending on SLURM timing;
//! `tests/analysis.rs` runs the same path from real jobs on the dev cluster.

use crate::util::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use turingwatch::job::{JobRecord, MemRequest, Tres, Usage};
use turingwatch::store::{PeriodRecord, Store};

/// An SMTP sink writing a maildir; killed on drop.
pub struct SmtpSink {
    child: Child,
    pub maildir: PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 -m aiosmtpd` on `port`, delivering into `<dir>/maildir`.
pub fn smtp_sink(dir: &Path, port: u16) -> SmtpSink {
    let maildir = dir.join("maildir");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd; scripts/setup.sh does)");
    // Dropped (killed) if it does not come up; Python starts slowly on a loaded machine.
    let sink = SmtpSink { child, maildir };
    assert!(
        eventually(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "aiosmtpd did not listen on {port}"
    );
    sink
}

/// One received mail: raw text and the decoded bodies of its parts, by content type.
#[derive(Debug)]
pub struct Received {
    pub raw: String,
    pub headers: BTreeMap<String, String>,
    pub parts: BTreeMap<String, String>,
}

/// Every mail in a maildir.
pub fn received(maildir: &Path) -> Vec<Received> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else { continue };
        for e in entries.flatten() {
            let raw = std::fs::read_to_string(e.path()).unwrap_or_default();
            if !raw.is_empty() {
                out.push(parse_mime(&raw));
            }
        }
    }
    out
}

fn split_head(text: &str) -> (BTreeMap<String, String>, String) {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = headers.get_mut(&last) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.trim().to_ascii_lowercase();
            headers.insert(last.clone(), v.trim().to_string());
        }
    }
    (headers, body.to_string())
}

fn decode(body: &str, encoding: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            use base64::Engine;
            let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(clean).expect("valid base64 part");
            String::from_utf8(bytes).expect("UTF-8 part")
        }
        "quoted-printable" => {
            let bytes = quoted_printable::decode(body, quoted_printable::ParseMode::Robust).expect("valid QP part");
            String::from_utf8(bytes).expect("UTF-8 part")
        }
        _ => body.to_string(),
    }
}

/// Parses a message with a multipart/alternative body, checking its structure on the way.
pub fn parse_mime(raw: &str) -> Received {
    let (headers, body) = split_head(raw);
    let ctype = headers.get("content-type").cloned().unwrap_or_default();
    let mut parts = BTreeMap::new();
    if ctype.starts_with("multipart/") {
        let boundary = ctype
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .expect("multipart without boundary")
            .trim_matches('"')
            .to_string();
        let delimiter = format!("--{boundary}");
        assert!(body.contains(&format!("{delimiter}--")), "multipart body is not closed");
        for chunk in body.split(&delimiter).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let (h, b) = split_head(chunk.trim_start_matches('\n'));
            let t = h.get("content-type").cloned().unwrap_or_default();
            let kind = t.split(';').next().unwrap_or("").trim().to_string();
            let enc = h.get("content-transfer-encoding").cloned().unwrap_or_default();
            parts.insert(kind, decode(b.trim_end_matches('\n'), &enc));
        }
    }
    Received { raw: raw.to_string(), headers, parts }
}

/// A finished job as the accounting import stores it.
pub fn seeded_job(id: u64, user: &str, start: u64, elapsed: u64) -> JobRecord {
    JobRecord {
        name: format!("job{id}"),
        account: "dev".into(),
        partition: "debug".into(),
        qos: "normal".into(),
        time_limit_secs: Some(elapsed + 60),
        node_list: "n1".into(),
        req_mem: Some(MemRequest::PerNode(100 << 20)),
        req_mem_bytes: Some(100 << 20),
        alloc_tres: Tres(vec![("cpu".into(), 1), ("mem".into(), 100 << 20), ("node".into(), 1)]),
        usage: Usage {
            total_cpu_ms: elapsed * 990,
            user_cpu_ms: elapsed * 980,
            system_cpu_ms: elapsed * 10,
            max_rss_bytes: Some(90 << 20),
            max_rss_node: "n1".into(),
            max_rss_task: Some(0),
            ..Usage::default()
        },
        submit_line: format!("sbatch job{id}.sh"),
        work_dir: "/tmp".into(),
        ..JobRecord::finished(id, user, start, elapsed)
    }
}

/// Writes the server's configuration; `period` as in the TOML (e.g. `"1m"`).
pub fn server_config(dir: &Path, web_port: u16, smtp_port: u16, rate_limit: &str) -> PathBuf {
    let path = dir.join("turingwatch.toml");
    let text = format!(
        r#"[store]
path = "{dir}/store.redb"
[accounting]
skip_users = ["root", "alice", "bob"]
[analysis]
period = "1m"
timezone = "UTC"
results_dir = "{dir}/results"
[findings]
min_runtime = "5s"
[mail]
transport = "smtp"
smtp_server = "127.0.0.1"
smtp_port = {smtp_port}
from = "HPC Team <hpc@example.org>"
reply_to = "help@example.org"
domain = "example.org"
rate_limit = "{rate_limit}"
rate_jitter = "0s"
web_base_url = "https://hpc.example.org/turingwatch"
feedback_link = "https://forms.example.org/f"
[web]
bind = "127.0.0.1:{web_port}"
"#,
        dir = dir.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Seeds jobs of the previous 1-minute period (open, import caught up) so a server closes it at once.
pub fn seed_previous_period(db: &Path, jobs_of: impl Fn(u64) -> Vec<JobRecord>) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = now - now % 60 - 60;
    let store = Store::open(db).expect("open store");
    store.upsert_jobs(&jobs_of(start), &[], Some(start + 60)).expect("seed jobs");
    store.put_period(&PeriodRecord { start, end: start + 60, closed: false, updated_at: start }).expect("seed period");
    start
}

fn start_server(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    turingwatch()
        .arg("--config")
        .arg(config)
        .arg("server")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start server")
}

fn wasteful_cpu(id: u64, user: &str, start: u64) -> JobRecord {
    let mut j = seeded_job(id, user, start + 5, 40);
    j.alloc_cpus = 2;
    j.usage.total_cpu_ms = 100;
    j
}

fn wasteful_mem(id: u64, user: &str, start: u64) -> JobRecord {
    let mut j = seeded_job(id, user, start + 5, 40);
    j.req_mem_bytes = Some(2 << 30);
    j.usage.max_rss_bytes = Some(50 << 20);
    j
}

#[test]
fn closed_period_mails_each_user_once_with_both_parts_naming_the_wasteful_jobs() {
    let dir = test_dir("mail_closed_period");
    let sink = smtp_sink(&dir, 18_310);
    let config = server_config(&dir, 18_311, 18_310, "1s");
    let period = seed_previous_period(&dir.join("store.redb"), |start| {
        vec![
            wasteful_cpu(9_100_001, "twcarol", start),
            seeded_job(9_100_002, "twcarol", start + 5, 40),
            wasteful_mem(9_100_003, "twdave", start),
            seeded_job(9_100_004, "twerin", start + 5, 40),
        ]
    });
    let mut server = start_server(&config, &dir.join("server.log"));
    let got_two = eventually(Duration::from_secs(30), || received(&sink.maildir).len() >= 2);
    let bundle = dir.join("results").join(format!("{period}.tar.gz"));
    let bundle_ok = eventually(Duration::from_secs(10), || bundle.exists());
    std::thread::sleep(Duration::from_secs(3)); // a third mail, if any, would arrive now
    let metrics = crate::server::http_get(18_311, "/metrics").map(|(_, body)| body).unwrap_or_default();
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(got_two && bundle_ok, "mails or bundle missing; server log:\n{log}");

    let mails = received(&sink.maildir);
    assert_eq!(mails.len(), 2, "one mail per user with findings (twerin has none)");
    assert!(metrics.contains("turingwatch_mails_sent_total 2\n"), "/metrics after two mails:\n{metrics}");
    assert!(metrics.contains("turingwatch_mails_queued 0\n"), "{metrics}");
    for (user, job) in [("twcarol", "9100001"), ("twdave", "9100003")] {
        let m = mails
            .iter()
            .find(|m| m.headers.get("to").is_some_and(|t| t.contains(&format!("{user}@example.org"))))
            .unwrap_or_else(|| panic!("no mail to {user}"));
        assert!(m.headers["content-type"].starts_with("multipart/alternative"), "{}", m.raw);
        assert_eq!(m.headers["message-id"], format!("<turingwatch.{period}.{user}@example.org>"));
        assert_eq!(m.headers["reply-to"], "help@example.org");
        let html = &m.parts["text/html"];
        let text = &m.parts["text/plain"];
        assert!(html.contains(&format!("Job {job}</a>")) && text.contains(&format!("Job {job} ")), "{text}");
        assert!(!html.contains("<script") && !html.contains("<img"));
    }
    assert!(!mails.iter().any(|m| m.raw.contains("9100002") && m.raw.contains("Job 9100002 ")));

    let names = bundle_names(&bundle);
    for want in ["raw.json", "twcarol.mail.header", "twcarol.mail", "twdave.mail", "twerin.mail.header", "twerin.empty"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert_eq!(names[0], "raw.json");
    let store = Store::open(&dir.join("store.redb")).unwrap();
    assert!(store.periods().unwrap().iter().any(|p| p.start == period && p.closed));
    let report = store.report(period, "twcarol").unwrap().unwrap();
    assert!(report.json.contains("\"JobInfo\"") && report.html.contains("Job 9100001"));
}

fn bundle_names(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn killing_the_server_mid_send_sends_no_duplicate() {
    let dir = test_dir("mail_kill_9");
    let sink = smtp_sink(&dir, 18_320);
    let config = server_config(&dir, 18_321, 18_320, "2s");
    let users: Vec<String> = (1..=5).map(|i| format!("twkill{i}")).collect();
    let period = seed_previous_period(&dir.join("store.redb"), |start| {
        users.iter().enumerate().map(|(i, u)| wasteful_cpu(9_200_000 + i as u64, u, start)).collect()
    });
    // Run, kill -9 right after a mail arrived (the mailer is committing "sent" or sleeping), twice.
    for wanted in [1usize, 3] {
        let mut server = start_server(&config, &dir.join(format!("server-{wanted}.log")));
        assert!(
            eventually(Duration::from_secs(30), || received(&sink.maildir).len() >= wanted),
            "no mail before the kill"
        );
        server.kill().expect("SIGKILL");
        server.wait().expect("wait");
    }
    let mut server = start_server(&config, &dir.join("server-final.log"));
    let all = eventually(Duration::from_secs(40), || received(&sink.maildir).len() >= users.len());
    std::thread::sleep(Duration::from_secs(5)); // any duplicate would arrive now
    let _ = server.kill();
    let _ = server.wait();
    let mails = received(&sink.maildir);
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        *per_user.entry(m.headers.get("to").cloned().unwrap_or_default()).or_default() += 1;
    }
    assert!(all, "not every user got a mail: {per_user:?}");
    for u in &users {
        assert_eq!(per_user.get(&format!("{u}@example.org")), Some(&1), "{u}: {per_user:?}");
    }
    assert_eq!(mails.len(), users.len(), "{per_user:?}");
    let store = Store::open(&dir.join("store.redb")).unwrap();
    let entries = store.outbox_entries(Some(period)).unwrap();
    assert!(entries.iter().all(|e| matches!(
        e.state,
        turingwatch::mail::outbox::OutboxState::Sent | turingwatch::mail::outbox::OutboxState::Uncertain
    )));
}

/// An SMTP server that stores a message (as an MTA commits it after the final dot), signals it,
/// and waits before answering: a crash in that window leaves a mail delivered but unacknowledged.
const SLOW_SINK: &str = r#"
import asyncio, mailbox, pathlib, sys, time
from aiosmtpd.controller import Controller
port, maildir, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class Slow:
    def __init__(self):
        self.box = mailbox.Maildir(maildir)
    async def handle_DATA(self, server, session, envelope):
        self.box.add(envelope.content)
        pathlib.Path(maildir, "in-data").touch()
        await asyncio.sleep(delay)
        return "250 OK"
Controller(Slow(), hostname="127.0.0.1", port=port).start()
while True:
    time.sleep(1)
"#;

#[test]
fn a_mail_unacknowledged_at_a_crash_is_not_resent_but_can_be_by_hand() {
    let dir = test_dir("mail_uncertain");
    let maildir = dir.join("maildir");
    let child = Command::new("python3")
        .args(["-c", SLOW_SINK, "18340"])
        .arg(&maildir)
        .arg("4")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 aiosmtpd");
    let sink = SmtpSink { child, maildir: maildir.clone() };
    assert!(eventually(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", 18_340)).is_ok()));
    let config = server_config(&dir, 18_341, 18_340, "1s");
    let period = seed_previous_period(&dir.join("store.redb"), |start| vec![wasteful_cpu(9_300_001, "twslow", start)]);

    let mut server = start_server(&config, &dir.join("server-1.log"));
    assert!(eventually(Duration::from_secs(30), || maildir.join("in-data").exists()), "no SMTP DATA");
    server.kill().expect("SIGKILL in the middle of the SMTP transaction");
    server.wait().unwrap();
    // The sink has the message although our side never saw the reply.
    assert_eq!(received(&maildir).len(), 1);

    let mut server = start_server(&config, &dir.join("server-2.log"));
    std::thread::sleep(Duration::from_secs(8)); // a resend would be stored within this
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(received(&maildir).len(), 1, "the uncertain mail was resent automatically");
    let log = std::fs::read_to_string(dir.join("server-2.log")).unwrap();
    assert!(log.contains("marked uncertain"), "{log}");
    {
        let store = Store::open(&dir.join("store.redb")).unwrap();
        let entries = store.outbox_entries(Some(period)).unwrap();
        assert_eq!(entries[0].state, turingwatch::mail::outbox::OutboxState::Uncertain);
    }

    let plain = run(turingwatch().arg("--config").arg(&config).args(["mail", "--period", &period.to_string()]));
    assert!(String::from_utf8_lossy(&plain.stdout).contains("not sent"), "{plain:?}");
    let forced = run(turingwatch().arg("--config").arg(&config).args([
        "mail",
        "--period",
        &period.to_string(),
        "--user",
        "twslow",
        "--resend",
    ]));
    assert!(forced.status.success(), "{forced:?}");
    let mails = received(&maildir);
    drop(sink);
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].headers["message-id"], mails[1].headers["message-id"], "a resend keeps the Message-ID");
}

/// The SMTP server is down when mails are due: every attempt fails and is retried with backoff;
/// once the server is back, each user gets exactly one mail.
#[test]
fn mails_due_while_smtp_is_down_are_delivered_once_when_it_returns() {
    let dir = test_dir("mail_smtp_down");
    let config = server_config(&dir, 18_351, 18_350, "1s");
    let period = seed_previous_period(&dir.join("store.redb"), |start| {
        vec![wasteful_cpu(9_200_001, "twfrank", start), wasteful_mem(9_200_002, "twgrace", start)]
    });
    let mut server = start_server(&config, &dir.join("server.log"));
    // Nothing listens on the SMTP port: the first attempts fail and are counted.
    let failed = eventually(Duration::from_secs(20), || {
        crate::server::http_get(18_351, "/metrics")
            .is_some_and(|(_, body)| body.contains("turingwatch_mails_failed_total 2\n"))
    });
    assert!(failed, "first attempts should fail: {}", read(&dir.join("server.log")));
    let sink = smtp_sink(&dir, 18_350);
    // The first retry comes 30 s after a failure.
    let delivered = eventually(Duration::from_secs(75), || received(&sink.maildir).len() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    let metrics = crate::server::http_get(18_351, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let _ = server.kill();
    let _ = server.wait();
    assert!(delivered, "mails not delivered after SMTP returned: {}", read(&dir.join("server.log")));
    let mails = received(&sink.maildir);
    assert_eq!(mails.len(), 2, "exactly one mail per user");
    for user in ["twfrank", "twgrace"] {
        let to_user = mails.iter().filter(|m| m.headers.get("message-id").is_some_and(|id| id.contains(user))).count();
        assert_eq!(to_user, 1, "{user}");
        assert!(mails.iter().any(|m| m.headers["message-id"] == format!("<turingwatch.{period}.{user}@example.org>")));
    }
    assert!(metrics.contains("turingwatch_mails_sent_total 2\n"), "{metrics}");
}

/// `[mail] schedule = "on_signal"` (the systemd mail timer's mode): nothing goes out until the
/// server gets SIGUSR1; then every due mail is sent once, and the window closes again.
#[test]
fn on_signal_schedule_sends_only_after_sigusr1() {
    let dir = test_dir("mail_on_signal");
    let sink = smtp_sink(&dir, 18_352);
    let config = server_config(&dir, 18_353, 18_352, "1s");
    let text = read(&config).replacen("[mail]\n", "[mail]\nschedule = \"on_signal\"\n", 1);
    std::fs::write(&config, text).unwrap();
    let period = seed_previous_period(&dir.join("store.redb"), |start| {
        vec![wasteful_cpu(9_300_001, "twheidi", start), wasteful_mem(9_300_002, "twivan", start)]
    });
    let mut server = start_server(&config, &dir.join("server.log"));
    let queued = eventually(Duration::from_secs(20), || {
        crate::server::http_get(18_353, "/metrics").is_some_and(|(_, b)| b.contains("turingwatch_mails_queued 2\n"))
            || dir.join("results").join(format!("{period}.tar.gz")).exists()
    });
    std::thread::sleep(Duration::from_secs(4));
    let before = received(&sink.maildir).len();
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGUSR1);
    }
    let sent = eventually(Duration::from_secs(20), || received(&sink.maildir).len() >= 2);
    std::thread::sleep(Duration::from_secs(3));
    let after = received(&sink.maildir).len();
    let _ = server.kill();
    let _ = server.wait();
    let log = read(&dir.join("server.log"));
    assert!(queued, "the period did not close: {log}");
    assert_eq!(before, 0, "mail went out before the signal");
    assert!(sent && after == 2, "{after} mails after the signal: {log}");
    assert!(log.contains("waiting for the next signal"), "{log}");
}
