//! PolicyRules on their JSON form: whether a rule allows a request (kube's `RuleAllows`:
//! wildcards, `*/subresource`, resourceNames, nonResourceURLs with a trailing `*`) and which
//! parts of some rules a set of rules does not cover (kube's `Covers`, for escalation checks),
//! written the way kube-apiserver prints them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// What a request wants to do.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// The resource, with its subresource as `pods/status`.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A request as rules see it: on a resource, or on a path outside the resource API.
pub enum Request<'a, 'b> {
    Resource(&'b Attributes<'a>),
    NonResource { verb: &'a str, path: &'a str },
}

pub fn strs(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn any_or(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether `rule` (a PolicyRule) allows `request`.
pub fn allows(rule: &Value, request: &Request<'_, '_>) -> bool {
    match request {
        Request::Resource(a) => {
            let names = strs(&rule["resourceNames"]);
            let sub = a.resource.split_once('/').map(|(_, sub)| format!("*/{sub}"));
            any_or(&strs(&rule["verbs"]), a.verb)
                && any_or(&strs(&rule["apiGroups"]), a.group)
                && strs(&rule["resources"]).iter().any(|r| *r == "*" || *r == a.resource || Some(*r) == sub.as_deref())
                && (names.is_empty() || a.name.is_some_and(|n| names.contains(&n)))
        }
        Request::NonResource { verb, path } => {
            any_or(&strs(&rule["verbs"]), verb) && strs(&rule["nonResourceURLs"]).iter().any(|url| url_covers(url, path))
        }
    }
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == "*" || owner == path || owner.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
}

/// One verb on one resource (or name, or URL): kube's `BreakdownRule`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Simple {
    group: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    url: Option<String>,
    verb: String,
}

fn breakdown(rule: &Value) -> Vec<Simple> {
    let mut out = Vec::new();
    let verbs = strs(&rule["verbs"]);
    for group in strs(&rule["apiGroups"]) {
        for resource in strs(&rule["resources"]) {
            for verb in &verbs {
                let simple = |name: Option<&str>| Simple {
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    name: name.map(Into::into),
                    url: None,
                    verb: verb.to_string(),
                };
                match strs(&rule["resourceNames"]).as_slice() {
                    [] => out.push(simple(None)),
                    names => out.extend(names.iter().map(|n| simple(Some(n)))),
                }
            }
        }
    }
    for url in strs(&rule["nonResourceURLs"]) {
        out.extend(verbs.iter().map(|verb| Simple {
            group: None,
            resource: None,
            name: None,
            url: Some(url.into()),
            verb: verb.to_string(),
        }));
    }
    out
}

/// Whether `owner` grants all of `simple`: kube's `ruleCovers`.
fn covers_one(owner: &Value, simple: &Simple) -> bool {
    let has = |field: &str, want: &str| strs(&owner[field]).iter().any(|x| *x == "*" || *x == want);
    if !has("verbs", &simple.verb) {
        return false;
    }
    if let Some(url) = &simple.url {
        return strs(&owner["nonResourceURLs"]).iter().any(|o| url_covers(o, url));
    }
    let (Some(group), Some(resource)) = (&simple.group, &simple.resource) else { return false };
    let resources = strs(&owner["resources"]);
    let resource_ok = resources.iter().any(|r| *r == "*" || r == resource)
        || resource.split_once('/').is_some_and(|(_, sub)| resources.contains(&format!("*/{sub}").as_str()));
    let names = strs(&owner["resourceNames"]);
    has("apiGroups", group) && resource_ok && (names.is_empty() || simple.name.as_deref().is_some_and(|n| names.contains(&n)))
}

/// The parts of `wanted` that no rule of `owner` grants, compacted and sorted as kube-apiserver
/// lists them (`{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`); empty when covered.
pub fn uncovered<'a>(owner: impl Iterator<Item = &'a Value> + Clone, wanted: &[Value]) -> Vec<String> {
    // (group, resource, name, URL) → the verbs missing on it.
    type Target = (Option<String>, Option<String>, Option<String>, Option<String>);
    let mut missing: BTreeMap<Target, Vec<String>> = BTreeMap::new();
    for simple in wanted.iter().flat_map(breakdown) {
        if !owner.clone().any(|o| covers_one(o, &simple)) {
            let verbs = missing.entry((simple.group, simple.resource, simple.name, simple.url)).or_default();
            if !verbs.contains(&simple.verb) {
                verbs.push(simple.verb);
            }
        }
    }
    let mut out: Vec<String> =
        missing.into_iter().map(|((group, resource, name, url), verbs)| compact(group, resource, name, url, &verbs)).collect();
    out.sort();
    out
}

fn compact(group: Option<String>, resource: Option<String>, name: Option<String>, url: Option<String>, verbs: &[String]) -> String {
    let quoted = |v: &[String]| format!("[{}]", v.iter().map(|s| json!(s).to_string()).collect::<Vec<_>>().join(" "));
    let mut parts = Vec::new();
    for (field, value) in [("APIGroups", group), ("Resources", resource), ("ResourceNames", name), ("NonResourceURLs", url)] {
        if let Some(v) = value {
            parts.push(format!("{field}:{}", quoted(&[v])));
        }
    }
    parts.push(format!("Verbs:{}", quoted(verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res<'a>(verb: &'a str, group: &'a str, resource: &'a str, name: Option<&'a str>) -> Attributes<'a> {
        Attributes { verb, group, resource, namespace: Some("ns"), name }
    }

    #[test]
    fn rules_match_as_kube_matches_them() {
        let rule = json!({ "apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get"], "resourceNames": ["a"] });
        assert!(allows(&rule, &Request::Resource(&res("get", "", "pods", Some("a")))));
        assert!(allows(&rule, &Request::Resource(&res("get", "", "nodes/status", Some("a")))), "*/status");
        assert!(!allows(&rule, &Request::Resource(&res("get", "", "pods", Some("b")))), "resourceNames");
        assert!(!allows(&rule, &Request::Resource(&res("get", "", "pods", None))), "resourceNames need a name");
        assert!(!allows(&rule, &Request::Resource(&res("get", "", "pods/log", Some("a")))));
        assert!(!allows(&rule, &Request::Resource(&res("get", "apps", "pods", Some("a")))));
        let urls = json!({ "nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"] });
        assert!(allows(&urls, &Request::NonResource { verb: "get", path: "/healthz" }));
        assert!(allows(&urls, &Request::NonResource { verb: "get", path: "/apis/apps/v1" }));
        assert!(!allows(&urls, &Request::NonResource { verb: "get", path: "/apis" }));
        assert!(!allows(&urls, &Request::NonResource { verb: "post", path: "/healthz" }));
        assert!(!allows(&urls, &Request::Resource(&res("get", "", "pods", None))), "URL rules grant no resources");
        assert!(!allows(&rule, &Request::NonResource { verb: "get", path: "/healthz" }), "resource rules grant no URLs");
    }

    #[test]
    fn coverage_is_kubes() {
        let owner = [
            json!({ "apiGroups": [""], "resources": ["configmaps", "*/status"], "verbs": ["get", "list"] }),
            json!({ "apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"] }),
            json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["mine"] }),
            json!({ "nonResourceURLs": ["/api/*"], "verbs": ["get"] }),
        ];
        let covered = |wanted: Value| uncovered(owner.iter(), &[wanted]);
        assert!(covered(json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] })).is_empty());
        assert!(covered(json!({ "apiGroups": [""], "resources": ["pods/status"], "verbs": ["list"] })).is_empty());
        assert!(covered(json!({ "apiGroups": ["apps"], "resources": ["deployments", "*"], "verbs": ["*"] })).is_empty());
        assert!(covered(json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["mine"] })).is_empty());
        assert!(covered(json!({ "nonResourceURLs": ["/api/v1"], "verbs": ["get"] })).is_empty());
        assert_eq!(
            covered(json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] })),
            [r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#]
        );
        assert_eq!(
            covered(json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["mine", "yours"] })),
            [r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["yours"], Verbs:["get"]}"#]
        );
        assert_eq!(covered(json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"] })).len(), 1, "* is not get+list");
        assert_eq!(covered(json!({ "apiGroups": ["*"], "resources": ["configmaps"], "verbs": ["get"] })).len(), 1);
        assert_eq!(
            covered(json!({ "nonResourceURLs": ["/metrics"], "verbs": ["get"] })),
            [r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#]
        );
        assert_eq!(covered(json!({ "nonResourceURLs": ["*"], "verbs": ["get"] })).len(), 1);
    }
}
