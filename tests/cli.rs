//! The command line as a user meets it: help, effective config, errors that name the key.

use crate::util::*;

#[test]
fn help_lists_every_role() {
    let out = run(turingwatch().arg("--help"));
    let text = String::from_utf8_lossy(&out.stdout);
    for role in ["server", "distribute", "scrape", "analyze", "job", "accounting", "mail", "config", "version"] {
        assert!(text.contains(role), "--help lacks {role}: {text}");
        let sub = run(turingwatch().args([role, "--help"]));
        assert!(sub.status.success(), "{role} --help failed");
    }
}

#[test]
fn config_prints_the_effective_configuration() {
    let example = repo_root().join("config/turingwatch.example.toml");
    let out =
        run(turingwatch().arg("config").arg("--config").arg(&example).env("TURINGWATCH_WEB_BIND", "127.0.0.1:9999"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bind = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("overridden by environment: TURINGWATCH_WEB_BIND"), "{text}");
    assert!(text.contains("interval = \"20s\""), "{text}");
}

#[test]
fn bad_key_is_a_one_line_error_with_exit_code_78() {
    let dir = test_dir("bad_key");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[scrape]\nintervall = \"20s\"\n").unwrap();
    let out = run(turingwatch().arg("config").arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("intervall") && err.contains("line 2"), "{err}");
}

#[test]
fn version_prints_the_schema() {
    let out = run(turingwatch().arg("version"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("store schema"));
}
