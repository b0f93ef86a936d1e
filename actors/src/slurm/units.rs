//! SLURM's notations for time spans, memory sizes, TRES lists and timestamps, parsed exactly.
//!
//! sacct prints CPU times as `[DD-][HH:]MM:SS[.mmm]` (`00:19.211` is 19.211 s), limits as
//! `UNLIMITED`/`Partition_Limit`, memory as `4000M`, `4G`, `4Gc` (per CPU), `4Gn` (per node) or
//! plain bytes with `--noconvert`, and timestamps in local time or `Unknown`/`None`.

use crate::job::Tres;

/// A value that could not be read; carries the text for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {what} from {text:?}")]
pub struct UnitError {
    pub what: &'static str,
    pub text: String,
}

fn err(what: &'static str, text: &str) -> UnitError {
    UnitError { what, text: text.to_string() }
}

/// `[DD-][HH:]MM:SS[.fff]` → milliseconds. Empty, `INVALID` and `Unknown` are `None`.
pub fn parse_duration_ms(text: &str) -> Result<Option<u64>, UnitError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("invalid") || t.eq_ignore_ascii_case("unknown") {
        return Ok(None);
    }
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| err("a duration", text))?, r),
        None => (0, t),
    };
    let (clock, frac_ms) = match rest.split_once('.') {
        Some((c, f)) => {
            if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("a duration", text));
            }
            let padded = format!("{f:0<3}");
            (c, padded[..3].parse::<u64>().map_err(|_| err("a duration", text))?)
        }
        None => (rest, 0),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let nums: Vec<u64> =
        parts.iter().map(|p| p.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| err("a duration", text))?;
    let secs = match nums.as_slice() {
        [s] if days > 0 => s * 3600,             // `D-HH` form
        [m, s] if days > 0 => m * 3600 + s * 60, // `D-HH:MM` form
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return Err(err("a duration", text)),
    };
    Ok(Some((days * 86_400 + secs) * 1000 + frac_ms))
}

/// A time limit: `UNLIMITED`, `Partition_Limit` and empty are `None` (no limit of its own).
pub fn parse_time_limit_secs(text: &str) -> Result<Option<u64>, UnitError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("partition_limit") {
        return Ok(None);
    }
    Ok(parse_duration_ms(t)?.map(|ms| ms / 1000))
}

/// Where a memory figure applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemScope {
    /// No suffix: as printed (sacct 22.05 prints ReqMem per node without a suffix).
    Plain,
    /// `c` suffix: per allocated CPU.
    PerCpu,
    /// `n` suffix: per node.
    PerNode,
}

/// `4000M`, `4G`, `4.5G`, `315260K`, `322826240`, `4Gc`, `4Gn` → (bytes, scope). Empty is `None`.
/// Suffixes are binary (K = 1024), as SLURM means them.
pub fn parse_memory(text: &str) -> Result<Option<(u64, MemScope)>, UnitError> {
    let mut t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let mut scope = MemScope::Plain;
    if let Some(stripped) = t.strip_suffix('c') {
        scope = MemScope::PerCpu;
        t = stripped;
    } else if let Some(stripped) = t.strip_suffix('n') {
        scope = MemScope::PerNode;
        t = stripped;
    }
    let (number, factor) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let factor: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => return Err(err("a memory size", text)),
            };
            (&t[..i], factor)
        }
        _ => (t, 1),
    };
    let value: f64 = number.parse().map_err(|_| err("a memory size", text))?;
    if !value.is_finite() || value < 0.0 {
        return Err(err("a memory size", text));
    }
    Ok(Some(((value * factor as f64).round() as u64, scope)))
}

/// A TRES list `cpu=4,mem=8G,node=1,billing=4,gres/gpu=1` (or a usage list such as
/// `cpu=00:00:18,mem=315260K,fs/disk=37953`), normalised: memory-like TRES (`mem`, `vmem`) in
/// bytes, `cpu` given as a clock time in milliseconds, everything else as the plain number.
pub fn parse_tres(text: &str) -> Result<Tres, UnitError> {
    let mut out = Vec::new();
    for item in text.trim().split(',').filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(|| err("a TRES list", text))?;
        let value = value.trim();
        let number = if name == "mem" || name == "vmem" {
            parse_memory(value)?.map(|(b, _)| b).unwrap_or(0)
        } else if value.contains(':') {
            parse_duration_ms(value)?.unwrap_or(0)
        } else if let Ok(n) = value.parse::<u64>() {
            n
        } else if let Some((bytes, _)) = parse_memory(value)? {
            // Sizes such as fs/disk=1.00M.
            bytes
        } else {
            return Err(err("a TRES list", text));
        };
        out.push((name.to_string(), number));
    }
    Ok(Tres(out))
}

/// A sacct timestamp (`2026-11-25T20:53:46`, local time of `tz`) → unix seconds;
/// `Unknown`, `None` and empty are `None`.
pub fn parse_timestamp(text: &str, tz: &jiff::tz::TimeZone) -> Result<Option<u64>, UnitError> {
    let t = text.trim();
    if t.is_empty() || t == "Unknown" || t == "None" {
        return Ok(None);
    }
    let civil: jiff::civil::DateTime = t.parse().map_err(|_| err("a timestamp", text))?;
    let zoned = civil.to_zoned(tz.clone()).map_err(|_| err("a timestamp", text))?;
    Ok(u64::try_from(zoned.timestamp().as_second()).ok())
}

/// `0:15` → (exit code 0, signal 15).
pub fn parse_exit_code(text: &str) -> Result<(u32, u32), UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok((0, 0));
    }
    let (code, signal) = t.split_once(':').ok_or_else(|| err("an exit code", text))?;
    Ok((code.parse().map_err(|_| err("an exit code", text))?, signal.parse().map_err(|_| err("an exit code", text))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_sacct_form() {
        assert_eq!(parse_duration_ms("00:19.211").unwrap(), Some(19_211));
        assert_eq!(parse_duration_ms("00:00:20").unwrap(), Some(20_000));
        assert_eq!(parse_duration_ms("1-02:03:04").unwrap(), Some(((86_400 + 7_384) * 1000) as u64));
        assert_eq!(parse_duration_ms("2-03").unwrap(), Some((2 * 86_400 + 3 * 3600) * 1000));
        assert_eq!(parse_duration_ms("01:13").unwrap(), Some(73_000));
        assert_eq!(parse_duration_ms("").unwrap(), None);
        assert_eq!(parse_duration_ms("INVALID").unwrap(), None);
        assert!(parse_duration_ms("1:2:3:4").is_err());
        assert!(parse_duration_ms("ab:cd").is_err());
    }

    #[test]
    fn time_limits() {
        assert_eq!(parse_time_limit_secs("UNLIMITED").unwrap(), None);
        assert_eq!(parse_time_limit_secs("Partition_Limit").unwrap(), None);
        assert_eq!(parse_time_limit_secs("00:05:00").unwrap(), Some(300));
    }

    #[test]
    fn memory_sizes_and_scopes() {
        assert_eq!(parse_memory("4000M").unwrap(), Some((4000 << 20, MemScope::Plain)));
        assert_eq!(parse_memory("4G").unwrap(), Some((4 << 30, MemScope::Plain)));
        assert_eq!(parse_memory("4Gc").unwrap(), Some((4 << 30, MemScope::PerCpu)));
        assert_eq!(parse_memory("4Gn").unwrap(), Some((4 << 30, MemScope::PerNode)));
        assert_eq!(parse_memory("315260K").unwrap(), Some((315_260 << 10, MemScope::Plain)));
        assert_eq!(parse_memory("322826240").unwrap(), Some((322_826_240, MemScope::Plain)));
        assert_eq!(parse_memory("307.84M").unwrap(), Some(((307.84 * 1048576.0f64).round() as u64, MemScope::Plain)));
        assert_eq!(parse_memory("").unwrap(), None);
        assert!(parse_memory("4X").is_err());
    }

    #[test]
    fn tres_lists_are_normalised() {
        let t = parse_tres("billing=4,cpu=4,gres/gpu=1,mem=8G,node=1").unwrap();
        assert_eq!(t.get("cpu"), Some(4));
        assert_eq!(t.get("mem"), Some(8 << 30));
        assert_eq!(t.get("gres/gpu"), Some(1));
        let usage = parse_tres("cpu=00:00:18,energy=0,fs/disk=37953,mem=315260K,pages=1,vmem=319452K").unwrap();
        assert_eq!(usage.get("cpu"), Some(18_000));
        assert_eq!(usage.get("mem"), Some(315_260 << 10));
        assert_eq!(usage.get("fs/disk"), Some(37_953));
        assert_eq!(parse_tres("").unwrap(), Tres::default());
        assert!(parse_tres("cpu").is_err());
    }

    #[test]
    fn timestamps_and_exit_codes() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(parse_timestamp("2026-11-25T20:53:46", &utc).unwrap(), Some(1_795_640_026));
        assert_eq!(parse_timestamp("Unknown", &utc).unwrap(), None);
        assert_eq!(parse_timestamp("None", &utc).unwrap(), None);
        assert!(parse_timestamp("yesterday", &utc).is_err());
        assert_eq!(parse_exit_code("0:125").unwrap(), (0, 125));
        assert_eq!(parse_exit_code("3:0").unwrap(), (3, 0));
    }
}
