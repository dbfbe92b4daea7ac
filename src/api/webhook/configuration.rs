//! ValidatingWebhookConfiguration and MutatingWebhookConfiguration objects as
//! kube-apiserver admits them: its v1 defaults (`failurePolicy: Fail`, `matchPolicy:
//! Equivalent`, empty selectors, `timeoutSeconds: 10`, rule `scope: "*"`, service port 443,
//! `reinvocationPolicy: Never`) and its validation, with its field paths and wording.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::api::objects::check_name;
use crate::api::selector::LabelSelector;
use crate::api::status::FieldError;

/// The AdmissionReview versions kube-apiserver speaks (and orch sends).
pub const REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Whether `kind` is one of the two configuration kinds, and if so whether it mutates.
pub fn mutating(kind: &str) -> Option<bool> {
    match kind {
        "ValidatingWebhookConfiguration" => Some(false),
        "MutatingWebhookConfiguration" => Some(true),
        _ => None,
    }
}

fn set(obj: &mut Value, field: &str, value: Value) {
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = value;
    }
}

/// Fills in the v1 defaults of every webhook of a configuration.
pub fn apply_defaults(config: &mut Value, mutating: bool) {
    for hook in config["webhooks"].as_array_mut().into_iter().flatten().filter(|h| h.is_object()) {
        set(hook, "failurePolicy", json!("Fail"));
        set(hook, "matchPolicy", json!("Equivalent"));
        set(hook, "namespaceSelector", json!({}));
        set(hook, "objectSelector", json!({}));
        set(hook, "timeoutSeconds", json!(10));
        if mutating {
            set(hook, "reinvocationPolicy", json!("Never"));
        }
        if hook["clientConfig"]["service"].is_object() {
            set(&mut hook["clientConfig"]["service"], "port", json!(443));
        }
        for rule in hook["rules"].as_array_mut().into_iter().flatten().filter(|r| r.is_object()) {
            set(rule, "scope", json!("*"));
        }
    }
}

fn required(field: &str, detail: &str) -> FieldError {
    FieldError { field: field.into(), reason: "FieldValueRequired", message: format!("Required value: {detail}") }
}

/// The problems of a configuration, as kube-apiserver's `ValidateValidatingWebhookConfiguration`
/// and `ValidateMutatingWebhookConfiguration` report them.
pub fn validate(config: &Value, mutating: bool, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, hook) in config["webhooks"].as_array().into_iter().flatten().enumerate() {
        let at = format!("webhooks[{i}]");
        match hook["name"].as_str().unwrap_or_default() {
            "" => errs.push(FieldError::required(&format!("{at}.name"))),
            name => {
                if let Err(why) = qualified_name(name) {
                    errs.push(FieldError::invalid(&format!("{at}.name"), &hook["name"], why));
                } else if !names.insert(name) {
                    errs.push(FieldError::duplicate(&format!("{at}.name"), &hook["name"]));
                }
            }
        }
        for (j, rule) in hook["rules"].as_array().into_iter().flatten().enumerate() {
            validate_rule(rule, &format!("{at}.rules[{j}]"), errs);
        }
        let one_of = |field: &str, allowed: &[&str], errs: &mut Vec<FieldError>| {
            let value = &hook[field];
            if !value.is_null() && !value.as_str().is_some_and(|v| allowed.contains(&v)) {
                errs.push(FieldError::not_supported(&format!("{at}.{field}"), value, allowed));
            }
        };
        one_of("failurePolicy", &["Fail", "Ignore"], errs);
        one_of("matchPolicy", &["Equivalent", "Exact"], errs);
        if mutating {
            one_of("reinvocationPolicy", &["IfNeeded", "Never"], errs);
        }
        if hook["sideEffects"].is_null() {
            errs.push(required(&format!("{at}.sideEffects"), "must specify one of None, NoneOnDryRun"));
        } else {
            one_of("sideEffects", &["None", "NoneOnDryRun"], errs);
        }
        if let Some(t) = hook["timeoutSeconds"].as_i64().filter(|t| !(1..=30).contains(t)) {
            errs.push(FieldError::invalid(
                &format!("{at}.timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        review_versions(&hook["admissionReviewVersions"], &format!("{at}.admissionReviewVersions"), errs);
        for selector in ["namespaceSelector", "objectSelector"] {
            if let Err(why) = LabelSelector::from_json(&hook[selector]) {
                errs.push(FieldError::invalid(&format!("{at}.{selector}"), &hook[selector], &why));
            }
        }
        client_config(&hook["clientConfig"], &format!("{at}.clientConfig"), errs);
    }
}

/// `IsFullyQualifiedName`: a DNS-1123 subdomain of at least three segments.
fn qualified_name(name: &str) -> Result<(), &'static str> {
    check_name(name)?;
    if name.split('.').count() < 3 {
        return Err("should be a domain with at least three segments separated by dots");
    }
    Ok(())
}

fn validate_rule(rule: &Value, at: &str, errs: &mut Vec<FieldError>) {
    const OPERATIONS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
    let operations = rule["operations"].as_array().map(Vec::as_slice).unwrap_or_default();
    if operations.is_empty() {
        errs.push(FieldError::required(&format!("{at}.operations")));
    }
    for (k, op) in operations.iter().enumerate() {
        if !op.as_str().is_some_and(|o| OPERATIONS.contains(&o)) {
            errs.push(FieldError::not_supported(&format!("{at}.operations[{k}]"), op, &OPERATIONS));
        }
    }
    if operations.len() > 1 && operations.iter().any(|o| o == "*") {
        errs.push(FieldError::invalid(
            &format!("{at}.operations"),
            &rule["operations"],
            "if '*' is present, must not specify other operations",
        ));
    }
    for list in ["apiGroups", "apiVersions", "resources"] {
        if rule[list].as_array().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(&format!("{at}.{list}")));
        }
    }
    let scope = &rule["scope"];
    if !scope.is_null() && !scope.as_str().is_some_and(|s| matches!(s, "*" | "Cluster" | "Namespaced")) {
        errs.push(FieldError::not_supported(&format!("{at}.scope"), scope, &["*", "Cluster", "Namespaced"]));
    }
}

fn review_versions(versions: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let list = versions.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        errs.push(required(at, &format!("must specify one of {}", REVIEW_VERSIONS.join(", "))));
        return;
    }
    if !list.iter().any(|v| v.as_str().is_some_and(|v| REVIEW_VERSIONS.contains(&v))) {
        errs.push(FieldError::invalid(at, versions, &format!("must include at least one of {}", REVIEW_VERSIONS.join(", "))));
    }
}

fn client_config(cc: &Value, at: &str, errs: &mut Vec<FieldError>) {
    const FORM: &str = "; desired format: https://host[/path]";
    match (&cc["url"], &cc["service"]) {
        (Value::String(url), Value::Null) => {
            let field = format!("{at}.url");
            let Ok(uri) = url.parse::<http::Uri>() else {
                errs.push(required(&field, &format!("url must be a valid URL{FORM}")));
                return;
            };
            if uri.scheme_str() != Some("https") {
                errs.push(FieldError::invalid(
                    &field,
                    &json!(uri.scheme_str().unwrap_or("")),
                    &format!("'https' is the only allowed URL scheme{FORM}"),
                ));
            }
            match uri.authority() {
                None => errs.push(FieldError::invalid(&field, &json!(""), &format!("host must be specified{FORM}"))),
                Some(a) if a.as_str().contains('@') => {
                    errs.push(FieldError::invalid(&field, &json!(a.as_str()), "user information is not permitted in the URL"))
                }
                Some(_) => {}
            }
            if let Some(query) = uri.query() {
                errs.push(FieldError::invalid(&field, &json!(query), "query parameters are not permitted in the URL"));
            }
            if let Some((_, fragment)) = url.split_once('#') {
                errs.push(FieldError::invalid(&field, &json!(fragment), "fragments are not permitted in the URL"));
            }
        }
        (Value::Null, service @ Value::Object(_)) => {
            for field in ["name", "namespace"] {
                if service[field].as_str().is_none_or(str::is_empty) {
                    errs.push(FieldError::required(&format!("{at}.service.{field}")));
                }
            }
            if let Some(path) = service["path"].as_str().filter(|p| !p.starts_with('/')) {
                errs.push(FieldError::invalid(&format!("{at}.service.path"), &json!(path), "must start with a '/'"));
            }
            if let Some(port) = service["port"].as_i64().filter(|p| !(1..=65535).contains(p)) {
                errs.push(FieldError::invalid(
                    &format!("{at}.service.port"),
                    &json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
        }
        _ => errs.push(required(at, "exactly one of url or service is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Value {
        json!({ "name": "deny.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": { "url": "https://127.0.0.1:8443/validate" },
                "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }] })
    }

    fn problems(config: &Value, mutating: bool) -> Vec<String> {
        let mut errs = Vec::new();
        validate(config, mutating, &mut errs);
        errs.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn defaults_are_kubes() {
        let mut config =
            json!({ "webhooks": [hook(), { "name": "m.example.com", "clientConfig": { "service": { "name": "s", "namespace": "n" } } }] });
        apply_defaults(&mut config, true);
        let h = &config["webhooks"][0];
        assert_eq!((&h["failurePolicy"], &h["matchPolicy"], &h["timeoutSeconds"]), (&json!("Fail"), &json!("Equivalent"), &json!(10)));
        assert_eq!((&h["namespaceSelector"], &h["objectSelector"], &h["reinvocationPolicy"]), (&json!({}), &json!({}), &json!("Never")));
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(config["webhooks"][1]["clientConfig"]["service"]["port"], 443);
        let mut validating = json!({ "webhooks": [hook()] });
        apply_defaults(&mut validating, false);
        assert!(validating["webhooks"][0].get("reinvocationPolicy").is_none());
        assert!(problems(&validating, false).is_empty(), "{:?}", problems(&validating, false));
    }

    #[test]
    fn invalid_webhooks_are_refused_with_kubes_wording() {
        let mut bad = hook();
        bad["name"] = json!("deny");
        bad["sideEffects"] = json!("Some");
        bad["timeoutSeconds"] = json!(31);
        bad["admissionReviewVersions"] = json!(["v2"]);
        bad["clientConfig"] = json!({ "url": "http://x/y", "service": { "name": "s", "namespace": "n" } });
        let found = problems(&json!({ "webhooks": [bad] }), false);
        assert_eq!(
            found,
            [
                "webhooks[0].name: Invalid value: \"deny\": should be a domain with at least three segments separated by dots",
                "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                "webhooks[0].admissionReviewVersions: Invalid value: [\"v2\"]: must include at least one of v1, v1beta1",
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            ]
        );
        let mut no_side_effects = hook();
        no_side_effects.as_object_mut().unwrap().remove("sideEffects");
        let found = problems(&json!({ "webhooks": [hook(), hook(), no_side_effects] }), false);
        assert_eq!(
            found,
            [
                "webhooks[1].name: Duplicate value: \"deny.example.com\"",
                "webhooks[2].name: Duplicate value: \"deny.example.com\"",
                "webhooks[2].sideEffects: Required value: must specify one of None, NoneOnDryRun",
            ]
        );
        let mut plain = hook();
        plain["clientConfig"]["url"] = json!("http://127.0.0.1/x?a=b");
        let found = problems(&json!({ "webhooks": [plain] }), false);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("'https' is the only allowed URL scheme"), "{found:?}");
    }
}
