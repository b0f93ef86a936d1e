//! Deployment files: every systemd unit passes `systemd-analyze verify`, and the check really
//! fails on a broken unit (so a green run means something).

use crate::util::*;
use std::process::Command;

fn check(units: &std::path::Path) -> std::process::Output {
    run(Command::new("bash")
        .arg(repo_root().join("scripts/check-systemd.sh"))
        .arg(env!("CARGO_BIN_EXE_turingwatch"))
        .arg(units))
}

#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(!e2e_required(), "systemd-analyze is required");
        return;
    }
    let out = check(&repo_root().join("systemd"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for unit in [
        "turingwatch.server.service",
        "turingwatch.distributor.service",
        "turingwatch-scrape.service",
        "turingwatch.mail.service",
        "turingwatch.mail.timer",
    ] {
        assert!(repo_root().join("systemd").join(unit).exists(), "{unit} missing");
    }
}

#[test]
fn a_broken_unit_fails_the_check() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        return;
    }
    let dir = test_dir("broken_unit");
    let text = read(&repo_root().join("systemd/turingwatch.server.service")).replace("Type=exec", "Type=exce");
    std::fs::write(dir.join("turingwatch.server.service"), text).unwrap();
    assert!(!check(&dir).status.success());
}

#[test]
fn scheduled_worker_exports_each_users_html_from_a_bundle() {
    use turingwatch::period::bundle::{write_bundle, BundleUser};
    let dir = test_dir("export_html");
    let user = |name: &str, html: Option<&str>| BundleUser {
        user: name.into(),
        header: format!("To: {name}@example.org\nSubject: report\n\n"),
        html: html.map(str::to_string),
        raw: serde_json::json!({}),
    };
    write_bundle(&dir, 1_000, 1, 2, &[user("ann", Some("<p>ann's report</p>")), user("ben", None)], None).unwrap();
    let out = run(Command::new("bash")
        .arg(repo_root().join("scripts/scheduled_worker/export-html.sh"))
        .arg(&dir)
        .arg(dir.join("out")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html_dir = dir.join("out/1000_html");
    assert_eq!(read(&html_dir.join("ann.html")), "<p>ann's report</p>");
    assert!(!html_dir.join("ben.html").exists(), "a user with nothing to say gets no page");
    assert!(read(&html_dir.join("index.html")).contains("href=\"ann.html\""));
}
