//! Hostile input through SLURM itself: what users type into their jobs (names, submit lines, work
//! directories) reaches the importer through sacct. None of it may create, change or hide another
//! record, and none of it may stop the import.

use crate::accounting::Server;
use crate::util::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use turingwatch::slurm::sacct_parse::FIELDS;

/// The line sacct prints for `id` in the importer's old format (0x1f between the fields).
fn old_format_line(id: u64) -> String {
    let out = run(Command::new("sacct").args([
        "-j",
        &id.to_string(),
        "-X",
        "-n",
        "-P",
        "--noconvert",
        "--delimiter=\u{1f}",
        &format!("--format={}", FIELDS.join(",")),
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string()
}

#[test]
fn forged_records_and_odd_bytes_in_job_text_change_no_other_job() {
    if !cluster() {
        return;
    }
    let dir = test_dir("hostile_sacct");
    // Bob's job, and one of Alice's whose sacct line she copies to forge a record of bob's.
    let bobs = sbatch(Some("bob"), &["-J", "bobs-job"], "true");
    let template = sbatch(Some("alice"), &["-J", "template"], "true");
    wait_job_done(bobs, Duration::from_secs(60));
    wait_job_done(template, Duration::from_secs(60));
    let line = old_format_line(template);
    assert!(line.contains("alice"), "{line:?}");
    let fields: Vec<&str> = line.splitn(3, '\u{1f}').collect();
    let forged = format!("{bobs}\u{1f}{bobs}\u{1f}{}", fields[2]);

    // Alice's hostile jobs: the forged record in a submit line (as the old parser read it, and
    // with `|`), `|`, 0x1f, CR and a Latin-1 byte in a name, and a work dir with odd bytes.
    let workdir = format!("/tmp/tw-hostile-{}-caf\u{e9}|x", std::process::id());
    run(Command::new("runuser").args(["-u", "alice", "--", "mkdir", "-p", &workdir]));
    let mut hostile = vec![
        sbatch(Some("alice"), &["-J", "forger"], &format!("true\n{forged}\nx")),
        sbatch(Some("alice"), &["-J", "forger2"], &format!("true\n{}\nx", forged.replace('\u{1f}', "|"))),
        sbatch(Some("alice"), &["-J", "we|ird\u{1f}na\rme"], "true"),
    ];
    let latin1 = run(Command::new("runuser")
        .args(["-u", "alice", "--", "sbatch", "--parsable", "--output=/dev/null", "--chdir"])
        .arg(&workdir)
        .arg("-J")
        .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"))
        .args(["--wrap", "true"]));
    assert!(latin1.status.success(), "{}", String::from_utf8_lossy(&latin1.stderr));
    hostile.push(String::from_utf8_lossy(&latin1.stdout).trim().parse().unwrap());
    for id in &hostile {
        wait_job_done(*id, Duration::from_secs(60));
    }

    let server = Server::start(&dir, 18151, "server.log");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // sacct's window queries show a just-finished job up to ~5 s late: wait for an import whose
    // window ends well after the jobs did (the importer re-reads the end of the last window).
    server.wait_import(now + 8, Duration::from_secs(60));
    let log = server.log.clone();
    server.stop();
    assert!(!read(&log).contains("accounting import failed"), "an import failed:\n{}", read(&log));

    let mut ids = vec![bobs, template];
    ids.extend(&hostile);
    let mut cmd = turingwatch();
    cmd.args(["debug", "store-jobs", "--db"]).arg(dir.join("store.redb"));
    cmd.args(ids.iter().map(u64::to_string));
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    let job = |id: u64| jobs.iter().map(|j| &j["job"]).find(|j| j["id"] == id).cloned();
    let bob = job(bobs).expect("bob's job stored");
    assert_eq!((bob["user"].as_str(), bob["name"].as_str()), (Some("bob"), Some("bobs-job")), "{bob}");
    for id in &hostile {
        let j = job(*id).unwrap_or_else(|| panic!("hostile job {id} not stored: {doc}"));
        assert_eq!(j["user"], "alice", "{j}");
        for key in ["name", "submit_line", "work_dir"] {
            let text = j[key].as_str().unwrap_or_default();
            assert!(!text.chars().any(|c| c.is_control() && c != '\t'), "job {id} {key} {text:?}");
        }
    }
    let name = |id: u64| job(id).unwrap()["name"].as_str().unwrap_or_default().to_string();
    assert_eq!(name(hostile[2]), "we|ird\u{fffd}na\u{fffd}me");
    // The forged record stayed inside the forger's own submit line.
    let submit = job(hostile[0]).unwrap()["submit_line"].as_str().unwrap_or_default().to_string();
    assert!(submit.contains(&format!("\u{fffd}{bobs}\u{fffd}{bobs}\u{fffd}")), "{submit:?}");
    // Every stored job is one of ours or older; none has bob's id with another owner.
    assert_eq!(jobs.iter().filter(|j| j["job"]["id"] == bobs).count(), 1);
    let _ = std::fs::remove_dir_all(&workdir);
}
