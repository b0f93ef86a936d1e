//! Per-process readings kept between samples and refreshed on a budget.
//!
//! Why: a step's cgroup counts CPU time and page faults for all its processes (`cgroup_stat`),
//! but not I/O, per-process RSS, threads or program names. Reading those for every process on
//! every sample costs ~10 µs a process. So the scraper keeps each live process's last reading
//! here and, per sample, reads (1) every process it has not seen yet (new programs are named at
//! once), (2) every process whose CPU time the cgroup does not count (`must`), and (3) at most
//! `budget` further processes, round-robin by pid, so each reading is at most
//! ⌈n / budget⌉ samples old. Processes that left are dropped at once: sums cover live processes.

use super::procfs::{ProcRoot, ProcessReading};
use std::collections::HashMap;

#[derive(Debug)]
struct Entry {
    reading: ProcessReading,
    /// Generation (sample) in which the process was last listed.
    seen: u64,
    /// Generation in which it was last read.
    read: u64,
}

/// What one refresh did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshCount {
    /// Processes read for the first time.
    pub new: usize,
    /// Known processes read again (`must` ones and the round-robin share).
    pub reread: usize,
    /// Processes that had gone when read, or were no longer listed.
    pub gone: usize,
}

/// Last readings of the processes of the sampled steps.
#[derive(Debug, Default)]
pub struct ProcessCache {
    entries: HashMap<u32, Entry>,
    generation: u64,
    /// Round-robin position: the next pid at or above this is re-read first.
    cursor: u32,
}

impl ProcessCache {
    /// An empty cache.
    pub fn new() -> Self {
        ProcessCache::default()
    }

    /// Brings the cache in line with `live`: (pid, must be read now), sorted by pid, no
    /// duplicates. `budget` bounds the round-robin re-reads; `with_io` also reads `/proc/<pid>/io`.
    pub fn refresh(
        &mut self,
        proc_root: &mut ProcRoot,
        live: &[(u32, bool)],
        budget: usize,
        with_io: bool,
    ) -> RefreshCount {
        self.generation += 1;
        let generation = self.generation;
        let mut count = RefreshCount::default();
        for &(pid, must) in live {
            match self.entries.get_mut(&pid) {
                Some(entry) => {
                    entry.seen = generation;
                    if must {
                        if proc_root.read_process_into(pid, with_io, &mut entry.reading) {
                            entry.read = generation;
                            count.reread += 1;
                        } else {
                            entry.seen = 0; // gone: dropped below
                        }
                    }
                }
                None => {
                    let mut reading = ProcessReading::default();
                    if proc_root.read_process_into(pid, with_io, &mut reading) {
                        self.entries.insert(pid, Entry { reading, seen: generation, read: generation });
                        count.new += 1;
                    } else {
                        count.gone += 1;
                    }
                }
            }
        }
        if budget > 0 && !live.is_empty() {
            let start = live.partition_point(|&(pid, _)| pid < self.cursor);
            let mut spent = 0;
            for i in 0..live.len() {
                let pid = live[(start + i) % live.len()].0;
                let Some(entry) = self.entries.get_mut(&pid) else { continue };
                if entry.read == generation || entry.seen != generation {
                    continue;
                }
                if proc_root.read_process_into(pid, with_io, &mut entry.reading) {
                    entry.read = generation;
                    count.reread += 1;
                } else {
                    entry.seen = 0;
                }
                spent += 1;
                self.cursor = pid.wrapping_add(1);
                if spent == budget {
                    break;
                }
            }
        }
        let before = self.entries.len();
        self.entries.retain(|_, e| e.seen == generation);
        count.gone += before - self.entries.len();
        count
    }

    /// The last reading of a live process.
    pub fn get(&self, pid: u32) -> Option<&ProcessReading> {
        self.entries.get(&pid).map(|e| &e.reading)
    }

    /// Every live process's last reading, in no particular order.
    pub fn readings(&self) -> impl Iterator<Item = &ProcessReading> {
        self.entries.values().map(|e| &e.reading)
    }

    /// Live processes known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no process is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A proc tree in a temporary directory whose stat files the test rewrites.
    struct FakeProc {
        dir: PathBuf,
    }

    impl FakeProc {
        fn new(name: &str) -> FakeProc {
            let dir = std::env::temp_dir().join(format!("tw-process-cache-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            FakeProc { dir }
        }

        fn set(&self, pid: u32, comm: &str, utime: u64) {
            let d = self.dir.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let stat = format!("{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0 77 0 10 0");
            std::fs::write(d.join("stat"), stat).unwrap();
            std::fs::write(d.join("io"), format!("rchar: {}\nwchar: 0\n", utime * 10)).unwrap();
        }

        fn remove(&self, pid: u32) {
            std::fs::remove_dir_all(self.dir.join(pid.to_string())).unwrap();
        }

        fn root(&self) -> ProcRoot {
            ProcRoot::with_units(Path::new(&self.dir), 100, 4)
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn utimes(cache: &ProcessCache, pids: &[u32]) -> Vec<u64> {
        pids.iter().map(|p| cache.get(*p).map_or(0, |r| r.utime_ticks)).collect()
    }

    #[test]
    fn new_processes_are_read_at_once_and_known_ones_round_robin_within_the_budget() {
        let fake = FakeProc::new("rr");
        let pids = [10, 11, 12, 13, 14];
        for &p in &pids {
            fake.set(p, "app", 1);
        }
        let mut root = fake.root();
        let mut cache = ProcessCache::new();
        let live: Vec<(u32, bool)> = pids.iter().map(|&p| (p, false)).collect();
        let first = cache.refresh(&mut root, &live, 2, true);
        assert_eq!(first, RefreshCount { new: 5, reread: 0, gone: 0 });
        assert_eq!(cache.get(12).map(|r| r.read_bytes), Some(10));
        for &p in &pids {
            fake.set(p, "app", 2);
        }
        // Budget 2: pids 10, 11 now; 12, 13 next; then 14 and (wrapping) 10.
        assert_eq!(cache.refresh(&mut root, &live, 2, true).reread, 2);
        assert_eq!(utimes(&cache, &pids), [2, 2, 1, 1, 1]);
        cache.refresh(&mut root, &live, 2, true);
        assert_eq!(utimes(&cache, &pids), [2, 2, 2, 2, 1]);
        for &p in &pids {
            fake.set(p, "app", 3);
        }
        cache.refresh(&mut root, &live, 2, true);
        assert_eq!(utimes(&cache, &pids), [3, 2, 2, 2, 3]);
    }

    #[test]
    fn processes_that_must_be_read_are_read_every_time_beyond_the_budget() {
        let fake = FakeProc::new("must");
        for p in [1, 2, 3] {
            fake.set(p, "app", 5);
        }
        let mut root = fake.root();
        let mut cache = ProcessCache::new();
        let live = [(1, true), (2, true), (3, false)];
        cache.refresh(&mut root, &live, 0, false);
        for p in [1, 2, 3] {
            fake.set(p, "app", 6);
        }
        let count = cache.refresh(&mut root, &live, 0, false);
        assert_eq!(count.reread, 2);
        assert_eq!(utimes(&cache, &[1, 2, 3]), [6, 6, 5]);
    }

    #[test]
    fn processes_that_left_are_dropped_and_renamed_ones_renamed() {
        let fake = FakeProc::new("gone");
        for p in [7, 8] {
            fake.set(p, "bash", 1);
        }
        let mut root = fake.root();
        let mut cache = ProcessCache::new();
        cache.refresh(&mut root, &[(7, false), (8, false)], 5, false);
        fake.remove(7);
        fake.set(8, "python3", 1);
        // 7 still listed but gone when read; 9 listed but never existed.
        let count = cache.refresh(&mut root, &[(7, true), (8, false), (9, false)], 5, false);
        assert_eq!(count, RefreshCount { new: 0, reread: 1, gone: 2 });
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(8).map(|r| r.comm.as_str()), Some("python3"));
        // No longer listed: dropped without a read.
        assert_eq!(cache.refresh(&mut root, &[], 5, false).gone, 1);
        assert!(cache.is_empty());
    }
}
