//! The scraper → server format: a *batch* of one node's samples (the original called it a
//! report; here "report" means only a user's period report), typed, versioned, compact.
//!
//! A batch is the magic bytes `TWRP`, then a postcard-encoded [`Batch`] whose first field is
//! the format version. Postcard is compact (varints) and has no ABI in it, unlike the
//! original's raw C structs. Every batch carries a random 64-bit id chosen by the scraper; the
//! server stores `(node, id)` with the samples in one transaction, so a batch resent after a
//! lost acknowledgement is stored once. The decoder never panics on any input: bad magic, a
//! version from the future, trailing bytes or truncation are errors naming what was wrong.

use crate::job::{JobId, StepId};
use crate::sample::{GpuReading, StepSample};
use serde::{Deserialize, Serialize};

/// First bytes of every encoded report.
pub const MAGIC: &[u8; 4] = b"TWRP";

/// The format version this build writes. It also reads batches of formats 1 and 2 (scrapers of
/// earlier builds, and their spools): format 1 samples lack resident memory and page cache, and
/// the GPU readings of both lack NVML's energy counter (see [`legacy`]).
pub const VERSION: u16 = 3;

/// One scraper report: samples of some steps of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Format version ([`VERSION`]).
    pub version: u16,
    /// Unique per sender; the server's deduplication key with `node`.
    pub id: u64,
    /// Node the samples were taken on (SLURM node name).
    pub node: String,
    /// When the report was made, unix seconds.
    pub made_at: u64,
    pub steps: Vec<StepBatch>,
}

/// The samples of one step within a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepBatch {
    pub job: JobId,
    pub step: StepId,
    pub samples: Vec<StepSample>,
    pub gpus: Vec<GpuReading>,
    /// Applications seen in the step during the report's span.
    pub apps: Vec<String>,
}

impl Batch {
    /// Number of step samples in the report.
    pub fn sample_count(&self) -> usize {
        self.steps.iter().map(|s| s.samples.len()).sum()
    }
}

/// Why bytes are not a report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("not a turingwatch report (bad magic bytes)")]
    BadMagic,
    #[error("report format version {found} is not supported (this server reads {supported})")]
    Version { found: u16, supported: u16 },
    #[error("malformed report: {0}")]
    Malformed(String),
    #[error("malformed report: {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a report.
pub fn encode_batch(report: &Batch) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    // Serialising plain structs into a Vec cannot fail; an empty body would be refused anyway.
    if let Ok(body) = postcard::to_stdvec(report) {
        out.extend(body);
    }
    out
}

/// Decodes a report, refusing anything but exactly one report of a known version.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, WireError> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or(WireError::BadMagic)?;
    let (version, _) = postcard::take_from_bytes::<u16>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    let (report, rest) = match version {
        VERSION => postcard::take_from_bytes::<Batch>(body),
        1 => postcard::take_from_bytes::<legacy::V1Batch>(body).map(|(b, rest)| (b.upgrade(), rest)),
        2 => postcard::take_from_bytes::<legacy::V2Batch>(body).map(|(b, rest)| (b.upgrade(), rest)),
        _ => return Err(WireError::Version { found: version, supported: VERSION }),
    }
    .map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(report)
}

/// Formats 1 and 2, as scrapers of earlier builds wrote them. Postcard is positional, so the old
/// layouts are spelled out whole. Format 1: samples without resident memory and page cache;
/// formats 1 and 2: GPU readings without the energy counter. Missing figures read as unknown (0).
mod legacy {
    use crate::job::{JobId, StepId};
    use crate::sample::{GpuReading, StepSample};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct V1Batch {
        /// Always 1 (read because postcard is positional).
        _version: u16,
        id: u64,
        node: String,
        made_at: u64,
        steps: Vec<V1Step>,
    }

    #[derive(Deserialize)]
    pub(super) struct V2Batch {
        /// Always 2.
        _version: u16,
        id: u64,
        node: String,
        made_at: u64,
        steps: Vec<V2Step>,
    }

    #[derive(Deserialize)]
    struct V1Step {
        job: JobId,
        step: StepId,
        samples: Vec<V1Sample>,
        gpus: Vec<OldGpu>,
        apps: Vec<String>,
    }

    #[derive(Deserialize)]
    struct V2Step {
        job: JobId,
        step: StepId,
        samples: Vec<StepSample>,
        gpus: Vec<OldGpu>,
        apps: Vec<String>,
    }

    #[derive(Deserialize)]
    struct V1Sample {
        at: u64,
        cpu_user_cs: u64,
        cpu_sys_cs: u64,
        rss_kib: u64,
        mem_current_kib: u64,
        mem_peak_kib: u64,
        minor_faults: u64,
        major_faults: u64,
        read_kib: u64,
        write_kib: u64,
        threads: u32,
        processes: u32,
        cpus: u32,
    }

    /// A GPU reading of formats 1 and 2: no energy counter.
    #[derive(Deserialize)]
    struct OldGpu {
        at: u64,
        index: u32,
        util_pct: u32,
        mem_used_mib: u64,
        sm_clock_mhz: u32,
        power_mw: u32,
        temp_c: u32,
        throttle_mask: u64,
        in_use_by_step: bool,
    }

    impl From<OldGpu> for GpuReading {
        fn from(g: OldGpu) -> GpuReading {
            GpuReading {
                at: g.at,
                index: g.index,
                util_pct: g.util_pct,
                mem_used_mib: g.mem_used_mib,
                sm_clock_mhz: g.sm_clock_mhz,
                power_mw: g.power_mw,
                temp_c: g.temp_c,
                throttle_mask: g.throttle_mask,
                in_use_by_step: g.in_use_by_step,
                energy_mj: 0,
            }
        }
    }

    impl From<V1Sample> for StepSample {
        fn from(x: V1Sample) -> StepSample {
            StepSample {
                at: x.at,
                cpu_user_cs: x.cpu_user_cs,
                cpu_sys_cs: x.cpu_sys_cs,
                rss_kib: x.rss_kib,
                mem_current_kib: x.mem_current_kib,
                mem_peak_kib: x.mem_peak_kib,
                minor_faults: x.minor_faults,
                major_faults: x.major_faults,
                read_kib: x.read_kib,
                write_kib: x.write_kib,
                threads: x.threads,
                processes: x.processes,
                cpus: x.cpus,
                resident_kib: 0,
                cache_kib: 0,
                energy_mj: 0,
            }
        }
    }

    fn step(
        job: JobId,
        step: StepId,
        samples: Vec<StepSample>,
        gpus: Vec<OldGpu>,
        apps: Vec<String>,
    ) -> super::StepBatch {
        super::StepBatch { job, step, samples, gpus: gpus.into_iter().map(GpuReading::from).collect(), apps }
    }

    impl V1Batch {
        /// The same batch in the current types.
        pub(super) fn upgrade(self) -> super::Batch {
            let steps = self
                .steps
                .into_iter()
                .map(|s| step(s.job, s.step, s.samples.into_iter().map(StepSample::from).collect(), s.gpus, s.apps))
                .collect();
            // What it decodes to is a batch of this build's format (it re-encodes as one).
            super::Batch { version: super::VERSION, id: self.id, node: self.node, made_at: self.made_at, steps }
        }
    }

    impl V2Batch {
        /// The same batch in the current types.
        pub(super) fn upgrade(self) -> super::Batch {
            let steps = self.steps.into_iter().map(|s| step(s.job, s.step, s.samples, s.gpus, s.apps)).collect();
            super::Batch { version: super::VERSION, id: self.id, node: self.node, made_at: self.made_at, steps }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn report() -> Batch {
        Batch {
            version: VERSION,
            id: 0xdead_beef_0000_0001,
            node: "n2".into(),
            made_at: 1_700_000_060,
            steps: vec![StepBatch {
                job: JobId(14),
                step: StepId::BATCH,
                samples: (0..3)
                    .map(|i| StepSample {
                        at: 1_700_000_000 + i * 20,
                        cpu_user_cs: 100 * i,
                        rss_kib: 300_000,
                        resident_kib: 290_000,
                        cache_kib: 1_200_000,
                        ..Default::default()
                    })
                    .collect(),
                gpus: vec![GpuReading {
                    at: 1_700_000_000,
                    index: 1,
                    util_pct: 50,
                    energy_mj: 123_456_789,
                    ..Default::default()
                }],
                apps: vec!["python3".into()],
            }],
        }
    }

    #[test]
    fn a_format_1_report_still_decodes_with_resident_memory_unknown() {
        // Bytes a format-1 scraper sent: the same report without the two memory fields.
        #[derive(Serialize)]
        struct OldSample(u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u32, u32, u32);
        #[derive(Serialize)]
        struct OldStep(JobId, StepId, Vec<OldSample>, Vec<OldGpu>, Vec<String>);
        #[derive(Serialize)]
        struct Old(u16, u64, String, u64, Vec<OldStep>);
        let now = report();
        let steps = now
            .steps
            .iter()
            .map(|s| {
                let samples = s
                    .samples
                    .iter()
                    .map(|x| {
                        OldSample(
                            x.at,
                            x.cpu_user_cs,
                            x.cpu_sys_cs,
                            x.rss_kib,
                            x.mem_current_kib,
                            x.mem_peak_kib,
                            x.minor_faults,
                            x.major_faults,
                            x.read_kib,
                            x.write_kib,
                            x.threads,
                            x.processes,
                            x.cpus,
                        )
                    })
                    .collect();
                OldStep(s.job, s.step, samples, s.gpus.iter().map(old_gpu).collect(), s.apps.clone())
            })
            .collect();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(postcard::to_stdvec(&Old(1, now.id, now.node.clone(), now.made_at, steps)).unwrap());
        let decoded = decode_batch(&bytes).unwrap();
        let mut expected = now.clone();
        for s in expected.steps.iter_mut().flat_map(|s| s.samples.iter_mut()) {
            (s.resident_kib, s.cache_kib, s.energy_mj) = (0, 0, 0);
        }
        for g in expected.steps.iter_mut().flat_map(|s| s.gpus.iter_mut()) {
            g.energy_mj = 0;
        }
        assert_eq!(decoded, expected);
        assert_eq!(decoded.steps[0].samples[0].resident(), 300_000);
        // Upgraded, it re-encodes in this build's format and decodes back the same.
        assert_eq!(decode_batch(&encode_batch(&decoded)).unwrap(), decoded);
    }

    #[derive(Serialize)]
    struct OldGpu(u64, u32, u32, u64, u32, u32, u32, u64, bool);

    fn old_gpu(g: &GpuReading) -> OldGpu {
        OldGpu(
            g.at,
            g.index,
            g.util_pct,
            g.mem_used_mib,
            g.sm_clock_mhz,
            g.power_mw,
            g.temp_c,
            g.throttle_mask,
            g.in_use_by_step,
        )
    }

    #[test]
    fn a_format_2_report_still_decodes_with_the_gpu_energy_counter_unknown() {
        #[derive(Serialize)]
        struct OldStep(JobId, StepId, Vec<StepSample>, Vec<OldGpu>, Vec<String>);
        #[derive(Serialize)]
        struct Old(u16, u64, String, u64, Vec<OldStep>);
        let mut now = report();
        now.steps[0].gpus[0].energy_mj = 7_000_000;
        let steps = now
            .steps
            .iter()
            .map(|s| OldStep(s.job, s.step, s.samples.clone(), s.gpus.iter().map(old_gpu).collect(), s.apps.clone()))
            .collect();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(postcard::to_stdvec(&Old(2, now.id, now.node.clone(), now.made_at, steps)).unwrap());
        let decoded = decode_batch(&bytes).unwrap();
        let mut expected = now.clone();
        expected.steps[0].gpus[0].energy_mj = 0;
        assert_eq!(decoded, expected);
        assert_eq!(decode_batch(&encode_batch(&decoded)).unwrap(), decoded);
        // The current format carries the counter.
        assert_eq!(decode_batch(&encode_batch(&now)).unwrap().steps[0].gpus[0].energy_mj, 7_000_000);
    }

    #[test]
    fn a_report_round_trips_compactly() {
        let bytes = encode_batch(&report());
        assert_eq!(decode_batch(&bytes).unwrap(), report());
        assert!(bytes.len() < 140, "{} bytes", bytes.len());
    }

    #[test]
    fn foreign_truncated_future_and_padded_bytes_are_refused() {
        let bytes = encode_batch(&report());
        assert_eq!(decode_batch(b"GET / HTTP/1.1"), Err(WireError::BadMagic));
        assert!(matches!(decode_batch(&bytes[..bytes.len() - 3]), Err(WireError::Malformed(_))));
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(decode_batch(&padded), Err(WireError::Trailing(1)));
        let mut future = report();
        future.version = 9;
        assert_eq!(decode_batch(&encode_batch(&future)), Err(WireError::Version { found: 9, supported: VERSION }));
    }

    #[test]
    fn no_byte_string_makes_the_decoder_panic() {
        let bytes = encode_batch(&report());
        for cut in 0..bytes.len() {
            let _ = decode_batch(&bytes[..cut]);
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0xff;
            let _ = decode_batch(&flipped);
        }
    }
}
