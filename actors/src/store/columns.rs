//! What a sample block is made of, below both block formats (`codec`'s varint formats 1–2 and
//! `bitpack`'s format 3): records seen as columns of u64 fields ([`Columns`]), the varint and
//! zigzag primitives, and the decoding error they share.

use crate::sample::{GpuReading, StepSample};

/// A stored block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty block")]
    Empty,
    #[error("unknown block format {0}")]
    UnknownFormat(u8),
    #[error("block truncated")]
    Truncated,
    #[error("block inflates past the size limit or is not valid deflate data")]
    BadDeflate,
    #[error("block has trailing bytes")]
    Trailing,
    #[error("block holds {found} fields per record; this build reads at most {known}")]
    Fields { found: usize, known: usize },
}

/// A record type that is stored as a fixed list of u64 fields plus its time.
pub trait Columns: Sized + Clone {
    /// Number of fields, excluding the time.
    const FIELDS: usize;
    /// Fields of blocks written in formats 1–3, which do not say how many they hold. Newer
    /// blocks name their field count; fields a block lacks read as 0.
    const LEGACY_FIELDS: usize = Self::FIELDS;
    /// (field, earlier field predicting it): the difference is stored (format 3).
    const PREDICTED_BY: &'static [(usize, usize)] = &[];
    fn at(&self) -> u64;
    fn field(&self, i: usize) -> u64;
    fn build(at: u64, fields: &[u64]) -> Self;
}

impl Columns for StepSample {
    const FIELDS: usize = 15;
    // Stores before resident memory and page cache were sampled.
    const LEGACY_FIELDS: usize = 12;
    // cgroup memory in use, and its resident part, move with RSS.
    const PREDICTED_BY: &'static [(usize, usize)] = &[(3, 2), (12, 2)];
    fn at(&self) -> u64 {
        self.at
    }
    fn field(&self, i: usize) -> u64 {
        match i {
            0 => self.cpu_user_cs,
            1 => self.cpu_sys_cs,
            2 => self.rss_kib,
            3 => self.mem_current_kib,
            4 => self.mem_peak_kib,
            5 => self.minor_faults,
            6 => self.major_faults,
            7 => self.read_kib,
            8 => self.write_kib,
            9 => u64::from(self.threads),
            10 => u64::from(self.processes),
            11 => u64::from(self.cpus),
            12 => self.resident_kib,
            13 => self.cache_kib,
            _ => self.energy_mj,
        }
    }
    fn build(at: u64, f: &[u64]) -> Self {
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        StepSample {
            at,
            cpu_user_cs: f[0],
            cpu_sys_cs: f[1],
            rss_kib: f[2],
            mem_current_kib: f[3],
            mem_peak_kib: f[4],
            minor_faults: f[5],
            major_faults: f[6],
            read_kib: f[7],
            write_kib: f[8],
            threads: small(f[9]),
            processes: small(f[10]),
            cpus: small(f[11]),
            resident_kib: f[12],
            cache_kib: f[13],
            energy_mj: f[14],
        }
    }
}

impl Columns for GpuReading {
    const FIELDS: usize = 9;
    // Stores before NVML's energy counter was read.
    const LEGACY_FIELDS: usize = 8;
    fn at(&self) -> u64 {
        self.at
    }
    fn field(&self, i: usize) -> u64 {
        match i {
            0 => u64::from(self.index),
            1 => u64::from(self.util_pct),
            2 => self.mem_used_mib,
            3 => u64::from(self.sm_clock_mhz),
            4 => u64::from(self.power_mw),
            5 => u64::from(self.temp_c),
            6 => self.throttle_mask,
            7 => u64::from(self.in_use_by_step),
            _ => self.energy_mj,
        }
    }
    fn build(at: u64, f: &[u64]) -> Self {
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        GpuReading {
            at,
            index: small(f[0]),
            util_pct: small(f[1]),
            mem_used_mib: f[2],
            sm_clock_mhz: small(f[3]),
            power_mw: small(f[4]),
            temp_c: small(f[5]),
            throttle_mask: f[6],
            in_use_by_step: f[7] != 0,
            energy_mj: f[8],
        }
    }
}

/// Signed to unsigned, small magnitudes small (shared by both block formats).
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint, advancing the cursor.
pub fn get_varint(cursor: &mut &[u8]) -> Result<u64, CodecError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = cursor.split_first().ok_or(CodecError::Truncated)?;
        *cursor = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(CodecError::Truncated)
}
