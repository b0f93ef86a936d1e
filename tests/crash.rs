//! Crash consistency of the store: a writer killed with SIGKILL at any moment leaves a file that
//! opens, with every write it had acknowledged (printed) present.

use crate::util::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn store_keeps_every_acknowledged_write_across_kill_9() {
    let dir = test_dir("store_kill_9");
    let db = dir.join("crash.redb");
    let mut acknowledged = 0u64;
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..12 {
        let mut child = turingwatch()
            .args(["debug", "store-writer", "--db"])
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // Kill after a pseudo-random 50–400 ms: somewhere mid-commit, eventually.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let run_for = Duration::from_millis(50 + rng_state % 350);
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("committed ").and_then(|n| n.parse().ok()) {
                    last = n;
                }
            }
            last
        });
        let start = Instant::now();
        while start.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL: no destructors, no flush, no chance to finish the transaction.
        child.kill().expect("kill");
        child.wait().expect("wait");
        let last = reader.join().expect("reader");
        acknowledged = acknowledged.max(last);
        let check = run(turingwatch()
            .args(["debug", "store-check", "--acknowledged", &acknowledged.to_string(), "--db"])
            .arg(&db));
        assert!(
            check.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    assert!(acknowledged > 0, "the writer never acknowledged a write");
}
