//! The sample records themselves.

use serde::{Deserialize, Serialize};

/// One reading of one job step on one node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepSample {
    /// Unix time of the reading, seconds.
    pub at: u64,
    /// CPU time in user mode, cumulative, including waited-for children, in centiseconds.
    pub cpu_user_cs: u64,
    /// CPU time in kernel mode, cumulative, including waited-for children, in centiseconds.
    pub cpu_sys_cs: u64,
    /// Resident memory summed over the step's processes, KiB.
    pub rss_kib: u64,
    /// cgroup memory in use (`memory.current` / `memory.usage_in_bytes`), KiB; 0 when absent.
    pub mem_current_kib: u64,
    /// cgroup memory high-water mark (`memory.peak` / `memory.max_usage_in_bytes`), KiB; 0 when absent.
    pub mem_peak_kib: u64,
    /// Minor page faults, cumulative.
    pub minor_faults: u64,
    /// Major page faults, cumulative.
    pub major_faults: u64,
    /// Bytes read (`rchar`), cumulative, KiB.
    pub read_kib: u64,
    /// Bytes written (`wchar`), cumulative, KiB.
    pub write_kib: u64,
    /// Threads over all processes of the step.
    pub threads: u32,
    /// Processes of the step.
    pub processes: u32,
    /// CPUs in the step's cpuset; 0 when unknown.
    pub cpus: u32,
    /// Resident memory as the step's cgroup counts it (anonymous, mapped file and shared
    /// memory, from `memory.stat`), KiB; where the cgroup has no `memory.stat`, the process
    /// RSS sum. 0 in samples of format 1, which did not carry it: readers then use `rss_kib`.
    pub resident_kib: u64,
    /// Page cache charged to the step's cgroup and not mapped by it, KiB; 0 when unknown.
    pub cache_kib: u64,
    /// Energy the node's RAPL counters measured, given to this step by its share of CPU time
    /// and resident memory, cumulative since the scraper first saw the step, millijoules; 0
    /// where nothing measured it (`sample::rapl`). A drop means the scraper restarted.
    pub energy_mj: u64,
}

impl StepSample {
    /// Resident memory, KiB: the cgroup's figure, or the process RSS sum for samples without it.
    pub fn resident(&self) -> u64 {
        if self.resident_kib > 0 {
            self.resident_kib
        } else {
            self.rss_kib
        }
    }
}

/// One reading of one GPU used (or allocated) by a job step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuReading {
    /// Unix time of the reading, seconds.
    pub at: u64,
    /// Device index on the node.
    pub index: u32,
    /// Utilisation, percent.
    pub util_pct: u32,
    /// Device memory in use, MiB.
    pub mem_used_mib: u64,
    /// SM clock, MHz.
    pub sm_clock_mhz: u32,
    /// Power draw, milliwatts (NVML's unit; the original stored it 10× off).
    pub power_mw: u32,
    /// Temperature, °C.
    pub temp_c: u32,
    /// NVML clock throttle reasons bit mask.
    pub throttle_mask: u64,
    /// Whether any process of the step had the device open in this reading.
    pub in_use_by_step: bool,
    /// NVML's total-energy counter of the device (`nvmlDeviceGetTotalEnergyConsumption`),
    /// millijoules since the driver was loaded; 0 where the device has none (before Volta) or
    /// the reading predates it (wire format 2, store blocks without the field). A drop means
    /// the driver was reloaded.
    pub energy_mj: u64,
}
