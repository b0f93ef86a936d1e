//! The disk holding the store fills up: writes fail with a clear error, nothing committed is
//! lost, and writing resumes once space returns. Uses a small tmpfs mounted for the test
//! (root only; skipped with a message elsewhere unless TURINGWATCH_E2E=1).

use crate::util::*;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Mount {
    /// An 8 MiB tmpfs at `dir/small` (root only: without root the test is skipped, or fails
    /// under TURINGWATCH_E2E=1).
    fn small_tmpfs(dir: &std::path::Path) -> Option<Mount> {
        let mnt = dir.join("small");
        std::fs::create_dir_all(&mnt).unwrap();
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8M", "tmpfs"]).arg(&mnt).status();
        if !mounted.is_ok_and(|s| s.success()) {
            assert!(!e2e_required(), "cannot mount a tmpfs for the disk-full test (needs root)");
            eprintln!("skipping: cannot mount tmpfs");
            return None;
        }
        Some(Mount(mnt))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn store_survives_a_full_disk_and_recovers() {
    let dir = test_dir("disk_full");
    let Some(mount) = Mount::small_tmpfs(&dir) else { return };
    let mnt = mount.0.clone();
    let db = mnt.join("store.redb");

    // Some committed rounds first.
    let out = run(turingwatch().args(["debug", "store-writer", "--rounds", "50", "--db"]).arg(&db));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Fill the file system, then write until it fails: the error must say why.
    let filler = mnt.join("filler");
    let _ = run(Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())));
    let out = run(turingwatch().args(["debug", "store-writer", "--rounds", "100000", "--db"]).arg(&db));
    assert!(!out.status.success(), "writing to a full disk should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left") || err.contains("space"), "unclear error: {err}");
    assert_eq!(err.trim().lines().count(), 1, "error should be one line: {err}");
    let acknowledged = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("committed ")?.parse::<u64>().ok())
        .max()
        .unwrap_or(50);

    // Space returns: everything acknowledged is there, and writing goes on.
    std::fs::remove_file(&filler).unwrap();
    let check =
        run(turingwatch().args(["debug", "store-check", "--acknowledged", &acknowledged.to_string(), "--db"]).arg(&db));
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let more = run(turingwatch().args(["debug", "store-writer", "--rounds", "10", "--db"]).arg(&db));
    assert!(more.status.success(), "{}", String::from_utf8_lossy(&more.stderr));
    let check = run(turingwatch()
        .args(["debug", "store-check", "--acknowledged", &(acknowledged + 10).to_string(), "--db"])
        .arg(&db));
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

/// The same under one running store (as in the server): after the disk-full error the store
/// reopens itself on the next call once space returns, without a restart, and every write it
/// acknowledged is there.
#[test]
fn a_running_store_recovers_from_a_full_disk_without_a_restart() {
    use turingwatch::job::{JobId, StepId};
    use turingwatch::sample::StepSample;
    use turingwatch::store::Store;
    let dir = test_dir("disk_full_running");
    let Some(mount) = Mount::small_tmpfs(&dir) else { return };
    let mnt = mount.0.clone();
    let store = Store::open(&mnt.join("store.redb")).unwrap();
    let batch = |round: u64| -> Vec<(JobId, StepId, StepSample)> {
        (0..200u64)
            .map(|i| {
                let at = 1_000_000 + round * 3_600 + i;
                (JobId(round), StepId::BATCH, StepSample { at, cpu_user_cs: round * 7 + i, ..Default::default() })
            })
            .collect()
    };
    let mut acknowledged = Vec::new();
    for round in 1..=20 {
        store.append_samples("n1", &batch(round)).unwrap();
        acknowledged.push(round);
    }
    let filler = mnt.join("filler");
    let _ = run(Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())));
    let mut failed = false;
    for round in 21..100_000 {
        match store.append_samples("n1", &batch(round)) {
            Ok(()) => acknowledged.push(round),
            Err(err) => {
                assert!(err.is_io(), "not an I/O error: {err}");
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "writing to a full disk should fail");
    assert!(!store.healthy());
    // Still full: calls fail, nothing panics.
    assert!(store.append_samples("n1", &batch(200_000)).is_err());

    std::fs::remove_file(&filler).unwrap();
    // Space is back: the same store works again.
    store.append_samples("n1", &batch(300_000)).expect("the store should reopen itself once space returns");
    assert!(store.healthy());
    assert!(store.reopen_count() >= 1);
    for round in acknowledged.iter().copied().chain([300_000]) {
        let n: usize = store.samples_of_job(JobId(round)).unwrap().values().map(Vec::len).sum();
        assert_eq!(n, 200, "acknowledged round {round} lost");
    }
}
