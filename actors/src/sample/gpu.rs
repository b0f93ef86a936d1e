//! GPU readings: NVML behind a trait, and which job step uses which device.
//!
//! The scraper asks a [`GpuSource`] for every device's figures and the pids that have it open,
//! then attributes devices to steps by pid. A step is also given readings for the GPUs it was
//! allocated (from `SLURM_STEP_GPUS`/`SLURM_JOB_GPUS`/`CUDA_VISIBLE_DEVICES` of its processes)
//! with `in_use_by_step = false` when none of its processes opened them: "allocated but never
//! used" must be visible. Without the NVML library the scraper logs one clear line and carries
//! on with no GPU data. NVML calls block; the scraper is a plain thread, not an async executor.

use super::GpuReading;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One device as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceReading {
    pub index: u32,
    pub util_pct: u32,
    pub mem_used_mib: u64,
    pub sm_clock_mhz: u32,
    pub power_mw: u32,
    pub temp_c: u32,
    pub throttle_mask: u64,
    /// Processes with a compute context on the device.
    pub pids: Vec<u32>,
    /// Total-energy counter, millijoules since the driver was loaded; 0 where the device has
    /// none. Recordings made before it was read lack it (it reads as 0).
    #[serde(default)]
    pub energy_mj: u64,
}

/// Why GPU readings failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    #[error("NVML: {0}")]
    Nvml(#[from] nvml_wrapper::error::NvmlError),
    #[error("cannot read GPU recording {path}: {reason}")]
    Recording { path: String, reason: String },
}

/// Where device readings come from.
pub trait GpuSource: Send {
    /// Every device now.
    fn read(&mut self) -> Result<Vec<DeviceReading>, GpuError>;
}

/// NVIDIA's NVML, loaded at run time.
pub struct NvmlSource {
    nvml: nvml_wrapper::Nvml,
}

impl NvmlSource {
    /// Loads NVML (from `library`, or the loader's path when empty). `None`, after one warn line,
    /// when the library or driver is absent: GPU data is then simply missing.
    pub fn open(library: &str) -> Option<NvmlSource> {
        let mut builder = nvml_wrapper::Nvml::builder();
        if !library.is_empty() {
            builder.lib_path(std::ffi::OsStr::new(library));
        }
        match builder.init() {
            Ok(nvml) => Some(NvmlSource { nvml }),
            Err(err) => {
                tracing::warn!(error = %err, library, "NVML not available: no GPU readings, everything else is sampled");
                None
            }
        }
    }
}

impl GpuSource for NvmlSource {
    fn read(&mut self) -> Result<Vec<DeviceReading>, GpuError> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let mut out = Vec::new();
        for index in 0..self.nvml.device_count()? {
            let device = self.nvml.device_by_index(index)?;
            out.push(DeviceReading {
                index,
                util_pct: device.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                mem_used_mib: device.memory_info().map(|m| m.used / (1024 * 1024)).unwrap_or(0),
                sm_clock_mhz: device.clock_info(Clock::SM).unwrap_or(0),
                power_mw: device.power_usage().unwrap_or(0),
                temp_c: device.temperature(TemperatureSensor::Gpu).unwrap_or(0),
                throttle_mask: device.current_throttle_reasons().map(|r| r.bits()).unwrap_or(0),
                pids: device
                    .running_compute_processes()
                    .map(|ps| ps.iter().map(|p| p.pid).collect())
                    .unwrap_or_default(),
                // Volta and later; older devices answer NotSupported, which reads as "no counter".
                energy_mj: device.total_energy_consumption().unwrap_or(0),
            });
        }
        Ok(out)
    }
}

/// Readings replayed from a recording (`tests/fixtures/nvml/*.json`: a JSON array of samples,
/// each an array of devices), cycling when exhausted. For tests and for admins checking the
/// attribution logic on a machine without GPUs.
pub struct RecordedSource {
    samples: Vec<Vec<DeviceReading>>,
    next: usize,
}

impl RecordedSource {
    /// Loads a recording.
    pub fn load(path: &Path) -> Result<RecordedSource, GpuError> {
        let err = |reason: String| GpuError::Recording { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let samples: Vec<Vec<DeviceReading>> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if samples.is_empty() {
            return Err(err("no samples".into()));
        }
        Ok(RecordedSource { samples, next: 0 })
    }
}

impl GpuSource for RecordedSource {
    fn read(&mut self) -> Result<Vec<DeviceReading>, GpuError> {
        let sample = self.samples[self.next % self.samples.len()].clone();
        self.next += 1;
        Ok(sample)
    }
}

/// Parses a GPU index list as SLURM sets it (`0,2`, `0-1`); `NoDevFiles` and junk give nothing.
pub fn parse_gpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.trim().split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(1024)));
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The GPUs allocated to a step, from one of its processes' environment.
pub fn allocated_from_environ(environ: &[(String, String)]) -> Vec<u32> {
    ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"]
        .iter()
        .find_map(|name| environ.iter().find(|(k, _)| k == name).map(|(_, v)| parse_gpu_list(v)))
        .unwrap_or_default()
}

/// The readings that belong to one step: devices any of its pids use, plus devices allocated to
/// it (marked unused when none of its pids has them open). `step_pids` must be sorted.
pub fn attribute(devices: &[DeviceReading], step_pids: &[u32], allocated: &[u32], at: u64) -> Vec<GpuReading> {
    devices
        .iter()
        .filter_map(|d| {
            let used = d.pids.iter().any(|p| step_pids.binary_search(p).is_ok());
            (used || allocated.contains(&d.index)).then_some(GpuReading {
                at,
                index: d.index,
                util_pct: d.util_pct,
                mem_used_mib: d.mem_used_mib,
                sm_clock_mhz: d.sm_clock_mhz,
                power_mw: d.power_mw,
                temp_c: d.temp_c,
                throttle_mask: d.throttle_mask,
                in_use_by_step: used,
                energy_mj: d.energy_mj,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> RecordedSource {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nvml/two_gpus.json");
        RecordedSource::load(&path).unwrap()
    }

    #[test]
    fn devices_are_attributed_by_pid_and_allocated_idle_gpus_stay_visible() {
        let devices = recording().read().unwrap();
        // two_gpus.json sample 0: GPU 0 used by pid 5120 at 87 %, GPU 1 open by nobody.
        let step_pids = [5100, 5120, 5121];
        let readings = attribute(&devices, &step_pids, &[0, 1], 1_700_000_000);
        assert_eq!(readings.len(), 2);
        assert!(readings[0].in_use_by_step && readings[0].util_pct == 87 && readings[0].power_mw == 251_000);
        assert!(!readings[1].in_use_by_step, "GPU 1 was allocated but never opened");
        // A pid of another job, with nothing allocated, gets no readings.
        assert!(attribute(&devices, &[9999], &[], 0).is_empty());
        // The recording moves on and cycles: sample 1 has GPU 0 used by pid 7000 only.
        let mut source = recording();
        let _ = source.read().unwrap();
        let second = source.read().unwrap();
        assert_eq!(second[0].pids, [7000]);
        assert_eq!(source.read().unwrap(), devices);
    }

    #[test]
    fn gpu_lists_from_slurm_are_expanded() {
        assert_eq!(parse_gpu_list("0,2"), [0, 2]);
        assert_eq!(parse_gpu_list("1-3"), [1, 2, 3]);
        assert!(parse_gpu_list("NoDevFiles").is_empty());
        let env = vec![
            ("CUDA_VISIBLE_DEVICES".to_string(), "0".to_string()),
            ("SLURM_STEP_GPUS".to_string(), "1".to_string()),
        ];
        assert_eq!(allocated_from_environ(&env), [1]);
    }

    #[test]
    fn a_missing_library_gives_none_not_a_crash() {
        assert!(NvmlSource::open("/nonexistent/libnvidia-ml.so.1").is_none());
    }
}
