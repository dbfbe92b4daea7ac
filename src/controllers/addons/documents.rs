//! A manifest's content: its checksum, its objects (multi-document YAML or JSON, `List`s
//! flattened) and the references that name them, from which the objects a file no longer
//! declares are found.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The sha256 of `content`, in lower-case hex (k3s's `spec.checksum`).
pub fn checksum(content: &[u8]) -> String {
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

/// Names one object a manifest declared (kept on its Addon to delete it when the manifest
/// stops declaring it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DocumentError {
    #[error("not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("document {index}: {what}")]
    Object { index: usize, what: &'static str },
}

/// The objects of a manifest, in order: every non-empty document, the items of `*List`
/// documents in their place. Each needs `apiVersion`, `kind` and `metadata.name`.
pub fn parse(content: &[u8]) -> Result<Vec<Value>, DocumentError> {
    let mut objects = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_slice(content).enumerate() {
        let doc = Value::deserialize(document).map_err(|e| DocumentError::Syntax(e.to_string()))?;
        let index = i + 1;
        match doc {
            Value::Null => {}
            Value::Object(_) if is_list(&doc) => {
                objects.extend(doc["items"].as_array().cloned().unwrap_or_default().into_iter().map(|item| check(item, index)))
            }
            Value::Object(_) => objects.push(check(doc, index)),
            _ => return Err(DocumentError::Object { index, what: "is not an object" }),
        }
    }
    objects.into_iter().collect()
}

fn is_list(doc: &Value) -> bool {
    doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) && doc.get("items").is_some()
}

fn check(obj: Value, index: usize) -> Result<Value, DocumentError> {
    let missing = |what| Err(DocumentError::Object { index, what });
    match () {
        _ if !obj["apiVersion"].as_str().is_some_and(|v| !v.is_empty()) => missing("apiVersion is missing"),
        _ if !obj["kind"].as_str().is_some_and(|v| !v.is_empty()) => missing("kind is missing"),
        _ if !obj["metadata"]["name"].as_str().is_some_and(|v| !v.is_empty()) => missing("metadata.name is missing"),
        _ => Ok(obj),
    }
}

/// The objects in `before` that `now` no longer declares, last declared first (the reverse
/// of creation order).
pub fn stale(before: &[ObjectRef], now: &[ObjectRef]) -> Vec<ObjectRef> {
    before.iter().rev().filter(|r| !now.contains(r)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef { api_version: "v1".into(), kind: kind.into(), namespace: ns.map(str::to_string), name: name.into() }
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(checksum(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(checksum(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn parses_every_document_and_flattens_lists() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n# only a comment\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: Service, metadata: {name: c}}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: web}\n";
        let objects = parse(yaml.as_bytes()).unwrap();
        let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ConfigMap", "Secret", "Service", "Deployment"]);
        assert_eq!(objects[3]["metadata"]["namespace"], "web");
    }

    #[test]
    fn parses_json() {
        let objects = parse(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"},"data":{"k":"v"}}"#).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["data"]["k"], "v");
    }

    #[test]
    fn rejects_bad_syntax_and_incomplete_objects() {
        assert!(matches!(parse(b"apiVersion: v1\nkind: [unclosed\n"), Err(DocumentError::Syntax(_))));
        assert_eq!(parse(b"- a\n- b\n"), Err(DocumentError::Object { index: 1, what: "is not an object" }));
        let no_name = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\n";
        assert_eq!(parse(no_name.as_bytes()), Err(DocumentError::Object { index: 2, what: "metadata.name is missing" }));
        assert_eq!(
            parse(b"kind: ConfigMap\nmetadata: {name: a}\n"),
            Err(DocumentError::Object { index: 1, what: "apiVersion is missing" })
        );
    }

    #[test]
    fn stale_objects_are_those_no_longer_declared() {
        let before = [r("ConfigMap", Some("kube-system"), "a"), r("Namespace", None, "ns"), r("Secret", Some("x"), "b")];
        let now = [r("Namespace", None, "ns"), r("ConfigMap", Some("other"), "a")];
        assert_eq!(stale(&before, &now), [r("Secret", Some("x"), "b"), r("ConfigMap", Some("kube-system"), "a")]);
        assert!(stale(&before, &before).is_empty());
        assert_eq!(stale(&before, &[]).len(), 3);
    }
}
