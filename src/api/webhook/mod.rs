//! Admission webhooks (`admissionregistration.k8s.io/v1`), as kube-apiserver calls them: the
//! stored ValidatingWebhookConfigurations and MutatingWebhookConfigurations are mirrored in
//! memory ([`Webhooks`], fed by `api::mirror`), each request builds an [`Admission`] only when
//! some webhook exists (so a cluster without webhooks pays one lock read per write), and the
//! write path calls [`Admission::mutate`] after defaulting and [`Admission::validate`] after
//! validation. Configurations are the API objects' concern ([`configuration`]); which webhook a
//! request goes to is [`matching`]'s; the AdmissionReview wire format is [`review`]'s; the HTTPS
//! call is [`client`]'s; the order, failure policies, patches and reinvocation are
//! [`dispatch`]'s.

mod client;
pub mod configuration;
mod dispatch;
mod matching;
mod review;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};

use super::objects::SharedStore;
use super::registry::Resource;
use super::selector::LabelSelector;
pub use client::{Https, Transport};
pub use dispatch::{Call, Operation};

/// The API group of the configurations.
const GROUP: &str = "admissionregistration.k8s.io";

/// One webhook of a configuration, compiled for matching and calling.
pub struct Hook {
    pub name: String,
    pub mutating: bool,
    pub rules: Vec<matching::Rule>,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    /// `failurePolicy: Ignore`: a failed call lets the request through.
    pub ignore_failures: bool,
    /// `sideEffects` is `None` or `NoneOnDryRun`: dry-run requests may call it.
    pub dry_run_safe: bool,
    pub timeout: Duration,
    pub endpoint: client::Endpoint,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    /// The AdmissionReview version it is sent (the first of its list orch speaks).
    pub review_version: &'static str,
}

impl Hook {
    /// A webhook of a stored configuration (defaults applied); `None` when it cannot be
    /// called at all (kube-apiserver's validation refuses such objects).
    fn compile(hook: &Value, mutating: bool) -> Option<Self> {
        let selector = |field: &str| LabelSelector::from_json(&hook[field]).ok();
        let review_version = hook["admissionReviewVersions"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|v| configuration::REVIEW_VERSIONS.iter().find(|known| **known == v).copied())?;
        Some(Self {
            name: hook["name"].as_str()?.to_string(),
            mutating,
            rules: hook["rules"].as_array().into_iter().flatten().map(matching::Rule::from_json).collect(),
            namespace_selector: selector("namespaceSelector")?,
            object_selector: selector("objectSelector")?,
            ignore_failures: hook["failurePolicy"] == "Ignore",
            dry_run_safe: matches!(hook["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")),
            timeout: Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30)),
            endpoint: client::Endpoint::from_json(&hook["clientConfig"])?,
            reinvoke: hook["reinvocationPolicy"] == "IfNeeded",
            review_version,
        })
    }
}

/// The webhooks in force, in kube-apiserver's order (configurations by name, then as listed).
#[derive(Default)]
pub struct Hooks {
    pub mutating: Vec<Hook>,
    pub validating: Vec<Hook>,
}

/// The webhook configurations of the cluster, kept current from the store.
pub struct Webhooks {
    /// Every stored configuration, by store key (so in name order within each kind).
    objects: Mutex<BTreeMap<String, Value>>,
    hooks: RwLock<Arc<Hooks>>,
    transport: Arc<dyn Transport>,
}

impl Webhooks {
    /// Follows the configurations in `store` (in `tasks`), calling webhooks through `transport`.
    pub fn start(store: SharedStore, transport: Arc<dyn Transport>, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let webhooks = Arc::new(Self::new(transport));
        super::mirror::follow(store, &prefixes(), &webhooks, tasks);
        webhooks
    }

    fn new(transport: Arc<dyn Transport>) -> Self {
        Self { objects: Mutex::default(), hooks: RwLock::default(), transport }
    }

    /// The admission of one request on `resource`, or `None` when no webhook could be called
    /// (none configured, or the request is on a configuration itself: kube-apiserver never
    /// sends those to webhooks, so a broken webhook cannot lock its own configuration in).
    pub fn admission(&self, resource: &Resource, context: impl FnOnce() -> Context) -> Option<Admission> {
        let hooks = self.hooks.read();
        if (hooks.mutating.is_empty() && hooks.validating.is_empty()) || resource.group == GROUP {
            return None;
        }
        Some(Admission { hooks: hooks.clone(), transport: self.transport.clone(), context: context() })
    }

    fn rebuild(&self, objects: &BTreeMap<String, Value>) {
        let mut hooks = Hooks::default();
        for (key, config) in objects {
            let mutating = key.contains("/mutatingwebhookconfigurations/");
            let compiled = config["webhooks"].as_array().into_iter().flatten().filter_map(|h| Hook::compile(h, mutating));
            if mutating {
                hooks.mutating.extend(compiled);
            } else {
                hooks.validating.extend(compiled);
            }
        }
        *self.hooks.write() = Arc::new(hooks);
    }
}

/// The store prefixes of the two configuration kinds.
fn prefixes() -> Vec<String> {
    ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
        .iter()
        .map(|plural| super::registry::lookup(GROUP, "v1", plural).expect("webhook configurations are built in").key_prefix(None))
        .collect()
}

impl super::mirror::Mirror for Webhooks {
    fn reset(&self, prefix: &str, objects: Vec<(String, Value)>) {
        let mut all = self.objects.lock();
        all.retain(|key, _| !key.starts_with(prefix));
        all.extend(objects);
        self.rebuild(&all);
    }

    fn apply(&self, _prefix: &str, key: &str, object: Option<Value>) {
        let mut all = self.objects.lock();
        match object {
            Some(config) => all.insert(key.to_string(), config),
            None => all.remove(key),
        };
        self.rebuild(&all);
    }
}

/// What a request's webhooks are told about it besides the object.
pub struct Context {
    pub store: SharedStore,
    pub user: crate::pki::Identity,
    /// `Warning` headers of the response (webhooks' warnings go there).
    pub warnings: Arc<Mutex<Vec<String>>>,
    /// The request's `fieldManager`, reported in the review's options.
    pub field_manager: Option<String>,
}

impl Context {
    /// The review's `userInfo`: the caller, with `system:authenticated` as kube-apiserver adds it.
    fn user_info(&self) -> Value {
        let mut groups = self.user.groups.clone();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        json!({ "username": self.user.user, "groups": groups })
    }
}

/// The webhooks one request may call, with what they are told about it.
pub struct Admission {
    hooks: Arc<Hooks>,
    transport: Arc<dyn Transport>,
    context: Context,
}

#[cfg(test)]
mod tests {
    use super::super::mirror::Mirror;
    use super::*;

    #[tokio::test]
    async fn the_cache_follows_configurations_in_name_order() {
        let webhooks = Webhooks::new(Arc::new(Https));
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(crate::store::LocalStore::open(dir.path(), &Default::default()).unwrap());
        let context =
            || Context { store: store.clone(), user: crate::pki::Identity::default(), warnings: Default::default(), field_manager: None };
        let cm = super::super::registry::lookup("", "v1", "configmaps").unwrap();
        assert!(webhooks.admission(cm, context).is_none(), "no configuration: no admission");
        let hook = |name: &str| {
            let mut config = json!({ "webhooks": [{ "name": name, "sideEffects": "None", "admissionReviewVersions": ["v2", "v1"],
                "clientConfig": { "url": "https://127.0.0.1:1/" },
                "rules": [{ "operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"] }] }] });
            configuration::apply_defaults(&mut config, false);
            config
        };
        let [prefix, mutating_prefix] = [&prefixes()[0], &prefixes()[1]];
        webhooks.reset(prefix, vec![(format!("{prefix}b"), hook("b.example.com")), (format!("{prefix}a"), hook("a.example.com"))]);
        webhooks.apply(mutating_prefix, &format!("{mutating_prefix}m"), Some(hook("m.example.com")));
        let admission = webhooks.admission(cm, context).expect("webhooks exist");
        let names: Vec<&str> = admission.hooks.validating.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a.example.com", "b.example.com"]);
        assert_eq!((admission.hooks.mutating.len(), admission.hooks.validating[0].review_version), (1, "v1"));
        let configs = super::super::registry::lookup(GROUP, "v1", "validatingwebhookconfigurations").unwrap();
        assert!(webhooks.admission(configs, context).is_none(), "configurations never go to webhooks");
        webhooks.apply(prefix, &format!("{prefix}a"), None);
        webhooks.apply(prefix, &format!("{prefix}b"), None);
        webhooks.apply(mutating_prefix, &format!("{mutating_prefix}m"), None);
        assert!(webhooks.admission(cm, context).is_none());
    }
}
