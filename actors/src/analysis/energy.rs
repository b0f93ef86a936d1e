//! A job's energy and carbon: measured where the node agent's RAPL counters measured its steps
//! (`sample::rapl`), estimated elsewhere with the Green Algorithms model, and how much of it
//! went to what was allocated but not used.
//!
//! Estimate (Lannelongue et al., Green Algorithms): energy = runtime × (cores × watts per core ×
//! core utilisation + allocated memory in GB × watts per GB + GPUs × watts per GPU × GPU
//! utilisation) × PUE, with the site's factors from `[energy]` (per partition where set).
//! Measured: the energy RAPL gave the job's steps (CPU package by CPU-time share, DRAM by memory
//! share) × PUE; GPUs are then still estimated (`source = "mixed"`). Every figure says which.
//!
//! Waste is the energy the unused part of the allocation stands for, at the same factors as if it
//! were used: idle allocated cores (cores × watts per core × (1 − utilisation)), memory asked for
//! and not used, GPUs left idle. Idle cores draw less than busy ones, so the waste of a mostly
//! idle job can exceed what it drew: it is what the allocation took from others. A measured job's CPU
//! waste is its measured CPU energy × (1 − utilisation), a measured GPU's its measured energy ×
//! (1 − its utilisation). A running job counts no waste, as it
//! counts no wasted core-hours: its accounting CPU time is not known yet.

use super::efficiency::Efficiency;
use super::series::{SeriesStats, MAX_GPU_WATTS};
use crate::job::JobRecord;
use serde::Serialize;
use turingwatch_config::EnergyConfig;

/// Where an energy figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// RAPL counters measured the CPUs and memory, and NVML's energy counters every GPU (or
    /// there are none).
    Measured,
    /// Some parts measured, the others estimated (e.g. RAPL measured the CPUs, a GPU has no
    /// counter; or no RAPL, GPUs measured).
    Mixed,
    /// The Green Algorithms estimate from `[energy]`.
    Estimated,
}

/// One job's energy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Energy {
    pub kwh: f64,
    pub co2e_g: f64,
    /// Allocated but unused.
    pub wasted_kwh: f64,
    pub wasted_co2e_g: f64,
    pub source: EnergySource,
}

/// A node draws at most this much (a bound on forged or corrupt measurements), watts.
const MAX_NODE_WATTS: f64 = 20_000.0;

/// The job's energy; `None` for a job that never ran.
pub fn job_energy(
    job: &JobRecord,
    eff: &Efficiency,
    stats: Option<&SeriesStats>,
    config: &EnergyConfig,
) -> Option<Energy> {
    if job.elapsed_secs == 0 {
        return None;
    }
    let f = config.partitions.get(&job.partition);
    let watts_per_core = f.and_then(|f| f.watts_per_core).unwrap_or(config.watts_per_core);
    let watts_per_gb = f.and_then(|f| f.watts_per_gb).unwrap_or(config.watts_per_gb);
    let watts_per_gpu = f.and_then(|f| f.watts_per_gpu).unwrap_or(config.watts_per_gpu);
    let pue = f.and_then(|f| f.pue).unwrap_or(config.pue);
    let hours = job.elapsed_secs as f64 / 3_600.0;
    let running = job.is_running();
    // Unknown utilisation (no figure yet) counts as busy: nothing is called waste without data.
    let cpu_util = eff.cpu_frac.map_or(1.0, |u| u.clamp(0.0, 1.0));
    let cores = f64::from(job.alloc_cpus);
    let mem_gb = job.req_mem_bytes.unwrap_or(0) as f64 / 1e9;
    let unused_gb = match (job.req_mem_bytes, eff.mem_used_bytes) {
        (Some(req), Some(used)) if !running => req.saturating_sub(used) as f64 / 1e9,
        _ => 0.0,
    };
    let gpus = job.alloc_gpus() as f64;
    let kwh = |watts: f64| watts * hours * pue / 1_000.0;
    let read = stats.map_or(&[][..], |s| s.gpus.as_slice());
    // GPUs whose NVML energy counter measured them, and the rest, estimated at their utilisation.
    let util = |g: &super::series::GpuUse| (g.mean_util_pct / 100.0).clamp(0.0, 1.0);
    let measured_gpus: Vec<(f64, f64)> = read
        .iter()
        .filter_map(|g| {
            g.energy_j.map(|j| (j.clamp(0.0, MAX_GPU_WATTS * job.elapsed_secs as f64) / 3.6e6 * pue, util(g)))
        })
        .collect();
    let unmeasured: Vec<f64> = read.iter().filter(|g| g.energy_j.is_none()).map(util).collect();
    let all: Vec<f64> = read.iter().map(util).collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    // Unread GPUs take the utilisation of the unmeasured ones read, else of all read, else busy.
    let gpu_util = mean(&unmeasured).or_else(|| mean(&all)).unwrap_or(1.0);
    let estimated_gpus = (gpus - measured_gpus.len() as f64).max(0.0);
    let gpu_kwh = kwh(estimated_gpus * watts_per_gpu * gpu_util) + measured_gpus.iter().map(|(k, _)| k).sum::<f64>();
    let gpu_waste = kwh(estimated_gpus * watts_per_gpu * (1.0 - gpu_util))
        + measured_gpus.iter().map(|(k, u)| k * (1.0 - u)).sum::<f64>();
    let mem_waste = kwh(unused_gb * watts_per_gb);
    let measured_j: f64 = stats
        .map_or(0.0, |s| s.nodes.iter().map(|n| n.energy_j.clamp(0.0, MAX_NODE_WATTS * job.elapsed_secs as f64)).sum());
    let cpu_measured = measured_j > 0.0;
    let (cpu_mem_kwh, cpu_waste) = if cpu_measured {
        let measured = measured_j / 3.6e6 * pue;
        (measured, measured * (1.0 - cpu_util))
    } else {
        let estimate = kwh(cores * watts_per_core * cpu_util + mem_gb * watts_per_gb);
        (estimate, kwh(cores * watts_per_core * (1.0 - cpu_util)))
    };
    let source = match (cpu_measured, measured_gpus.is_empty(), estimated_gpus > 0.0) {
        (true, _, false) => EnergySource::Measured,
        (false, true, _) => EnergySource::Estimated,
        _ => EnergySource::Mixed,
    };
    let total = cpu_mem_kwh + gpu_kwh;
    let wasted = if running { 0.0 } else { cpu_waste + mem_waste + gpu_waste };
    let grams = |k: f64| k * config.grams_co2e_per_kwh;
    Some(Energy { kwh: total, co2e_g: grams(total), wasted_kwh: wasted, wasted_co2e_g: grams(wasted), source })
}

/// The factors the figures use, named: `12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4,
/// 300 g CO2e/kWh`, and the partitions with factors of their own.
pub fn factors_text(config: &EnergyConfig) -> String {
    let mut out = format!(
        "{} W/core, {} W/GB, {} W/GPU, PUE {}, {} g CO2e/kWh",
        config.watts_per_core, config.watts_per_gb, config.watts_per_gpu, config.pue, config.grams_co2e_per_kwh
    );
    if !config.partitions.is_empty() {
        let names: Vec<&str> = config.partitions.keys().map(String::as_str).collect();
        out.push_str(&format!("; partitions {} have their own", names.join(", ")));
    }
    out
}

/// One job's energy in one line: `42 Wh (13 g CO2e), of which 36 Wh (11 g CO2e) wasted, estimated`.
pub fn job_energy_text(e: &Energy) -> String {
    let source = match e.source {
        EnergySource::Measured => "measured",
        EnergySource::Mixed => "partly measured",
        EnergySource::Estimated => "estimated",
    };
    format!(
        "{} ({}), of which {} ({}) wasted, {source}",
        energy_text(e.kwh),
        co2e_text(e.co2e_g),
        energy_text(e.wasted_kwh),
        co2e_text(e.wasted_co2e_g)
    )
}

/// Energy as people read it: `1.23 kWh` / `456 Wh` / `0.14 Wh` (a short job's figure is not
/// rounded away to 0).
pub fn energy_text(kwh: f64) -> String {
    if kwh >= 1.0 {
        format!("{kwh:.2} kWh")
    } else if kwh >= 0.001 {
        format!("{:.0} Wh", kwh * 1_000.0)
    } else if kwh > 0.0 && kwh < 0.000_005 {
        "< 0.01 Wh".to_string()
    } else {
        format!("{:.2} Wh", kwh * 1_000.0)
    }
}

/// Carbon as people read it: `850 g` / `1.2 kg CO2e` / `0.04 g CO2e`.
pub fn co2e_text(grams: f64) -> String {
    if grams >= 1_000.0 {
        format!("{:.1} kg CO2e", grams / 1_000.0)
    } else if grams >= 1.0 {
        format!("{grams:.0} g CO2e")
    } else if grams > 0.0 && grams < 0.005 {
        "< 0.01 g CO2e".to_string()
    } else {
        format!("{grams:.2} g CO2e")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::efficiency::efficiency;
    use crate::analysis::series::{series_stats, tests::params};
    use crate::job::StepId;
    use crate::store::tests_support::job;
    use crate::store::SeriesKey;
    use std::collections::BTreeMap;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    /// 4 cores for 2 hours at 25 %, 8 GB asked, 2 GB used, on partition `part`.
    fn quarter_busy(part: &str) -> JobRecord {
        let mut j = job(1, "alice", 0, Some(7_200));
        (j.alloc_cpus, j.partition) = (4, part.into());
        j.usage.total_cpu_ms = 7_200_000 * 4 / 4;
        j.req_mem_bytes = Some(8_000_000_000);
        j.usage.max_rss_bytes = Some(2_000_000_000);
        j
    }

    #[test]
    fn the_estimate_is_green_algorithms_by_hand() {
        let j = quarter_busy("cpu");
        let cfg = EnergyConfig::default(); // 12 W/core, 0.3725 W/GB, PUE 1.4, 300 g/kWh
        let e = job_energy(&j, &efficiency(&j), None, &cfg).unwrap();
        // 2 h × (4 × 12 × 0.25 + 8 × 0.3725) W × 1.4 = 2 × (12 + 2.98) × 1.4 = 41.944 Wh.
        assert!(close(e.kwh, 0.041_944), "{e:?}");
        assert!(close(e.co2e_g, 0.041_944 * 300.0));
        // Waste: idle cores 4 × 12 × 0.75 = 36 W, unused 6 GB × 0.3725 = 2.235 W; × 2 h × 1.4.
        assert!(close(e.wasted_kwh, (36.0 + 2.235) * 2.0 * 1.4 / 1_000.0), "{e:?}");
        assert_eq!(e.source, EnergySource::Estimated);
    }

    #[test]
    fn partition_factors_override_the_sites_and_gpus_count_by_their_use() {
        let mut cfg = EnergyConfig::default();
        cfg.partitions.insert(
            "gpu".into(),
            turingwatch_config::EnergyFactors { watts_per_core: Some(20.0), pue: Some(1.1), ..Default::default() },
        );
        let mut j = quarter_busy("gpu");
        j.alloc_tres = crate::job::Tres(vec![("cpu".into(), 4), ("gres/gpu".into(), 1)]);
        let mut gpu = BTreeMap::new();
        let readings: Vec<crate::sample::GpuReading> = (0..10)
            .map(|i| crate::sample::GpuReading { at: i * 20, index: 0, util_pct: 40, ..Default::default() })
            .collect();
        gpu.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, readings);
        let stats = series_stats(&BTreeMap::new(), &gpu, 7_200, &params());
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        // 2 h × (4 × 20 × 0.25 + 2.98 + 300 × 0.4) × 1.1.
        assert!(close(e.kwh, 2.0 * (20.0 + 2.98 + 120.0) * 1.1 / 1_000.0), "{e:?}");
    }

    #[test]
    fn measured_energy_wins_and_forged_figures_are_bounded() {
        let j = quarter_busy("cpu");
        let cfg = EnergyConfig::default();
        let mut series = crate::analysis::series::tests::burn(3, 1.0, 10);
        for (i, s) in series.iter_mut().enumerate() {
            s.energy_mj = 36_000_000 * (i as u64 + 1); // 36 kJ per sample: 108 kJ = 30 Wh
        }
        let mut samples = BTreeMap::new();
        samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, series.clone());
        let stats = series_stats(&samples, &BTreeMap::new(), 7_200, &params());
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        assert_eq!(e.source, EnergySource::Measured);
        assert!(close(e.kwh, 0.030 * 1.4), "{e:?}");
        series.last_mut().unwrap().energy_mj = u64::MAX;
        samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, series);
        let stats = series_stats(&samples, &BTreeMap::new(), 7_200, &params());
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        assert!(e.kwh <= 20.0 * 2.0 * 1.4 + 1e-9 && e.kwh.is_finite(), "{e:?}");
    }

    #[test]
    fn a_running_job_has_energy_but_no_waste_and_a_job_that_never_ran_none() {
        let mut j = quarter_busy("cpu");
        (j.end_at, j.state) = (None, "RUNNING".into());
        let e = job_energy(&j, &efficiency(&j), None, &EnergyConfig::default()).unwrap();
        assert!(e.kwh > 0.0 && e.wasted_kwh == 0.0, "{e:?}");
        j.elapsed_secs = 0;
        assert_eq!(job_energy(&j, &efficiency(&j), None, &EnergyConfig::default()), None);
        assert_eq!((energy_text(0.0419), energy_text(12.345)), ("42 Wh".to_string(), "12.35 kWh".to_string()));
        assert_eq!((co2e_text(850.4), co2e_text(1_234.0)), ("850 g CO2e".to_string(), "1.2 kg CO2e".to_string()));
        assert_eq!((energy_text(0.000_14), co2e_text(0.042)), ("0.14 Wh".to_string(), "0.04 g CO2e".to_string()));
        assert_eq!(
            (energy_text(4e-7), co2e_text(0.001), energy_text(0.0)),
            ("< 0.01 Wh".into(), "< 0.01 g CO2e".into(), "0.00 Wh".into())
        );
        let mut cfg = EnergyConfig::default();
        assert_eq!(factors_text(&cfg), "12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4, 300 g CO2e/kWh");
        cfg.partitions.insert("gpu".into(), Default::default());
        assert!(factors_text(&cfg).ends_with("; partitions gpu have their own"));
    }

    /// The recorded NVML sweeps of `energy_counter.json` as one step's readings, allocated `gpus`.
    fn counter_readings(gpus: &[u32]) -> BTreeMap<SeriesKey, Vec<crate::sample::GpuReading>> {
        let path =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nvml/energy_counter.json");
        let mut source = crate::sample::gpu::RecordedSource::load(&path).unwrap();
        let mut readings = Vec::new();
        for i in 0..6 {
            use crate::sample::gpu::GpuSource;
            readings.extend(crate::sample::gpu::attribute(&source.read().unwrap(), &[6100, 6200], gpus, i * 20));
        }
        let mut out = BTreeMap::new();
        out.insert(SeriesKey { job: crate::job::JobId(1), step: StepId(0), node: "g1".into() }, readings);
        out
    }

    /// 4 cores at 25 % for 100 s (the recording's span), with `gpus` GPUs.
    fn gpu_job(gpus: u64) -> JobRecord {
        let mut j = job(1, "alice", 0, Some(100));
        j.usage.total_cpu_ms = 100_000;
        j.req_mem_bytes = Some(8_000_000_000);
        j.usage.max_rss_bytes = Some(2_000_000_000);
        j.alloc_tres = crate::job::Tres(vec![("cpu".into(), 4), ("gres/gpu".into(), gpus)]);
        j
    }

    #[test]
    fn nvml_energy_counters_measure_gpus_through_a_driver_reload_and_a_forged_leap() {
        let cfg = EnergyConfig::default(); // 12 W/core, 0.3725 W/GB, PUE 1.4, 300 g/kWh
        let j = gpu_job(2);
        let stats = series_stats(&BTreeMap::new(), &counter_readings(&[0, 1]), 100, &params());
        // By hand (see the fixture's README): GPU 0 28 kJ through the reload, GPU 1 34 kJ with
        // its leap bounded to 1.5 kW × 20 s.
        let joules: Vec<Option<f64>> = stats.gpus.iter().map(|g| g.energy_j).collect();
        assert_eq!(joules, [Some(28_000.0), Some(34_000.0)]);
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        let cpu = 100.0 / 3_600.0 * (4.0 * 12.0 * 0.25 + 8.0 * 0.3725) * 1.4 / 1_000.0;
        let gpu = 62_000.0 / 3.6e6 * 1.4;
        assert!(close(e.kwh, cpu + gpu), "{e:?}");
        // CPUs estimated, GPUs measured.
        assert_eq!(e.source, EnergySource::Mixed);
        // Waste: GPU 0 at 90 % wastes a tenth of its energy, idle GPU 1 all of it.
        let cpu_waste = 100.0 / 3_600.0 * (4.0 * 12.0 * 0.75 + 6.0 * 0.3725) * 1.4 / 1_000.0;
        let gpu_waste = (28_000.0 * 0.1 + 34_000.0) / 3.6e6 * 1.4;
        assert!(close(e.wasted_kwh, cpu_waste + gpu_waste), "{e:?}");

        // With RAPL measuring the CPUs too, the whole job is measured.
        let mut series = crate::analysis::series::tests::burn(6, 1.0, 10);
        for (i, s) in series.iter_mut().enumerate() {
            s.energy_mj = 2_000_000 * (i as u64 + 1); // 12 kJ in all
        }
        let mut samples = BTreeMap::new();
        samples.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, series);
        let stats = series_stats(&samples, &counter_readings(&[0, 1]), 100, &params());
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        assert_eq!(e.source, EnergySource::Measured);
        assert!(close(e.kwh, (12_000.0 + 62_000.0) / 3.6e6 * 1.4), "{e:?}");

        // A third GPU without a counter (GPU 2 of the recording, 50 %) is estimated: mixed again.
        let j = gpu_job(3);
        let stats = series_stats(&samples, &counter_readings(&[0, 1, 2]), 100, &params());
        assert_eq!(stats.gpus[2].energy_j, None);
        let e = job_energy(&j, &efficiency(&j), Some(&stats), &cfg).unwrap();
        assert_eq!(e.source, EnergySource::Mixed);
        let gpu2 = 100.0 / 3_600.0 * 300.0 * 0.5 * 1.4 / 1_000.0;
        assert!(close(e.kwh, (12_000.0 + 62_000.0) / 3.6e6 * 1.4 + gpu2), "{e:?}");
    }

    #[test]
    fn a_counter_seen_once_or_readings_before_it_existed_measure_nothing() {
        let mut readings = counter_readings(&[0]);
        for r in readings.values_mut() {
            r.truncate(1);
        }
        let stats = series_stats(&BTreeMap::new(), &readings, 100, &params());
        assert_eq!(stats.gpus[0].energy_j, None);
        // Half the run read: the measured power is carried over the whole run.
        let mut readings = counter_readings(&[0]);
        for r in readings.values_mut() {
            r.truncate(3); // 0, 20, 40 s: 12 kJ over 40 s = 300 W
        }
        let stats = series_stats(&BTreeMap::new(), &readings, 100, &params());
        assert!(close(stats.gpus[0].energy_j.unwrap(), 30_000.0), "{:?}", stats.gpus[0].energy_j);
    }

    #[test]
    fn the_counter_survives_the_sampler_the_wire_and_the_store() {
        use crate::sample::collect::{Sampler, StepFinder};
        use crate::sample::gpu::RecordedSource;
        use crate::sample::procfs::ProcRoot;
        use crate::wire::format::{decode_batch, encode_batch, Batch, StepBatch, VERSION};
        let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        // The recorded node: proc/31516 (job 14's batch step) has SLURM_STEP_GPUS=0,1.
        let gpu = RecordedSource::load(&fixtures.join("nvml/energy_counter.json")).unwrap();
        let proc_root = ProcRoot::with_units(fixtures.join("proc"), 100, 4);
        let finder = StepFinder::detect(&fixtures.join("cgroup/v1"), "n2");
        let mut sampler = Sampler::new(proc_root, finder, &[], Some(Box::new(gpu)));
        const START: u64 = 1_700_000_000;
        let mut gpus = Vec::new();
        for i in 0..6 {
            let readings = sampler.sample(START + i * 20).unwrap();
            gpus.extend(readings.into_iter().find(|r| r.step == StepId::BATCH).unwrap().gpus);
        }
        assert_eq!(gpus.len(), 12);
        let batch = Batch {
            version: VERSION,
            id: 7,
            node: "n2".into(),
            made_at: START + 120,
            steps: vec![StepBatch {
                job: crate::job::JobId(14),
                step: StepId::BATCH,
                samples: vec![],
                gpus,
                apps: vec![],
            }],
        };
        let batch = decode_batch(&encode_batch(&batch)).unwrap();
        let dir = std::env::temp_dir().join(format!("tw-energy-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("db.redb")).unwrap();
        let mut j = job(14, "alice", START, None);
        (j.start_at, j.node_list) = (Some(START), "n2".into());
        store.upsert_jobs(&[j], &[], None).unwrap();
        let content = crate::store::BatchContent {
            gpus: batch.steps[0].gpus.iter().map(|g| (crate::job::JobId(14), StepId::BATCH, g.clone())).collect(),
            ..Default::default()
        };
        let limits = crate::sample::plausible::Limits::default();
        let checks = crate::store::Checks { limits: &limits, from_service: true, plausibility: true };
        let out = store.store_checked_batch("n2", 7, START + 120, "n2", &content, &checks).unwrap();
        assert_eq!(out.gpus, 12, "{out:?}");
        let stored = store.gpu_readings_of_job(crate::job::JobId(14)).unwrap();
        let stats = series_stats(&BTreeMap::new(), &stored, 100, &params());
        let joules: Vec<Option<f64>> = stats.gpus.iter().map(|g| g.energy_j).collect();
        assert_eq!(joules, [Some(28_000.0), Some(34_000.0)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
