//! OpenAPI v3: the root (`/openapi/v3`) and one document per group-version, generated from
//! k8s-openapi's schemas, with the paths and `fieldValidation` parameter kubectl looks for; and
//! field validation itself — unknown fields are pruned, and refused under `Strict`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::registry::{self, Resource};
use super::strategy::{self, Schema};

/// How unknown fields in a request body are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// Kubernetes' default is `Warn`.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw {
            None | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(format!("fieldValidation must be one of Ignore, Warn, Strict (got {other:?})")),
        }
    }
}

pub struct OpenApi {
    /// Group-version path (`api/v1`, `apis/<g>/<v>`) → (hash, serialised document). Each
    /// document carries only the schemas its resources reach.
    docs: BTreeMap<String, (String, bytes::Bytes)>,
    /// Every schema, by name.
    schemas: Map<String, Value>,
    /// Resource group, version and plural → its schema name.
    roots: BTreeMap<(String, String, String), String>,
}

fn serialise(paths: Map<String, Value>, schemas: Map<String, Value>) -> bytes::Bytes {
    let doc = json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": crate::k8s::version::KUBERNETES_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    });
    serde_json::to_vec(&doc).expect("a JSON value always serialises").into()
}

/// A short content hash (OpenAPI's `?hash=`, discovery's `ETag`).
pub(super) fn hash(doc: &[u8]) -> String {
    Sha256::digest(doc).iter().take(16).map(|b| format!("{b:02X}")).collect()
}

/// Adds the schema names `schema` references (`#/components/schemas/<name>`) to `out`.
fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
                out.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({ "name": name, "in": location, "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(r: &Resource, action: &str, id: &str, reference: &str, params: Vec<Value>, body: bool) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
        "parameters": params,
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": reference } } } } },
    });
    if body {
        op["requestBody"] = json!({ "content": { "*/*": { "schema": { "$ref": reference } } }, "required": true });
    }
    op
}

fn paths_of(r: &Resource, reference: &str) -> Vec<(String, Value)> {
    let prefix = format!("/{}", gv_path(r.group, r.version));
    let collection =
        if r.namespaced { format!("{prefix}/namespaces/{{namespace}}/{}", r.plural) } else { format!("{prefix}/{}", r.plural) };
    let validation = || param("fieldValidation", "query", "Ignore, Warn (default) or Strict handling of unknown fields");
    let mut scope = vec![];
    if r.namespaced {
        scope.push(param("namespace", "path", "object name and auth scope"));
    }
    let with = |mut v: Vec<Value>, extra: Vec<Value>| {
        v.extend(extra);
        v
    };
    let named = with(scope.clone(), vec![param("name", "path", "name of the object")]);
    let kind = r.kind;
    if !r.stored() {
        let post = operation(r, "post", &format!("create{kind}"), reference, with(scope, vec![validation()]), true);
        return vec![(collection, json!({ "post": post }))];
    }
    vec![
        (
            collection.clone(),
            json!({
                "get": operation(r, "list", &format!("list{kind}"), reference, scope.clone(), false),
                "post": operation(r, "post", &format!("create{kind}"), reference, with(scope.clone(), vec![validation()]), true),
            }),
        ),
        (
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(r, "get", &format!("read{kind}"), reference, named.clone(), false),
                "put": operation(r, "put", &format!("replace{kind}"), reference, with(named.clone(), vec![validation()]), true),
                "patch": operation(r, "patch", &format!("patch{kind}"), reference, with(named.clone(), vec![validation()]), false),
                "delete": operation(r, "delete", &format!("delete{kind}"), reference, named, false),
            }),
        ),
    ]
}

impl OpenApi {
    /// The process's one set of built-in schemas (they never change once built).
    pub fn shared() -> &'static Self {
        static SHARED: std::sync::LazyLock<OpenApi> = std::sync::LazyLock::new(OpenApi::build);
        &SHARED
    }

    fn build() -> Self {
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let mut roots = BTreeMap::new();
        let mut per_gv: BTreeMap<String, Vec<(&Resource, String)>> = BTreeMap::new();
        for r in registry::BUILTIN {
            let Some(schema) = r.schema else { continue };
            let reference = schema(&mut generator);
            let reference = reference.get("$ref").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = reference.rsplit('/').next().unwrap_or_default().to_string();
            roots.insert((r.group.to_string(), r.version.to_string(), r.plural.to_string()), name);
            per_gv.entry(gv_path(r.group, r.version)).or_default().push((r, reference));
        }
        let mut schemas = generator.take_definitions(true);
        let missing = strategy::annotate(&mut schemas);
        if !missing.is_empty() {
            tracing::warn!(?missing, "patch strategy markers name fields the schemas do not have");
        }
        for r in registry::BUILTIN {
            if let Some(schema) =
                roots.get(&(r.group.to_string(), r.version.to_string(), r.plural.to_string())).and_then(|n| schemas.get_mut(n))
            {
                schema["x-kubernetes-group-version-kind"] = json!([{ "group": r.group, "version": r.version, "kind": r.kind }]);
            }
        }
        let mut api = Self { docs: BTreeMap::new(), schemas, roots };
        for (gv, resources) in per_gv {
            let paths: Map<String, Value> = resources.iter().flat_map(|(r, reference)| paths_of(r, reference)).collect();
            let names: Vec<String> =
                resources.iter().map(|(_, reference)| reference.rsplit('/').next().unwrap_or_default().to_string()).collect();
            let components = api.reachable(names.iter().map(String::as_str), &Map::new());
            let doc = serialise(paths, components);
            api.docs.insert(gv, (hash(&doc), doc));
        }
        api
    }

    /// The schemas named in `roots` (looked up in `extra` first, then the built-in ones) and
    /// every schema they reference.
    fn reachable<'a>(&self, roots: impl Iterator<Item = &'a str>, extra: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        let mut todo: Vec<String> = roots.map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = extra.get(&name).or_else(|| self.schemas.get(&name)) else { continue };
            collect_refs(schema, &mut todo);
            out.insert(name, schema.clone());
        }
        out
    }

    /// The `/openapi/v3` root: where each group-version's document is (custom resources'
    /// group-versions included).
    pub fn root(&self, custom: &[&'static Resource]) -> Value {
        let mut paths: Map<String, Value> = self
            .docs
            .iter()
            .map(|(gv, (hash, _))| (gv.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}") })))
            .collect();
        for r in custom {
            let gv = gv_path(r.group, r.version);
            if let Some(doc) = self.custom_document(&gv, custom) {
                paths.insert(gv.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", hash(&doc)) }));
            }
        }
        json!({ "paths": paths })
    }

    /// One group-version's document, serialised.
    pub fn document(&self, gv: &str, custom: &[&'static Resource]) -> Option<bytes::Bytes> {
        let gv = gv.trim_matches('/');
        self.docs.get(gv).map(|(_, d)| d.clone()).or_else(|| self.custom_document(gv, custom))
    }

    /// The document of a custom resources' group-version, built from their CRD schemas.
    fn custom_document(&self, gv: &str, custom: &[&'static Resource]) -> Option<bytes::Bytes> {
        let mine: Vec<&&'static Resource> = custom.iter().filter(|r| gv_path(r.group, r.version) == gv).collect();
        if mine.is_empty() {
            return None;
        }
        let mut extra = Map::new();
        let mut paths = Map::new();
        for r in &mine {
            let name = format!("{}.{}.{}", r.group.split('.').rev().collect::<Vec<_>>().join("."), r.version, r.kind);
            let mut schema = r.custom.map(|c| c.schema.clone()).unwrap_or_else(|| json!({ "type": "object" }));
            schema["properties"]["apiVersion"] =
                json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object." });
            schema["properties"]["kind"] =
                json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents." });
            schema["properties"]["metadata"] =
                json!({ "allOf": [{ "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" }] });
            schema["x-kubernetes-group-version-kind"] = json!([{ "group": r.group, "version": r.version, "kind": r.kind }]);
            paths.extend(paths_of(r, &format!("#/components/schemas/{name}")));
            extra.insert(name, schema);
        }
        let names: Vec<String> = extra.keys().cloned().collect();
        let components = self.reachable(names.iter().map(String::as_str), &extra);
        Some(serialise(paths, components))
    }

    /// The schema of resource `r`'s objects, to walk with patch strategies.
    pub fn schema(&self, r: &'static Resource) -> Schema<'_> {
        match r.custom {
            Some(custom) => Schema::new(self, Some(&custom.schema)),
            None => Schema::new(
                self,
                self.roots.get(&(r.group.to_string(), r.version.to_string(), r.plural.to_string())).and_then(|n| self.schemas.get(n)),
            ),
        }
    }

    /// Follows `$ref` and single-element `allOf` wrappers to the schema they stand for.
    pub(super) fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..16 {
            if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
                match self.schemas.get(name) {
                    Some(s) => schema = s,
                    None => return schema,
                }
            } else if let Some([only]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                schema = only;
            } else {
                break;
            }
        }
        schema
    }

    fn prune_value(&self, schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return;
        }
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        match value {
            Value::Object(map) => {
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    let mut drop = Vec::new();
                    for (k, v) in map.iter_mut() {
                        match props.get(k) {
                            Some(sub) => self.prune_value(sub, v, &join(k), unknown),
                            None => drop.push(k.clone()),
                        }
                    }
                    for k in drop {
                        unknown.push(join(&k));
                        map.remove(&k);
                    }
                } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                    for (k, v) in map.iter_mut() {
                        self.prune_value(sub, v, &join(k), unknown);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = schema.get("items") {
                    for (i, v) in items.iter_mut().enumerate() {
                        self.prune_value(sub, v, &format!("{path}[{i}]"), unknown);
                    }
                }
            }
            _ => {}
        }
    }

    /// Removes fields the resource's schema does not know and returns their paths.
    pub fn prune(&self, r: &Resource, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        if let Some(schema) = self.schema_of(r) {
            self.prune_value(schema, obj, "", &mut unknown);
        }
        unknown
    }

    /// The schema of a built-in resource's objects.
    pub(super) fn schema_of(&self, r: &Resource) -> Option<&Value> {
        self.roots.get(&(r.group.to_string(), r.version.to_string(), r.plural.to_string())).and_then(|n| self.schemas.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_advertise_field_validation_and_prune_unknown_fields() {
        let api = OpenApi::shared();
        let root = api.root(&[]);
        let url = root["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        let doc: Value = serde_json::from_slice(&api.document("api/v1", &[]).unwrap()).unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"]["properties"]["data"].is_object());

        let cm = registry::lookup("", "v1", "configmaps").unwrap();
        let mut obj = json!({"metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1}, "data": {"k": "v"}, "extra": true});
        let mut unknown = api.prune(cm, &mut obj);
        unknown.sort();
        assert_eq!(unknown, ["extra", "metadata.bogus"]);
        assert_eq!(obj, json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}}));
    }
}
