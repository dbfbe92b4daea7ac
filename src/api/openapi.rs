//! OpenAPI v3: the root (`/openapi/v3`) and one document per group-version, generated from
//! k8s-openapi's schemas, with the paths and `fieldValidation` parameter kubectl looks for; and
//! field validation itself — unknown fields are pruned, and refused under `Strict`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::registry::{self, Resource};

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
    /// Group-version path (`api/v1`, `apis/<g>/<v>`) → (hash, document).
    docs: BTreeMap<String, (String, Value)>,
    /// Every schema, by name.
    schemas: Map<String, Value>,
    /// Resource plural and group → its schema name.
    roots: BTreeMap<(String, String), String>,
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
    pub fn build() -> Self {
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let mut roots = BTreeMap::new();
        let mut per_gv: BTreeMap<String, Vec<(&Resource, String)>> = BTreeMap::new();
        for r in registry::BUILTIN {
            let reference = (r.schema)(&mut generator);
            let reference = reference.get("$ref").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = reference.rsplit('/').next().unwrap_or_default().to_string();
            roots.insert((r.group.to_string(), r.plural.to_string()), name);
            per_gv.entry(gv_path(r.group, r.version)).or_default().push((r, reference));
        }
        let mut schemas = generator.take_definitions(true);
        for r in registry::BUILTIN {
            if let Some(schema) = roots.get(&(r.group.to_string(), r.plural.to_string())).and_then(|n| schemas.get_mut(n)) {
                schema["x-kubernetes-group-version-kind"] = json!([{ "group": r.group, "version": r.version, "kind": r.kind }]);
            }
        }
        let docs = per_gv
            .into_iter()
            .map(|(gv, resources)| {
                let paths: Map<String, Value> = resources.iter().flat_map(|(r, reference)| paths_of(r, reference)).collect();
                let doc = json!({
                    "openapi": "3.0.0",
                    "info": { "title": "Kubernetes", "version": crate::version::KUBERNETES_VERSION },
                    "paths": paths,
                    "components": { "schemas": schemas },
                });
                let hash: String = Sha256::digest(doc.to_string().as_bytes()).iter().take(16).map(|b| format!("{b:02X}")).collect();
                (gv, (hash, doc))
            })
            .collect();
        Self { docs, schemas, roots }
    }

    /// The `/openapi/v3` root: where each group-version's document is.
    pub fn root(&self) -> Value {
        let paths: Map<String, Value> = self
            .docs
            .iter()
            .map(|(gv, (hash, _))| (gv.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}") })))
            .collect();
        json!({ "paths": paths })
    }

    pub fn document(&self, gv: &str) -> Option<&Value> {
        self.docs.get(gv.trim_matches('/')).map(|(_, d)| d)
    }

    /// Follows `$ref` and single-element `allOf` wrappers to the schema they stand for.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
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
        if let Some(schema) = self.roots.get(&(r.group.to_string(), r.plural.to_string())).and_then(|n| self.schemas.get(n)) {
            self.prune_value(schema, obj, "", &mut unknown);
        }
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_advertise_field_validation_and_prune_unknown_fields() {
        let api = OpenApi::build();
        let root = api.root();
        let url = root["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        let doc = api.document("api/v1").unwrap();
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
