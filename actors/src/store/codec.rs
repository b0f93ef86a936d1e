//! Compact encodings of sample blocks.
//!
//! Samples of one (job, step, node) within one hour are stored together as one value. Within a
//! block each field is delta-coded against the previous sample (the first against zero, its time
//! against the block start) and written column by column. Blocks are written in format 3
//! (`bitpack`: each column bit-packed to the width its deltas need, or sparse); formats 1 and 2
//! (zigzag varints, plain or deflated) of older stores are still read, and rewritten as format 3
//! when a block is next merged. `cargo bench --bench store_bytes` measures bytes per sample.
//!
//! All decoding is checked: a corrupt value gives [`CodecError`], never a panic.

use super::columns::{get_varint, put_varint, unzigzag, zigzag, CodecError, Columns};
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use std::io::{Read, Write};

/// Block format tags (first byte of every value).
const FORMAT_PLAIN: u8 = 1;
const FORMAT_DEFLATE: u8 = 2;
const FORMAT_PACKED: u8 = 3;
/// A byte giving the fields per record, then a block of format 1, 2 or 3 with that many.
const FORMAT_COUNTED: u8 = 4;

/// Largest decoded block accepted (guards against corrupt length fields).
const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// Encodes records (sorted by time, all at or after `base_at`) into one block value.
/// Bit-packing (format 3) wins on real counters, whose low bits are noise; deflated varints
/// (format 2) win on regular series (deflate finds their repeats): the shorter one is kept.
///
/// A record type with more fields than its formats 1–3 blocks had is written as format 4,
/// which names the field count; others keep the shorter legacy form.
pub fn encode_block<T: Columns>(base_at: u64, records: &[T]) -> Vec<u8> {
    let body = super::bitpack::encode_packed(base_at, records, T::FIELDS);
    let varint = encode_varint(base_at, records, T::FIELDS);
    let mut out = Vec::with_capacity(body.len().min(varint.len()) + 3);
    if T::FIELDS != T::LEGACY_FIELDS {
        out.push(FORMAT_COUNTED);
        // FIELDS is a small constant of this build (tens), so it fits a byte.
        out.push(T::FIELDS as u8);
    }
    if varint.len() <= body.len() {
        out.extend_from_slice(&varint);
    } else {
        out.push(FORMAT_PACKED);
        out.extend_from_slice(&body);
    }
    out
}

/// Encodes a block that is still being written (its hour not over): bit-packed only.
///
/// Why: ingest rewrites the block of the current hour on every report, and deflate's set-up
/// (zeroing its hash tables and buffers, some 200 KiB per call) cost more than everything else
/// a report does. Deflate saves 7–12 % on real counters, so it is tried once, when the block is
/// complete: [`encode_block`] re-encodes it when the series' next hour starts (`ingest.rs`).
pub fn encode_open_block<T: Columns>(base_at: u64, records: &[T]) -> Vec<u8> {
    let body = super::bitpack::encode_packed(base_at, records, T::FIELDS);
    let mut out = Vec::with_capacity(body.len() + 3);
    if T::FIELDS != T::LEGACY_FIELDS {
        out.push(FORMAT_COUNTED);
        out.push(T::FIELDS as u8);
    }
    out.push(FORMAT_PACKED);
    out.extend_from_slice(&body);
    out
}

/// Encodes in format 1 or 2 (varints, deflated when smaller) with the legacy fields, as stores
/// before format 3 hold them; kept so tests can make such blocks.
#[cfg(test)]
pub fn encode_block_varint<T: Columns>(base_at: u64, records: &[T]) -> Vec<u8> {
    encode_varint(base_at, records, T::LEGACY_FIELDS)
}

/// Encodes a format-3 block with the legacy fields, as stores before format 4 hold them.
#[cfg(test)]
pub fn encode_block_packed_legacy<T: Columns>(base_at: u64, records: &[T]) -> Vec<u8> {
    let mut out = vec![FORMAT_PACKED];
    out.extend(super::bitpack::encode_packed(base_at, records, T::LEGACY_FIELDS));
    out
}

/// Format 1 or 2 of the first `fields` fields.
fn encode_varint<T: Columns>(base_at: u64, records: &[T], fields: usize) -> Vec<u8> {
    let fields = fields.min(T::FIELDS);
    let mut body = Vec::with_capacity(records.len() * (fields + 1) * 2 + 8);
    put_varint(&mut body, records.len() as u64);
    let mut prev = base_at;
    for r in records {
        put_varint(&mut body, zigzag(r.at().wrapping_sub(prev) as i64));
        prev = r.at();
    }
    for i in 0..fields {
        let mut prev = 0u64;
        for r in records {
            let v = r.field(i);
            put_varint(&mut body, zigzag(v.wrapping_sub(prev) as i64));
            prev = v;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    if let Some(deflated) = deflate(&body).filter(|d| d.len() + 4 < body.len()) {
        out.push(FORMAT_DEFLATE);
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&deflated);
    } else {
        out.push(FORMAT_PLAIN);
        out.extend_from_slice(&body);
    }
    out
}

/// Decodes a block written by [`encode_block`], or by an older build (fewer fields).
pub fn decode_block<T: Columns>(base_at: u64, bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    let (&format, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT_COUNTED {
        return decode_fields(base_at, bytes, T::LEGACY_FIELDS);
    }
    let (&stored, inner) = rest.split_first().ok_or(CodecError::Truncated)?;
    let stored = usize::from(stored);
    if stored == 0 || stored > T::FIELDS {
        return Err(CodecError::Fields { found: stored, known: T::FIELDS });
    }
    if inner.first() == Some(&FORMAT_COUNTED) {
        return Err(CodecError::UnknownFormat(FORMAT_COUNTED));
    }
    decode_fields(base_at, inner, stored)
}

/// Decodes a block of format 1, 2 or 3 holding `stored` fields per record.
fn decode_fields<T: Columns>(base_at: u64, bytes: &[u8], stored: usize) -> Result<Vec<T>, CodecError> {
    let (&format, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    let inflated;
    let body: &[u8] = match format {
        FORMAT_PACKED => return super::bitpack::decode_packed(base_at, rest, stored),
        FORMAT_PLAIN => rest,
        FORMAT_DEFLATE => {
            let mut cursor = rest;
            let len = get_varint(&mut cursor)?;
            if len > MAX_DECODED_BYTES {
                return Err(CodecError::BadDeflate);
            }
            let mut buf = Vec::with_capacity(len as usize);
            DeflateDecoder::new(cursor).take(len + 1).read_to_end(&mut buf).map_err(|_| CodecError::BadDeflate)?;
            if buf.len() as u64 != len {
                return Err(CodecError::BadDeflate);
            }
            inflated = buf;
            &inflated
        }
        other => return Err(CodecError::UnknownFormat(other)),
    };
    let mut cursor = body;
    let count = get_varint(&mut cursor)?;
    // Each record needs at least one byte per column, which bounds a sane count.
    if count > (cursor.len() as u64) {
        return Err(CodecError::Truncated);
    }
    let count = count as usize;
    let mut times = Vec::with_capacity(count);
    let mut prev = base_at;
    for _ in 0..count {
        prev = prev.wrapping_add(unzigzag(get_varint(&mut cursor)?) as u64);
        times.push(prev);
    }
    let mut columns = vec![0u64; count * T::FIELDS];
    for i in 0..stored.min(T::FIELDS) {
        let mut prev = 0u64;
        for row in 0..count {
            prev = prev.wrapping_add(unzigzag(get_varint(&mut cursor)?) as u64);
            columns[row * T::FIELDS + i] = prev;
        }
    }
    if !cursor.is_empty() {
        return Err(CodecError::Trailing);
    }
    Ok(times
        .iter()
        .enumerate()
        .map(|(row, at)| T::build(*at, &columns[row * T::FIELDS..(row + 1) * T::FIELDS]))
        .collect())
}

fn deflate(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(body.len() / 2), Compression::new(6));
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{GpuReading, StepSample};

    fn burner_samples(n: u64, start: u64) -> Vec<StepSample> {
        (0..n)
            .map(|i| StepSample {
                at: start + 20 * i,
                cpu_user_cs: 2_000 * i + (i * 7) % 13,
                cpu_sys_cs: 10 * i,
                rss_kib: 300_000 + (i * 37) % 4_096,
                mem_current_kib: 310_000 + (i * 41) % 4_096,
                mem_peak_kib: 320_000,
                minor_faults: 75_000 + 3 * i,
                major_faults: 2,
                read_kib: 100 + i,
                write_kib: 50,
                threads: 4,
                processes: 2,
                cpus: 1,
                ..StepSample::default()
            })
            .collect()
    }

    #[test]
    fn blocks_round_trip() {
        let samples = burner_samples(180, 1_000_000);
        let block = encode_block(999_960, &samples);
        assert_eq!(decode_block::<StepSample>(999_960, &block).unwrap(), samples);
    }

    #[test]
    fn an_hour_of_samples_fits_in_few_bytes_each() {
        let samples = burner_samples(180, 3_600_000);
        let block = encode_block(3_600_000, &samples);
        let per_sample = block.len() as f64 / samples.len() as f64;
        assert!(per_sample < 12.0, "{per_sample} bytes per sample");
    }

    #[test]
    fn gpu_readings_round_trip() {
        let readings: Vec<GpuReading> = (0..50)
            .map(|i| GpuReading {
                at: 100 + i * 20,
                index: (i % 2) as u32,
                util_pct: (i * 3 % 100) as u32,
                mem_used_mib: 4_000 + i,
                sm_clock_mhz: 1_410,
                power_mw: 250_000,
                temp_c: 60,
                throttle_mask: 4,
                in_use_by_step: i % 3 == 0,
                energy_mj: 9_000_000_000 + i * 5_000_000,
            })
            .collect();
        let block = encode_block(100, &readings);
        assert_eq!(block[..2], [FORMAT_COUNTED, 9]);
        assert_eq!(decode_block::<GpuReading>(100, &block).unwrap(), readings);
        // Blocks of builds before the energy counter hold 8 fields and no count: it reads as 0.
        for old in [encode_block_varint(100, &readings), encode_block_packed_legacy(100, &readings)] {
            let decoded = decode_block::<GpuReading>(100, &old).unwrap();
            assert!(decoded.iter().all(|g| g.energy_mj == 0));
            let without: Vec<GpuReading> = readings.iter().map(|g| GpuReading { energy_mj: 0, ..g.clone() }).collect();
            assert_eq!(decoded, without);
        }
    }

    #[test]
    fn the_gpu_energy_counter_costs_few_bytes_per_reading() {
        // An hour of one busy GPU every 20 s: ~300 W with noise, so the counter rises by about
        // 6 000 000 mJ per reading; the same readings without the counter for comparison.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut energy = 123_456_789_000u64;
        let with: Vec<GpuReading> = (0..180)
            .map(|i| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                energy += 5_500_000 + rng % 1_000_000;
                GpuReading {
                    at: 7_200 + i * 20,
                    util_pct: 85 + (rng % 10) as u32,
                    mem_used_mib: 30_210,
                    sm_clock_mhz: 1_410,
                    power_mw: 250_000 + (rng % 100_000) as u32,
                    temp_c: 60 + (rng % 5) as u32,
                    in_use_by_step: true,
                    energy_mj: energy,
                    ..Default::default()
                }
            })
            .collect();
        let without: Vec<GpuReading> = with.iter().map(|g| GpuReading { energy_mj: 0, ..g.clone() }).collect();
        let (a, b) = (encode_block(7_200, &with), encode_block(7_200, &without));
        assert_eq!(decode_block::<GpuReading>(7_200, &a).unwrap(), with);
        let per_reading = |block: &[u8]| block.len() as f64 / 180.0;
        // Measured when written: 7.8 bytes per reading with the counter, 4.4 without.
        assert!(
            per_reading(&a) - per_reading(&b) < 4.0,
            "{} vs {} bytes per reading",
            per_reading(&a),
            per_reading(&b)
        );
        eprintln!(
            "GPU block: {:.1} bytes per reading with the energy counter, {:.1} without",
            per_reading(&a),
            per_reading(&b)
        );
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let block = encode_block(0, &burner_samples(30, 0));
        assert_eq!(decode_block::<StepSample>(0, &[]), Err(CodecError::Empty));
        assert_eq!(decode_block::<StepSample>(0, &[9, 1, 2]), Err(CodecError::UnknownFormat(9)));
        for cut in 1..block.len() {
            assert!(decode_block::<StepSample>(0, &block[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = block.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let _ = decode_block::<StepSample>(0, &flipped);
        assert_eq!(decode_block::<StepSample>(0, &[1, 0xff, 0xff, 0xff]), Err(CodecError::Truncated));
    }

    #[test]
    fn blocks_of_older_formats_still_decode() {
        let samples = burner_samples(180, 1_000_000);
        let old = encode_block_varint(999_960, &samples);
        assert!(matches!(old[0], FORMAT_PLAIN | FORMAT_DEFLATE));
        assert_eq!(decode_block::<StepSample>(999_960, &old).unwrap(), samples);
        let packed = encode_block_packed_legacy(999_960, &samples);
        assert_eq!(decode_block::<StepSample>(999_960, &packed).unwrap(), samples);
        // This series repeats itself (deflate's case): the varint form is kept, behind the count.
        let new = encode_block(999_960, &samples);
        assert_eq!((new[0], new[1] as usize), (FORMAT_COUNTED, <StepSample as Columns>::FIELDS));
        assert!(matches!(new[2], FORMAT_PLAIN | FORMAT_DEFLATE));
        assert_eq!(decode_block::<StepSample>(999_960, &new).unwrap(), samples);
    }

    #[test]
    fn resident_memory_and_cache_survive_and_older_blocks_read_them_as_absent() {
        let mut samples = burner_samples(60, 1_000_000);
        for (i, s) in samples.iter_mut().enumerate() {
            s.resident_kib = s.rss_kib.saturating_sub(1_000) + i as u64;
            s.cache_kib = 600_000 + (i as u64 % 7) * 4;
        }
        let block = encode_block(999_960, &samples);
        assert_eq!(decode_block::<StepSample>(999_960, &block).unwrap(), samples);
        // An older build's block has neither: they read as 0, and `resident()` falls back to RSS.
        let legacy = decode_block::<StepSample>(999_960, &encode_block_varint(999_960, &samples)).unwrap();
        assert!(legacy.iter().all(|s| s.resident_kib == 0 && s.cache_kib == 0));
        assert_eq!(legacy[3].resident(), samples[3].rss_kib);
        // A block from a later build with more fields than this one knows is refused, not misread.
        let mut future = block.clone();
        future[1] = <StepSample as Columns>::FIELDS as u8 + 1;
        assert_eq!(
            decode_block::<StepSample>(999_960, &future),
            Err(CodecError::Fields {
                found: <StepSample as Columns>::FIELDS + 1,
                known: <StepSample as Columns>::FIELDS
            })
        );
        future[1] = 0;
        assert!(decode_block::<StepSample>(999_960, &future).is_err());
        assert!(decode_block::<StepSample>(999_960, &[FORMAT_COUNTED]).is_err());
        assert!(decode_block::<StepSample>(999_960, &[FORMAT_COUNTED, 14, FORMAT_COUNTED, 14]).is_err());
    }

    #[test]
    fn noisy_counters_are_bit_packed_in_fewer_bytes() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut s = StepSample { cpus: 4, threads: 4, processes: 1, ..Default::default() };
        let samples: Vec<StepSample> = (0..180)
            .map(|i| {
                s.at = 7_200 + 20 * i;
                s.cpu_user_cs += 7_600 + next() % 800;
                s.cpu_sys_cs += next() % 40;
                s.rss_kib = 2_000_000 + next() % 65_536;
                s.minor_faults += next() % 2_000;
                s.read_kib += next() % 4_096;
                s.write_kib += next() % 1_024;
                s.mem_current_kib = s.rss_kib + 10_000;
                s.resident_kib = s.rss_kib - 3_000 - next() % 64;
                s.cache_kib = 50_000 + next() % 256;
                s.clone()
            })
            .collect();
        let (new, old) = (encode_block(7_200, &samples), encode_varint(7_200, &samples, 14));
        assert_eq!(new[2], FORMAT_PACKED);
        assert!(new.len() * 100 < old.len() * 95, "format 3 {} bytes vs {} in varints", new.len(), old.len());
        assert_eq!(decode_block::<StepSample>(7_200, &new).unwrap(), samples);
    }

    #[test]
    fn random_records_round_trip() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for n in [0usize, 1, 2, 7, 180, 1_000] {
            let mut at = 3_600 * 5;
            let samples: Vec<StepSample> = (0..n)
                .map(|_| {
                    at += next() % 40;
                    let big = |r: u64| if r.is_multiple_of(7) { r } else { r % 100_000 };
                    StepSample {
                        at,
                        cpu_user_cs: big(next()),
                        cpu_sys_cs: next() % 50,
                        rss_kib: big(next()),
                        mem_current_kib: big(next()),
                        mem_peak_kib: next(),
                        minor_faults: next() % 3,
                        major_faults: 0,
                        read_kib: u64::MAX - next() % 5,
                        write_kib: next() % 2,
                        threads: (next() % 5) as u32,
                        processes: u32::MAX,
                        cpus: 1,
                        resident_kib: big(next()),
                        cache_kib: next() % 1_000_000,
                        energy_mj: big(next()),
                    }
                })
                .collect();
            let block = encode_block(3_600 * 5, &samples);
            assert_eq!(decode_block::<StepSample>(3_600 * 5, &block).unwrap(), samples, "{n} records");
        }
    }

    #[test]
    fn counters_that_go_backwards_still_round_trip() {
        let mut samples = burner_samples(3, 10);
        samples[2].cpu_user_cs = 1;
        samples[2].rss_kib = 0;
        let block = encode_block(10, &samples);
        assert_eq!(decode_block::<StepSample>(10, &block).unwrap(), samples);
    }
}
