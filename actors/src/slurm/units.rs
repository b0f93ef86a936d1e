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

/// `str::trim`, skipped when `s` starts and ends with a visible ASCII character (sacct's fields
/// nearly always do; `str::trim` decodes characters from both ends even then).
pub(crate) fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// `s` split at the first ASCII byte `sep` (a plain loop: these texts are a few bytes long, where
/// `str::split_once` costs more to set up than to run).
pub(crate) fn split_at_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The pieces of `s` between ASCII bytes `sep`, like `str::split`.
fn pieces(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        match split_at_byte(current, sep) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `[DD-][HH:]MM:SS[.fff]` → milliseconds. Empty, `INVALID` and `Unknown` are `None`.
///
/// Allocation-free: every step line has three of these, so they are on the import's hot path.
pub fn parse_duration_ms(text: &str) -> Result<Option<u64>, UnitError> {
    let t = trim(text);
    if t.is_empty() || t.eq_ignore_ascii_case("invalid") || t.eq_ignore_ascii_case("unknown") {
        return Ok(None);
    }
    if let Some(ms) = plain_duration_ms(t.as_bytes()) {
        return Ok(Some(ms));
    }
    let bad = || err("a duration", text);
    let (days, rest) = match split_at_byte(t, b'-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
        None => (0, t),
    };
    let (clock, frac_ms) = match split_at_byte(rest, b'.') {
        Some((c, f)) => {
            if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            // The first three digits, padded with zeros on the right: `.5` is 500 ms.
            let ms = f.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |ms, b| ms * 10 + u64::from(b - b'0'));
            (c, ms)
        }
        None => (rest, 0),
    };
    let mut nums = [0u64; 3];
    let mut count = 0;
    for part in pieces(clock, b':') {
        let slot = nums.get_mut(count).ok_or_else(bad)?;
        *slot = part.parse::<u64>().map_err(|_| bad())?;
        count += 1;
    }
    let secs = match &nums[..count] {
        [s] if days > 0 => s * 3600,             // `D-HH` form
        [m, s] if days > 0 => m * 3600 + s * 60, // `D-HH:MM` form
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    Ok(Some((days * 86_400 + secs) * 1000 + frac_ms))
}

/// 1 to 9 ASCII digits as a number (small enough that no arithmetic below can overflow).
fn small_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
}

/// The usual forms of a duration, made of plain digits, read in one pass; `None` sends
/// everything else (and every error) through the general path of `parse_duration_ms`, whose
/// results this matches.
fn plain_duration_ms(t: &[u8]) -> Option<u64> {
    let (days, rest) = match t.iter().position(|&b| b == b'-') {
        Some(i) => (small_digits(&t[..i])?, &t[i + 1..]),
        None => (0, t),
    };
    let (clock, frac_ms) = match rest.iter().position(|&b| b == b'.') {
        Some(i) => {
            let f = &rest[i + 1..];
            if f.len() > 6 {
                return None;
            }
            small_digits(f)?;
            let ms = f.iter().chain(b"000").take(3).fold(0, |ms, &b| ms * 10 + u64::from(b - b'0'));
            (&rest[..i], ms)
        }
        None => (rest, 0),
    };
    let mut nums = [0u64; 3];
    let mut count = 0;
    for part in clock.split(|&b| b == b':') {
        *nums.get_mut(count)? = small_digits(part)?;
        count += 1;
    }
    let secs = match &nums[..count] {
        [s] if days > 0 => s * 3600,
        [m, s] if days > 0 => m * 3600 + s * 60,
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some((days * 86_400 + secs) * 1000 + frac_ms)
}

/// A memory figure of plain digits with an optional unit letter and scope suffix, when the
/// product is exact in f64 (so equal to the general path's result); else `None`.
fn plain_memory(t: &[u8]) -> Option<(u64, MemScope)> {
    let (t, scope) = match t.split_last()? {
        (b'c', rest) => (rest, MemScope::PerCpu),
        (b'n', rest) => (rest, MemScope::PerNode),
        _ => (t, MemScope::Plain),
    };
    let (number, factor) = match t.split_last()? {
        (unit, rest) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                b'K' => 10,
                b'M' => 20,
                b'G' => 30,
                b'T' => 40,
                b'P' => 50,
                _ => return None,
            };
            (rest, 1u64 << shift)
        }
        _ => (t, 1),
    };
    if number.is_empty() || number.len() > 15 {
        return None;
    }
    let n = number.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))?;
    n.checked_mul(factor).filter(|bytes| *bytes <= 1 << 53).map(|bytes| (bytes, scope))
}

/// A time limit: `UNLIMITED`, `Partition_Limit` and empty are `None` (no limit of its own).
pub fn parse_time_limit_secs(text: &str) -> Result<Option<u64>, UnitError> {
    let t = trim(text);
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
    let mut t = trim(text);
    if t.is_empty() {
        return Ok(None);
    }
    if let Some(plain) = plain_memory(t.as_bytes()) {
        return Ok(Some(plain));
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
    // Whole numbers (what `--noconvert` prints) are multiplied exactly while the product stays
    // within f64's exact range, which gives the same result as the float path below.
    if !number.is_empty() && number.len() <= 19 && number.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(bytes) = number.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)) {
            if bytes <= 1 << 53 {
                return Ok(Some((bytes, scope)));
            }
        }
    }
    let value: f64 = match exact_decimal(number) {
        Some(value) => value,
        None => number.parse().map_err(|_| err("a memory size", text))?,
    };
    if !value.is_finite() || value < 0.0 {
        return Err(err("a memory size", text));
    }
    Ok(Some(((value * factor as f64).round() as u64, scope)))
}

/// `123.45` as f64 when it has at most 15 digits: the integer mantissa and the power of ten are
/// both exact, so one division is correctly rounded and equals what `str::parse` returns (this is
/// the fast path of every correct float parser). Anything else is `None`.
fn exact_decimal(number: &str) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (whole, frac) = split_at_byte(number, b'.')?;
    if whole.is_empty() || frac.is_empty() || whole.len() + frac.len() > 15 {
        return None;
    }
    let mut mantissa = 0u64;
    for b in whole.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa * 10 + u64::from(b - b'0');
    }
    Some(mantissa as f64 / POW10[frac.len()])
}

/// A TRES list `cpu=4,mem=8G,node=1,billing=4,gres/gpu=1` (or a usage list such as
/// `cpu=00:00:18,mem=315260K,fs/disk=37953`), normalised: memory-like TRES (`mem`, `vmem`) in
/// bytes, `cpu` given as a clock time in milliseconds, everything else as the plain number.
pub fn parse_tres(text: &str) -> Result<Tres, UnitError> {
    let t = trim(text);
    let mut out = Vec::with_capacity(if t.is_empty() { 0 } else { 1 + t.bytes().filter(|&b| b == b',').count() });
    for item in pieces(t, b',').filter(|s| !s.is_empty()) {
        let (name, value) = split_at_byte(item, b'=').ok_or_else(|| err("a TRES list", text))?;
        let value = trim(value);
        let number = if name == "mem" || name == "vmem" {
            parse_memory(value)?.map(|(b, _)| b).unwrap_or(0)
        } else if let Some(n) = plain_u64(value.as_bytes()) {
            n // the usual case, before the costlier tests below
        } else if value.bytes().any(|b| b == b':') {
            parse_duration_ms(value)?.unwrap_or(0)
        } else if let Ok(n) = value.parse::<u64>() {
            n
        } else if let Some((bytes, _)) = parse_memory(value)? {
            // Sizes such as fs/disk=1.00M.
            bytes
        } else {
            return Err(err("a TRES list", text));
        };
        out.push((tres_name(name), number));
    }
    Ok(Tres(out))
}

/// 1 to 19 ASCII digits as a number (what `str::parse::<u64>` gives for them).
fn plain_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
}

/// The name as a shared string when it is a common one, else an owned copy.
pub fn tres_name(name: &str) -> std::borrow::Cow<'static, str> {
    match crate::job::common_tres_index(name) {
        Some(i) => std::borrow::Cow::Borrowed(crate::job::COMMON_TRES[i]),
        None => std::borrow::Cow::Owned(name.to_string()),
    }
}

/// A sacct timestamp (`2026-11-25T20:53:46`, local time of `tz`) → unix seconds;
/// `Unknown`, `None` and empty are `None`.
pub fn parse_timestamp(text: &str, tz: &jiff::tz::TimeZone) -> Result<Option<u64>, UnitError> {
    let t = trim(text);
    if t.is_empty() || t == "Unknown" || t == "None" {
        return Ok(None);
    }
    let civil: jiff::civil::DateTime = t.parse().map_err(|_| err("a timestamp", text))?;
    let zoned = civil.to_zoned(tz.clone()).map_err(|_| err("a timestamp", text))?;
    Ok(u64::try_from(zoned.timestamp().as_second()).ok())
}

/// `0:15` → (exit code 0, signal 15).
pub fn parse_exit_code(text: &str) -> Result<(u32, u32), UnitError> {
    let t = trim(text);
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

    #[test]
    fn the_one_pass_forms_agree_with_the_general_paths() {
        let durations = [
            "00:19.211",
            "00:00:20",
            "1-02:03:04",
            "2-03",
            "2-03:04",
            "0-05",
            "0-05:06",
            "01:13",
            "5",
            "1:2:3:4",
            "00:00.5",
            "00:00.1234567",
            "00:00.",
            ":",
            "1::2",
            "+1:02",
            "1-",
            "-1",
            "1234567890:00",
            "99:99:99.999999",
            "1-2-3",
            "00:00:00.000",
            "ab:cd",
            "1.2.3",
            "12:34.5x",
        ];
        for text in durations {
            let slow = || -> Result<Option<u64>, UnitError> {
                // The general path alone: the same code with the one-pass form skipped.
                let t = text;
                let bad = || err("a duration", text);
                let (days, rest) = match split_at_byte(t, b'-') {
                    Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
                    None => (0, t),
                };
                let (clock, frac_ms) = match split_at_byte(rest, b'.') {
                    Some((c, f)) => {
                        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(bad());
                        }
                        (c, format!("{f:0<3}")[..3].parse::<u64>().map_err(|_| bad())?)
                    }
                    None => (rest, 0),
                };
                let nums: Vec<u64> =
                    clock.split(':').map(|p| p.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
                let secs = match nums.as_slice() {
                    [s] if days > 0 => s * 3600,
                    [m, s] if days > 0 => m * 3600 + s * 60,
                    [m, s] => m * 60 + s,
                    [h, m, s] => h * 3600 + m * 60 + s,
                    _ => return Err(bad()),
                };
                Ok(Some((days * 86_400 + secs) * 1000 + frac_ms))
            };
            assert_eq!(parse_duration_ms(text), slow(), "{text:?}");
            if let Some(fast) = plain_duration_ms(text.as_bytes()) {
                assert_eq!(Ok(Some(fast)), slow(), "{text:?}");
            }
        }
        let memories = [
            "4000M",
            "4g",
            "4Gc",
            "4Gn",
            "4c",
            "4n",
            "c",
            "n",
            "4nc",
            "4X",
            "M",
            "1.5M",
            "999999999999999",
            "9999999999999999",
            "8P",
            "9P",
            "0",
            "4kn",
        ];
        for text in memories {
            if let Some(fast) = plain_memory(text.as_bytes()) {
                let t = text.trim_end_matches(['c', 'n']);
                let scope = if text.ends_with('c') {
                    MemScope::PerCpu
                } else if text.ends_with('n') {
                    MemScope::PerNode
                } else {
                    MemScope::Plain
                };
                let (num, factor) = match t.chars().last() {
                    Some(c) if c.is_ascii_alphabetic() => {
                        (&t[..t.len() - 1], [10, 20, 30, 40, 50]["KMGTP".find(c.to_ascii_uppercase()).unwrap()])
                    }
                    _ => (t, 0),
                };
                let value: f64 = num.parse().unwrap();
                assert_eq!(fast, ((value * (1u64 << factor) as f64).round() as u64, scope), "{text:?}");
            }
        }
        assert_eq!(plain_memory(b"4000M"), Some((4000 << 20, MemScope::Plain)));
        assert_eq!(plain_memory(b"9999999999999999"), None);
        assert!(parse_memory("4nc").is_err());
    }

    #[test]
    fn whole_and_fractional_memory_agree_with_the_float_path() {
        for (text, bytes) in [("1", 1u64), ("1024M", 1 << 30), ("9007199254740992", 1 << 53), ("8P", 8 << 50)] {
            assert_eq!(parse_memory(text).unwrap(), Some((bytes, MemScope::Plain)), "{text}");
        }
        // Past f64's exact range the float result is kept, as before.
        let huge = parse_memory("18446744073709551615").unwrap().unwrap().0;
        assert_eq!(huge, (18_446_744_073_709_551_615u64 as f64).round() as u64);
        assert_eq!(parse_memory("18446744073709551616.00M").unwrap().unwrap().0, u64::MAX);
        for text in ["1.25M", "0.02M", "307.84M", "0.1", "123456789012.345", "1.0000000000001G", "9.99999999999999T"] {
            let (number, factor) = match text.strip_suffix(|c: char| c.is_ascii_alphabetic()) {
                Some(n) => (
                    n,
                    [1u64 << 20, 1 << 30, 1 << 40]
                        [usize::from(text.ends_with('G')) + 2 * usize::from(text.ends_with('T'))],
                ),
                None => (text, 1),
            };
            let float: f64 = number.parse().unwrap();
            assert_eq!(exact_decimal(number), Some(float), "{text}");
            assert_eq!(parse_memory(text).unwrap().unwrap().0, (float * factor as f64).round() as u64, "{text}");
        }
        assert_eq!(exact_decimal("1234567890123456.5"), None);
        assert_eq!(exact_decimal("1e5"), None);
        assert_eq!(exact_decimal(".5"), None);
        assert_eq!(parse_duration_ms("00:00.5").unwrap(), Some(500));
        assert_eq!(parse_duration_ms("1-00:00:00.123456").unwrap(), Some(86_400_123));
        assert!(parse_duration_ms("00:00.").is_err());
        assert!(parse_duration_ms("1:2:3.1234567").is_err());
        assert_eq!(tres_name("cpu"), std::borrow::Cow::Borrowed("cpu"));
        for text in ["", " ", "a", " a", "a ", "\u{a0}5\u{a0}", "5\u{2003}", "\tx y\n", "é", "x"] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
        assert!(matches!(tres_name("gres/fpga"), std::borrow::Cow::Owned(_)));
    }
}
