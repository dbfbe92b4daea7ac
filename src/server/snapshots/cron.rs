//! Five-field cron expressions (minute hour day-of-month month day-of-week), as k3s's
//! `--etcd-snapshot-schedule-cron` takes them: `*`, numbers, ranges `a-b`, steps `*/n` and
//! `a-b/n`, lists `a,b`; evaluated in UTC. As in cron, when both day fields are restricted a
//! day matching either one matches.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Whether each day field is `*` (then only the other one decides).
    any_day: bool,
    any_weekday: bool,
}

/// Which of `min..=max` the field `spec` selects.
fn field(spec: &str, min: u32, max: u32, what: &str) -> Result<Vec<bool>, String> {
    let mut set = vec![false; max as usize + 1];
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("{what}: {s:?} is not a number"))?;
        // Day of week 7 is Sunday, as in cron.
        let n = if what == "day of week" && n == 7 { 0 } else { n };
        if n < min || n > max {
            return Err(format!("{what}: {n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("{what}: bad step in {part:?}"))?),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, max),
                None => (number(r)?, number(r)?),
            },
        };
        if from > to {
            return Err(format!("{what}: empty range {range:?}"));
        }
        for n in (from..=to).step_by(step as usize) {
            set[n as usize] = true;
        }
    }
    Ok(set)
}

impl Schedule {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(format!("{spec:?}: a cron schedule has five fields (minute hour day-of-month month day-of-week)"));
        };
        Ok(Self {
            minutes: field(m, 0, 59, "minute")?,
            hours: field(h, 0, 23, "hour")?,
            days: field(dom, 1, 31, "day of month")?,
            months: field(mon, 1, 12, "month")?,
            weekdays: field(dow, 0, 7, "day of week")?,
            any_day: dom == "*",
            any_weekday: dow == "*",
        })
    }

    fn day_matches(&self, t: OffsetDateTime) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().number_days_from_sunday() as usize];
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first whole minute after `after` the schedule selects (`None` if none within 5 years,
    /// e.g. February 30th).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + Duration::minutes(1);
        let mut t = start;
        while t - start < Duration::days(5 * 366) {
            if !self.months[t.month() as usize] || !self.day_matches(t) {
                t = (t + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
            } else if !self.hours[t.hour() as usize] {
                t = (t + Duration::hours(1)).replace_minute(0).ok()?;
            } else if !self.minutes[t.minute() as usize] {
                t += Duration::minutes(1);
            } else {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(spec: &str, after: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(spec).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn k3s_default_runs_every_twelve_hours() {
        assert_eq!(next("0 */12 * * *", datetime!(2026-12-05 10:17:33 UTC)), datetime!(2026-12-05 12:00 UTC));
        assert_eq!(next("0 */12 * * *", datetime!(2026-12-05 12:00 UTC)), datetime!(2026-12-06 00:00 UTC));
    }

    #[test]
    fn fields_lists_ranges_and_steps() {
        assert_eq!(next("* * * * *", datetime!(2026-12-05 10:17:33 UTC)), datetime!(2026-12-05 10:18 UTC));
        assert_eq!(next("5,35 1-3 * * *", datetime!(2026-12-05 02:40 UTC)), datetime!(2026-12-05 03:05 UTC));
        assert_eq!(next("30 4 1 * *", datetime!(2026-12-05 00:00 UTC)), datetime!(2027-01-01 04:30 UTC));
        // 2026-12-06 is a Sunday; 7 is Sunday too.
        assert_eq!(next("0 0 * * 0", datetime!(2026-12-05 00:00 UTC)), datetime!(2026-12-06 00:00 UTC));
        assert_eq!(next("0 0 * * 7", datetime!(2026-12-05 00:00 UTC)), datetime!(2026-12-06 00:00 UTC));
        // Both day fields restricted: either matches (the 10th, or the Sunday before it).
        assert_eq!(next("0 0 10 * 0", datetime!(2026-12-05 00:00 UTC)), datetime!(2026-12-06 00:00 UTC));
        assert!(Schedule::parse("0 0 30 2 *").unwrap().next_after(datetime!(2026-12-05 00:00 UTC)).is_none());
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(Schedule::parse("0 */12 * *").unwrap_err().contains("five fields"));
        assert!(Schedule::parse("60 * * * *").unwrap_err().contains("minute: 60 is outside 0-59"));
        assert!(Schedule::parse("*/0 * * * *").unwrap_err().contains("bad step"));
        assert!(Schedule::parse("x * * * *").unwrap_err().contains("not a number"));
    }
}
