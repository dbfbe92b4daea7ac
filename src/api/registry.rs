//! The resource registry: one table describing every resource the API serves (group, version,
//! kind, names, scope, verbs). Discovery, routing and storage keys all come from it.

/// One served resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// API group; empty for the core (legacy) group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    /// Registers the resource's OpenAPI schema (from k8s-openapi) and returns a reference to it.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// Verbs of a stored resource.
const VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
) -> Resource {
    Resource { group, version, kind, plural, singular, short_names, categories: &[], namespaced, verbs: VERBS, schema }
}

/// The built-in resources served so far.
pub const BUILTIN: &[Resource] = {
    use k8s_openapi::api::authorization::v1 as authorization;
    use k8s_openapi::api::coordination::v1 as coordination;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::rbac::v1 as rbac;
    const RBAC: &str = "rbac.authorization.k8s.io";
    &[
        res("", "v1", "Namespace", "namespaces", "namespace", &["ns"], false, schema_of::<core::Namespace>),
        res("", "v1", "ConfigMap", "configmaps", "configmap", &["cm"], true, schema_of::<core::ConfigMap>),
        res("", "v1", "Secret", "secrets", "secret", &[], true, schema_of::<core::Secret>),
        res("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", &["sa"], true, schema_of::<core::ServiceAccount>),
        res("", "v1", "Event", "events", "event", &["ev"], true, schema_of::<core::Event>),
        Resource { categories: &["all"], ..res("", "v1", "Service", "services", "service", &["svc"], true, schema_of::<core::Service>) },
        res("coordination.k8s.io", "v1", "Lease", "leases", "lease", &[], true, schema_of::<coordination::Lease>),
        res(RBAC, "v1", "Role", "roles", "role", &[], true, schema_of::<rbac::Role>),
        res(RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", &[], true, schema_of::<rbac::RoleBinding>),
        res(RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", &[], false, schema_of::<rbac::ClusterRole>),
        res(
            RBAC,
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            &[],
            false,
            schema_of::<rbac::ClusterRoleBinding>,
        ),
        // A question, not a stored object: create only (`kubectl auth can-i`).
        Resource {
            verbs: &["create"],
            ..res(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                "selfsubjectaccessreview",
                &[],
                false,
                schema_of::<authorization::SelfSubjectAccessReview>,
            )
        },
    ]
};

impl Resource {
    /// Whether objects of this resource are kept in the store.
    pub fn stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    /// `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of this resource, optionally within one namespace.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }
}

/// Finds a resource by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    BUILTIN.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The group-versions served, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in BUILTIN {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        let cm = lookup("", "v1", "configmaps").unwrap();
        assert_eq!(cm.key(Some("default"), "a"), "/registry/core/configmaps/default/a");
        assert_eq!(cm.key_prefix(None), "/registry/core/configmaps/");
        let ns = lookup("", "v1", "namespaces").unwrap();
        assert_eq!(ns.key(Some("ignored"), "kube-system"), "/registry/core/namespaces/kube-system");
        assert_eq!(lookup("coordination.k8s.io", "v1", "leases").unwrap().api_version(), "coordination.k8s.io/v1");
    }
}
