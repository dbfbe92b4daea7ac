//! Admission of what a node turns into files, as kube-apiserver validates it: ConfigMap and
//! Secret keys (`[-._a-zA-Z0-9]+`, at most 253 characters, not `.`, `..` or `..…`), volume
//! names, the paths of configMap/secret/downwardAPI/projected items and token files (relative,
//! no `..`), file modes, and volumeMounts' `subPath`/`subPathExpr` (relative, no `..`).

use serde_json::{json, Value};

use super::status::FieldError;

const KEY_FORMAT: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const MODE_RANGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_KEY_LENGTH: usize = 253;

/// What is wrong with a ConfigMap or Secret key (IsConfigMapKey), in kube's words.
pub fn key_problems(key: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if key.len() > MAX_KEY_LENGTH {
        problems.push("must be no more than 253 characters");
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        problems.push(KEY_FORMAT);
    }
    match key {
        "." => problems.push("must not be '.'"),
        ".." => problems.push("must not be '..'"),
        k if k.starts_with("..") => problems.push("must not start with '..'"),
        _ => {}
    }
    problems
}

fn keys_of<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = &'a String> {
    obj[field].as_object().into_iter().flat_map(|m| m.keys())
}

fn check_keys(obj: &Value, field: &str, path: &str, errs: &mut Vec<FieldError>) {
    for key in keys_of(obj, field) {
        for problem in key_problems(key) {
            errs.push(FieldError::invalid(&format!("{path}[{key}]"), &json!(key), problem));
        }
    }
}

/// ConfigMap: keys of `data` and `binaryData`, and no key in both.
pub fn config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    check_keys(obj, "data", "data", errs);
    for key in keys_of(obj, "data").filter(|k| obj["binaryData"].get(k.as_str()).is_some()) {
        errs.push(FieldError::invalid(&format!("data[{key}]"), &json!(key), "duplicate of key present in binaryData"));
    }
    check_keys(obj, "binaryData", "binaryData", errs);
}

/// Secret: keys of `data` (and of `stringData`, which kube-apiserver merges into `data`).
pub fn secret(obj: &Value, errs: &mut Vec<FieldError>) {
    check_keys(obj, "data", "data", errs);
    check_keys(obj, "stringData", "data", errs);
}

/// validateLocalDescendingPath: relative, no `..` element.
fn descending_path(path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if path.starts_with('/') {
        errs.push(FieldError::invalid(field, &json!(path), "must be a relative path"));
    }
    if path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(field, &json!(path), "must not contain '..'"));
    }
}

/// A file path inside a volume: required, descending, and not starting with `..` (the
/// atomic writer's own names).
fn item_path(item: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let path = item["path"].as_str().unwrap_or("");
    if path.is_empty() {
        errs.push(FieldError::required(field));
        return;
    }
    descending_path(path, field, errs);
    if path.starts_with("..") && !path.starts_with("../") {
        errs.push(FieldError::invalid(field, &json!(path), "must not start with '..'"));
    }
}

fn mode(value: &Value, field: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if value.as_i64().is_none_or(|m| !(0..=0o777).contains(&m)) {
        errs.push(FieldError::invalid(field, value, MODE_RANGE));
    }
}

/// `items` of a configMap or secret source (KeyToPath).
fn key_to_paths(source: &Value, at: &str, errs: &mut Vec<FieldError>) {
    for (i, item) in source["items"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}.items[{i}]");
        if item["key"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(&format!("{at}.key")));
        }
        item_path(item, &format!("{at}.path"), errs);
        mode(&item["mode"], &format!("{at}.mode"), errs);
    }
}

fn downward_items(source: &Value, at: &str, errs: &mut Vec<FieldError>) {
    for (i, item) in source["items"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}.items[{i}]");
        item_path(item, &format!("{at}.path"), errs);
        mode(&item["mode"], &format!("{at}.mode"), errs);
    }
}

fn projected(source: &Value, at: &str, errs: &mut Vec<FieldError>) {
    for (i, s) in source["sources"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}.sources[{i}]");
        for kind in ["configMap", "secret"] {
            if s[kind].is_object() {
                key_to_paths(&s[kind], &format!("{at}.{kind}"), errs);
            }
        }
        if s["downwardAPI"].is_object() {
            downward_items(&s["downwardAPI"], &format!("{at}.downwardAPI"), errs);
        }
        if s["serviceAccountToken"].is_object() {
            item_path(&s["serviceAccountToken"], &format!("{at}.serviceAccountToken.path"), errs);
        }
    }
}

/// A pod spec's volumes (names, item paths, modes) and its containers' subPaths.
pub fn pod_volumes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut names = Vec::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{path}.volumes[{i}]");
        match v["name"].as_str() {
            None | Some("") => errs.push(FieldError::required(&format!("{at}.name"))),
            Some(n) if names.contains(&n) => errs.push(FieldError::duplicate(&format!("{at}.name"), &v["name"])),
            Some(n) => {
                if let Err(why) = super::admission::check_label(n) {
                    errs.push(FieldError::invalid(&format!("{at}.name"), &v["name"], why));
                }
                names.push(n);
            }
        }
        for kind in ["configMap", "secret"] {
            if v[kind].is_object() {
                key_to_paths(&v[kind], &format!("{at}.{kind}"), errs);
                mode(&v[kind]["defaultMode"], &format!("{at}.{kind}.defaultMode"), errs);
            }
        }
        if v["downwardAPI"].is_object() {
            downward_items(&v["downwardAPI"], &format!("{at}.downwardAPI"), errs);
            mode(&v["downwardAPI"]["defaultMode"], &format!("{at}.downwardAPI.defaultMode"), errs);
        }
        if v["projected"].is_object() {
            projected(&v["projected"], &format!("{at}.projected"), errs);
            mode(&v["projected"]["defaultMode"], &format!("{at}.projected.defaultMode"), errs);
        }
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for (j, m) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
                let at = format!("{path}.{list}[{i}].volumeMounts[{j}]");
                let sub_path = m["subPath"].as_str().unwrap_or("");
                if !sub_path.is_empty() {
                    descending_path(sub_path, &format!("{at}.subPath"), errs);
                }
                let expr = m["subPathExpr"].as_str().unwrap_or("");
                if !expr.is_empty() {
                    if !sub_path.is_empty() {
                        errs.push(FieldError::invalid(
                            &format!("{at}.subPathExpr"),
                            &json!(expr),
                            "subPathExpr and subPath are mutually exclusive",
                        ));
                    }
                    descending_path(expr, &format!("{at}.subPathExpr"), errs);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn config_keys_as_kube() {
        assert!(key_problems("key.name").is_empty() && key_problems("KEY_NAME-1").is_empty() && key_problems(".hidden").is_empty());
        assert_eq!(key_problems("."), vec!["must not be '.'"]);
        assert_eq!(key_problems(".."), vec!["must not be '..'"]);
        assert_eq!(key_problems("..data"), vec!["must not start with '..'"]);
        assert_eq!(key_problems("../../etc/x"), vec![KEY_FORMAT, "must not start with '..'"]);
        assert_eq!(key_problems(""), vec![KEY_FORMAT]);
        assert_eq!(key_problems(&"a".repeat(254)), vec!["must be no more than 253 characters"]);
        let mut errs = Vec::new();
        config_map(&json!({"data": {"a/b": "x", "k": "1"}, "binaryData": {"k": "MQ==", "..": ""}}), &mut errs);
        assert_eq!(
            messages(&errs),
            vec![
                format!("data[a/b]: Invalid value: \"a/b\": {KEY_FORMAT}"),
                "data[k]: Invalid value: \"k\": duplicate of key present in binaryData".to_string(),
                "binaryData[..]: Invalid value: \"..\": must not be '..'".to_string(),
            ]
        );
        let mut errs = Vec::new();
        secret(&json!({"stringData": {"/abs": "x"}}), &mut errs);
        assert_eq!(errs[0].field, "data[/abs]");
    }

    #[test]
    fn volume_paths_as_kube() {
        let spec = json!({
            "volumes": [
                {"name": "cm", "configMap": {"name": "c", "items": [{"key": "k", "path": "../x"}, {"key": "k", "path": "/etc/x", "mode": 4096}]}},
                {"name": "d", "downwardAPI": {"items": [{"path": "..data/x", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "a/../../t"}}]}},
                {"name": "Bad_Name", "emptyDir": {}}
            ],
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "cm", "mountPath": "/m", "subPath": "../../etc"},
                {"name": "cm", "mountPath": "/n", "subPathExpr": "/$(X)"}
            ]}]
        });
        let mut errs = Vec::new();
        pod_volumes(&spec, "spec", &mut errs);
        let got = messages(&errs);
        for want in [
            "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'",
            "spec.volumes[0].configMap.items[1].path: Invalid value: \"/etc/x\": must be a relative path",
            "spec.volumes[0].configMap.items[1].mode: Invalid value: 4096: must be a number between 0 and 0777 (octal), both inclusive",
            "spec.volumes[1].downwardAPI.items[0].path: Invalid value: \"..data/x\": must not start with '..'",
            "spec.volumes[2].projected.sources[0].serviceAccountToken.path: Invalid value: \"a/../../t\": must not contain '..'",
            "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../../etc\": must not contain '..'",
            "spec.containers[0].volumeMounts[1].subPathExpr: Invalid value: \"/$(X)\": must be a relative path",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
        assert!(got.iter().any(|g| g.starts_with("spec.volumes[3].name: Invalid value: \"Bad_Name\"")), "{got:#?}");
        assert_eq!(got.len(), 8, "{got:#?}");
        let mut errs = Vec::new();
        pod_volumes(
            &json!({"volumes": [{"name": "ok", "configMap": {"name": "c", "items": [{"key": "k", "path": "a/b..c"}]}}]}),
            "spec",
            &mut errs,
        );
        assert!(errs.is_empty(), "{:?}", messages(&errs));
    }
}
