//! Downsampling a series to a bounded summary, and the summary's stored form (pure: no I/O).
//!
//! When a series' raw blocks age past `[store] raw_retention` the retention pass replaces them
//! by one summary of at most [`SUMMARY_POINTS`] points, so a job page, the API and a re-analysis
//! still see the job's shape while the store stops growing with time. Each point covers a run
//! of consecutive samples and holds, per column, the minimum, the mean and the maximum over it,
//! stamped with the time of the run's last sample. The first sample is kept as a point of its
//! own, so for cumulative counters (CPU time, faults, I/O, energy) the first point and the last
//! point's maximum are the raw first and last values: totals over the job are preserved exactly.
//! Readers that want one series take the maxima ([`Summary::max`]): counters at the end of each
//! run, and memory peaks not underestimated (a memory finding stays conservative).
//!
//! Stored form (value of `sample_summaries` / `gpu_summaries`): a format byte (1), the varint
//! base time (the first sample's), then the min and mean series each as a varint length and an
//! encoded block (`codec::encode_block` against the base time), then the max series' block.

use super::codec::{decode_block, encode_block};
use super::columns::{get_varint, put_varint, CodecError, Columns};

/// Most points a summary holds.
pub const SUMMARY_POINTS: usize = 200;

/// Format tag of a stored summary.
const FORMAT_SUMMARY: u8 = 1;

/// A downsampled series: three series of the same length and times.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<T> {
    pub min: Vec<T>,
    pub mean: Vec<T>,
    pub max: Vec<T>,
}

/// Downsamples `records` (in time order) to at most `points` points (at least 2 are used).
pub fn downsample<T: Columns>(records: &[T], points: usize) -> Summary<T> {
    let points = points.max(2);
    if records.len() <= points {
        return Summary { min: records.to_vec(), mean: records.to_vec(), max: records.to_vec() };
    }
    let mut out =
        Summary { min: vec![records[0].clone()], mean: vec![records[0].clone()], max: vec![records[0].clone()] };
    let rest = &records[1..];
    let buckets = points - 1;
    let mut fields_min = vec![0u64; T::FIELDS];
    let mut fields_max = vec![0u64; T::FIELDS];
    let mut sums = vec![0u128; T::FIELDS];
    for b in 0..buckets {
        let (from, to) = (b * rest.len() / buckets, (b + 1) * rest.len() / buckets);
        let run = &rest[from..to];
        let Some(last) = run.last() else { continue };
        fields_min.fill(u64::MAX);
        fields_max.fill(0);
        sums.fill(0);
        for r in run {
            for i in 0..T::FIELDS {
                let v = r.field(i);
                fields_min[i] = fields_min[i].min(v);
                fields_max[i] = fields_max[i].max(v);
                sums[i] += u128::from(v);
            }
        }
        let n = run.len() as u128;
        let means: Vec<u64> = sums.iter().map(|s| u64::try_from(s / n).unwrap_or(u64::MAX)).collect();
        out.min.push(T::build(last.at(), &fields_min));
        out.mean.push(T::build(last.at(), &means));
        out.max.push(T::build(last.at(), &fields_max));
    }
    out
}

/// Merges a stored summary with more records (a series summarised before and written to again,
/// e.g. a late report): the summary's max points stand for the raw samples they covered.
pub fn extend<T: Columns>(old: &Summary<T>, more: &[T], points: usize) -> Summary<T> {
    let mut all: Vec<T> = old.max.iter().chain(more).cloned().collect();
    all.sort_by_key(|r| r.at());
    downsample(&all, points)
}

/// Encodes a summary for storage. An empty summary encodes as just the format byte and base 0.
pub fn encode_summary<T: Columns>(summary: &Summary<T>) -> Vec<u8> {
    let base = summary.max.first().map(|r| r.at()).unwrap_or(0);
    let mut out = vec![FORMAT_SUMMARY];
    put_varint(&mut out, base);
    for part in [&summary.min, &summary.mean] {
        let block = encode_block(base, part);
        put_varint(&mut out, block.len() as u64);
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&encode_block(base, &summary.max));
    out
}

/// Decodes a stored summary; a corrupt value is an error, never a panic.
pub fn decode_summary<T: Columns>(bytes: &[u8]) -> Result<Summary<T>, CodecError> {
    let (&format, mut rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT_SUMMARY {
        return Err(CodecError::UnknownFormat(format));
    }
    let base = get_varint(&mut rest)?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = usize::try_from(get_varint(&mut rest)?).map_err(|_| CodecError::Truncated)?;
        if len > rest.len() {
            return Err(CodecError::Truncated);
        }
        let (block, tail) = rest.split_at(len);
        parts.push(decode_block::<T>(base, block)?);
        rest = tail;
    }
    let max = decode_block::<T>(base, rest)?;
    let mean = parts.pop().unwrap_or_default();
    let min = parts.pop().unwrap_or_default();
    if min.len() != max.len() || mean.len() != max.len() {
        return Err(CodecError::Trailing);
    }
    Ok(Summary { min, mean, max })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{GpuReading, StepSample};

    fn series(n: u64) -> Vec<StepSample> {
        (0..n)
            .map(|i| StepSample {
                at: 1_000_000 + i * 20,
                cpu_user_cs: i * 150 + 7,
                cpu_sys_cs: i * 3,
                rss_kib: 1_000_000 + (i * 7919) % 50_000,
                mem_current_kib: 1_200_000 + (i * 104_729) % 80_000,
                mem_peak_kib: 1_300_000,
                minor_faults: i * 11,
                read_kib: i * 4,
                threads: 8 + (i % 5) as u32,
                processes: 2,
                cpus: 8,
                energy_mj: i * 1_000,
                ..StepSample::default()
            })
            .collect()
    }

    #[test]
    fn bounded_points_with_min_mean_max_ordered_and_totals_kept() {
        for n in [1u64, 2, 199, 200, 201, 1_000, 4_320, 30_241] {
            let raw = series(n);
            let s = downsample(&raw, SUMMARY_POINTS);
            assert!(s.max.len() <= SUMMARY_POINTS, "{n}: {}", s.max.len());
            assert_eq!(s.max.len(), (n as usize).min(SUMMARY_POINTS));
            assert_eq!(s.min.len(), s.max.len());
            assert_eq!(s.mean.len(), s.max.len());
            for ((lo, mid), hi) in s.min.iter().zip(&s.mean).zip(&s.max) {
                assert!(lo.at == mid.at && mid.at == hi.at);
                for i in 0..StepSample::FIELDS {
                    assert!(lo.field(i) <= mid.field(i) && mid.field(i) <= hi.field(i), "{n} field {i}");
                }
            }
            // First and last raw values of the cumulative counters are points of the summary.
            assert_eq!(s.max.first(), raw.first());
            assert_eq!(
                s.max.last().map(|r| (r.at, r.cpu_user_cs, r.energy_mj, r.read_kib)),
                raw.last().map(|r| (r.at, r.cpu_user_cs, r.energy_mj, r.read_kib))
            );
            // The peak of every gauge survives.
            let peak = raw.iter().map(|r| r.rss_kib).max();
            assert_eq!(s.max.iter().map(|r| r.rss_kib).max(), peak);
            assert!(s.max.windows(2).all(|w| w[0].at < w[1].at));
        }
    }

    #[test]
    fn encoded_summary_round_trips_and_corruption_is_an_error() {
        let s = downsample(&series(5_000), SUMMARY_POINTS);
        let bytes = encode_summary(&s);
        assert_eq!(decode_summary::<StepSample>(&bytes).unwrap(), s);
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_summary::<StepSample>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let gpu: Vec<GpuReading> = (0..900)
            .map(|i| GpuReading { at: 50 + i * 20, util_pct: (i % 100) as u32, ..GpuReading::default() })
            .collect();
        let g = downsample(&gpu, SUMMARY_POINTS);
        assert_eq!(decode_summary::<GpuReading>(&encode_summary(&g)).unwrap(), g);
    }

    #[test]
    fn extending_keeps_the_bound_and_the_latest_total() {
        let raw = series(3_000);
        let first = downsample(&raw[..2_000], SUMMARY_POINTS);
        let merged = extend(&first, &raw[2_000..], SUMMARY_POINTS);
        assert!(merged.max.len() <= SUMMARY_POINTS);
        let counters = |r: &StepSample| (r.at, r.cpu_user_cs, r.energy_mj, r.minor_faults);
        assert_eq!(merged.max.last().map(counters), raw.last().map(counters));
        assert_eq!(merged.max.first(), raw.first());
    }
}
