//! Fast conversion of sacct's local timestamps: every job line has four and every step line
//! two, and going through jiff's civil-time conversion for each was a large part of parsing.
//! Results are identical to `units::parse_timestamp` (the tests compare them around DST changes
//! in several zones).

use crate::slurm::units::{parse_timestamp, trim, UnitError};

/// Converts sacct timestamps of one time zone, fast: the fixed `YYYY-MM-DDTHH:MM:SS` form is
/// read by hand and shifted by its day's UTC offset, which is looked up once per day (a day is
/// only cached when no offset change falls inside it, so DST days take the exact path). Every
/// other text takes [`parse_timestamp`]'s path, so results are identical to it.
pub struct LocalTimes<'a> {
    tz: &'a jiff::tz::TimeZone,
    /// (civil day number, offset in seconds or `None` for a day with a transition), by day % 16.
    days: [(i64, Option<i64>); 16],
    /// The last two texts converted and their values: a step repeats its job's times.
    recent: [([u8; 19], u64); 2],
}

impl<'a> LocalTimes<'a> {
    pub fn new(tz: &'a jiff::tz::TimeZone) -> Self {
        LocalTimes { tz, days: [(i64::MIN, None); 16], recent: [([0; 19], 0); 2] }
    }

    /// Same result as `parse_timestamp(text, tz)`.
    pub fn parse(&mut self, text: &str) -> Result<Option<u64>, UnitError> {
        let key = <&[u8; 19]>::try_from(text.as_bytes()).ok();
        if let Some(key) = key {
            if let Some((_, value)) = self.recent.iter().find(|(k, _)| k == key) {
                return Ok(Some(*value));
            }
        }
        if let Some((day, secs)) = civil_fields(trim(text).as_bytes()) {
            let slot = day.rem_euclid(16) as usize;
            if self.days[slot].0 != day {
                self.days[slot] = (day, day_offset(self.tz, day));
            }
            if let (_, Some(offset)) = self.days[slot] {
                let value = u64::try_from(day * 86_400 + secs - offset).ok();
                if let (Some(key), Some(value)) = (key, value) {
                    self.recent = [(*key, value), self.recent[0]];
                }
                return Ok(value);
            }
        }
        parse_timestamp(text, self.tz)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` with every field in range → (days since 1970-01-01, seconds into the day).
fn civil_fields(t: &[u8]) -> Option<(i64, i64)> {
    let t: &[u8; 19] = t.try_into().ok()?;
    if t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' || t[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        t[range].iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some((days_from_civil(year, month, day), hour * 3600 + minute * 60 + second))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC offset (seconds) that holds for the whole civil day, or `None` when the day starts or
/// ends ambiguously or an offset change falls inside it.
fn day_offset(tz: &jiff::tz::TimeZone, day: i64) -> Option<i64> {
    let date = jiff::civil::date(1970, 1, 1).checked_add(jiff::Span::new().try_days(day).ok()?).ok()?;
    let first = tz.to_ambiguous_timestamp(date.at(0, 0, 0, 0)).unambiguous().ok()?;
    let last = tz.to_ambiguous_timestamp(date.at(23, 59, 59, 0)).unambiguous().ok()?;
    if tz.following(first).next().is_some_and(|change| change.timestamp() <= last) {
        return None;
    }
    let offset = i64::from(tz.to_offset(first).seconds());
    (last.as_second() - first.as_second() == 86_399).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamps_match_the_exact_path_in_every_zone_and_around_dst() {
        let zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"];
        let texts = [
            "2026-03-29T01:59:59",
            "2026-03-29T02:30:00", // a gap in Berlin
            "2026-10-25T02:30:00", // a fold in Berlin
            "2026-11-01T01:30:00", // a fold in New York
            "2026-04-05T01:45:00", // Lord Howe's half-hour fold
            "2024-02-29T12:00:00",
            "2023-02-29T12:00:00", // no such day
            "2026-11-25T20:53:46",
            "1969-12-31T23:59:59",
            "2026-13-01T00:00:00",
            "2026-01-01T24:00:00",
            "2026-01-01T23:59:60",
            " 2026-01-01T10:00:00 ",
            "2026-01-01T10:00",
            "Unknown",
            "",
        ];
        for zone in zones {
            let Ok(tz) = jiff::tz::TimeZone::get(zone) else { continue };
            let mut fast = LocalTimes::new(&tz);
            for text in texts {
                assert_eq!(fast.parse(text), parse_timestamp(text, &tz), "{zone} {text:?}");
            }
            // Every hour of a year, twice (the second round comes from the cache).
            for _ in 0..2 {
                for hour in 0..(366 * 24) {
                    let at = 1_767_225_600 + hour * 3_600 + 1_234;
                    let text = crate::slurm::sacct::sacct_time(at, &tz).unwrap();
                    assert_eq!(fast.parse(&text), parse_timestamp(&text, &tz), "{zone} {text}");
                }
            }
        }
    }
}
