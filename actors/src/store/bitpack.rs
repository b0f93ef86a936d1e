//! Block format 3: columns of deltas bit-packed to their own width.
//!
//! Why: varint deltas spend whole bytes on fields whose deltas need a few bits (system time,
//! faults), and deflate cannot shrink the random low bits of CPU counters. Here every column
//! (time, then each field) is turned into zigzag deltas and written in the cheaper of two forms:
//! - *packed*: a base (the smallest value) and a bit width, then every value minus the base in
//!   that many bits — a steady counter costs the bits of its jitter, a constant costs nothing;
//! - *sparse*: one bit per row saying whether the value is non-zero, then the non-zero values
//!   packed as above — memory and I/O counters that move in few intervals.
//!
//! A field may be predicted by an earlier one of the same row (cgroup memory by RSS, see
//! [`Columns::PREDICTED_BY`]); its residual is what gets delta-coded. Each column ends on a byte
//! boundary. Decoding checks every length and width, so corrupt input is an error, not a panic.

use super::columns::{get_varint, put_varint, unzigzag, zigzag, CodecError, Columns};

/// Most rows a block may claim: an hour of 1 Hz samples is 3 600. Constant columns cost no bits,
/// so the input's length cannot bound the row count; this does (≤ 6 MiB decoded).
const MAX_ROWS: u64 = 1 << 16;

const MODE_PACKED: u8 = 0;
const MODE_SPARSE: u8 = 1;

fn width_of(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Appends bits, least significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u128,
    bits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, bits: 0 }
    }

    fn put(&mut self, value: u64, width: u32) {
        if width == 0 {
            return;
        }
        let masked = if width >= 64 { value } else { value & ((1u64 << width) - 1) };
        self.acc |= u128::from(masked) << self.bits;
        self.bits += width;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    /// Pads to a byte boundary.
    fn finish(self) {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Reads bits written by [`BitWriter`] from a byte slice it advances.
struct BitReader<'a, 'b> {
    input: &'b mut &'a [u8],
    acc: u128,
    bits: u32,
}

impl<'a, 'b> BitReader<'a, 'b> {
    fn new(input: &'b mut &'a [u8]) -> Self {
        BitReader { input, acc: 0, bits: 0 }
    }

    fn get(&mut self, width: u32) -> Result<u64, CodecError> {
        if width == 0 {
            return Ok(0);
        }
        while self.bits < width {
            let (&byte, rest) = self.input.split_first().ok_or(CodecError::Truncated)?;
            *self.input = rest;
            self.acc |= u128::from(byte) << self.bits;
            self.bits += 8;
        }
        let value = if width >= 64 { self.acc as u64 } else { (self.acc as u64) & ((1u64 << width) - 1) };
        self.acc >>= width;
        self.bits -= width;
        Ok(value)
    }
}

/// Bits a column costs in each form: (packed, sparse).
fn costs(values: &[u64]) -> (u64, u64) {
    let n = values.len() as u64;
    let (min, max) = values.iter().fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let packed = n * u64::from(width_of(max.saturating_sub(min)));
    let nonzero: Vec<u64> = values.iter().copied().filter(|&v| v != 0).collect();
    let sparse = match nonzero.iter().min().zip(nonzero.iter().max()) {
        Some((lo, hi)) => n + nonzero.len() as u64 * u64::from(width_of(hi - lo)),
        None => n,
    };
    (packed, sparse)
}

fn put_packed(out: &mut Vec<u8>, values: &[u64]) {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let width = width_of(max - min);
    put_varint(out, min);
    out.push(width as u8);
    let mut bits = BitWriter::new(out);
    for &v in values {
        bits.put(v - min, width);
    }
    bits.finish();
}

fn put_column(out: &mut Vec<u8>, values: &[u64]) {
    let (packed, sparse) = costs(values);
    if packed <= sparse {
        out.push(MODE_PACKED);
        put_packed(out, values);
        return;
    }
    out.push(MODE_SPARSE);
    let nonzero: Vec<u64> = values.iter().copied().filter(|&v| v != 0).collect();
    let min = nonzero.iter().copied().min().unwrap_or(0);
    let width = width_of(nonzero.iter().copied().max().unwrap_or(0) - min);
    put_varint(out, min);
    out.push(width as u8);
    let mut bits = BitWriter::new(out);
    for &v in values {
        bits.put(u64::from(v != 0), 1);
    }
    for v in nonzero {
        bits.put(v - min, width);
    }
    bits.finish();
}

fn get_column(cursor: &mut &[u8], rows: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    let (&mode, rest) = cursor.split_first().ok_or(CodecError::Truncated)?;
    *cursor = rest;
    let base = get_varint(cursor)?;
    let (&width, rest) = cursor.split_first().ok_or(CodecError::Truncated)?;
    *cursor = rest;
    let width = u32::from(width);
    if width > 64 {
        return Err(CodecError::Truncated);
    }
    out.clear();
    let mut bits = BitReader::new(cursor);
    match mode {
        MODE_PACKED => {
            for _ in 0..rows {
                out.push(base.wrapping_add(bits.get(width)?));
            }
        }
        MODE_SPARSE => {
            let mut present = Vec::with_capacity(rows);
            for _ in 0..rows {
                present.push(bits.get(1)? == 1);
            }
            for is_set in present {
                out.push(if is_set { base.wrapping_add(bits.get(width)?) } else { 0 });
            }
        }
        other => return Err(CodecError::UnknownFormat(other)),
    }
    Ok(())
}

/// The body of a format-3 block (after the format byte) of the first `fields` fields.
pub fn encode_packed<T: Columns>(base_at: u64, records: &[T], fields: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 6 + 16);
    put_varint(&mut out, records.len() as u64);
    let mut deltas = Vec::with_capacity(records.len());
    let mut prev = base_at;
    for r in records {
        deltas.push(zigzag(r.at().wrapping_sub(prev) as i64));
        prev = r.at();
    }
    put_column(&mut out, &deltas);
    for i in 0..fields.min(T::FIELDS) {
        let predictor = predictor_of::<T>(i);
        deltas.clear();
        let mut prev = 0u64;
        for r in records {
            let v = r.field(i).wrapping_sub(predictor.map_or(0, |p| r.field(p)));
            deltas.push(zigzag(v.wrapping_sub(prev) as i64));
            prev = v;
        }
        put_column(&mut out, &deltas);
    }
    out
}

/// Decodes the body of a format-3 block holding `stored` fields per record (at most
/// `T::FIELDS`; the ones after them read as 0).
pub fn decode_packed<T: Columns>(base_at: u64, body: &[u8], stored: usize) -> Result<Vec<T>, CodecError> {
    let mut cursor = body;
    let rows = get_varint(&mut cursor)?;
    // Every column takes at least two bytes of header: bounds a sane row count cheaply too.
    if rows > MAX_ROWS || (rows > 0 && cursor.len() < 2 * (stored + 1)) {
        return Err(CodecError::Truncated);
    }
    let rows = rows as usize;
    let mut column = Vec::with_capacity(rows);
    get_column(&mut cursor, rows, &mut column)?;
    let mut times = Vec::with_capacity(rows);
    let mut prev = base_at;
    for &d in &column {
        prev = prev.wrapping_add(unzigzag(d) as u64);
        times.push(prev);
    }
    let mut fields = vec![0u64; rows * T::FIELDS];
    for i in 0..stored.min(T::FIELDS) {
        get_column(&mut cursor, rows, &mut column)?;
        let predictor = predictor_of::<T>(i);
        let mut prev = 0u64;
        for (row, &d) in column.iter().enumerate() {
            prev = prev.wrapping_add(unzigzag(d) as u64);
            let base = predictor.map_or(0, |p| fields[row * T::FIELDS + p]);
            fields[row * T::FIELDS + i] = prev.wrapping_add(base);
        }
    }
    if !cursor.is_empty() {
        return Err(CodecError::Trailing);
    }
    Ok(times
        .iter()
        .enumerate()
        .map(|(row, at)| T::build(*at, &fields[row * T::FIELDS..(row + 1) * T::FIELDS]))
        .collect())
}

/// The earlier field that predicts field `i`, if any (ignored unless it comes before `i`).
fn predictor_of<T: Columns>(i: usize) -> Option<usize> {
    T::PREDICTED_BY.iter().find(|(field, by)| *field == i && *by < i).map(|(_, by)| *by)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_at_every_width() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        for width in 0..=64u32 {
            w.put(u64::MAX, width);
            w.put(0x5555_5555_5555_5555, width);
        }
        w.finish();
        let mut cursor: &[u8] = &out;
        let mut r = BitReader::new(&mut cursor);
        for width in 0..=64u32 {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            assert_eq!(r.get(width).unwrap(), mask, "width {width}");
            assert_eq!(r.get(width).unwrap(), 0x5555_5555_5555_5555 & mask, "width {width}");
        }
        assert!(r.get(8).is_err(), "past the end");
    }

    #[test]
    fn columns_pick_the_cheaper_form_and_round_trip() {
        for values in [
            vec![0u64; 100],
            (0..100).map(|i| 7_600 + (i * 37) % 800).collect::<Vec<_>>(),
            (0..100).map(|i| if i % 10 == 0 { 4_000 + i } else { 0 }).collect(),
            vec![u64::MAX, 0, 1, u64::MAX / 2],
        ] {
            let mut out = Vec::new();
            put_column(&mut out, &values);
            let mut cursor: &[u8] = &out;
            let mut back = Vec::new();
            get_column(&mut cursor, values.len(), &mut back).unwrap();
            assert_eq!(back, values);
            assert!(cursor.is_empty());
        }
        // A column that is mostly zero takes the sparse form: ~1 bit a row plus the rest.
        let sparse: Vec<u64> = (0..180).map(|i| if i % 10 == 0 { 4_000 } else { 0 }).collect();
        let mut out = Vec::new();
        put_column(&mut out, &sparse);
        assert_eq!(out[0], MODE_SPARSE);
        assert!(out.len() <= 2 + 2 + 180 / 8 + 1, "{} bytes", out.len());
    }
}
