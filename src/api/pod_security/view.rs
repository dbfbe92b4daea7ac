//! A pod (or pod template) as the checks see it, and the wording helpers of kube's messages
//! (`container "a"`, `containers "a", "b"`).

use serde_json::Value;

/// The metadata and spec of a pod or pod template.
pub struct PodView<'a> {
    pub meta: &'a Value,
    pub spec: &'a Value,
}

impl<'a> PodView<'a> {
    /// Every container: init, regular and ephemeral.
    pub fn containers(&self) -> impl Iterator<Item = &'a Value> + 'a {
        let spec = self.spec;
        ["initContainers", "containers", "ephemeralContainers"].into_iter().flat_map(move |l| spec[l].as_array().into_iter().flatten())
    }

    pub fn security_context(&self) -> &'a Value {
        &self.spec["securityContext"]
    }

    /// Whether the pod declares Windows (restricted checks that mean nothing there skip it).
    pub fn is_windows(&self) -> bool {
        self.spec["os"]["name"] == "windows"
    }
}

/// A container's name.
pub fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or_default().to_string()
}

/// `"a", "b"`.
pub fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("\"{}\"", s.as_ref())).collect::<Vec<_>>().join(", ")
}

pub fn pluralize(singular: &'static str, plural: &'static str, count: usize) -> &'static str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
pub fn containers_phrase(names: &[String]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

/// Sorted and deduplicated, as Go's `sets.List()`.
pub fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

/// What a check found: kube's reason and detail.
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl Violation {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Option<Self> {
        Some(Self { reason: reason.into(), detail: detail.into() })
    }
}

/// The setters of a pod-or-container field: `pod`, `container "a"`, joined with " and ".
pub fn setters(pod: bool, containers: &[String]) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("pod".to_string());
    }
    if !containers.is_empty() {
        parts.push(containers_phrase(containers));
    }
    parts.join(" and ")
}
