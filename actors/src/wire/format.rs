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

/// The format version this build writes and reads.
pub const VERSION: u16 = 1;

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
    if version != VERSION {
        return Err(WireError::Version { found: version, supported: VERSION });
    }
    let (report, rest) = postcard::take_from_bytes::<Batch>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(report)
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
                        ..Default::default()
                    })
                    .collect(),
                gpus: vec![GpuReading { at: 1_700_000_000, index: 1, util_pct: 50, ..Default::default() }],
                apps: vec!["python3".into()],
            }],
        }
    }

    #[test]
    fn a_report_round_trips_compactly() {
        let bytes = encode_batch(&report());
        assert_eq!(decode_batch(&bytes).unwrap(), report());
        assert!(bytes.len() < 120, "{} bytes", bytes.len());
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
