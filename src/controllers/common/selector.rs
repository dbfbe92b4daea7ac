//! Label selectors (`matchLabels` + `matchExpressions`) evaluated against an object's labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects `labels`. An empty selector selects everything (callers that
/// must not act on everything check [`is_empty`] first).
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `selector` has no requirements at all.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// A selector of exactly these labels (ReplicationControllers' map selectors).
pub fn from_map(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels.clone()), match_expressions: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement { key: key.into(), operator: op.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }
    }

    #[test]
    fn labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("canary", "DoesNotExist", &[]),
                req("env", "NotIn", &["prod"]),
            ]),
        };
        assert!(matches(&sel, Some(&labels(&[("app", "web"), ("tier", "a")]))));
        assert!(!matches(&sel, Some(&labels(&[("app", "web"), ("tier", "c")]))));
        assert!(!matches(&sel, Some(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")]))));
        assert!(!matches(&sel, Some(&labels(&[("app", "web"), ("tier", "a"), ("env", "prod")]))));
        assert!(!matches(&sel, None));
        assert!(matches(&LabelSelector::default(), None));
        assert!(is_empty(&LabelSelector::default()));
        assert!(!is_empty(&from_map(&labels(&[("a", "b")]))));
    }
}
