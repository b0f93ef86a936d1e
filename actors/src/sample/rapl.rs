//! Node energy from RAPL (`/sys/class/powercap/intel-rapl:*`), split between the job steps of
//! the node.
//!
//! Why here: RAPL counts a whole package (and its DRAM), not a process, and since Linux 5.10
//! `energy_uj` is readable by root only, so the root node agent reads it once per sample and
//! gives each step its share: package energy by the step's share of the CPU time the steps used
//! in the interval, DRAM energy by its share of their resident memory. The shares are added to a
//! per-step cumulative figure (`StepSample::energy_mj`), a counter like CPU time: a lost sample
//! loses nothing, and a restarted scraper starts again at 0 (readers treat a drop as a restart).
//!
//! The counters wrap at `max_energy_range_uj` (every few minutes to hours): a reading below the
//! previous one is a wrap when the range is known, else the interval is skipped. Top-level zones
//! (`intel-rapl:N`, the packages; AMD's show the same way) are summed; their sub-zones are parts
//! of them (core, uncore) except `dram`, which is added. `psys` (the platform) is left out: it
//! contains the packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One counter of the powercap tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    energy_file: PathBuf,
    max_range_uj: Option<u64>,
    dram: bool,
}

/// Reads the node's RAPL counters and turns them into energy per interval.
#[derive(Debug)]
pub struct RaplMeter {
    zones: Vec<Zone>,
    last: BTreeMap<PathBuf, u64>,
}

/// Energy of one interval, microjoules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub package_uj: u64,
    pub dram_uj: u64,
}

impl RaplMeter {
    /// The meter of the tree under `root` (`/sys/class/powercap`); `None` when it has no zone
    /// whose counter this process can read (no RAPL, a VM, or not root).
    pub fn open(root: &Path) -> Option<RaplMeter> {
        let mut zones = Vec::new();
        let Ok(entries) = std::fs::read_dir(root) else { return None };
        let mut names: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for dir in names {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            // `intel-rapl:0` (a package) or `intel-rapl:0:1` (one of its parts).
            let Some(rest) = name.strip_prefix("intel-rapl:") else { continue };
            let label = read_trimmed(&dir.join("name")).unwrap_or_default();
            let sub = rest.contains(':');
            let dram = label == "dram";
            if label.starts_with("psys") || (sub && !dram) {
                continue;
            }
            let energy_file = dir.join("energy_uj");
            if read_trimmed(&energy_file).and_then(|t| t.parse::<u64>().ok()).is_none() {
                continue;
            }
            let max_range_uj = read_trimmed(&dir.join("max_energy_range_uj")).and_then(|t| t.parse().ok());
            zones.push(Zone { energy_file, max_range_uj, dram });
        }
        (!zones.is_empty()).then(|| RaplMeter { zones, last: BTreeMap::new() })
    }

    /// Energy since the previous call; `None` on the first call. A zone that cannot be read
    /// now, or went backwards with no known range, adds nothing to this interval.
    pub fn interval(&mut self) -> Option<Interval> {
        let first = self.last.is_empty();
        let mut out = Interval::default();
        for zone in &self.zones {
            let Some(now) = read_trimmed(&zone.energy_file).and_then(|t| t.parse::<u64>().ok()) else { continue };
            let Some(before) = self.last.insert(zone.energy_file.clone(), now) else { continue };
            let delta = match (now.checked_sub(before), zone.max_range_uj) {
                (Some(d), _) => d,
                (None, Some(range)) if before <= range => range - before + now,
                (None, _) => continue,
            };
            if zone.dram {
                out.dram_uj = out.dram_uj.saturating_add(delta);
            } else {
                out.package_uj = out.package_uj.saturating_add(delta);
            }
        }
        (!first).then_some(out)
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string())
}

/// Splits an interval's energy between steps by their CPU-time use (`cpu_cs`, centiseconds in
/// the interval) and resident memory (`resident_kib`); returns millijoules per step, in order.
/// Energy with no step to carry it (no CPU used, no memory) goes to none.
pub fn split(interval: Interval, steps: &[(u64, u64)]) -> Vec<u64> {
    let cpu_total: u128 = steps.iter().map(|(c, _)| u128::from(*c)).sum();
    let mem_total: u128 = steps.iter().map(|(_, m)| u128::from(*m)).sum();
    steps
        .iter()
        .map(|&(cpu, mem)| {
            let share = |part: u64, of: u128, uj: u64| {
                (u128::from(uj) * u128::from(part)).checked_div(of).map_or(0, |v| (v / 1000) as u64)
            };
            share(cpu, cpu_total, interval.package_uj).saturating_add(share(mem, mem_total, interval.dram_uj))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/powercap")
    }

    /// A copy of the recorded tree whose counters the test can move.
    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tw-rapl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for entry in walk(&fixture()) {
            let rel = entry.strip_prefix(fixture()).unwrap();
            let to = dir.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &to).unwrap();
        }
        dir
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    fn set(root: &Path, zone: &str, uj: u64) {
        std::fs::write(root.join(zone).join("energy_uj"), format!("{uj}\n")).unwrap();
    }

    #[test]
    fn packages_and_dram_are_summed_parts_and_psys_are_not_and_wraps_are_unwrapped() {
        let root = tree("wrap");
        let mut meter = RaplMeter::open(&root).expect("the recorded tree has zones");
        // intel-rapl:0 (package-0), intel-rapl:0:2 (dram); intel-rapl:0:0 (core) and
        // intel-rapl:1 (psys) are left out.
        assert_eq!(meter.zones.len(), 2, "{:?}", meter.zones);
        assert_eq!(meter.interval(), None, "the first reading only sets the baseline");
        let (pkg, dram) = (7_435_214_361u64, 1_021_880_655u64);
        set(&root, "intel-rapl:0", pkg + 30_000_000);
        set(&root, "intel-rapl:0:2", dram + 2_000_000);
        set(&root, "intel-rapl:0:0", 1);
        set(&root, "intel-rapl:1", 1);
        assert_eq!(meter.interval(), Some(Interval { package_uj: 30_000_000, dram_uj: 2_000_000 }));
        // The package counter wraps at max_energy_range_uj 262143328850.
        set(&root, "intel-rapl:0", 262_143_328_850 - 1_000_000);
        meter.interval();
        set(&root, "intel-rapl:0", 4_000_000);
        assert_eq!(meter.interval().unwrap().package_uj, 5_000_000);
        // An unreadable counter adds nothing (and does not panic).
        std::fs::remove_file(root.join("intel-rapl:0:2/energy_uj")).unwrap();
        assert_eq!(meter.interval().unwrap().dram_uj, 0);
    }

    #[test]
    fn a_tree_without_readable_counters_is_no_meter() {
        let root = tree("none");
        for zone in ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:2", "intel-rapl:1"] {
            std::fs::remove_file(root.join(zone).join("energy_uj")).unwrap();
        }
        assert!(RaplMeter::open(&root).is_none());
        assert!(RaplMeter::open(Path::new("/nonexistent/powercap")).is_none());
    }

    #[test]
    fn energy_is_split_by_cpu_time_and_resident_memory() {
        let interval = Interval { package_uj: 30_000_000, dram_uj: 3_000_000 };
        // Step a used 3/4 of the steps' CPU and a third of their memory.
        let got = split(interval, &[(300, 100), (100, 200)]);
        assert_eq!(got, [22_500 + 1_000, 7_500 + 2_000]);
        assert_eq!(split(interval, &[(0, 0)]), [0]);
        assert_eq!(split(Interval { package_uj: u64::MAX, dram_uj: u64::MAX }, &[(u64::MAX, u64::MAX)]).len(), 1);
    }
}
