//! Stable names derived from a pod's id: the host side of its veth pair and its state files.

use crate::pki::hex;
use sha2::{Digest, Sha256};

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// The host-side veth name for a pod: `veth` + the first 8 hex digits of sha256(pod id), so it is
/// the same on every call (teardown after a restart finds it) and fits in [`MAX_IFNAME`].
pub fn host_veth_name(pod_id: &str) -> String {
    format!("veth{}", &hex(&Sha256::digest(pod_id.as_bytes()))[..8])
}

/// Whether `id` may be used as a file name for a pod's namespace mount and state: non-empty,
/// at most 253 bytes, only `[A-Za-z0-9._-]`, not `.`/`..`. Pod UIDs and names pass.
pub fn valid_pod_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth_name("6f1c2c1e-7c1a-4a57-9d33-1b7f3f0f7a10");
        assert_eq!(a, host_veth_name("6f1c2c1e-7c1a-4a57-9d33-1b7f3f0f7a10"));
        assert!(a.starts_with("veth") && a.len() == 12 && a.len() <= MAX_IFNAME);
        assert_ne!(a, host_veth_name("another-pod"));
    }

    #[test]
    fn pod_ids_are_checked() {
        assert!(valid_pod_id("6f1c2c1e-7c1a-4a57-9d33-1b7f3f0f7a10"));
        assert!(valid_pod_id("default_web-0"));
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(!valid_pod_id(bad), "{bad:?}");
        }
    }
}
