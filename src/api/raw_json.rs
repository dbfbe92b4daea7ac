//! Byte-level reading and editing of stored JSON objects, for the watch cache's hot path: an
//! object's watch line is its stored bytes with `metadata.resourceVersion` spliced in, and a
//! pod's `spec.nodeName` is read without building a JSON tree.

use serde::Deserialize;

/// The stored object with `"resourceVersion":"<revision>"` inserted first into its top-level
/// `metadata`, or `None` when the bytes are not an object with a `metadata` object, or its
/// metadata already carries a resourceVersion (the caller then decodes and re-renders).
pub fn with_resource_version(raw: &[u8], revision: i64) -> Option<Vec<u8>> {
    let (at, empty) = metadata_insert_point(raw)?;
    let field = format!(r#""resourceVersion":"{revision}""#);
    let mut out = Vec::with_capacity(raw.len() + field.len() + 1);
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(field.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

/// The `spec.nodeName` of a stored object, if it names a node (an empty name is none).
pub fn node_name(raw: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Object {
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    struct Spec {
        #[serde(rename = "nodeName")]
        node_name: Option<String>,
    }
    let obj: Object = serde_json::from_slice(raw).ok()?;
    obj.spec?.node_name.filter(|n| !n.is_empty())
}

/// Just after the `{` of the top-level `metadata` object, and whether that object is empty.
fn metadata_insert_point(raw: &[u8]) -> Option<(usize, bool)> {
    let mut p = Cursor { raw, at: 0 };
    p.expect(b'{')?;
    if p.peek()? == b'}' {
        return None;
    }
    loop {
        let key = p.string()?;
        p.expect(b':')?;
        if key == b"metadata" {
            p.expect(b'{')?;
            let at = p.at;
            let empty = p.peek()? == b'}';
            let has_revision = object_has_key(&mut p, b"resourceVersion")?;
            return (!has_revision).then_some((at, empty));
        }
        p.value()?;
        match p.next()? {
            b',' => continue,
            _ => return None,
        }
    }
}

/// Whether the object whose `{` was just consumed has `key` (at its own level).
fn object_has_key(p: &mut Cursor<'_>, key: &[u8]) -> Option<bool> {
    if p.peek()? == b'}' {
        return Some(false);
    }
    loop {
        if p.string()? == key {
            return Some(true);
        }
        p.expect(b':')?;
        p.value()?;
        match p.next()? {
            b',' => continue,
            b'}' => return Some(false),
            _ => return None,
        }
    }
}

/// A position in JSON text, skipping whitespace before every token.
struct Cursor<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&mut self) -> Option<u8> {
        while self.raw.get(self.at)?.is_ascii_whitespace() {
            self.at += 1;
        }
        self.raw.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// A string's raw content (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match *self.raw.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some(&self.raw[start..self.at - 1]);
                }
                _ => self.at += 1,
            }
        }
    }

    /// Skips one value of any type.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.raw.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(*self.raw.get(self.at)?, b',' | b'}' | b']') && !self.raw[self.at].is_ascii_whitespace() {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spliced(obj: &Value) -> Option<Value> {
        with_resource_version(&serde_json::to_vec(obj).unwrap(), 42).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn splices_the_resource_version_into_the_top_level_metadata() {
        let obj = json!({
            "apiVersion": "apps/v1",
            "data": { "a": "{\"metadata\":{", "b\"q": "}]\\" },
            "kind": "Deployment",
            "list": [ { "metadata": { "name": "not-this" } }, 1.5e3, true, null ],
            "metadata": { "name": "d", "labels": { "x": "y" } },
            "spec": { "template": { "metadata": { "labels": { "x": "y" } } } }
        });
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(spliced(&obj), Some(want));
        let pretty = serde_json::to_vec_pretty(&obj).unwrap();
        let out: Value = serde_json::from_slice(&with_resource_version(&pretty, 42).unwrap()).unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn empty_metadata_gets_no_trailing_comma() {
        assert_eq!(spliced(&json!({ "kind": "X", "metadata": {} })), Some(json!({ "kind": "X", "metadata": { "resourceVersion": "42" } })));
    }

    #[test]
    fn refuses_what_it_cannot_splice() {
        assert_eq!(spliced(&json!({ "kind": "X" })), None, "no metadata");
        assert_eq!(spliced(&json!({ "metadata": "m" })), None, "metadata not an object");
        assert_eq!(spliced(&json!({ "metadata": { "name": "a", "resourceVersion": "7" } })), None, "already has one");
        assert_eq!(spliced(&json!([1])), None);
        for bad in [&b""[..], b"{", b"{\"metadata\"", b"{\"a\":\"unterminated", b"{\"a\":[1,2"] {
            assert_eq!(with_resource_version(bad, 1), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn reads_the_node_name() {
        let raw = |v: Value| serde_json::to_vec(&v).unwrap();
        assert_eq!(node_name(&raw(json!({ "metadata": {}, "spec": { "containers": [], "nodeName": "n1" } }))), Some("n1".into()));
        assert_eq!(node_name(&raw(json!({ "spec": { "nodeName": "" } }))), None);
        assert_eq!(node_name(&raw(json!({ "spec": {} }))), None);
        assert_eq!(node_name(b"not json"), None);
    }
}
