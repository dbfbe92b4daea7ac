//! Which webhooks a request goes to, by kube-apiserver's rules: a webhook's `rules`
//! (operations, API groups, versions and resources with `res/sub`, `*` and `*/*`, scope), its
//! `objectSelector` (the new or the old object's labels) and its `namespaceSelector` (the
//! labels of the request's namespace; cluster-scoped objects other than namespaces always
//! match, and a Namespace is judged by its own labels).

use serde_json::Value;

use super::dispatch::Operation;
use super::Hook;

/// One of a webhook's `rules`.
pub struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

impl Rule {
    pub fn from_json(rule: &Value) -> Self {
        let list = |field: &str| rule[field].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        Self {
            operations: list("operations"),
            groups: list("apiGroups"),
            versions: list("apiVersions"),
            resources: list("resources"),
            scope: rule["scope"].as_str().unwrap_or("*").to_string(),
        }
    }

    fn matches(&self, request: &Attributes<'_>) -> bool {
        let exact_or_any = |items: &[String], wanted: &str| items.iter().any(|i| i == "*" || i == wanted);
        let resource = self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            (res == "*" || res == request.resource) && (sub == "*" || sub == request.subresource)
        });
        let is_namespace = (request.group, request.resource) == ("", "namespaces");
        let scope = match self.scope.as_str() {
            "Namespaced" => !is_namespace && !request.namespace.is_empty(),
            "Cluster" => is_namespace || request.namespace.is_empty(),
            _ => true,
        };
        scope
            && self.operations.iter().any(|o| o == "*" || o == request.operation.as_str())
            && exact_or_any(&self.groups, request.group)
            && exact_or_any(&self.versions, request.version)
            && resource
    }
}

/// What a request is, as webhooks match it.
pub struct Attributes<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    /// Empty for the resource itself.
    pub subresource: &'a str,
    /// The request's namespace; for a Namespace object, its own name; empty otherwise.
    pub namespace: &'a str,
    pub operation: Operation,
    pub object: Option<&'a Value>,
    pub old: Option<&'a Value>,
}

impl Attributes<'_> {
    /// Whether the namespace selector is judged by the labels of a stored namespace (`None`:
    /// it is not judged at all, or by the object's own labels).
    pub fn stored_namespace(&self) -> Option<&str> {
        (!self.namespace_from_object() && !self.namespace.is_empty()).then_some(self.namespace)
    }

    /// A create or update of a Namespace itself: judged by the labels it is written with.
    fn namespace_from_object(&self) -> bool {
        (self.group, self.resource, self.subresource) == ("", "namespaces", "")
            && matches!(self.operation, Operation::Create | Operation::Update)
    }

    /// Cluster-scoped objects other than namespaces are never exempted by a namespace selector.
    fn cluster_scoped(&self) -> bool {
        self.namespace.is_empty() && (self.group, self.resource) != ("", "namespaces")
    }
}

/// Whether `hook` takes the request by its rules and object selector (the namespace selector
/// is [`namespace_matches`], which may need a store read).
pub fn rules_match(hook: &Hook, request: &Attributes<'_>) -> bool {
    let labelled = |obj: Option<&Value>| obj.is_some_and(|o| hook.object_selector.matches(&o["metadata"]["labels"]));
    hook.rules.iter().any(|r| r.matches(request)) && (hook.object_selector.is_empty() || labelled(request.object) || labelled(request.old))
}

/// Whether `hook`'s namespace selector takes the request; `stored_labels` are the labels of
/// the namespace named by [`Attributes::stored_namespace`], when it names one.
pub fn namespace_matches(hook: &Hook, request: &Attributes<'_>, stored_labels: &Value) -> bool {
    if hook.namespace_selector.is_empty() || request.cluster_scoped() {
        return true;
    }
    if request.namespace_from_object() {
        return hook.namespace_selector.matches(request.object.map_or(&Value::Null, |o| &o["metadata"]["labels"]));
    }
    hook.namespace_selector.matches(stored_labels)
}

/// Whether `hook` needs the labels of a stored namespace to judge the request.
pub fn needs_namespace(hook: &Hook, request: &Attributes<'_>) -> bool {
    !hook.namespace_selector.is_empty() && request.stored_namespace().is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hook(rules: Value, namespace_selector: Value, object_selector: Value) -> Hook {
        let config = json!({ "name": "h.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": { "url": "https://127.0.0.1/" }, "rules": rules,
            "namespaceSelector": namespace_selector, "objectSelector": object_selector });
        Hook::compile(&config, false).unwrap()
    }

    fn rule(operations: &[&str], groups: &[&str], resources: &[&str], scope: &str) -> Value {
        json!({ "operations": operations, "apiGroups": groups, "apiVersions": ["*"], "resources": resources, "scope": scope })
    }

    fn request<'a>(resource: &'a str, subresource: &'a str, namespace: &'a str, operation: Operation) -> Attributes<'a> {
        Attributes { group: "", version: "v1", resource, subresource, namespace, operation, object: None, old: None }
    }

    #[test]
    fn rules_match_operations_resources_subresources_and_scope() {
        let pods = hook(json!([rule(&["CREATE", "UPDATE"], &[""], &["pods"], "*")]), json!({}), json!({}));
        assert!(rules_match(&pods, &request("pods", "", "default", Operation::Create)));
        assert!(!rules_match(&pods, &request("pods", "", "default", Operation::Delete)), "operation");
        assert!(!rules_match(&pods, &request("pods", "status", "default", Operation::Update)), "`pods` is not `pods/status`");
        assert!(!rules_match(&pods, &request("configmaps", "", "default", Operation::Create)));
        let status = hook(json!([rule(&["*"], &["*"], &["pods/status"], "*")]), json!({}), json!({}));
        assert!(rules_match(&status, &request("pods", "status", "default", Operation::Update)));
        assert!(!rules_match(&status, &request("pods", "", "default", Operation::Update)));
        let all = hook(json!([rule(&["*"], &["*"], &["*"], "*")]), json!({}), json!({}));
        assert!(!rules_match(&all, &request("pods", "status", "default", Operation::Update)), "`*` is resources only");
        let everything = hook(json!([rule(&["*"], &["*"], &["*/*"], "*")]), json!({}), json!({}));
        assert!(rules_match(&everything, &request("pods", "status", "default", Operation::Update)));
        let mut apps = request("deployments", "", "default", Operation::Create);
        apps.group = "apps";
        assert!(!rules_match(&pods, &apps), "group");

        let namespaced = hook(json!([rule(&["*"], &["*"], &["*"], "Namespaced")]), json!({}), json!({}));
        let cluster = hook(json!([rule(&["*"], &["*"], &["*"], "Cluster")]), json!({}), json!({}));
        let cm = request("configmaps", "", "default", Operation::Create);
        let node = request("nodes", "", "", Operation::Create);
        let namespace = request("namespaces", "", "team", Operation::Update);
        assert!(rules_match(&namespaced, &cm) && !rules_match(&cluster, &cm));
        assert!(!rules_match(&namespaced, &node) && rules_match(&cluster, &node));
        assert!(!rules_match(&namespaced, &namespace) && rules_match(&cluster, &namespace), "namespaces are cluster-scoped");
    }

    #[test]
    fn object_selectors_look_at_the_new_and_the_old_object() {
        let any = json!([rule(&["*"], &["*"], &["*"], "*")]);
        let selective = hook(any, json!({}), json!({ "matchLabels": { "check": "yes" } }));
        let (labelled, plain) = (json!({ "metadata": { "labels": { "check": "yes" } } }), json!({ "metadata": {} }));
        let mut r = request("configmaps", "", "default", Operation::Update);
        assert!(!rules_match(&selective, &r), "no object: no labels");
        r.object = Some(&plain);
        assert!(!rules_match(&selective, &r));
        r.old = Some(&labelled);
        assert!(rules_match(&selective, &r), "the old object's labels count");
    }

    #[test]
    fn namespace_selectors_follow_kubes_exemptions() {
        let any = json!([rule(&["*"], &["*"], &["*"], "*")]);
        let selective = hook(any, json!({ "matchExpressions": [{ "key": "skip", "operator": "DoesNotExist" }] }), json!({}));
        let cm = request("configmaps", "", "default", Operation::Create);
        assert!(needs_namespace(&selective, &cm));
        assert!(namespace_matches(&selective, &cm, &json!({ "team": "a" })));
        assert!(!namespace_matches(&selective, &cm, &json!({ "skip": "true" })));
        let node = request("nodes", "", "", Operation::Create);
        assert!(!needs_namespace(&selective, &node) && namespace_matches(&selective, &node, &Value::Null), "cluster-scoped: never exempt");
        let skipped = json!({ "metadata": { "name": "x", "labels": { "skip": "1" } } });
        let mut created = request("namespaces", "", "", Operation::Create);
        created.object = Some(&skipped);
        assert!(!needs_namespace(&selective, &created));
        assert!(!namespace_matches(&selective, &created, &Value::Null), "a namespace is judged by its own labels");
        let deleted = request("namespaces", "", "x", Operation::Delete);
        assert_eq!(deleted.stored_namespace(), Some("x"), "a deleted namespace by its stored labels");
    }
}
