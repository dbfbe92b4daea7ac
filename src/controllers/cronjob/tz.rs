//! IANA time zones for CronJob `timeZone`: a small reader of the system's TZif files
//! (`/usr/share/zoneinfo/<name>`, versions 1–3) and of the POSIX TZ rule in their footer, which
//! covers times after the last listed transition. Enough to map UTC to local time and back.

use std::path::Path;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Weekday};

/// Where the system keeps its zone files.
const ZONEINFO: &str = "/usr/share/zoneinfo";

#[derive(Debug, thiserror::Error)]
pub enum TzError {
    #[error("invalid time zone name {0:?}")]
    BadName(String),
    #[error("unknown time zone {name:?}: {source}")]
    Missing { name: String, source: std::io::Error },
    #[error("malformed time zone data: {0}")]
    Malformed(String),
}

/// A time zone: UTC offsets (seconds east) by transition, then a rule for later times.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeZone {
    /// The offset before the first transition.
    initial: i32,
    /// (UTC second the offset starts at, offset), in order.
    transitions: Vec<(i64, i32)>,
    rule: Option<PosixRule>,
}

/// A POSIX TZ string such as `CET-1CEST,M3.5.0,M10.5.0/3`.
#[derive(Debug, Clone, PartialEq)]
struct PosixRule {
    std_offset: i32,
    dst: Option<DstRule>,
}

#[derive(Debug, Clone, PartialEq)]
struct DstRule {
    offset: i32,
    start: (RuleDay, i32),
    end: (RuleDay, i32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RuleDay {
    /// `Jn`: day 1–365, February 29 never counted.
    Julian1(u16),
    /// `n`: day 0–365, February 29 counted.
    Julian0(u16),
    /// `Mm.w.d`: day d (0 = Sunday) of week w (5 = last) of month m.
    MonthWeekDay(u8, u8, u8),
}

impl TimeZone {
    pub fn utc() -> Self {
        TimeZone { initial: 0, transitions: Vec::new(), rule: None }
    }

    /// Loads a zone by IANA name from the system's zoneinfo directory.
    pub fn load(name: &str) -> Result<Self, TzError> {
        Self::load_from(Path::new(ZONEINFO), name)
    }

    fn load_from(dir: &Path, name: &str) -> Result<Self, TzError> {
        let safe = |part: &str| !part.is_empty() && part != "." && part != "..";
        if name.starts_with('/') || !name.split('/').all(safe) {
            return Err(TzError::BadName(name.to_string()));
        }
        let bytes = std::fs::read(dir.join(name)).map_err(|source| TzError::Missing { name: name.to_string(), source })?;
        Self::parse(&bytes)
    }

    /// Parses TZif data.
    pub fn parse(data: &[u8]) -> Result<Self, TzError> {
        let mut r = Reader { data, pos: 0 };
        let header = Header::read(&mut r)?;
        if header.version == 0 {
            return header.body(&mut r, 4);
        }
        // Version 2+: skip the 32-bit block, then read the 64-bit one and the footer.
        r.skip(header.len(4))?;
        let header = Header::read(&mut r)?;
        let mut zone = header.body(&mut r, 8)?;
        let footer = std::str::from_utf8(&r.data[r.pos..]).map_err(|_| TzError::Malformed("footer is not text".into()))?;
        let rule = footer.trim_matches('\n');
        if !rule.is_empty() {
            zone.rule = Some(PosixRule::parse(rule).ok_or_else(|| TzError::Malformed(format!("unsupported TZ rule {rule:?}")))?);
        }
        Ok(zone)
    }

    /// The offset (seconds east of UTC) in force at a UTC second.
    pub fn offset_at(&self, utc: i64) -> i32 {
        // How many transitions have happened by `utc`.
        let passed = self.transitions.partition_point(|(at, _)| *at <= utc);
        match &self.rule {
            Some(rule) if passed == self.transitions.len() => rule.offset_at(utc),
            _ if passed == 0 => self.initial,
            _ => self.transitions[passed - 1].1,
        }
    }

    pub fn to_local(&self, t: OffsetDateTime) -> PrimitiveDateTime {
        let local = t + time::Duration::seconds(i64::from(self.offset_at(t.unix_timestamp())));
        PrimitiveDateTime::new(local.date(), local.time())
    }

    /// The earliest instant showing `local` on the clock; `None` when the clock skips it.
    pub fn from_local(&self, local: PrimitiveDateTime) -> Option<OffsetDateTime> {
        let secs = local.assume_utc().unix_timestamp();
        let candidates = [self.offset_at(secs - 86_400), self.offset_at(secs + 86_400), self.offset_at(secs)];
        candidates
            .iter()
            .map(|o| secs - i64::from(*o))
            .filter(|utc| utc + i64::from(self.offset_at(*utc)) == secs)
            .min()
            .and_then(|utc| OffsetDateTime::from_unix_timestamp(utc).ok())
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TzError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| TzError::Malformed("truncated".into()))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), TzError> {
        self.take(n).map(|_| ())
    }

    fn int(&mut self, width: usize) -> Result<i64, TzError> {
        let b = self.take(width)?;
        Ok(if width == 4 {
            i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            i64::from_be_bytes(b.try_into().expect("8 bytes"))
        })
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn read(r: &mut Reader<'_>) -> Result<Self, TzError> {
        if r.take(4)? != b"TZif" {
            return Err(TzError::Malformed("not a TZif file".into()));
        }
        let version = match r.take(1)?[0] {
            0 => 0,
            v @ b'2'..=b'9' => v - b'0',
            v => return Err(TzError::Malformed(format!("unknown version {v}"))),
        };
        r.skip(15)?;
        let mut counts = [0usize; 6];
        for c in &mut counts {
            *c = usize::try_from(r.int(4)?).map_err(|_| TzError::Malformed("negative count".into()))?;
        }
        let [isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt] = counts;
        if typecnt == 0 {
            return Err(TzError::Malformed("no local time types".into()));
        }
        Ok(Header { version, isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt })
    }

    /// The size of the data block with `width`-byte times.
    fn len(&self, width: usize) -> usize {
        self.timecnt * (width + 1) + self.typecnt * 6 + self.charcnt + self.leapcnt * (width + 4) + self.isstdcnt + self.isutcnt
    }

    fn body(&self, r: &mut Reader<'_>, width: usize) -> Result<TimeZone, TzError> {
        let times = (0..self.timecnt).map(|_| r.int(width)).collect::<Result<Vec<_>, _>>()?;
        let indices = r.take(self.timecnt)?.to_vec();
        let mut offsets = Vec::with_capacity(self.typecnt);
        for _ in 0..self.typecnt {
            offsets.push(r.int(4)? as i32);
            r.skip(2)?;
        }
        r.skip(self.charcnt + self.leapcnt * (width + 4) + self.isstdcnt + self.isutcnt)?;
        let transitions = times
            .into_iter()
            .zip(indices)
            .map(|(at, i)| offsets.get(usize::from(i)).map(|o| (at, *o)).ok_or_else(|| TzError::Malformed("bad type index".into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TimeZone { initial: offsets[0], transitions, rule: None })
    }
}

impl PosixRule {
    fn parse(s: &str) -> Option<Self> {
        let mut p = RuleParser { s };
        p.name()?;
        let std_offset = -p.offset()?;
        if p.s.is_empty() {
            return Some(PosixRule { std_offset, dst: None });
        }
        p.name()?;
        let offset = if p.s.starts_with(',') { std_offset + 3600 } else { -p.offset()? };
        let mut edge = || -> Option<(RuleDay, i32)> {
            p.s = p.s.strip_prefix(',')?;
            let day = p.day()?;
            let at = if let Some(rest) = p.s.strip_prefix('/') {
                p.s = rest;
                p.offset()?
            } else {
                7200
            };
            Some((day, at))
        };
        let start = edge()?;
        let end = edge()?;
        p.s.is_empty().then_some(PosixRule { std_offset, dst: Some(DstRule { offset, start, end }) })
    }

    fn offset_at(&self, utc: i64) -> i32 {
        let Some(dst) = &self.dst else { return self.std_offset };
        let year = match OffsetDateTime::from_unix_timestamp(utc + i64::from(self.std_offset)) {
            Ok(t) => t.year(),
            Err(_) => return self.std_offset,
        };
        let (Some(start), Some(end)) = (dst.start.0.date(year), dst.end.0.date(year)) else { return self.std_offset };
        // Start is given in standard time, end in daylight time.
        let start = start.midnight().assume_utc().unix_timestamp() + i64::from(dst.start.1) - i64::from(self.std_offset);
        let end = end.midnight().assume_utc().unix_timestamp() + i64::from(dst.end.1) - i64::from(dst.offset);
        let in_dst = if start < end { start <= utc && utc < end } else { !(end <= utc && utc < start) };
        if in_dst {
            dst.offset
        } else {
            self.std_offset
        }
    }
}

impl RuleDay {
    fn date(self, year: i32) -> Option<Date> {
        match self {
            RuleDay::Julian0(n) => Date::from_ordinal_date(year, n + 1).ok(),
            RuleDay::Julian1(n) => {
                let leap_shift = u16::from(time::util::is_leap_year(year) && n >= 60);
                Date::from_ordinal_date(year, n + leap_shift).ok()
            }
            RuleDay::MonthWeekDay(m, w, d) => {
                let month = Month::try_from(m).ok()?;
                let first = Date::from_calendar_date(year, month, 1).ok()?;
                let weekday = Weekday::Sunday.nth_next(d);
                let mut day = first;
                while day.weekday() != weekday {
                    day = day.next_day()?;
                }
                for _ in 1..w {
                    match day.checked_add(time::Duration::weeks(1)) {
                        Some(next) if next.month() == month => day = next,
                        _ => break,
                    }
                }
                Some(day)
            }
        }
    }
}

struct RuleParser<'a> {
    s: &'a str,
}

impl RuleParser<'_> {
    fn name(&mut self) -> Option<()> {
        let len = if let Some(rest) = self.s.strip_prefix('<') {
            rest.find('>')? + 2
        } else {
            self.s.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(self.s.len())
        };
        (len >= 3).then(|| self.s = &self.s[len..])
    }

    fn number(&mut self) -> Option<i32> {
        let len = self.s.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.s.len());
        let n = self.s[..len].parse().ok()?;
        self.s = &self.s[len..];
        Some(n)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, as written (POSIX offsets count west as positive).
    fn offset(&mut self) -> Option<i32> {
        let sign = match self.s.as_bytes().first() {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        if sign != 0 {
            self.s = &self.s[1..];
        }
        let mut secs = self.number()? * 3600;
        for unit in [60, 1] {
            match self.s.strip_prefix(':') {
                Some(rest) => {
                    self.s = rest;
                    secs += self.number()? * unit;
                }
                None => break,
            }
        }
        Some(if sign < 0 { -secs } else { secs })
    }

    fn day(&mut self) -> Option<RuleDay> {
        if let Some(rest) = self.s.strip_prefix('M') {
            self.s = rest;
            let m = self.number()?;
            self.s = self.s.strip_prefix('.')?;
            let w = self.number()?;
            self.s = self.s.strip_prefix('.')?;
            let d = self.number()?;
            let ok = (1..=12).contains(&m) && (1..=5).contains(&w) && (0..=6).contains(&d);
            ok.then_some(RuleDay::MonthWeekDay(m as u8, w as u8, d as u8))
        } else if let Some(rest) = self.s.strip_prefix('J') {
            self.s = rest;
            let n = self.number()?;
            (1..=365).contains(&n).then_some(RuleDay::Julian1(n as u16))
        } else {
            let n = self.number()?;
            (0..=365).contains(&n).then_some(RuleDay::Julian0(n as u16))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn new_york_from_the_system_database() {
        let tz = TimeZone::load("America/New_York").expect("tzdata is installed");
        // Winter: EST (-5), summer: EDT (-4), switching on 2024-03-10 and 2024-11-03.
        assert_eq!(tz.to_local(datetime!(2024-01-15 14:00 UTC)), datetime!(2024-01-15 09:00));
        assert_eq!(tz.to_local(datetime!(2024-07-15 13:00 UTC)), datetime!(2024-07-15 09:00));
        assert_eq!(tz.from_local(datetime!(2024-03-10 03:00)), Some(datetime!(2024-03-10 07:00 UTC)));
        // The skipped hour has no instant; the repeated one maps to its first occurrence.
        assert_eq!(tz.from_local(datetime!(2024-03-10 02:30)), None);
        assert_eq!(tz.from_local(datetime!(2024-11-03 01:30)), Some(datetime!(2024-11-03 05:30 UTC)));
        // Far beyond the listed transitions the footer rule applies.
        assert_eq!(tz.to_local(datetime!(2090-07-01 12:00 UTC)), datetime!(2090-07-01 08:00));
        assert_eq!(tz.to_local(datetime!(2090-12-01 12:00 UTC)), datetime!(2090-12-01 07:00));
    }

    #[test]
    fn posix_rules() {
        let berlin = PosixRule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(berlin.offset_at(datetime!(2030-01-10 12:00 UTC).unix_timestamp()), 3600);
        assert_eq!(berlin.offset_at(datetime!(2030-03-31 00:59 UTC).unix_timestamp()), 3600);
        assert_eq!(berlin.offset_at(datetime!(2030-03-31 01:00 UTC).unix_timestamp()), 7200);
        assert_eq!(berlin.offset_at(datetime!(2030-10-27 00:59 UTC).unix_timestamp()), 7200);
        assert_eq!(berlin.offset_at(datetime!(2030-10-27 01:00 UTC).unix_timestamp()), 3600);
        // Southern hemisphere: daylight time spans the new year.
        let sydney = PosixRule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(datetime!(2030-01-10 00:00 UTC).unix_timestamp()), 11 * 3600);
        assert_eq!(sydney.offset_at(datetime!(2030-07-10 00:00 UTC).unix_timestamp()), 10 * 3600);
        assert_eq!(PosixRule::parse("<+0530>-5:30").unwrap().offset_at(0), 5 * 3600 + 1800);
        assert_eq!(PosixRule::parse("UTC0").unwrap().offset_at(0), 0);
        assert!(PosixRule::parse("CET-1CEST,M13.5.0,M10.5.0").is_none());
    }

    #[test]
    fn rejects_bad_names_and_data() {
        assert!(matches!(TimeZone::load("../etc/passwd"), Err(TzError::BadName(_))));
        assert!(matches!(TimeZone::load("/etc/passwd"), Err(TzError::BadName(_))));
        assert!(matches!(TimeZone::load("Mars/Olympus_Mons"), Err(TzError::Missing { .. })));
        assert!(matches!(TimeZone::parse(b"TZif2"), Err(TzError::Malformed(_))));
        assert!(matches!(TimeZone::parse(b"hello world"), Err(TzError::Malformed(_))));
    }
}
