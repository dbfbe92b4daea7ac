//! Timestamps as Kubernetes writes them in objects: RFC 3339 in UTC, to the second
//! (`2026-12-04T15:00:00Z`).

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
    #[test]
    fn timestamps_are_rfc3339_to_the_second() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
