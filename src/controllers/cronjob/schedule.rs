//! Cron schedules as CronJobs write them: five fields (minute, hour, day of month, month, day
//! of week) with `*`, `?`, ranges, lists, steps and month/day names, plus the `@yearly`-style
//! macros; and the next local time a schedule fires. Day-of-month and day-of-week combine as
//! in robfig/cron (which Kubernetes uses): if either is a star both must match, else either.

use time::{Date, PrimitiveDateTime, Time};

/// A parsed schedule; each field is a bit set of the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Whether either day field is a star (then both must match).
    day_star: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {why}")]
pub struct ScheduleError {
    schedule: String,
    why: String,
}

const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead a search for the next firing looks before giving up (a schedule such as
/// `0 0 30 2 *` never fires).
const SEARCH_DAYS: u32 = 366 * 5;

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name's value (months count from 1, days from 0).
    names_from: u32,
}

const MINUTE: Field = Field { min: 0, max: 59, names: &[], names_from: 0 };
const HOUR: Field = Field { min: 0, max: 23, names: &[], names_from: 0 };
const DAY_OF_MONTH: Field = Field { min: 1, max: 31, names: &[], names_from: 0 };
const MONTH: Field = Field { min: 1, max: 12, names: MONTHS, names_from: 1 };
// 7 is Sunday too.
const DAY_OF_WEEK: Field = Field { min: 0, max: 7, names: DAYS, names_from: 0 };

impl Field {
    fn value(&self, s: &str) -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + self.names_from);
        }
        let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if v < self.min || v > self.max {
            return Err(format!("{v} is out of range {}-{}", self.min, self.max));
        }
        Ok(v)
    }

    /// Parses one comma-separated field into a bit set; also says whether it is a star.
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| format!("bad step {s:?}"))?)),
                None => (item, None),
            };
            if step == Some(0) {
                return Err("a step must be positive".into());
            }
            let (lo, hi) = match range {
                "*" | "?" => (self.min, self.max),
                _ => match range.split_once('-') {
                    Some((a, b)) => (self.value(a)?, self.value(b)?),
                    None => {
                        let v = self.value(range)?;
                        // `a/step` runs from a to the end of the range.
                        (v, if step.is_some() { self.max } else { v })
                    }
                },
            };
            if lo > hi {
                return Err(format!("range {lo}-{hi} is backwards"));
            }
            let step = step.unwrap_or(1);
            bits |= (lo..=hi).step_by(step as usize).fold(0u64, |acc, v| acc | 1 << v);
        }
        Ok((bits, text.starts_with('*') || text.starts_with('?')))
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(schedule: &str) -> Result<Self, ScheduleError> {
        let err = |why: String| ScheduleError { schedule: schedule.to_string(), why };
        let expanded = match schedule.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(err(format!("unknown descriptor {other}"))),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(err(format!("expected exactly 5 fields, found {}", fields.len())));
        };
        let (minutes, _) = MINUTE.parse(minute).map_err(err)?;
        let (hours, _) = HOUR.parse(hour).map_err(err)?;
        let (days_of_month, dom_star) = DAY_OF_MONTH.parse(dom).map_err(err)?;
        let (months, _) = MONTH.parse(month).map_err(err)?;
        let (mut days_of_week, dow_star) = DAY_OF_WEEK.parse(dow).map_err(err)?;
        if days_of_week & 1 << 7 != 0 {
            days_of_week = (days_of_week | 1) & !(1 << 7);
        }
        Ok(Schedule { minutes, hours, days_of_month, months, days_of_week, day_star: dom_star || dow_star })
    }
}

impl Schedule {
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & 1 << date.day() != 0;
        let dow = self.days_of_week & 1 << date.weekday().number_days_from_sunday() != 0;
        let month = self.months & 1 << u8::from(date.month()) != 0;
        month && if self.day_star { dom && dow } else { dom || dow }
    }

    /// The local times the schedule fires at on or after `from` (to the minute), in order.
    /// Stops after `SEARCH_DAYS` days.
    pub fn times_from(&self, from: PrimitiveDateTime) -> impl Iterator<Item = PrimitiveDateTime> + '_ {
        let start = from.replace_second(0).expect("0 is a valid second").replace_nanosecond(0).expect("0 is valid");
        let first_day = start.date();
        (0..SEARCH_DAYS)
            .map_while(move |i| first_day.checked_add(time::Duration::days(i64::from(i))))
            .filter(|d| self.day_matches(*d))
            .flat_map(move |d| {
                (0u8..24).filter(|h| self.hours & 1 << h != 0).flat_map(move |h| {
                    (0u8..60)
                        .filter(|m| self.minutes & 1 << m != 0)
                        .map(move |m| PrimitiveDateTime::new(d, Time::from_hms(h, m, 0).expect("hours and minutes are in range")))
                })
            })
            .filter(move |t| *t >= start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(s: &str, after: PrimitiveDateTime) -> PrimitiveDateTime {
        next_opt(s, after).unwrap()
    }

    fn next_opt(s: &str, after: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        s.parse::<Schedule>().unwrap().times_from(after + time::Duration::minutes(1)).next()
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(next("*/1 * * * *", datetime!(2024-01-01 10:00:30)), datetime!(2024-01-01 10:01));
        assert_eq!(next("*/15 * * * *", datetime!(2024-01-01 10:16)), datetime!(2024-01-01 10:30));
        assert_eq!(next("5/20 * * * *", datetime!(2024-01-01 10:46)), datetime!(2024-01-01 11:05));
        assert_eq!(next("0 9-17/4 * * *", datetime!(2024-01-01 13:00)), datetime!(2024-01-01 17:00));
        assert_eq!(next("0 0 1,15 * *", datetime!(2024-01-02 00:00)), datetime!(2024-01-15 00:00));
        assert_eq!(next("0 0 * FEB MON", datetime!(2024-01-02 00:00)), datetime!(2024-02-05 00:00));
        assert_eq!(next("0 0 * * 7", datetime!(2024-01-01 00:00)), datetime!(2024-01-07 00:00));
        assert_eq!(next("0 12 ? * sat,sun", datetime!(2024-01-01 00:00)), datetime!(2024-01-06 12:00));
    }

    #[test]
    fn day_fields_combine_like_robfig_cron() {
        // Neither is a star: either may match (the 13th, or any Friday).
        assert_eq!(next("0 0 13 * 5", datetime!(2024-01-01 00:00)), datetime!(2024-01-05 00:00));
        // A star day of month: both must match, so only Fridays.
        assert_eq!(next("0 0 * * 5", datetime!(2024-01-01 00:00)), datetime!(2024-01-05 00:00));
        assert_eq!(next("0 0 */2 * 5", datetime!(2024-01-05 00:00)), datetime!(2024-01-19 00:00));
    }

    #[test]
    fn macros_and_rare_dates() {
        assert_eq!(next("@hourly", datetime!(2024-01-01 10:00)), datetime!(2024-01-01 11:00));
        assert_eq!(next("@daily", datetime!(2024-01-01 10:00)), datetime!(2024-01-02 00:00));
        assert_eq!(next("@midnight", datetime!(2024-01-01 10:00)), datetime!(2024-01-02 00:00));
        assert_eq!(next("@weekly", datetime!(2024-01-01 10:00)), datetime!(2024-01-07 00:00));
        assert_eq!(next("@monthly", datetime!(2024-01-31 10:00)), datetime!(2024-02-01 00:00));
        assert_eq!(next("@yearly", datetime!(2024-06-01 10:00)), datetime!(2025-01-01 00:00));
        assert_eq!(next("@annually", datetime!(2024-06-01 10:00)), datetime!(2025-01-01 00:00));
        assert_eq!(next("0 0 29 2 *", datetime!(2024-03-01 00:00)), datetime!(2028-02-29 00:00));
        assert_eq!(next_opt("0 0 30 2 *", datetime!(2024-03-01 00:00)), None);
    }

    #[test]
    fn rejects_bad_schedules() {
        for bad in
            ["", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "5-1 * * * *", "@every"]
        {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?} should be rejected");
        }
    }
}
