//! Kubernetes' name hashes: FNV-1a 32 over an object's JSON (plus a collision count) and
//! `rand.SafeEncodeString`, which spells the decimal hash with letters that never form words.

use serde::Serialize;

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bit.
pub fn fnv32a(data: &[u8]) -> u32 {
    fnv32a_extend(0x811c_9dc5, data)
}

fn fnv32a_extend(mut hash: u32, data: &[u8]) -> u32 {
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// `rand.SafeEncodeString`: each byte mapped onto a consonant/digit alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// `controller.ComputeHash`: the hash of `obj` and an optional collision count, safely encoded
/// (the `pod-template-hash` of Deployments, the revision hash of StatefulSets and DaemonSets).
pub fn compute_hash<T: Serialize>(obj: &T, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(obj).unwrap_or_default();
    let mut hash = fnv32a(&json);
    if let Some(count) = collision_count {
        hash = fnv32a_extend(hash, &(count as u32).to_le_bytes());
    }
    safe_encode(&hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn safe_encoding_maps_digits() {
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn collision_count_changes_the_hash() {
        let t = serde_json::json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}});
        let h0 = compute_hash(&t, None);
        assert_eq!(h0, compute_hash(&t, None), "deterministic");
        assert_ne!(h0, compute_hash(&t, Some(1)));
        assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
        assert!(h0.len() <= 10 && h0.bytes().all(|b| ALPHANUMS.contains(&b)));
    }
}
