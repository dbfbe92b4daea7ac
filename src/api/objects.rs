//! Object storage semantics on top of the store: create, get, list, update and delete of one
//! resource's objects as JSON, with kube-apiserver's metadata rules (uid, creationTimestamp,
//! resourceVersion = the store's mod_revision, optimistic concurrency, name validation).

use std::sync::Arc;

use serde_json::{json, Value};

use super::openapi::OpenApi;
use super::patch::PatchType;
use super::registry::Resource;
use super::status::ApiError;
use super::webhook::{Call, Operation};
use crate::k8s::time::{now_rfc3339, rfc3339_after};
use crate::store::{Compare, KeyRange, KeyValue, Op, OpResponse, RangeRequest, Revision, Store, TxnRequest};

/// Which objects a request addresses.
pub struct Scope<'a> {
    pub resource: &'static Resource,
    /// The namespace from the path (`None`: all namespaces, or a cluster-scoped resource).
    pub namespace: Option<&'a str>,
    /// Where Services get their addresses and node ports.
    pub net: super::services::ServiceNetwork,
    /// The subresource written (`status`, `scale`, `binding`, …); `None`: the object itself.
    pub subresource: Option<&'a str>,
    /// The namespace's PodSecurity admission of pods and pod templates, when it has one.
    pub pod_security: Option<&'a super::pod_security::Admission>,
    /// `dryRun=All`: every check runs, nothing is stored.
    pub dry_run: bool,
    /// The namespaces' ResourceQuotas and LimitRanges, for admission of creates (`None`: not
    /// enforced, as for writes the API makes of its own).
    pub policies: Option<&'a super::namespace_policies::NamespacePolicies>,
    /// The admission webhooks the write may call (`None`: there are none to call).
    pub webhooks: Option<&'a super::webhook::Admission>,
}

impl<'a> Scope<'a> {
    pub fn new(resource: &'static Resource, namespace: Option<&'a str>, net: super::services::ServiceNetwork) -> Self {
        Self { resource, namespace, net, subresource: None, pod_security: None, dry_run: false, policies: None, webhooks: None }
    }

    fn key(&self, name: &str) -> String {
        self.resource.key(self.namespace, name)
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.resource.group, self.resource.plural, name)
    }
}

/// Parses a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(obj)
}

/// A stored value as an object of `r`'s version (see [`super::conversion`]).
pub fn decode_as(r: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    Ok(super::conversion::from_storage(r, decode(kv)?))
}

/// The stored form of an object of `r`: its JSON in the stored version, without
/// `metadata.resourceVersion` (removed from `obj`, whose caller stamps the new one after the
/// write).
fn encode(r: &Resource, obj: &mut Value) -> Vec<u8> {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if super::conversion::converts(r) {
        let stored = super::conversion::to_storage(r, obj.clone());
        return serde_json::to_vec(&stored).expect("a JSON value always serialises");
    }
    serde_json::to_vec(obj).expect("a JSON value always serialises")
}

/// The stored bytes of an object of `r` when they are also its answer: not when they are in
/// another version than `r`'s.
fn answer_bytes<'b>(r: &Resource, stored: Option<&'b [u8]>) -> Option<&'b [u8]> {
    stored.filter(|_| !super::conversion::converts(r))
}

/// An object as written, with the JSON its response carries: the stored bytes with the new
/// resourceVersion spliced in (rendering the tree again would cost as much as storing it).
pub struct Written {
    pub object: Value,
    json: Vec<u8>,
}

impl Written {
    /// `obj` written at `revision` as `stored` (`None`: not stored, e.g. finally deleted).
    fn new(mut object: Value, stored: Option<&[u8]>, revision: Revision) -> Self {
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        let json = stored
            .and_then(|bytes| super::raw_json::with_resource_version(bytes, revision))
            .unwrap_or_else(|| serde_json::to_vec(&object).expect("a JSON value always serialises"));
        Self { object, json }
    }

    /// `object` as a dry run answers it: checked and defaulted, not stored.
    fn unsaved(object: Value) -> Self {
        let json = serde_json::to_vec(&object).expect("a JSON value always serialises");
        Self { object, json }
    }
}

impl axum::response::IntoResponse for Written {
    fn into_response(self) -> axum::response::Response {
        ([(http::header::CONTENT_TYPE, "application/json")], self.json).into_response()
    }
}

/// A DNS-1123 subdomain, as Kubernetes requires of most object names.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > 253 {
        return Err("must be no more than 253 characters and not empty");
    }
    if !name.chars().all(ok_char) || !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
    }
    Ok(())
}

/// The name rule of a resource: RBAC objects take any path segment (`system:node`),
/// namespaces a DNS-1123 label, everything else a DNS-1123 subdomain.
fn check_name_of(r: &Resource, name: &str) -> Result<(), &'static str> {
    match (r.group, r.plural) {
        ("rbac.authorization.k8s.io", _) => {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
                Err("may not be '.' or '..' and may not contain '/' or '%'")
            } else {
                Ok(())
            }
        }
        ("", "namespaces") if name.contains('.') || name.len() > 63 => {
            Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")
        }
        _ => check_name(name),
    }
}

pub(super) fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // RFC 4122 version 4: the version nibble is 4, the variant nibble one of 8, 9, a, b.
    let variant = ['8', '9', 'a', 'b'][usize::from(b[8] & 3)];
    format!("{}-{}-4{}-{variant}{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char).collect()
}

async fn get_kv(store: &dyn Store, key: &str) -> Result<Option<KeyValue>, ApiError> {
    let resp = store.range(RangeRequest { range: KeyRange::single(key), ..Default::default() }).await?;
    Ok(resp.kvs.into_iter().next())
}

pub async fn get(store: &dyn Store, scope: &Scope<'_>, name: &str) -> Result<Value, ApiError> {
    match get_kv(store, &scope.key(name)).await? {
        Some(kv) => decode_as(scope.resource, &kv),
        None => Err(scope.not_found(name)),
    }
}

/// Checks a body's kind/apiVersion and its namespace against the path, filling them in when
/// absent.
/// Removes `null` members of a built-in object, as kube-apiserver's decoding into its Go types
/// does (an absent field and a `null` one decode alike, and `omitempty` writes neither),
/// whatever the body's format and whatever defaulting left. Custom resources keep theirs:
/// their schemas say which fields are nullable.
fn drop_nulls(r: &Resource, obj: &mut Value) {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if r.custom.is_none() {
        walk(obj);
    }
}

fn check_body(scope: &Scope<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let r = scope.resource;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    match obj.get("kind").and_then(Value::as_str) {
        None => obj["kind"] = json!(r.kind),
        Some(k) if k == r.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the kind {k:?} does not match the resource {:?} of the URL", r.plural))),
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None => obj["apiVersion"] = json!(r.api_version()),
        Some(v) if v == r.api_version() => {}
        Some(v) => return Err(ApiError::bad_request(format!("the apiVersion {v:?} does not match {:?} of the URL", r.api_version()))),
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if r.namespaced {
        let path_ns = scope.namespace.ok_or_else(|| ApiError::bad_request("a namespace is required in the URL"))?;
        match obj["metadata"].get("namespace").and_then(Value::as_str) {
            None => obj["metadata"]["namespace"] = json!(path_ns),
            Some(ns) if ns == path_ns => {}
            Some(ns) => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({path_ns})"
                )))
            }
        }
    } else if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    Ok(())
}

/// Creates an object. `manager` records its fields in managedFields (operation Update);
/// `None` when they are already recorded (server-side apply).
pub async fn create(store: &dyn Store, scope: &Scope<'_>, mut obj: Value, manager: Option<&str>) -> Result<Written, ApiError> {
    let r = scope.resource;
    check_body(scope, &mut obj)?;
    let meta = &mut obj["metadata"];
    let name = match (meta.get("name").and_then(Value::as_str), meta.get("generateName").and_then(Value::as_str)) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) => format!("{prefix}{}", random_suffix()),
        _ => return Err(ApiError::invalid(r.group, r.kind, "", "metadata.name", "Required value: name or generateName is required")),
    };
    check_name_of(r, &name)
        .map_err(|why| ApiError::invalid(r.group, r.kind, &name, "metadata.name", &format!("Invalid value: {name:?}: {why}")))?;
    meta["name"] = json!(name);
    meta["uid"] = json!(new_uid());
    if let Some(m) = meta.as_object_mut() {
        m.remove("generation");
    }
    meta["creationTimestamp"] = json!(now_rfc3339());
    if let Some(m) = meta.as_object_mut() {
        for server_owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"] {
            m.remove(server_owned);
        }
    }
    super::admission::default_on_create(r, &mut obj);
    let limit_ranges = match (scope.policies, scope.namespace) {
        (Some(policies), Some(ns)) if scope.subresource.is_none() => policies.limit_ranges(ns),
        _ => Vec::new(),
    };
    super::limit_ranger::default(&limit_ranges, r, &mut obj);
    if (r.group, r.kind) == ("", "PersistentVolumeClaim") {
        super::default_storage_class::admit(store, &mut obj).await?;
    }
    drop_nulls(r, &mut obj);
    let call = Call { operation: Operation::Create, name: &name, dry_run: scope.dry_run };
    if let Some(hooks) = scope.webhooks {
        let snapshot = obj.clone();
        if hooks.mutate(scope, &call, Some(&mut obj), None).await? {
            after_mutation(r, &snapshot, &mut obj);
        }
    }
    super::admission::validate(r, &obj, None)?;
    super::pod_security::admit(scope, &obj, None)?;
    if let Some(why) = super::limit_ranger::check(&limit_ranges, r, &obj) {
        return Err(ApiError::forbidden(r.group, r.plural, Some(&name), &why));
    }
    if let Some(hooks) = scope.webhooks {
        hooks.validate(scope, &call, Some(&obj), None).await?;
    }
    if let Some(policies) = scope.policies {
        super::quota::charge(store, policies, scope, &obj).await?;
    }
    if let Some(manager) = manager {
        super::apply::record_update(None, &mut obj, OpenApi::shared().schema(r), manager, &r.api_version(), &now_rfc3339());
    }
    // Objects with a desired state (spec, or a webhook configuration's webhooks) count its
    // changes in `generation`.
    if obj.get("spec").is_some() || super::webhook::configuration::mutating(r.kind).is_some() {
        obj["metadata"]["generation"] = json!(1);
    }
    if r.plural == "namespaces" {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({ "phase": "Active" });
    }
    let key = scope.key(&name);
    let namespace = scope.namespace.filter(|_| r.namespaced);
    let namespace_key = namespace.map(|ns| super::registry::namespaces().key(None, ns));
    // Only Services retry (their random allocations); everything else is written once.
    let allocates = r.plural == "services";
    for _ in 0..ALLOCATION_ATTEMPTS {
        let mut candidate = if allocates { obj.clone() } else { std::mem::take(&mut obj) };
        let held = if allocates { super::services::admit_create(&scope.net, &mut candidate)? } else { Vec::new() };
        let stored = encode(r, &mut candidate);
        let mut compare = vec![Compare::absent(key.clone())];
        let mut success = vec![Op::Put { key: key.clone().into_bytes(), value: stored.clone() }];
        let mut failure = vec![Op::Get { key: key.clone().into_bytes() }];
        if let (Some(ns_key), Some(ns)) = (&namespace_key, namespace) {
            // The namespace must exist and not be terminating: checked in the same transaction.
            compare.push(Compare::exists(ns_key.clone()));
            failure.push(Op::Get { key: ns_key.clone().into_bytes() });
            compare.push(Compare::absent(terminating_marker(ns)));
            failure.push(Op::Get { key: terminating_marker(ns).into_bytes() });
        }
        for (alloc, _) in &held {
            compare.push(Compare::absent(alloc.clone()));
            success.push(Op::Put {
                key: alloc.clone().into_bytes(),
                value: format!("{}/{name}", scope.namespace.unwrap_or_default()).into_bytes(),
            });
            failure.push(Op::Get { key: alloc.clone().into_bytes() });
        }
        if scope.dry_run {
            // The same checks (name free, namespace live, allocations free), no write.
            success.clear();
        }
        let resp = store.txn(TxnRequest { compare, success, failure }).await?;
        if resp.succeeded && scope.dry_run {
            return Ok(Written::unsaved(candidate));
        }
        if resp.succeeded {
            return Ok(Written::new(candidate, answer_bytes(r, Some(&stored)), resp.revision));
        }
        let found = |i: usize| matches!(resp.responses.get(i), Some(OpResponse::Get { kv: Some(_) }));
        if found(0) {
            return Err(ApiError::already_exists(r.group, r.plural, &name));
        }
        let first_alloc = if let Some(ns) = namespace {
            if !found(1) {
                return Err(ApiError::not_found("", "namespaces", ns));
            }
            if found(2) {
                return Err(ApiError::namespace_terminating(ns));
            }
            3
        } else {
            1
        };
        // An allocation was taken: an error if the user chose it, else pick again.
        for (i, (alloc, explicit)) in held.iter().enumerate() {
            if *explicit && found(first_alloc + i) {
                return Err(super::services::taken(&name, alloc));
            }
        }
        if !allocates {
            return Err(ApiError::conflict(r.group, r.plural, &name));
        }
    }
    Err(ApiError::internal(format!(
        "could not allocate addresses for {name:?} after {ALLOCATION_ATTEMPTS} attempts; the range may be full"
    )))
}

/// How often a create retries random allocations that turned out to be taken.
const ALLOCATION_ATTEMPTS: usize = 32;

/// Carries the server-owned metadata of `before` over to `obj` (and, depending on the part
/// written, its status or everything but its status), bumps `generation` when anything but
/// metadata and status changed, and applies the resource's update admission.
fn carry_over(scope: &Scope<'_>, before: &Value, obj: &mut Value) -> Result<(), ApiError> {
    let r = scope.resource;
    match scope.subresource {
        None => super::admission::merge_part(r, false, before, obj),
        Some("status") => super::admission::merge_part(r, true, before, obj),
        // Other subresources (scale, binding, finalize) edit the stored object themselves.
        Some(_) => {}
    }
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match before["metadata"].get(field) {
            Some(v) => obj["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    match before["metadata"]["generation"].as_i64() {
        Some(generation) => {
            let bumped = if desired_state(before) != desired_state(obj) { generation + 1 } else { generation };
            obj["metadata"]["generation"] = json!(bumped);
        }
        None => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("generation");
            }
        }
    }
    if r.plural == "services" {
        super::services::admit_update(before, obj)?;
    }
    if scope.subresource.is_none() {
        super::admission::apply_defaults(r, obj);
        drop_nulls(r, obj);
    }
    Ok(())
}

/// The admission of an update of `before` (called `name`) to `obj`: carry-over and defaults,
/// mutating webhooks, validation, validating webhooks.
async fn admit_update(scope: &Scope<'_>, name: &str, before: &Value, obj: &mut Value) -> Result<(), ApiError> {
    carry_over(scope, before, obj)?;
    let call = Call { operation: Operation::Update, name, dry_run: scope.dry_run };
    if let Some(hooks) = scope.webhooks {
        let snapshot = obj.clone();
        if hooks.mutate(scope, &call, Some(obj), Some(before)).await? {
            after_mutation(scope.resource, &snapshot, obj);
            carry_over(scope, before, obj)?;
        }
    }
    if scope.subresource.is_none() {
        super::admission::validate(scope.resource, obj, Some(before))?;
        super::pod_security::admit(scope, obj, Some(before))?;
    }
    if let Some(hooks) = scope.webhooks {
        hooks.validate(scope, &call, Some(obj), Some(before)).await?;
    }
    Ok(())
}

/// After mutating webhooks changed `obj` (`snapshot` before they ran): the server-owned
/// metadata, kind and apiVersion are put back, and unknown fields pruned and defaults applied
/// again, as kube-apiserver decodes a patched object.
fn after_mutation(r: &Resource, snapshot: &Value, obj: &mut Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match snapshot["metadata"].get(field) {
            Some(v) => obj["metadata"][field] = v.clone(),
            None => {
                obj["metadata"].as_object_mut().map(|m| m.remove(field));
            }
        }
    }
    for field in ["kind", "apiVersion"] {
        obj[field] = snapshot[field].clone();
    }
    prune(r, obj);
    super::admission::apply_defaults(r, obj);
    drop_nulls(r, obj);
}

/// Drops the fields a resource's schema does not know; returns their paths.
pub fn prune(r: &Resource, obj: &mut Value) -> Vec<String> {
    match r.custom {
        Some(custom) => super::crd::schema::prune(&custom.schema, obj),
        None => OpenApi::shared().prune(r, obj),
    }
}

/// Everything of an object but its metadata and status: what `generation` counts changes of.
fn desired_state(obj: &Value) -> Vec<(&String, &Value)> {
    obj.as_object().map(|m| m.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status")).collect()).unwrap_or_default()
}

/// Whether finalizers hold the object (a Namespace's `spec.finalizers` count too).
fn has_finalizers(obj: &Value) -> bool {
    let held = |f: &Value| f.as_array().is_some_and(|f| !f.is_empty());
    held(&obj["metadata"]["finalizers"]) || (obj["kind"] == "Namespace" && held(&obj["spec"]["finalizers"]))
}

/// The key marking a namespace as terminating: creates in it compare it absent.
fn terminating_marker(namespace: &str) -> String {
    format!("/registry/terminating-namespaces/{namespace}")
}

/// The operations that delete `obj` stored at `key`, releasing what it holds (Service
/// addresses and node ports, a namespace's terminating marker).
fn deletion(key: &str, obj: &Value) -> Vec<Op> {
    let marker = (obj["kind"] == "Namespace").then(|| terminating_marker(obj["metadata"]["name"].as_str().unwrap_or_default()));
    std::iter::once(key.to_string())
        .chain(super::services::allocations(obj))
        .chain(marker)
        .map(|k| Op::Delete { key: k.into_bytes() })
        .collect()
}

/// Writes `obj` over the version at revision `expected`; an object being deleted whose grace
/// period is over and whose last finalizer is gone is deleted instead. `None`: the object
/// changed meanwhile.
async fn write_over(store: &dyn Store, r: &Resource, key: &str, expected: Revision, mut obj: Value) -> Result<Option<Written>, ApiError> {
    let deleting = obj["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null());
    let finished = deleting && obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0 && !has_finalizers(&obj);
    let stored = (!finished).then(|| encode(r, &mut obj));
    let mut success = match &stored {
        Some(bytes) => vec![Op::Put { key: key.as_bytes().to_vec(), value: bytes.clone() }],
        None => deletion(key, &obj),
    };
    if deleting && !finished && obj["kind"] == "Namespace" {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        success.push(Op::Put { key: terminating_marker(name).into_bytes(), value: Vec::new() });
    }
    let resp = store.txn(TxnRequest { compare: vec![Compare::mod_revision(key, expected)], success, failure: vec![] }).await?;
    if !resp.succeeded {
        return Ok(None);
    }
    Ok(Some(Written::new(obj, answer_bytes(r, stored.as_deref()), resp.revision)))
}

/// Replaces an object (`PUT`): pinned to the body's resourceVersion when it has one.
pub async fn update(
    store: &dyn Store,
    scope: &Scope<'_>,
    name: &str,
    mut obj: Value,
    manager: &str,
    check: Check<'_>,
) -> Result<Written, ApiError> {
    check_body(scope, &mut obj)?;
    match obj["metadata"].get("name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        Some(n) => return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})"))),
        None => obj["metadata"]["name"] = json!(name),
    }
    let pinned = obj["metadata"].get("resourceVersion").is_some_and(|v| !v.is_null());
    modify(store, scope, name, manager, check, &|before| {
        let mut next = obj.clone();
        if !pinned {
            next["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
        }
        Ok(next)
    })
    .await
}

/// Whether a write of `obj` over `before` would change nothing, as kube-apiserver skips such
/// writes (no new resourceVersion, no watch event). `obj` takes `before`'s resourceVersion.
fn unchanged(obj: &mut Value, before: &Value) -> bool {
    obj["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
    obj == before
}

/// How often a read-modify-write is retried when the object changes between its read and its
/// write.
const PATCH_RETRIES: usize = 5;

/// Checks (and prunes) an object before it is written; see `openapi::FieldValidation`.
pub type Check<'a> = &'a (dyn Fn(&mut Value) -> Result<(), ApiError> + Send + Sync);

/// An edit of a stored object: the stored version in, the version to write out. An edit that
/// sets another resourceVersion than the stored one pins the write to it (409 if stale).
pub type Edit<'a> = &'a (dyn Fn(&Value) -> Result<Value, ApiError> + Send + Sync);

/// Applies a patch to the stored object, retrying on concurrent changes unless the patch
/// itself pins a resourceVersion.
pub async fn patch(
    store: &dyn Store,
    scope: &Scope<'_>,
    name: &str,
    kind: PatchType,
    body: &[u8],
    manager: &str,
    check: Check<'_>,
) -> Result<Written, ApiError> {
    if kind == PatchType::Strategic && scope.resource.custom.is_some() {
        // As kube-apiserver: custom resources have no Go types to take patch strategies from.
        return Err(ApiError::unsupported_patch(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]));
    }
    let schema = OpenApi::shared().schema(scope.resource);
    modify(store, scope, name, manager, check, &|before| {
        let mut obj = before.clone();
        super::patch::apply(&mut obj, kind, body, schema)?;
        Ok(obj)
    })
    .await
}

/// Reads an object, edits it and writes it back with the update rules (carry-over, admission,
/// managedFields), retrying on concurrent changes unless the edit pins a resourceVersion.
pub async fn modify(
    store: &dyn Store,
    scope: &Scope<'_>,
    name: &str,
    manager: &str,
    check: Check<'_>,
    edit: Edit<'_>,
) -> Result<Written, ApiError> {
    let r = scope.resource;
    let key = scope.key(name);
    for _ in 0..PATCH_RETRIES {
        let current = get_kv(store, &key).await?.ok_or_else(|| scope.not_found(name))?;
        let before = decode_as(r, &current)?;
        let mut obj = edit(&before)?;
        check(&mut obj)?;
        check_body(scope, &mut obj)?;
        if obj["metadata"]["name"] != before["metadata"]["name"] {
            return Err(ApiError::invalid(r.group, r.kind, name, "metadata.name", "field is immutable"));
        }
        let pinned = obj["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"];
        let expected: Revision = match obj["metadata"].get("resourceVersion").and_then(Value::as_str) {
            Some(rv) if pinned => rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
            _ => current.mod_revision,
        };
        admit_update(scope, name, &before, &mut obj).await?;
        super::apply::record_update(Some(&before), &mut obj, OpenApi::shared().schema(r), manager, &r.api_version(), &now_rfc3339());
        if expected == current.mod_revision && unchanged(&mut obj, &before) {
            return Ok(Written::new(before, answer_bytes(r, Some(&current.value)), current.mod_revision));
        }
        if scope.dry_run {
            return Ok(Written::unsaved(obj));
        }
        match write_over(store, r, &key, expected, obj).await? {
            Some(done) => return Ok(done),
            None if pinned => return Err(ApiError::conflict(r.group, r.plural, name)),
            None => {}
        }
    }
    Err(ApiError::conflict(r.group, r.plural, name))
}

/// Server-side apply of `config` by `manager`: creates the object when missing, else merges
/// it in with field ownership and conflict detection (see `apply`).
pub async fn apply_config(
    store: &dyn Store,
    scope: &Scope<'_>,
    name: &str,
    mut config: Value,
    manager: &str,
    force: bool,
    check: Check<'_>,
) -> Result<(Written, bool), ApiError> {
    let r = scope.resource;
    check(&mut config)?;
    check_body(scope, &mut config)?;
    if config["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            config["metadata"]["name"]
        )));
    }
    config["metadata"]["name"] = json!(name);
    let key = scope.key(name);
    let schema = OpenApi::shared().schema(r);
    for _ in 0..PATCH_RETRIES {
        let current = get_kv(store, &key).await?;
        let before = current.as_ref().map(|kv| decode_as(r, kv)).transpose()?;
        let mut obj = super::apply::apply(
            before.as_ref(),
            &config,
            schema,
            manager,
            force,
            &r.api_version(),
            &now_rfc3339(),
            (r.group, r.plural, name),
        )?;
        let Some((current, before)) = current.zip(before) else {
            match create(store, scope, obj, None).await {
                Err(e) if e.reason == "AlreadyExists" => continue,
                other => return other.map(|o| (o, true)),
            }
        };
        admit_update(scope, name, &before, &mut obj).await?;
        if unchanged(&mut obj, &before) {
            return Ok((Written::new(before, answer_bytes(r, Some(&current.value)), current.mod_revision), false));
        }
        if scope.dry_run {
            return Ok((Written::unsaved(obj), false));
        }
        if let Some(done) = write_over(store, r, &key, current.mod_revision, obj).await? {
            return Ok((done, false));
        }
    }
    Err(ApiError::conflict(r.group, r.plural, name))
}

/// What a DELETE asks for (its `DeleteOptions` body and query).
#[derive(Debug, Default)]
pub struct DeleteOptions {
    /// `Foreground` or `Orphan` record a finalizer for the garbage collector; `Background`
    /// (the default) deletes at once.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    /// `gracePeriodSeconds`: how long a pod's containers get to stop (default: the pod's
    /// terminationGracePeriodSeconds).
    pub grace_period_seconds: Option<i64>,
    /// `dryRun=All`: answer as the deletion would, change nothing.
    pub dry_run: bool,
}

/// The grace period a pod deletion gets: none for pods that never ran on a node or have
/// finished, else the requested or the pod's own period (a negative one is one second, as
/// kube-apiserver's `CheckGracefulDelete` has it).
fn pod_grace_period(pod: &Value, options: &DeleteOptions) -> i64 {
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !bound || finished {
        return 0;
    }
    match options.grace_period_seconds.or(pod["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30) {
        negative if negative < 0 => 1,
        seconds => seconds,
    }
}

/// What became of a deleted object.
pub enum Deleted {
    /// Gone from the store.
    Gone(Value),
    /// Marked with a deletionTimestamp; finalizers still hold it.
    Terminating(Value),
}

/// Deletes an object, or marks it for deletion while finalizers (including the one recorded
/// for a foreground or orphan propagation policy) hold it.
pub async fn delete(store: &dyn Store, scope: &Scope<'_>, name: &str, options: &DeleteOptions) -> Result<Deleted, ApiError> {
    let r = scope.resource;
    let key = scope.key(name);
    let call = Call { operation: Operation::Delete, name, dry_run: options.dry_run || scope.dry_run };
    if let Some(hooks) = scope.webhooks {
        hooks.mutate(scope, &call, None, None).await?;
    }
    for _ in 0..PATCH_RETRIES {
        let current = get_kv(store, &key).await?.ok_or_else(|| scope.not_found(name))?;
        let mut obj = decode_as(r, &current)?;
        let uid_mismatch = options.precondition_uid.as_deref().is_some_and(|u| obj["metadata"]["uid"] != u);
        let rv_mismatch = options.precondition_resource_version.as_deref().is_some_and(|v| obj["metadata"]["resourceVersion"] != v);
        if uid_mismatch || rv_mismatch {
            return Err(ApiError::conflict(r.group, r.plural, name));
        }
        if let Some(hooks) = scope.webhooks {
            hooks.validate(scope, &call, None, Some(&obj)).await?;
        }
        let finalizer = match options.propagation_policy.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = finalizer {
            let list = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if !list.iter().any(|x| x == f) {
                obj["metadata"]["finalizers"] = json!(list.into_iter().chain([json!(f)]).collect::<Vec<_>>());
            }
        }
        let grace = if (r.group, r.kind) == ("", "Pod") { pod_grace_period(&obj, options) } else { 0 };
        if let Some(current_grace) = obj["metadata"]["deletionGracePeriodSeconds"].as_i64() {
            // Already terminating: only a shorter grace period changes anything.
            if grace >= current_grace && finalizer.is_none() {
                return Ok(Deleted::Terminating(obj));
            }
        }
        if grace == 0 && !has_finalizers(&obj) {
            if options.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            let resp = store
                .txn(TxnRequest {
                    compare: vec![Compare::mod_revision(key.clone(), current.mod_revision)],
                    success: deletion(&key, &obj),
                    failure: vec![],
                })
                .await?;
            if resp.succeeded {
                return Ok(Deleted::Gone(obj));
            }
            continue;
        }
        let current_grace = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if current_grace.is_none_or(|g| grace < g) {
            obj["metadata"]["deletionTimestamp"] = json!(rfc3339_after(grace));
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        }
        if obj["kind"] == "Namespace" {
            obj["status"]["phase"] = json!("Terminating");
        }
        if options.dry_run {
            return Ok(Deleted::Terminating(obj));
        }
        if let Some(done) = write_over(store, r, &key, current.mod_revision, obj).await? {
            return Ok(Deleted::Terminating(done.object));
        }
    }
    Err(ApiError::conflict(r.group, r.plural, name))
}

/// DELETE of a collection: deletes every object `selector` picks, each as [`delete`] does
/// (objects gone meanwhile are skipped), and returns the deleted or terminating objects with
/// the revision the list was read at.
pub async fn delete_collection(
    store: &dyn Store,
    scope: &Scope<'_>,
    selector: &Selection,
    options: &DeleteOptions,
) -> Result<Page, ApiError> {
    let listed = list(store, scope, selector, 0, None).await?;
    let mut items = Vec::with_capacity(listed.items.len());
    for obj in listed.items {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        match delete(store, scope, name, options).await {
            Ok(Deleted::Gone(o) | Deleted::Terminating(o)) => items.push(o),
            Err(e) if e.code == axum::http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Page { items, revision: listed.revision, continue_token: None })
}

/// A page of a list: the objects, the revision it was read at, and the continue token.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// Lists objects matching `selector`, `limit` at a time; `continue_token` resumes a list at
/// the revision its first page was read at.
/// Which objects a list or watch selects: by labels and by fields.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub labels: super::selector::LabelSelector,
    pub fields: super::fields::FieldSelector,
}

impl Selection {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&obj["metadata"]["labels"]) && self.fields.matches(obj)
    }
}

pub async fn list(
    store: &dyn Store,
    scope: &Scope<'_>,
    selector: &Selection,
    limit: u64,
    continue_token: Option<&str>,
) -> Result<Page, ApiError> {
    use base64::Engine;
    let prefix = scope.resource.key_prefix(scope.namespace);
    let mut range = KeyRange::prefix(prefix.clone());
    let mut revision = 0;
    if let Some(token) = continue_token {
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| ApiError::bad_request("invalid continue token"))?;
        let (rev, start): (Revision, String) = serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid continue token"))?;
        if !start.starts_with(&prefix) {
            return Err(ApiError::bad_request("the continue token belongs to another list"));
        }
        range.key = format!("{start}\0").into_bytes();
        revision = rev;
    }
    // Selection happens here, so read in chunks until the page is full.
    let mut items = Vec::new();
    loop {
        let chunk = if limit > 0 { (limit - items.len() as u64).max(64) } else { 0 };
        let resp = store.range(RangeRequest { range: range.clone(), limit: chunk, revision, count_only: false }).await?;
        revision = resp.revision;
        let mut last_key = None;
        for kv in &resp.kvs {
            last_key = Some(kv.key.clone());
            let obj = decode_as(scope.resource, kv)?;
            if selector.matches(&obj) {
                items.push(obj);
                if limit > 0 && items.len() as u64 == limit {
                    let key = String::from_utf8_lossy(&kv.key).into_owned();
                    let more = resp.more || kv.key != resp.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
                    let token = more.then(|| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(revision, key)).expect("serialisable"))
                    });
                    return Ok(Page { items, revision, continue_token: token });
                }
            }
        }
        match last_key {
            Some(k) if resp.more => {
                let mut next = k;
                next.push(0);
                range.key = next;
            }
            _ => return Ok(Page { items, revision, continue_token: None }),
        }
    }
}

/// Shared handle to the store, as the API's handlers hold it.
pub type SharedStore = Arc<dyn Store>;
