//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): field ownership per manager
//! in `metadata.managedFields` (FieldsV1), conflicts when another manager owns a field the
//! applied configuration sets to a different value (overridden with `force=true`), and removal
//! of fields a manager stops applying.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::patch::strategic_merge;
use super::status::ApiError;
use super::strategy::Schema;

/// One path element: `f:<field>`, `k:<list map keys JSON>` or `v:<set item JSON>`.
type Path = Vec<String>;

/// Metadata fields kube-apiserver never records as owned.
const UNTRACKED_METADATA: &[&str] =
    &["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp"];

/// Fields kube-apiserver never records as owned.
fn untracked(path: &[String]) -> bool {
    matches!(path.first().map(String::as_str), Some("f:apiVersion" | "f:kind" | "f:status"))
        || (path.first().map(String::as_str) == Some("f:metadata")
            && path.get(1).and_then(|f| f.strip_prefix("f:")).is_some_and(|f| UNTRACKED_METADATA.contains(&f)))
}

/// The leaf fields `value` (an object of the type `schema` describes) sets.
pub fn field_set(value: &Value, schema: Schema<'_>) -> BTreeSet<Path> {
    changed_fields(None, value, schema)
}

/// The tracked leaf fields of `value` that differ from `before` (all of them without `before`).
fn changed_fields(before: Option<&Value>, value: &Value, schema: Schema<'_>) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    collect_changed(before, value, &mut Vec::new(), schema, &mut out);
    out.retain(|p| !untracked(p));
    out
}

/// The identity of an item of a `map` list: its key fields (those it has).
fn item_key(item: &Value, keys: &[&str]) -> Value {
    Value::Object(keys.iter().filter_map(|k| Some((k.to_string(), item.get(*k)?.clone()))).collect())
}

/// Whether `item` is the one `key` (a `k:` element's JSON) names.
fn matches_key(item: &Value, key: &Value) -> bool {
    key.as_object().is_some_and(|k| !k.is_empty() && k.iter().all(|(f, v)| item.get(f) == Some(v)))
}

/// The leaf fields of `value` that differ from `before` (all of them without `before`): a walk
/// of both trees that skips every unchanged subtree with one comparison. Items of `map` lists
/// are addressed by their keys and items of `set` lists by value, as the schema declares;
/// other lists are atomic.
fn collect_changed(before: Option<&Value>, value: &Value, path: &mut Path, schema: Schema<'_>, out: &mut BTreeSet<Path>) {
    if before == Some(value) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(format!("f:{k}"));
                collect_changed(before.and_then(|b| b.get(k)), v, path, schema.field(k), out);
                path.pop();
            }
        }
        Value::Array(items) if schema.list_map_keys().is_some() && items.iter().all(Value::is_object) => {
            let keys = schema.list_map_keys().unwrap_or_default();
            let previous = before.and_then(Value::as_array);
            for item in items {
                let key = item_key(item, &keys);
                let was = previous.and_then(|p| p.iter().find(|i| matches_key(i, &key)));
                path.push(format!("k:{key}"));
                collect_changed(was, item, path, schema.items(), out);
                path.pop();
            }
        }
        Value::Array(items) if schema.is_set() => {
            let previous = before.and_then(Value::as_array);
            for item in items.iter().filter(|i| !previous.is_some_and(|p| p.contains(i))) {
                path.push(format!("v:{item}"));
                out.insert(path.clone());
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Whether two versions of an object agree on every tracked field (nothing to record).
fn tracked_fields_equal(before: &Value, after: &Value) -> bool {
    fn same(a: Option<&Map<String, Value>>, b: Option<&Map<String, Value>>, untracked: &[&str]) -> bool {
        let a = a.into_iter().flatten().filter(|(k, _)| !untracked.contains(&k.as_str()));
        let b = b.into_iter().flatten().filter(|(k, _)| !untracked.contains(&k.as_str()));
        a.eq(b)
    }
    fn meta(v: &Value) -> Option<&Map<String, Value>> {
        v.get("metadata").and_then(Value::as_object)
    }
    same(before.as_object(), after.as_object(), &["apiVersion", "kind", "status", "metadata"])
        && same(meta(before), meta(after), UNTRACKED_METADATA)
}

/// A list element of a path: what it matches (`k:` keys or a `v:` value) and how.
fn list_element(head: &str) -> Option<(Value, fn(&Value, &Value) -> bool)> {
    if let Some(key) = head.strip_prefix("k:") {
        Some((serde_json::from_str(key).ok()?, matches_key))
    } else {
        Some((serde_json::from_str(head.strip_prefix("v:")?).ok()?, |item, v| item == v))
    }
}

/// The value at `path`, if present.
fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = path.split_first() else { return Some(value) };
    let next = match head.strip_prefix("f:") {
        Some(f) => value.get(f)?,
        None => {
            let (element, matches) = list_element(head)?;
            value.as_array()?.iter().find(|i| matches(i, &element))?
        }
    };
    lookup(next, rest)
}

/// Removes the value at `path`.
fn remove(value: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else { return };
    if let Some(f) = head.strip_prefix("f:") {
        if rest.is_empty() {
            if let Some(m) = value.as_object_mut() {
                m.remove(f);
            }
        } else if let Some(child) = value.get_mut(f) {
            remove(child, rest);
        }
    } else if let Some((element, matches)) = list_element(head) {
        if let Some(items) = value.as_array_mut() {
            if rest.is_empty() {
                items.retain(|i| !matches(i, &element));
            } else if let Some(item) = items.iter_mut().find(|i| matches(i, &element)) {
                remove(item, rest);
            }
        }
    }
}

/// FieldsV1 JSON for a set of paths.
pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut node = &mut root;
        for seg in p {
            node = node.entry(seg.clone()).or_insert_with(|| json!({})).as_object_mut().expect("FieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<_> = v.as_object().map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect()).unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// One manager's entry in `metadata.managedFields`.
struct Entry {
    manager: String,
    operation: String,
    raw: Value,
    fields: BTreeSet<Path>,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").into(),
                    operation: e["operation"].as_str().unwrap_or("").into(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                    raw: e.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry_json(manager: &str, operation: &str, api_version: &str, fields: &BTreeSet<Path>, now: &str) -> Value {
    json!({ "manager": manager, "operation": operation, "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(fields) })
}

/// A path as kube writes it in conflicts: `.spec.containers[name="c"].image`, `.finalizers[="x"]`.
fn describe(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(f) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(Value::Object(keys)) = element.strip_prefix("k:").and_then(|k| serde_json::from_str(k).ok()) {
            let keys: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", keys.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Applies `config` for `manager` on top of `current` (`None`: the object does not exist yet)
/// and returns the object to store, or a 409 listing the conflicting fields.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    current: Option<&Value>,
    config: &Value,
    schema: Schema<'_>,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
    kind_plural: (&str, &str, &str),
) -> Result<Value, ApiError> {
    let applied = field_set(config, schema);
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    let mut managers = entries(&obj);
    let mut conflicts = Vec::new();
    // Fields another manager owns with another value conflict; equal values are shared.
    let mut differing = BTreeSet::new();
    for other in managers.iter().filter(|e| !(e.manager == manager && e.operation == "Apply")) {
        for path in other.fields.intersection(&applied) {
            if lookup(&obj, path) != lookup(config, path) {
                let version = other.raw["apiVersion"].as_str().unwrap_or(api_version);
                conflicts.push(format!("conflict with \"{}\" using {version}: {}", other.manager, describe(path)));
                differing.insert(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let (group, plural, name) = kind_plural;
        let mut e = ApiError::conflict(group, plural, name);
        e.reason = "Conflict";
        e.message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts.join("; ")
        );
        return Err(e);
    }
    // Fields this manager applied before but no longer does, and nobody else owns, go away.
    let mine = managers.iter().find(|e| e.manager == manager && e.operation == "Apply");
    let previous = mine.map(|e| e.fields.clone()).unwrap_or_default();
    let mine_unchanged = mine.is_some() && previous == applied;
    let others: BTreeSet<Path> =
        managers.iter().filter(|e| !(e.manager == manager && e.operation == "Apply")).flat_map(|e| e.fields.iter().cloned()).collect();
    let dropped: Vec<&Path> = previous.difference(&applied).filter(|p| !others.contains(*p)).collect();
    // List items nobody owns anything of any more go whole (their keys with them).
    let owned_under = |prefix: &[String]| applied.iter().chain(&others).any(|p| p.starts_with(prefix));
    for path in &dropped {
        for end in (1..=path.len()).filter(|&i| path[i - 1].starts_with("k:")) {
            if !owned_under(&path[..end]) {
                remove(&mut obj, &path[..end]);
                break;
            }
        }
    }
    for path in dropped {
        remove(&mut obj, path);
    }
    let mut merged_config = config.clone();
    if let Some(meta) = merged_config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    strategic_merge(&mut obj, &merged_config, schema.for_apply())?;
    // Forced fields change hands; emptied entries disappear.
    for e in managers.iter_mut().filter(|e| !(e.manager == manager && e.operation == "Apply")) {
        let before = e.fields.len();
        e.fields.retain(|p| !differing.contains(p));
        if e.fields.len() != before {
            e.raw["fieldsV1"] = to_fields_v1(&e.fields);
        }
    }
    let mut list: Vec<Value> =
        managers.into_iter().filter(|e| !(e.manager == manager && e.operation == "Apply") && !e.fields.is_empty()).map(|e| e.raw).collect();
    // An apply that changes nothing leaves the object as it was (entry times included): no write.
    let same = |a: &Value, b: &Value| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            v["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
            v
        };
        strip(a) == strip(b)
    };
    if let Some(current) = current.filter(|c| mine_unchanged && same(c, &obj)) {
        return Ok(current.clone());
    }
    list.push(entry_json(manager, "Apply", api_version, &applied, now));
    obj["metadata"]["managedFields"] = Value::Array(list);
    Ok(obj)
}

/// Records that `manager` set `fields` by a non-apply write (operation `Update`), taking them
/// from other managers.
pub fn record_update(before: Option<&Value>, obj: &mut Value, schema: Schema<'_>, manager: &str, api_version: &str, now: &str) {
    if let Some(b) = before.filter(|b| tracked_fields_equal(b, obj)) {
        // A write of untracked fields only (a status update): the entries stay as they were.
        obj["metadata"]["managedFields"] = b["metadata"].get("managedFields").cloned().unwrap_or_else(|| json!([]));
        return;
    }
    let changed = changed_fields(before, obj, schema);
    let mut managers = before.map(entries).unwrap_or_default();
    for e in managers.iter_mut() {
        e.fields.retain(|p| !changed.contains(p) && lookup(obj, p).is_some());
        e.raw["fieldsV1"] = to_fields_v1(&e.fields);
    }
    let mine: BTreeSet<Path> = managers
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Update")
        .flat_map(|e| e.fields.iter().cloned())
        .chain(changed)
        .collect();
    let mut list: Vec<Value> = managers
        .into_iter()
        .filter(|e| !(e.manager == manager && e.operation == "Update") && !e.fields.is_empty())
        .map(|e| e.raw)
        .collect();
    if !mine.is_empty() {
        list.push(entry_json(manager, "Update", api_version, &mine, now));
    }
    obj["metadata"]["managedFields"] = Value::Array(list);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn pods() -> Schema<'static> {
        let api = crate::api::openapi::OpenApi::shared();
        api.schema(crate::api::registry::lookup("", "v1", "pods").unwrap())
    }

    fn apply_as(current: Option<&Value>, config: Value, manager: &str, force: bool) -> Result<Value, ApiError> {
        apply(current, &config, Schema::default(), manager, force, "v1", NOW, ("", "configmaps", "c"))
    }

    #[test]
    fn list_maps_of_a_custom_schema_keep_every_managers_items() {
        let schema_json = json!({ "type": "object", "properties": { "spec": { "type": "object", "properties": {
            "routes": { "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": { "type": "object", "properties": { "name": { "type": "string" }, "to": { "type": "string" } } } },
            "tags": { "type": "array", "x-kubernetes-list-type": "set", "items": { "type": "string" } } } } } });
        let schema = Schema::new(crate::api::openapi::OpenApi::shared(), Some(&schema_json));
        let apply_as = |current: Option<&Value>, config: Value, manager: &str| {
            apply(current, &config, schema, manager, false, "example.com/v1", NOW, ("example.com", "routers", "r")).unwrap()
        };
        let a = apply_as(None, json!({ "spec": { "routes": [{ "name": "a", "to": "x" }], "tags": ["one"] } }), "a");
        let b = apply_as(Some(&a), json!({ "spec": { "routes": [{ "name": "b", "to": "y" }], "tags": ["two"] } }), "b");
        assert_eq!(b["spec"]["routes"], json!([{ "name": "b", "to": "y" }, { "name": "a", "to": "x" }]));
        assert_eq!(b["spec"]["tags"], json!(["two", "one"]), "ordered as a strategic merge orders them");
        assert_eq!(
            b["metadata"]["managedFields"][1]["fieldsV1"]["f:spec"]["f:routes"],
            json!({ "k:{\"name\":\"b\"}": { "f:name": {}, "f:to": {} } })
        );
        assert_eq!(b["metadata"]["managedFields"][1]["fieldsV1"]["f:spec"]["f:tags"], json!({ "v:\"two\"": {} }));
        // a stops applying its route: only its own item goes.
        let a2 = apply_as(Some(&b), json!({ "spec": { "tags": ["one"] } }), "a");
        assert_eq!(a2["spec"]["routes"], json!([{ "name": "b", "to": "y" }]));
    }

    #[test]
    fn managers_conflict_force_takes_over_and_dropped_fields_go() {
        let a = apply_as(None, json!({"metadata": {"name": "c"}, "data": {"x": "1", "y": "1"}}), "a", false).unwrap();
        assert_eq!(a["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:data": {"f:x": {}, "f:y": {}}}));
        let err = apply_as(Some(&a), json!({"metadata": {"name": "c"}, "data": {"x": "2"}}), "b", false).unwrap_err();
        assert_eq!(err.code.as_u16(), 409);
        assert!(err.message.contains("conflict with \"a\" using v1: .data.x"), "{}", err.message);
        let same = apply_as(Some(&a), json!({"metadata": {"name": "c"}, "data": {"x": "1"}}), "b", false).unwrap();
        assert_eq!(same["data"]["x"], "1", "agreeing on a value is no conflict");
        let forced = apply_as(Some(&a), json!({"metadata": {"name": "c"}, "data": {"x": "2"}}), "b", true).unwrap();
        assert_eq!(forced["data"], json!({"x": "2", "y": "1"}));
        let owners: Vec<_> =
            forced["metadata"]["managedFields"].as_array().unwrap().iter().map(|e| (e["manager"].clone(), e["fieldsV1"].clone())).collect();
        assert_eq!(owners, vec![(json!("a"), json!({"f:data": {"f:y": {}}})), (json!("b"), json!({"f:data": {"f:x": {}}}))]);
        let shrunk = apply_as(Some(&forced), json!({"metadata": {"name": "c"}}), "a", false).unwrap();
        assert_eq!(shrunk["data"], json!({"x": "2"}), "a no longer applies y, so y is removed");
    }

    #[test]
    fn updates_record_only_the_fields_they_change() {
        let owner = |uid: &str, name: &str| json!({ "uid": uid, "name": name, "kind": "ReplicaSet" });
        let mut created = json!({ "metadata": { "name": "p", "labels": { "a": "1" }, "ownerReferences": [ owner("u1", "rs1"), owner("u2", "rs2") ] },
            "spec": { "containers": [ { "name": "c", "image": "i1" } ], "restartPolicy": "Always" } });
        record_update(None, &mut created, pods(), "creator", "v1", NOW);
        let creator = created["metadata"]["managedFields"][0]["fieldsV1"].clone();
        assert_eq!(creator["f:metadata"]["f:ownerReferences"]["k:{\"uid\":\"u1\"}"], json!({ "f:uid": {}, "f:name": {}, "f:kind": {} }));

        let mut changed = created.clone();
        changed["metadata"]["ownerReferences"][1]["name"] = json!("renamed");
        changed["spec"]["nodeName"] = json!("n1");
        record_update(Some(&created), &mut changed, pods(), "editor", "v1", NOW);
        let entries = changed["metadata"]["managedFields"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1]["manager"], "editor");
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({ "f:metadata": { "f:ownerReferences": { "k:{\"uid\":\"u2\"}": { "f:name": {} } } }, "f:spec": { "f:nodeName": {} } })
        );
        let first = &entries[0]["fieldsV1"];
        assert!(first["f:metadata"]["f:ownerReferences"]["k:{\"uid\":\"u2\"}"].get("f:name").is_none(), "taken over");
        assert!(first["f:spec"].get("f:containers").is_some() && first["f:spec"].get("f:restartPolicy").is_some());

        // Status and untracked metadata only: the entries stay as they are.
        let mut status = changed.clone();
        status["status"] = json!({ "phase": "Running" });
        status["metadata"]["resourceVersion"] = json!("9");
        record_update(Some(&changed), &mut status, pods(), "kubelet", "v1", "2030-01-01T00:00:00Z");
        assert_eq!(status["metadata"]["managedFields"], changed["metadata"]["managedFields"]);
        // Removing a field drops it from its owner.
        let mut removed = changed.clone();
        removed["metadata"]["labels"] = json!({});
        record_update(Some(&changed), &mut removed, pods(), "editor", "v1", NOW);
        assert!(removed["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"].get("f:labels").is_none());
    }
}
