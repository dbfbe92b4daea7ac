//! The ResourceQuotas and LimitRanges of every namespace, mirrored from the store so that
//! admission of a write in a namespace without any costs one map lookup.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use super::mirror::Mirror;
use super::registry;

/// Quotas and limit ranges by namespace, then by store key.
#[derive(Default)]
pub struct NamespacePolicies {
    quotas: RwLock<HashMap<String, HashMap<String, Value>>>,
    limit_ranges: RwLock<HashMap<String, HashMap<String, Value>>>,
}

fn quotas_prefix() -> String {
    registry::lookup("", "v1", "resourcequotas").expect("resourcequotas are built in").key_prefix(None)
}

fn limit_ranges_prefix() -> String {
    registry::lookup("", "v1", "limitranges").expect("limitranges are built in").key_prefix(None)
}

impl NamespacePolicies {
    /// Starts following the store's quotas and limit ranges in `tasks`.
    pub fn start(store: Arc<dyn crate::store::Store>, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let policies = Arc::new(Self::default());
        super::mirror::follow(store, &[quotas_prefix(), limit_ranges_prefix()], &policies, tasks);
        policies
    }

    /// The store keys of `namespace`'s ResourceQuotas.
    pub fn quota_keys(&self, namespace: &str) -> Vec<String> {
        self.quotas.read().get(namespace).map(|q| q.keys().cloned().collect()).unwrap_or_default()
    }

    /// `namespace`'s LimitRanges.
    pub fn limit_ranges(&self, namespace: &str) -> Vec<Value> {
        self.limit_ranges.read().get(namespace).map(|l| l.values().cloned().collect()).unwrap_or_default()
    }

    fn map_of(&self, prefix: &str) -> &RwLock<HashMap<String, HashMap<String, Value>>> {
        if prefix == quotas_prefix() {
            &self.quotas
        } else {
            &self.limit_ranges
        }
    }
}

/// The namespace of a key under `prefix` (`<prefix><namespace>/<name>`).
fn namespace_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.split_once('/').map(|(ns, _)| ns)
}

impl Mirror for NamespacePolicies {
    fn reset(&self, prefix: &str, objects: Vec<(String, Value)>) {
        let mut by_namespace: HashMap<String, HashMap<String, Value>> = HashMap::new();
        for (key, object) in objects {
            if let Some(ns) = namespace_of(prefix, &key) {
                by_namespace.entry(ns.to_string()).or_default().insert(key, object);
            }
        }
        *self.map_of(prefix).write() = by_namespace;
    }

    fn apply(&self, prefix: &str, key: &str, object: Option<Value>) {
        let Some(ns) = namespace_of(prefix, key) else { return };
        let mut map = self.map_of(prefix).write();
        match object {
            Some(object) => {
                map.entry(ns.to_string()).or_default().insert(key.to_string(), object);
            }
            None => {
                if let Some(objects) = map.get_mut(ns) {
                    objects.remove(key);
                    if objects.is_empty() {
                        map.remove(ns);
                    }
                }
            }
        }
    }
}
