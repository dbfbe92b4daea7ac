//! Layout of the store inside one sled tree: order-preserving encodings of the four key families.
//!
//! - `l<key>`            → where the live version of a key is (its revisions; the value is in `h`)
//! - `h<enc(key)><rev>`  → every retained version of a key, tombstones included
//! - `r<rev><sub>`       → which key the `sub`-th change of revision `rev` touched
//! - `m<name>`           → store metadata (current revision, compacted revision, raft state)

use super::types::Revision;

pub(crate) const LATEST: u8 = b'l';
pub(crate) const HISTORY: u8 = b'h';
pub(crate) const REVLOG: u8 = b'r';
pub(crate) const META: u8 = b'm';

pub(crate) fn latest_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(LATEST);
    out.extend_from_slice(key);
    out
}

/// Escapes 0x00 as 0x00 0xff and terminates with 0x00 0x00, so that byte order of encoded keys
/// equals byte order of the keys and no encoded key is a prefix of another.
fn push_escaped(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The history prefix of one key: every version of `key` sits under it.
pub(crate) fn history_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 11);
    out.push(HISTORY);
    push_escaped(&mut out, key);
    out
}

pub(crate) fn history_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = history_prefix(key);
    out.extend_from_slice(&(rev as u64).to_be_bytes());
    out
}

/// Splits a history key into (key, revision).
pub(crate) fn parse_history_key(raw: &[u8]) -> Option<(Vec<u8>, Revision)> {
    let body = raw.strip_prefix(&[HISTORY])?;
    if body.len() < 10 {
        return None;
    }
    let (enc, rev) = body.split_at(body.len() - 8);
    let rev = u64::from_be_bytes(rev.try_into().ok()?) as Revision;
    let enc = enc.strip_suffix(&[0, 0])?;
    let mut key = Vec::with_capacity(enc.len());
    let mut i = 0;
    while i < enc.len() {
        key.push(enc[i]);
        if enc[i] == 0 {
            i += 1; // skip the 0xff escape
        }
        i += 1;
    }
    Some((key, rev))
}

pub(crate) fn revlog_key(rev: Revision, sub: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    out.push(REVLOG);
    out.extend_from_slice(&(rev as u64).to_be_bytes());
    out.extend_from_slice(&sub.to_be_bytes());
    out
}

pub(crate) fn parse_revlog_key(raw: &[u8]) -> Option<(Revision, u32)> {
    let body = raw.strip_prefix(&[REVLOG])?;
    let rev = u64::from_be_bytes(body.get(..8)?.try_into().ok()?) as Revision;
    let sub = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?);
    Some((rev, sub))
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut out = vec![META];
    out.extend_from_slice(name.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_round_trip_and_keep_order() {
        let keys: Vec<&[u8]> = vec![b"", b"\0", b"\0\0", b"a", b"a\0", b"a\0b", b"ab", b"b\xff"];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| history_key(k, 7)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(parse_history_key(e), Some((k.to_vec(), 7)));
        }
        let sorted = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, sorted, "encoding must preserve key order");
    }

    #[test]
    fn revisions_of_one_key_sort_numerically() {
        assert!(history_key(b"k", 9) < history_key(b"k", 10));
        assert!(history_key(b"k", 300) < history_key(b"k\0", 1));
        assert_eq!(parse_revlog_key(&revlog_key(42, 3)), Some((42, 3)));
    }
}
