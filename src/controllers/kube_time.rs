//! Conversions between Kubernetes timestamps (`meta/v1` Time, a jiff Timestamp) and the `time`
//! crate's `OffsetDateTime` the controllers compute with.

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

/// Now, as a Kubernetes timestamp.
pub fn now() -> Time {
    to_k8s(OffsetDateTime::now_utc())
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
}
