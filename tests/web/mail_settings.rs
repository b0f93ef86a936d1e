//! Mail settings chosen on the site, honoured by the real mailer: three users with findings;
//! one opts out and one makes today a quiet day, each through `POST /api/settings` on the
//! running server (token from `GET /api/settings`, as the page does); then the mail window
//! opens (SIGUSR1, `schedule = "on_signal"`) and a real SMTP server (aiosmtpd) receives only
//! the third user's mail, which links the settings page.

use super::Guard;
use crate::mail::{received, seed_previous_period, seeded_job, server_config, smtp_sink};
use crate::util::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use turingwatch::mail::outbox::OutboxState;
use turingwatch::store::Store;

const SMTP_PORT: u16 = 18_823;
const WEB_PORT: u16 = 18_824;

/// `curl` to the server as `user` (from loopback, a trusted proxy address).
fn curl(user: &str, args: &[&str], path: &str) -> (u16, Value) {
    let out = run(Command::new("curl")
        .args(["-s", "--max-time", "10", "-H", &format!("X-AuthUser: {user}"), "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://127.0.0.1:{WEB_PORT}{path}")));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Changes `user`'s settings as the settings page does.
fn choose(user: &str, body: &str) -> Value {
    let (status, view) = curl(user, &[], "/api/settings");
    assert_eq!(status, 200, "{view}");
    let token = view["csrf_token"].as_str().unwrap().to_string();
    let headers = ["-X", "POST", "-H", "Content-Type: application/json", "-H"];
    let token_header = format!("X-CSRF-Token: {token}");
    let origin = format!("Origin: http://127.0.0.1:{WEB_PORT}");
    let mut args: Vec<&str> = headers.to_vec();
    args.extend([token_header.as_str(), "-H", origin.as_str(), "-H", "Sec-Fetch-Site: same-origin", "-d", body]);
    let (status, saved) = curl(user, &args, "/api/settings");
    assert_eq!(status, 200, "{user}: {saved}");
    saved
}

#[test]
fn an_opted_out_user_gets_no_mail_a_quiet_day_waits_and_every_mail_links_the_settings() {
    let dir = test_dir("web_mail_settings");
    let sink = smtp_sink(&dir, SMTP_PORT);
    let config = server_config(&dir, WEB_PORT, SMTP_PORT, "1s");
    let text = read(&config).replacen("[mail]\n", "[mail]\nschedule = \"on_signal\"\n", 1);
    std::fs::write(&config, text).unwrap();
    let wasteful = |id: u64, user: &str, start: u64| {
        let mut j = seeded_job(id, user, start + 5, 40);
        j.alloc_cpus = 2;
        j.usage.total_cpu_ms = 100;
        j
    };
    let period = seed_previous_period(&dir.join("store.redb"), |start| {
        vec![
            wasteful(9_400_001, "twkim", start),
            wasteful(9_400_002, "twlee", start),
            wasteful(9_400_003, "twmo", start),
        ]
    });
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    // Killed however the test ends (a server left behind would hold the port).
    let mut server = Guard(
        turingwatch().arg("--config").arg(&config).arg("server").stdout(Stdio::null()).stderr(log).spawn().unwrap(),
    );
    let up = eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", WEB_PORT)).is_ok());
    assert!(up, "server did not listen: {}", read(&dir.join("server.log")));

    // Today in the configured zone (UTC): 1970-01-01 was a Thursday.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let today = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][((now / 86_400 + 3) % 7) as usize];
    let kim = choose("twkim", r#"{"opted_out": true}"#);
    assert_eq!(kim["prefs"]["opted_out"], true);
    let lee = choose("twlee", &format!(r#"{{"opted_out": false, "quiet_days": ["{today}"]}}"#));
    assert_eq!(lee["prefs"]["quiet_days"][0], today);
    // Nobody changes someone else's: twlee's token does not pass for twmo.
    let (_, lee_view) = curl("twlee", &[], "/api/settings");
    let lee_token = format!("X-CSRF-Token: {}", lee_view["csrf_token"].as_str().unwrap());
    let (status, _) = curl(
        "twmo",
        &["-X", "POST", "-H", "Content-Type: application/json", "-H", &lee_token, "-d", r#"{"opted_out": true}"#],
        "/api/settings",
    );
    assert_eq!(status, 403);

    // The window is closed (`on_signal`): the mailer only notes the queued mails.
    let queued = eventually(Duration::from_secs(30), || {
        read(&dir.join("server.log")).contains(&format!("mails queued period={period} queued=3"))
    });
    assert!(queued, "the period's three mails were not queued: {}", read(&dir.join("server.log")));
    assert_eq!(received(&sink.maildir).len(), 0, "mail before the signal");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGUSR1);
    }
    let sent = eventually(Duration::from_secs(30), || !received(&sink.maildir).is_empty());
    std::thread::sleep(Duration::from_secs(5)); // a second mail, if any, would arrive now
    let mails = received(&sink.maildir);
    let _ = server.0.kill();
    let _ = server.0.wait();
    let log = read(&dir.join("server.log"));
    assert!(sent, "no mail after the signal: {log}");
    assert_eq!(mails.len(), 1, "only twmo's mail: {:?}", mails.iter().map(|m| m.headers.get("to")).collect::<Vec<_>>());
    let m = &mails[0];
    assert!(m.headers["to"].contains("twmo@example.org"), "{}", m.raw);
    let link = "https://hpc.example.org/turingwatch/#/settings";
    assert!(m.parts["text/html"].contains(&format!("href=\"{link}\"")), "{}", m.parts["text/html"]);
    assert!(m.parts["text/plain"].contains(link), "{}", m.parts["text/plain"]);

    let store = Store::open(&dir.join("store.redb")).unwrap();
    let entries = store.outbox_entries(Some(period)).unwrap();
    let state = |user: &str| entries.iter().find(|e| e.user == user).map(|e| (e.state, e.next_attempt_at)).unwrap();
    assert_eq!(state("twkim").0, OutboxState::OptedOut);
    let (lee_state, lee_next) = state("twlee");
    assert_eq!(lee_state, OutboxState::Queued, "twlee's mail waits for a day that is not quiet");
    assert!(lee_next > now && lee_next % 3_600 == 0, "next look at the next full hour: {lee_next}");
    assert_eq!(state("twmo").0, OutboxState::Sent);
    assert!(store.mail_prefs("twkim").unwrap().unwrap().opted_out);
}
