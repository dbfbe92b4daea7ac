//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
//! merge patch, which follows each field's patch strategy and merge key from the schema (see
//! `strategy`) and kube's directives: `$patch: replace|delete` in maps and list items,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

use super::status::ApiError;
use super::strategy::Schema;

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

/// Applies `patch` of type `kind` to `doc`, an object of the type `schema` describes.
pub fn apply(doc: &mut Value, kind: PatchType, patch: &[u8], schema: Schema<'_>) -> Result<(), ApiError> {
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
            strategic_merge(doc, &p, schema)
        }
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Strategic merge of `patch` into `doc` (an object of the type `schema` describes).
pub fn strategic_merge(doc: &mut Value, patch: &Value, schema: Schema<'_>) -> Result<(), ApiError> {
    let Value::Object(p) = patch else { return Err(bad("Invalid JSON document")) };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    merge_map(doc.as_object_mut().expect("made an object above"), p, schema)
}

/// A value taken from the patch as it is: without directives and `null`s (what kube-apiserver's
/// decoding into its typed object leaves of them).
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, v)| !k.starts_with('$') && !v.is_null()).map(|(k, v)| (k.clone(), clean(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().filter(|i| i.get(DIRECTIVE).is_none()).map(clean).collect()),
        other => other.clone(),
    }
}

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>, schema: Schema<'_>) -> Result<(), ApiError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => *orig = clean(&Value::Object(patch.clone())).as_object().cloned().unwrap_or_default(),
            Some("delete") => orig.clear(),
            _ => return Err(bad(format!("unknown patch type: {directive} in map: {}", Value::Object(patch.clone())))),
        }
        return Ok(());
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys = retain.as_array().ok_or_else(|| bad("invalid patch format for retainKeys"))?;
        let kept = |k: &str| keys.iter().any(|r| r.as_str() == Some(k));
        let outside = patch.iter().any(|(k, v)| !v.is_null() && !k.starts_with('$') && !kept(k));
        if outside {
            return Err(ApiError::invalid("", "", "", "patch", "patch content doesn't match retainKeys list"));
        }
        orig.retain(|k, _| kept(k));
    }
    let order_of = |field: &str| patch.get(&format!("{SET_ORDER}{field}")).and_then(Value::as_array).map(Vec::as_slice);
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let remove = value.as_array().ok_or_else(|| bad("invalid patch format for $deleteFromPrimitiveList"))?;
            if let Some(Value::Array(items)) = orig.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            orig.remove(key);
            continue;
        }
        let field = schema.field(key);
        match (orig.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(p)) if !field.replaces() => merge_map(existing, p, field)?,
            (Some(Value::Array(existing)), Value::Array(p)) if field.merges() => {
                merge_list(existing, p, field.merge_key(), order_of(key), field.items())?
            }
            _ => {
                orig.insert(key.clone(), clean(value));
            }
        }
    }
    // `$setElementOrder` of a list the patch leaves alone still orders it.
    for (key, order) in patch.iter().filter_map(|(k, v)| Some((k.strip_prefix(SET_ORDER)?, v.as_array()?))) {
        if patch.contains_key(key) {
            continue;
        }
        let merge_key = schema.field(key).merge_key();
        if let Some(Value::Array(items)) = orig.get_mut(key) {
            let server_order = items.clone();
            reorder(items, order, &server_order, merge_key);
        }
    }
    Ok(())
}

/// The identity of a list item: its merge key's value, or itself for scalars.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|i| identity(i, key) == Some(id))
}

/// Merges a list whose strategy is `merge`: scalars as a set, maps by `key`, honouring `$patch`
/// items; the result is ordered as kube orders it (see [`normalise_order`]).
fn merge_list(
    items: &mut Vec<Value>,
    patch: &[Value],
    key: Option<&str>,
    order: Option<&[Value]>,
    schema: Schema<'_>,
) -> Result<(), ApiError> {
    if items.is_empty() && patch.is_empty() {
        return Ok(());
    }
    let original = items.clone();
    let maps = items.iter().chain(patch).any(Value::is_object);
    // The server's order: the list before the patch adds to it (after its deletions).
    let (key, plain, server_order): (Option<&str>, Vec<&Value>, Vec<Value>) = if !maps {
        let server_order = items.clone();
        for p in patch {
            if !items.contains(p) {
                items.push(p.clone());
            }
        }
        (None, patch.iter().collect(), server_order)
    } else {
        let key = key.ok_or_else(|| bad("cannot merge lists without merge key"))?;
        let mut plain = Vec::new();
        let mut replace = false;
        for p in patch {
            let Some(object) = p.as_object() else { return Err(bad(format!("invalid element in merging list: {p}"))) };
            match object.get(DIRECTIVE).map(|d| d.as_str()) {
                None => plain.push(p),
                Some(Some("delete")) => {
                    let id = object.get(key).ok_or_else(|| missing_key(p, key))?;
                    items.retain(|i| i.get(key) != Some(id));
                }
                Some(Some("replace")) => replace = true,
                Some(Some("merge")) => return Err(bad("merging lists cannot yet be specified in the patch")),
                Some(_) => return Err(bad(format!("unknown patch type: {} in map: {p}", object[DIRECTIVE]))),
            }
        }
        if replace {
            *items = plain.into_iter().map(clean).collect();
            return Ok(());
        }
        let server_order = items.clone();
        for p in &plain {
            let id = p.get(key).ok_or_else(|| missing_key(p, key))?;
            match items.iter_mut().find(|i| i.get(key) == Some(id)) {
                Some(Value::Object(existing)) => merge_map(existing, p.as_object().expect("checked above"), schema)?,
                _ => items.push(clean(p)),
            }
        }
        (Some(key), plain, server_order)
    };
    let plain: Vec<Value> = plain.into_iter().cloned().collect();
    // kube orders `$setElementOrder` lists in a second pass whose server order is the original
    // list as Go leaves it after the first pass wrote into its array: the merged items over the
    // original's length (it differs from the original only when items were deleted).
    let written_over: Vec<Value> = original.iter().enumerate().map(|(i, o)| items.get(i).unwrap_or(o).clone()).collect();
    reorder(items, &plain, &server_order, key);
    if let Some(order) = order {
        check_order(&plain, order, key)?;
        reorder(items, order, &written_over, key);
    }
    Ok(())
}

/// Refuses a patch list whose items are not in `$setElementOrder`'s order.
fn check_order(plain: &[Value], order: &[Value], key: Option<&str>) -> Result<(), ApiError> {
    let mut rest = order.iter();
    for p in plain {
        if !rest.any(|o| identity(o, key) == identity(p, key)) {
            return Err(bad(format!(
                "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
                Value::Array(plain.to_vec()),
                Value::Array(order.to_vec())
            )));
        }
    }
    Ok(())
}

/// Puts `items` in kube's order for a list patched with items in `order` (see
/// [`normalise_order`]).
fn reorder(items: &mut Vec<Value>, order: &[Value], server_order: &[Value], key: Option<&str>) {
    let (in_patch, server_only) = std::mem::take(items).into_iter().partition(|i| index_of(order, i, key).is_some());
    *items = normalise_order(in_patch, server_only, order, server_order, key);
}

fn missing_key(item: &Value, key: &str) -> ApiError {
    bad(format!("map: {item} does not contain declared merge key: {key}"))
}

/// kube's order of a merged list: the items the patch names in the patch's (or
/// `$setElementOrder`'s) order, the others in their server order, interleaved where the server
/// order places a server-only item before a patch item.
fn normalise_order(
    mut in_patch: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    in_patch.sort_by_key(|i| index_of(patch_order, i, key));
    server_only.sort_by_key(|i| index_of(server_order, i, key));
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let (mut left, mut right) = (server_only.into_iter().peekable(), in_patch.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index_of(server_order, l, key), index_of(server_order, r, key)), (Some(li), Some(ri)) if li < ri)
            }
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

#[cfg(test)]
mod tests;
