//! Timestamps as Kubernetes writes them in objects: RFC 3339 in UTC, to the second
//! (`2026-12-04T15:00:00Z`), as strings and as `meta/v1` Time (a jiff Timestamp), and their
//! conversions to the `time` crate's `OffsetDateTime` that schedules are computed with; and
//! the saturating arithmetic every duration read from an object or a request goes through, so
//! that no value, however large or negative, can overflow.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use time::OffsetDateTime;

/// A Kubernetes timestamp as an `OffsetDateTime` (to the second, as Kubernetes stores them).
pub fn from_k8s(t: &Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.as_second()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// An `OffsetDateTime` as a Kubernetes timestamp, truncated to the second.
pub fn to_k8s(t: OffsetDateTime) -> Time {
    Time(Timestamp::from_second(t.unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Now, as a Kubernetes Time.
pub fn now() -> Time {
    to_k8s(OffsetDateTime::now_utc())
}

/// Now, as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    rfc3339_after(0)
}

/// The time `seconds` from now (saturating at the years 1 and 9999), as Kubernetes writes
/// timestamps.
pub fn rfc3339_after(seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let year_one = time::macros::datetime!(0001-01-01 0:00 UTC);
    shift(OffsetDateTime::now_utc(), seconds).max(year_one).format(&format).expect("a fixed format always formats")
}

/// `t` moved by `seconds` (back when negative), saturating at the representable range.
pub fn shift(t: OffsetDateTime, seconds: i64) -> OffsetDateTime {
    t.saturating_add(time::Duration::seconds(seconds))
}

/// The longest wait orch computes: about 136 years, far enough to mean "never" and near enough
/// that adding it to any `Instant` cannot overflow.
pub const FOREVER: std::time::Duration = std::time::Duration::from_secs(1 << 32);

/// A count of seconds from an object or a request as a wait: negative is none, and anything
/// longer than [`FOREVER`] is [`FOREVER`].
pub fn wait(seconds: i64) -> std::time::Duration {
    std::time::Duration::from_secs(seconds.clamp(0, FOREVER.as_secs() as i64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_second() {
        let t = time::macros::datetime!(2024-05-06 07:08:09 UTC);
        assert_eq!(from_k8s(&to_k8s(t).0), t);
        assert_eq!(serde_json::to_value(to_k8s(t)).unwrap(), "2024-05-06T07:08:09Z");
    }

    #[test]
    fn arithmetic_on_any_number_of_seconds_saturates() {
        for s in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
            assert_eq!(rfc3339_after(s).len(), 20, "{s}");
            let _ = tokio::time::Instant::now() + wait(s);
            let _ = std::time::Instant::now() + wait(s);
        }
        assert_eq!(rfc3339_after(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(wait(-5), std::time::Duration::ZERO);
        assert_eq!(wait(7).as_secs(), 7);
        assert_eq!(wait(i64::MAX), FOREVER);
        assert_eq!(shift(OffsetDateTime::UNIX_EPOCH, i64::MIN).year(), -9999);
    }

    #[test]
    fn timestamps_are_rfc3339_to_the_second() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
