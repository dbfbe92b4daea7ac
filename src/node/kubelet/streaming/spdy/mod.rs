//! SPDY/3.1, which kubectl's port-forward (and older clients' exec and attach) speak to the
//! kubelet: frames, compressed header blocks, and the server side of a connection; plus the
//! HTTP upgrade that starts one.

pub mod conn;
pub mod frame;
pub mod headers;

use axum::http::HeaderMap;

/// The `Upgrade` token of a SPDY connection.
pub const UPGRADE: &str = "SPDY/3.1";
/// The header a client lists the stream protocols it speaks in, in order of preference.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// Whether the request asks to upgrade to SPDY/3.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE))
}

/// The first protocol the client offers (in its order) that the server speaks.
pub fn negotiate(headers: &HeaderMap, supported: &[&'static str]) -> Option<&'static str> {
    let offered = headers.get_all(PROTOCOL_HEADER).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim);
    offered.into_iter().find_map(|p| supported.iter().find(|s| **s == p).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_protocol_wins() {
        let mut h = HeaderMap::new();
        h.append(PROTOCOL_HEADER, "v5.channel.k8s.io".parse().unwrap());
        h.append(PROTOCOL_HEADER, "v4.channel.k8s.io, v3.channel.k8s.io".parse().unwrap());
        h.insert("upgrade", "spdy/3.1".parse().unwrap());
        assert!(is_upgrade(&h));
        assert_eq!(negotiate(&h, &["v3.channel.k8s.io", "v4.channel.k8s.io"]), Some("v4.channel.k8s.io"));
        assert_eq!(negotiate(&h, &["portforward.k8s.io"]), None);
    }
}
