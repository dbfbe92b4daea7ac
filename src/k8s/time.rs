//! Timestamps as Kubernetes writes them in objects: RFC 3339 in UTC, to the second
//! (`2026-12-04T15:00:00Z`), as strings and as `meta/v1` Time (a jiff Timestamp), and their
//! conversions to the `time` crate's `OffsetDateTime` that schedules are computed with.

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

/// The time `seconds` from now, as Kubernetes writes timestamps.
pub fn rfc3339_after(seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds)).format(&format).expect("a fixed format always formats")
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
    fn timestamps_are_rfc3339_to_the_second() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
