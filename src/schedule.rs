//! Cron schedules for the daemon: when each tenant runs.
//!
//! The usual five fields — minute, hour, day of month, month, day of week —
//! or six, with a leading seconds field (for tests and short intervals).
//! Each field is `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a
//! comma list of those. Months may be `JAN`…`DEC`, days `SUN`…`SAT`; day of
//! week counts 0–7 from Sunday (0 and 7 are Sunday), as cron does. When both
//! day fields are restricted, a day matching either runs (cron's rule).
//!
//! Times are those of the schedule's time zone: `0 4 * * *` in
//! `Europe/Brussels` is 04:00 there, summer and winter. A time skipped by a
//! clock change runs at the first instant after the gap; a time that occurs
//! twice runs once.
//!
//! (Crates were weighed: `cron` and `jiff-cron` number weekdays 1–7 from
//! Sunday, which silently shifts a crontab's `1-5`; `croner` keeps cron's
//! numbering but works in chrono, and muster's time is jiff.)

use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A schedule that does not parse: the field and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("schedule {expr:?}: {message}")]
pub struct ScheduleError {
    pub expr: String,
    pub message: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The set of values of one field, as bits.
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(min + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{name}: {s:?} is not a number"))?;
        if v < min || v > max {
            return Err(format!("{name}: {v} is outside {min}–{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("{name}: step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, max),
                None => (value(r)?, value(r)?),
            },
        };
        if lo > hi {
            return Err(format!("{name}: range {range:?} runs backwards"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expr: &str) -> Result<Schedule, ScheduleError> {
        let err = |message: String| ScheduleError {
            expr: expr.to_string(),
            message,
        };
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match parts.len() {
            5 => ("0", &parts[..]),
            6 => (parts[0], &parts[1..]),
            n => {
                return Err(err(format!(
                "{n} fields; a schedule has 5 (minute hour day month weekday) or 6 (seconds first)"
            )))
            }
        };
        let mut weekdays = field(rest[4], "day of week", 0, 7, &WEEKDAYS).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7); // 7 is Sunday too
        }
        Ok(Schedule {
            seconds: field(sec, "second", 0, 59, &[]).map_err(err)?,
            minutes: field(rest[0], "minute", 0, 59, &[]).map_err(err)?,
            hours: field(rest[1], "hour", 0, 23, &[]).map_err(err)?,
            days: field(rest[2], "day of month", 1, 31, &[]).map_err(err)?,
            months: field(rest[3], "month", 1, 12, &MONTHS).map_err(err)?,
            weekdays,
            days_restricted: rest[2] != "*",
            weekdays_restricted: rest[4] != "*",
        })
    }
}

fn has(bits: u64, v: i8) -> bool {
    bits & (1 << v) != 0
}

impl Schedule {
    fn day_matches(&self, d: Date) -> bool {
        if !has(self.months, d.month()) {
            return false;
        }
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().to_sunday_zero_offset());
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first scheduled instant strictly after `after`, in `tz`; `None`
    /// if the schedule never fires (e.g. 31 February) within eight years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Zoned> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut day = start.date();
        for _ in 0..366 * 8 {
            if self.day_matches(day) {
                for h in (0..24i8).filter(|&h| has(self.hours, h)) {
                    for m in (0..60i8).filter(|&m| has(self.minutes, m)) {
                        for s in (0..60i8).filter(|&s| has(self.seconds, s)) {
                            let civil = DateTime::from_parts(day, jiff::civil::time(h, m, s, 0));
                            if civil < start {
                                continue;
                            }
                            let Ok(at) = tz.to_zoned(civil) else { continue };
                            // Strictly after; a repeated hour runs once.
                            if at.timestamp() > after {
                                return Some(at);
                            }
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let s: Schedule = expr.parse().unwrap();
        let tz = TimeZone::get(tz).unwrap();
        let after: Timestamp = after.parse().unwrap();
        s.next_after(after, &tz).unwrap().to_string()
    }

    #[test]
    fn next_runs() {
        // (schedule, after, time zone, next run)
        let cases = [
            // The default: 04:00 UTC every day.
            (
                "0 4 * * *",
                "2026-11-21T03:59:59Z",
                "UTC",
                "2026-11-21T04:00:00+00:00[UTC]",
            ),
            (
                "0 4 * * *",
                "2026-11-21T04:00:00Z",
                "UTC",
                "2026-11-22T04:00:00+00:00[UTC]",
            ),
            // Weekdays 1-5 are Monday to Friday: 2026-11-21 is a Saturday.
            (
                "30 6 * * 1-5",
                "2026-11-21T10:00:00Z",
                "UTC",
                "2026-11-23T06:30:00+00:00[UTC]",
            ),
            // Sunday is 0 and 7.
            (
                "0 0 * * 7",
                "2026-11-21T10:00:00Z",
                "UTC",
                "2026-11-22T00:00:00+00:00[UTC]",
            ),
            (
                "0 0 * * 0",
                "2026-11-21T10:00:00Z",
                "UTC",
                "2026-11-22T00:00:00+00:00[UTC]",
            ),
            // Both day fields restricted: either one.
            (
                "0 0 1 * MON",
                "2026-11-21T10:00:00Z",
                "UTC",
                "2026-11-23T00:00:00+00:00[UTC]",
            ),
            // Local time across a clock change: 04:00 in Brussels, in summer time.
            (
                "0 4 * * *",
                "2026-03-28T12:00:00Z",
                "Europe/Brussels",
                "2026-03-29T04:00:00+02:00[Europe/Brussels]",
            ),
            // 02:30 does not exist on 2026-03-29 in Brussels: the first instant after the gap.
            (
                "30 2 * * *",
                "2026-03-28T12:00:00Z",
                "Europe/Brussels",
                "2026-03-29T03:30:00+02:00[Europe/Brussels]",
            ),
            // 02:30 happens twice on 2026-10-25: once, the first time.
            (
                "30 2 * * *",
                "2026-10-24T12:00:00Z",
                "Europe/Brussels",
                "2026-10-25T02:30:00+02:00[Europe/Brussels]",
            ),
            (
                "30 2 * * *",
                "2026-10-25T00:30:00Z",
                "Europe/Brussels",
                "2026-10-26T02:30:00+01:00[Europe/Brussels]",
            ),
            // Seconds, steps, names, lists.
            (
                "*/15 * * * * *",
                "2026-11-21T10:00:01Z",
                "UTC",
                "2026-11-21T10:00:15+00:00[UTC]",
            ),
            (
                "0 9,17 * JAN,dec *",
                "2026-11-21T10:00:00Z",
                "UTC",
                "2026-12-01T09:00:00+00:00[UTC]",
            ),
        ];
        for (expr, after, tz, want) in cases {
            assert_eq!(next(expr, after, tz), want, "{expr} after {after} in {tz}");
        }
        // Never.
        let s: Schedule = "0 0 31 2 *".parse().unwrap();
        assert!(s
            .next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC)
            .is_none());
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let e = |s: &str| s.parse::<Schedule>().unwrap_err().message;
        assert!(e("0 4 * *").contains("4 fields"));
        assert!(e("0 24 * * *").contains("hour: 24 is outside 0–23"));
        assert!(e("0 4 * FOO *").contains("month: \"FOO\""));
        assert!(e("*/0 4 * * *").contains("minute: step"));
        assert!(e("0 5-4 * * *").contains("runs backwards"));
    }
}
