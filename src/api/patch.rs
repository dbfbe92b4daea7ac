//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
//! merge patch. Strategic merge follows each list field's patch strategy; the table below
//! covers the list fields of the resources served so far.

use serde_json::{Map, Value};

use super::status::ApiError;

/// Lists merged by a key field instead of being replaced, by field name.
pub(super) const MERGE_KEYS: &[(&str, &str)] = &[("ownerReferences", "uid"), ("secrets", "name"), ("imagePullSecrets", "name")];
/// Primitive lists merged as sets.
const SET_LISTS: &[&str] = &["finalizers"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` of type `kind` to `doc`.
pub fn apply(doc: &mut Value, kind: PatchType, patch: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(patch).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            super::limits::json_patch(doc, &ops.0)
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchType::Strategic => {
            let p: Value =
                serde_json::from_slice(patch).map_err(|e| ApiError::bad_request(format!("invalid strategic merge patch: {e}")))?;
            strategic_merge(doc, &p);
            Ok(())
        }
    }
}

/// Strategic merge of `patch` into `doc`: maps merge recursively, `null` deletes, a map with
/// `$patch: replace` replaces, `$patch: delete` deletes; lists follow [`MERGE_KEYS`] /
/// [`SET_LISTS`] (with `$deleteFromPrimitiveList/<field>`), others are replaced.
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = p.clone();
            replaced.remove("$patch");
            *doc = Value::Object(replaced);
            return;
        }
        Some("delete") => {
            *doc = Value::Null;
            return;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let target = doc.as_object_mut().expect("made an object above");
    for (key, value) in p {
        if key == "$patch" || key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) = (target.get_mut(field), value) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        let merge_key = MERGE_KEYS.iter().find(|(f, _)| f == key).map(|(_, k)| *k);
        match (target.get_mut(key), value) {
            (Some(Value::Array(items)), Value::Array(patch_items)) if merge_key.is_some() => {
                merge_list(items, patch_items, merge_key.unwrap_or_default())
            }
            (Some(Value::Array(items)), Value::Array(patch_items)) if SET_LISTS.contains(&key.as_str()) => {
                for i in patch_items {
                    if !items.contains(i) {
                        items.push(i.clone());
                    }
                }
            }
            (Some(existing), Value::Object(_)) if existing.is_object() => {
                strategic_merge(existing, value);
                if existing.is_null() {
                    target.remove(key);
                }
            }
            _ if value.is_object() => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, value);
                if !fresh.is_null() {
                    target.insert(key.clone(), fresh);
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Merges list elements by `key`: matching elements merge, `$patch: delete` removes, new ones
/// are appended.
fn merge_list(items: &mut Vec<Value>, patch_items: &[Value], key: &str) {
    for p in patch_items {
        let Some(id) = p.get(key) else { continue };
        let pos = items.iter().position(|i| i.get(key) == Some(id));
        match (pos, p.get("$patch").and_then(Value::as_str)) {
            (Some(i), Some("delete")) => {
                items.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => strategic_merge(&mut items[i], p),
            (None, _) => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, p);
                items.push(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_follows_list_strategies() {
        let mut doc = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"], "ownerReferences": [{"uid": "u1", "name": "one"}, {"uid": "u2", "name": "two"}]},
            "data": {"k": "v"},
        });
        let patch = json!({
            "metadata": {"labels": {"a": null, "c": "3"}, "finalizers": ["y"], "ownerReferences": [{"uid": "u1", "name": "uno"}, {"uid": "u2", "$patch": "delete"}, {"uid": "u3", "name": "three"}]},
            "data": {"$patch": "replace", "only": "this"},
        });
        strategic_merge(&mut doc, &patch);
        assert_eq!(doc["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(doc["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(doc["metadata"]["ownerReferences"], json!([{"uid": "u1", "name": "uno"}, {"uid": "u3", "name": "three"}]));
        assert_eq!(doc["data"], json!({"only": "this"}));
        strategic_merge(&mut doc, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}));
        assert_eq!(doc["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_and_merge_patches_apply() {
        let mut doc = json!({"a": {"b": 1}, "l": [1, 2]});
        apply(&mut doc, PatchType::Json, br#"[{"op":"replace","path":"/a/b","value":2},{"op":"add","path":"/l/-","value":3}]"#).unwrap();
        assert_eq!(doc, json!({"a": {"b": 2}, "l": [1, 2, 3]}));
        apply(&mut doc, PatchType::Merge, br#"{"a": null, "l": [9]}"#).unwrap();
        assert_eq!(doc, json!({"l": [9]}));
        assert!(apply(&mut doc, PatchType::Json, br#"[{"op":"remove","path":"/nope"}]"#).is_err());
    }
}
