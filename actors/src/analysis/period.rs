//! Calendar-aligned analysis periods.
//!
//! The original advanced its period on an in-process 7-day timer that restarted with the process,
//! so a restart silently stretched a period. Here a period is a pure function of the clock and
//! the configuration: weekly periods start on the anchor weekday at the anchor time in the
//! configured zone (DST-aware: a week is 7 calendar days, not 604 800 s), and periods that are
//! not whole days are aligned to the anchor instant, so `period = "1m"` works for tests. The
//! store only remembers which periods exist and whether they are closed.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use turingwatch_config::AnalysisConfig;

/// A reference Monday; the anchor is the first anchor weekday on or after it.
const REFERENCE_MONDAY: Date = jiff::civil::date(2024, 1, 1);

const DAY_SECS: u64 = 86_400;

/// A period could not be computed from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum PeriodError {
    #[error("unknown time zone {name:?}: {source}")]
    TimeZone { name: String, source: jiff::Error },
    #[error("anchor weekday {0:?} is not one of mon..sun")]
    Weekday(String),
    #[error("anchor time {0:?} is not HH:MM")]
    AnchorTime(String),
    #[error("period length must be at least one second")]
    Length,
    #[error("calendar arithmetic out of range: {0}")]
    Calendar(#[from] jiff::Error),
}

/// One period, `[start, end)` in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Period {
    pub start: u64,
    pub end: u64,
}

/// How periods are laid out on the calendar.
#[derive(Debug, Clone)]
pub struct PeriodSpec {
    len_secs: u64,
    anchor_date: Date,
    anchor_time: Time,
    tz: TimeZone,
}

impl PeriodSpec {
    /// Builds the layout from `[analysis]`.
    pub fn from_config(config: &AnalysisConfig) -> Result<PeriodSpec, PeriodError> {
        let tz = time_zone(&config.timezone)?;
        let weekday = turingwatch_config::WEEKDAYS
            .iter()
            .position(|d| *d == config.anchor_weekday)
            .ok_or_else(|| PeriodError::Weekday(config.anchor_weekday.clone()))?;
        let minutes = turingwatch_config::parse_time_of_day(&config.anchor_time)
            .ok_or_else(|| PeriodError::AnchorTime(config.anchor_time.clone()))?;
        PeriodSpec::new(config.period.as_secs(), weekday as i64, minutes, tz)
    }

    /// A layout: `weekday` 0 = Monday, `minutes` after midnight.
    pub fn new(len_secs: u64, weekday: i64, minutes: u32, tz: TimeZone) -> Result<PeriodSpec, PeriodError> {
        if len_secs == 0 {
            return Err(PeriodError::Length);
        }
        let anchor_date = REFERENCE_MONDAY.checked_add(weekday.days())?;
        let anchor_time = Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0)?;
        Ok(PeriodSpec { len_secs, anchor_date, anchor_time, tz })
    }

    /// The time zone periods are laid out in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The period that contains `at` (unix seconds).
    pub fn containing(&self, at: u64) -> Result<Period, PeriodError> {
        let at_ts = Timestamp::from_second(at as i64)?;
        if self.len_secs.is_multiple_of(DAY_SECS) {
            // Whole days: count calendar days in the zone, so DST changes do not shift the anchor.
            let days_per_period = (self.len_secs / DAY_SECS) as i64;
            let local = at_ts.to_zoned(self.tz.clone());
            let mut date = local.date();
            if local.time() < self.anchor_time {
                date = date.yesterday()?;
            }
            let days = i64::from(self.anchor_date.until(date)?.get_days());
            let index = days.div_euclid(days_per_period);
            let start_date = self.anchor_date.checked_add((index * days_per_period).days())?;
            let end_date = start_date.checked_add(days_per_period.days())?;
            Ok(Period { start: self.instant(start_date)?, end: self.instant(end_date)? })
        } else {
            let anchor = self.instant(self.anchor_date)? as i64;
            let len = self.len_secs as i64;
            let start = anchor + (at as i64 - anchor).div_euclid(len) * len;
            Ok(Period { start: start.max(0) as u64, end: (start + len).max(0) as u64 })
        }
    }

    /// The period right after `period`.
    pub fn next(&self, period: Period) -> Result<Period, PeriodError> {
        self.containing(period.end)
    }

    fn instant(&self, date: Date) -> Result<u64, PeriodError> {
        let zoned = date.to_datetime(self.anchor_time).to_zoned(self.tz.clone())?;
        Ok(zoned.timestamp().as_second().max(0) as u64)
    }
}

/// `local` is the system zone; anything else an IANA name.
pub fn time_zone(name: &str) -> Result<TimeZone, PeriodError> {
    if name == "local" {
        return Ok(TimeZone::system());
    }
    TimeZone::get(name).map_err(|source| PeriodError::TimeZone { name: name.to_string(), source })
}

/// The weekday (`mon`..`sun`) of an instant in a zone.
pub fn weekday_name(at: u64, tz: &TimeZone) -> &'static str {
    let offset = Timestamp::from_second(at as i64)
        .map(|ts| ts.to_zoned(tz.clone()).weekday().to_monday_zero_offset())
        .unwrap_or(0);
    turingwatch_config::WEEKDAYS.get(offset as usize).copied().unwrap_or("mon")
}

/// An instant as local `YYYY-MM-DD HH:MM` in a zone (for reports).
pub fn local_text(at: u64, tz: &TimeZone) -> String {
    match Timestamp::from_second(at as i64) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> u64 {
        text.parse::<Timestamp>().unwrap().as_second() as u64
    }

    #[test]
    fn weekly_periods_start_monday_midnight_in_the_zone() {
        let tz = TimeZone::get("Europe/Zurich").unwrap();
        let spec = PeriodSpec::new(7 * DAY_SECS, 0, 0, tz).unwrap();
        // Wednesday 2026-11-25 12:00 UTC lies in the week starting Monday 2026-11-23 00:00 CET.
        let p = spec.containing(utc("2026-11-25T12:00:00Z")).unwrap();
        assert_eq!(p.start, utc("2026-11-22T23:00:00Z"));
        assert_eq!(p.end, utc("2026-11-29T23:00:00Z"));
        // The boundary instant belongs to the new period.
        assert_eq!(spec.containing(p.end).unwrap().start, p.end);
        assert_eq!(spec.containing(p.end - 1).unwrap(), p);
    }

    #[test]
    fn a_week_across_a_dst_change_is_seven_calendar_days() {
        let tz = TimeZone::get("Europe/Zurich").unwrap();
        let spec = PeriodSpec::new(7 * DAY_SECS, 0, 0, tz).unwrap();
        // DST ends on Sunday 2026-10-25: that week is 169 hours long.
        let p = spec.containing(utc("2026-10-21T12:00:00Z")).unwrap();
        assert_eq!(p.start, utc("2026-10-18T22:00:00Z"));
        assert_eq!(p.end - p.start, 7 * DAY_SECS + 3_600);
    }

    #[test]
    fn anchor_weekday_and_time_are_respected() {
        // Wednesday 13:00 UTC anchor, like the original's timer unit.
        let spec = PeriodSpec::new(7 * DAY_SECS, 2, 13 * 60, TimeZone::UTC).unwrap();
        let p = spec.containing(utc("2026-11-25T12:59:59Z")).unwrap();
        assert_eq!(p.start, utc("2026-11-18T13:00:00Z"));
        let q = spec.containing(utc("2026-11-25T13:00:00Z")).unwrap();
        assert_eq!(q.start, utc("2026-11-25T13:00:00Z"));
        assert_eq!(spec.next(p).unwrap(), q);
    }

    #[test]
    fn short_periods_align_to_the_anchor_epoch() {
        let spec = PeriodSpec::new(60, 0, 0, TimeZone::UTC).unwrap();
        let p = spec.containing(utc("2026-11-25T12:34:56Z")).unwrap();
        assert_eq!((p.start, p.end), (utc("2026-11-25T12:34:00Z"), utc("2026-11-25T12:35:00Z")));
        let spec = PeriodSpec::new(90, 0, 0, TimeZone::UTC).unwrap();
        let p = spec.containing(utc("2026-11-25T12:34:56Z")).unwrap();
        assert_eq!((p.start - utc("2024-01-01T00:00:00Z")) % 90, 0);
        assert!(p.start <= utc("2026-11-25T12:34:56Z") && utc("2026-11-25T12:34:56Z") < p.end);
    }

    #[test]
    fn daily_periods_and_weekday_names() {
        let spec = PeriodSpec::new(DAY_SECS, 0, 6 * 60, TimeZone::UTC).unwrap();
        let p = spec.containing(utc("2026-11-25T05:00:00Z")).unwrap();
        assert_eq!(p.start, utc("2026-11-24T06:00:00Z"));
        assert_eq!(weekday_name(utc("2026-11-28T10:00:00Z"), &TimeZone::UTC), "sat");
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let mut cfg = AnalysisConfig { timezone: "Mars/Olympus".into(), ..AnalysisConfig::default() };
        assert!(matches!(PeriodSpec::from_config(&cfg), Err(PeriodError::TimeZone { .. })));
        cfg.timezone = "UTC".into();
        cfg.anchor_weekday = "funday".into();
        assert!(matches!(PeriodSpec::from_config(&cfg), Err(PeriodError::Weekday(_))));
    }
}
