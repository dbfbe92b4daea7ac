//! What a request body may build, whatever it asks for: JSON no deeper than what can be read
//! back (after a JSON patch as well as on parse), JSON patches with at most kube-apiserver's
//! 10,000 operations and 3 MiB of accumulated `copy`, and YAML whose aliases expand to no more
//! nodes than its text could spell out (a "billion laughs" body is refused, not expanded).

use std::fmt;

use axum::http::StatusCode;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::status::ApiError;

/// The deepest nesting of arrays and objects serde_json reads back (its recursion limit is
/// 128 open brackets), so no stored object is ever unreadable.
pub const MAX_DEPTH: usize = 127;
/// kube-apiserver's `maxJSONPatchOperations`.
const MAX_PATCH_OPERATIONS: usize = 10_000;
/// kube-apiserver's `JSONPatchMaxCopyBytes` (its request size limit).
const MAX_COPY_BYTES: usize = 3 << 20;
/// YAML nodes allowed beyond one per byte of the body.
const YAML_SPARE_NODES: usize = 10_000;

/// Whether `value` nests arrays and objects more than `max` levels deep (a scalar is level 0),
/// found without recursion.
pub fn deeper_than(value: &Value, max: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > max {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

fn too_deep() -> ApiError {
    ApiError {
        code: StatusCode::UNPROCESSABLE_ENTITY,
        reason: "Invalid",
        message: format!("the patched object would nest more than {MAX_DEPTH} levels deep"),
        details: None,
    }
}

/// Applies an RFC 6902 patch operation by operation, refusing (before building it) anything
/// nested deeper than [`MAX_DEPTH`], more than [`MAX_PATCH_OPERATIONS`] operations (413) and
/// copies adding up to more than [`MAX_COPY_BYTES`] (422, in evanphx/json-patch's words). `doc`
/// is left half-patched on error: callers patch a copy.
pub fn json_patch(doc: &mut Value, ops: &[json_patch::PatchOperation]) -> Result<(), ApiError> {
    use json_patch::PatchOperation as Op;
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(ApiError {
            code: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "RequestEntityTooLarge",
            message: format!("The allowed maximum operations in a JSON patch is {MAX_PATCH_OPERATIONS}, got {}", ops.len()),
            details: None,
        });
    }
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if let Op::Copy(copy) = op {
            if let Ok(from) = copy.from.resolve(doc) {
                copied = copied.saturating_add(json_size(from, MAX_COPY_BYTES - copied.min(MAX_COPY_BYTES)));
                if copied > MAX_COPY_BYTES {
                    return Err(ApiError::invalid(
                        "",
                        "",
                        "",
                        "patch",
                        &format!("Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_COPY_BYTES}"),
                    ));
                }
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| {
            let message = format!("operation '/{i}' failed at path '{}': {}", e.path, e.kind);
            ApiError::invalid("", "", "", "patch", &message)
        })?;
        let placed = match op {
            Op::Add(_) | Op::Replace(_) | Op::Move(_) | Op::Copy(_) => op.path(),
            Op::Remove(_) | Op::Test(_) => continue,
        };
        let level = placed.count();
        match placed.resolve(doc) {
            _ if level > MAX_DEPTH => return Err(too_deep()),
            Ok(v) if deeper_than(v, MAX_DEPTH - level) => return Err(too_deep()),
            _ => {}
        }
    }
    Ok(())
}

/// The length of `value` as compact JSON, counted up to a little past `cap`.
fn json_size(value: &Value, cap: usize) -> usize {
    struct Counter {
        n: usize,
        cap: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.cap {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, cap };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.n
}

/// Reads one YAML document as JSON, building at most one node per byte of `text` (plus a few
/// thousand): aliases that would expand past that are refused in go-yaml's words.
pub fn yaml(text: &[u8]) -> Result<Value, String> {
    let mut budget = text.len().saturating_add(YAML_SPARE_NODES);
    Budgeted { left: &mut budget }.deserialize(serde_yaml::Deserializer::from_slice(text)).map_err(|e| {
        let message = e.to_string();
        if message.contains(EXCESSIVE_ALIASING) {
            EXCESSIVE_ALIASING.to_string()
        } else {
            message
        }
    })
}

const EXCESSIVE_ALIASING: &str = "yaml: document contains excessive aliasing";

/// Builds a JSON value from a YAML deserializer, one unit of `left` per node.
struct Budgeted<'a> {
    left: &'a mut usize,
}

impl Budgeted<'_> {
    fn spend<E: serde::de::Error>(&mut self) -> Result<(), E> {
        *self.left = self.left.checked_sub(1).ok_or_else(|| E::custom(EXCESSIVE_ALIASING))?;
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(mut self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(mut self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Budgeted { left: self.left })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.spend()?;
            let value = map.next_value_seed(Budgeted { left: self.left })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn max_depth_is_what_serde_json_reads_back() {
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        let v: Value = serde_json::from_str(&nested(MAX_DEPTH)).unwrap();
        assert!(!deeper_than(&v, MAX_DEPTH));
        assert!(deeper_than(&v, MAX_DEPTH - 1));
        assert!(!deeper_than(&json!(1), 0));
        assert!(deeper_than(&json!({ "a": [] }), 0));
    }

    fn patch(doc: &mut Value, ops: Value) -> Result<(), ApiError> {
        json_patch(doc, &serde_json::from_value::<json_patch::Patch>(ops).unwrap().0)
    }

    /// Copies of `/a` into its own leaf, each doubling its depth: 16k levels from 14 ops.
    fn doubling_copies(n: u32) -> Value {
        json!((0..n).map(|k| json!({ "op": "copy", "from": "/a", "path": "/a".repeat((1 << k) + 1) })).collect::<Vec<_>>())
    }

    #[test]
    fn copies_that_nest_or_grow_without_bound_are_refused() {
        let mut doc = json!({ "a": {} });
        let e = patch(&mut doc, doubling_copies(14)).unwrap_err();
        assert_eq!(e.code.as_u16(), 422, "{}", e.message);
        assert!(e.message.contains("nest more than 127"), "{}", e.message);
        // Each copy doubles the size: 3 MiB of copies are refused.
        let mut doc = json!({ "a": ["x".repeat(1000)] });
        let ops: Vec<Value> = (0..40).map(|_| json!({ "op": "copy", "from": "/a", "path": "/a/-" })).collect();
        let e = patch(&mut doc, json!(ops)).unwrap_err();
        assert!(e.message.contains("accumulated size increase of copy"), "{}", e.message);
        let ops: Vec<Value> = (0..10_001).map(|_| json!({ "op": "test", "path": "/a/0", "value": 1 })).collect();
        assert_eq!(patch(&mut json!({}), json!(ops)).unwrap_err().code.as_u16(), 413);
    }

    #[test]
    fn ordinary_patches_apply_and_errors_name_the_operation() {
        let mut doc = json!({ "a": { "b": 1 }, "l": [1] });
        patch(
            &mut doc,
            json!([
                { "op": "copy", "from": "/a", "path": "/c" },
                { "op": "move", "from": "/c/b", "path": "/l/-" },
                { "op": "replace", "path": "/a/b", "value": { "deep": [[[]]] } },
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({ "a": { "b": { "deep": [[[]]] } }, "c": {}, "l": [1, 1] }));
        let e = patch(&mut doc, json!([{ "op": "test", "path": "/a", "value": 1 }, { "op": "remove", "path": "/nope" }])).unwrap_err();
        assert!(e.message.contains("operation '/0'"), "{}", e.message);
        let deep: Value = serde_json::from_str(&nested(125)).unwrap();
        let e = patch(&mut json!({ "a": { "b": {} } }), json!([{ "op": "add", "path": "/a/b/c", "value": deep }])).unwrap_err();
        assert!(e.message.contains("nest more than"), "{}", e.message);
    }

    #[test]
    fn yaml_reads_as_json_within_its_budget() {
        let v = yaml(b"a: 1\nb: [x, 2.5, true, null]\nc: &c {d: e}\nf: *c\n").unwrap();
        assert_eq!(v, json!({ "a": 1, "b": ["x", 2.5, true, null], "c": { "d": "e" }, "f": { "d": "e" } }));
        assert!(yaml(b"a: [").is_err());
    }

    #[test]
    fn yaml_alias_bombs_are_refused_quickly() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let started = std::time::Instant::now();
        assert_eq!(yaml(bomb.as_bytes()).unwrap_err(), EXCESSIVE_ALIASING);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // One wide anchor repeated many times: little text, many nodes.
        let wide = format!("a: &a [{}]\nb: [{}]\n", vec!["1"; 5000].join(","), vec!["*a"; 5000].join(","));
        assert_eq!(yaml(wide.as_bytes()).unwrap_err(), EXCESSIVE_ALIASING);
    }
}
