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
    /// Subresources served under `<plural>/<name>/<subresource>`.
    pub subresources: &'static [&'static str],
    /// Registers a built-in resource's OpenAPI schema (from k8s-openapi) and returns a
    /// reference to it.
    pub schema: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    /// A custom resource's definition-specific parts (schema, printer columns, scale paths).
    pub custom: Option<&'static super::crd::definition::Custom>,
}

fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// Verbs of a stored resource.
pub const STORED_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Subresources of resources with a desired and an observed state.
const STATUS: &[&str] = &["status"];
/// Subresources of replicated workloads.
const STATUS_SCALE: &[&str] = &["status", "scale"];
const ALL: &[&str] = &["all"];

/// A stored resource: (kind, plural, singular, short names, namespaced, schema); groups,
/// categories and subresources are set by the `Resource { .. }` wrappers below.
const fn res(
    group: &'static str,
    version: &'static str,
    (kind, plural, singular): (&'static str, &'static str, &'static str),
    short_names: &'static [&'static str],
    namespaced: bool,
    schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        short_names,
        categories: &[],
        namespaced,
        verbs: STORED_VERBS,
        subresources: &[],
        schema: Some(schema),
        custom: None,
    }
}

/// A resource with a status subresource (and possibly more), in the given categories.
const fn with(r: Resource, subresources: &'static [&'static str], categories: &'static [&'static str]) -> Resource {
    Resource { subresources, categories, ..r }
}

/// A question, not a stored object: create only (reviews, `kubectl auth can-i`).
const fn review(r: Resource) -> Resource {
    Resource { verbs: &["create"], ..r }
}

/// The built-in resources.
pub const BUILTIN: &[Resource] = {
    use k8s_openapi::api::admissionregistration::v1 as admission;
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::authentication::v1 as authn;
    use k8s_openapi::api::authorization::v1 as authz;
    use k8s_openapi::api::autoscaling::{v1 as hpa1, v2 as hpa2};
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::coordination::v1 as coordination;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::api::events::v1 as events;
    use k8s_openapi::api::networking::v1 as net;
    use k8s_openapi::api::policy::v1 as policy;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::scheduling::v1 as scheduling;
    use k8s_openapi::api::storage::v1 as storage;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    const RBAC: &str = "rbac.authorization.k8s.io";
    const AUTHZ: &str = "authorization.k8s.io";
    const ADMISSION: &str = "admissionregistration.k8s.io";
    const POD_SUBRESOURCES: &[&str] =
        &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"];
    &[
        // Namespaces are deleted one at a time (no deletecollection), as in kube-apiserver.
        Resource {
            verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
            ..with(
                res("", "v1", ("Namespace", "namespaces", "namespace"), &["ns"], false, schema_of::<core::Namespace>),
                &["status", "finalize"],
                &[],
            )
        },
        with(res("", "v1", ("Pod", "pods", "pod"), &["po"], true, schema_of::<core::Pod>), POD_SUBRESOURCES, ALL),
        with(res("", "v1", ("Node", "nodes", "node"), &["no"], false, schema_of::<core::Node>), &["status", "proxy"], &[]),
        with(res("", "v1", ("Service", "services", "service"), &["svc"], true, schema_of::<core::Service>), &["status", "proxy"], ALL),
        res("", "v1", ("Endpoints", "endpoints", "endpoints"), &["ep"], true, schema_of::<core::Endpoints>),
        with(res("", "v1", ("ConfigMap", "configmaps", "configmap"), &["cm"], true, schema_of::<core::ConfigMap>), &[], &[]),
        res("", "v1", ("Secret", "secrets", "secret"), &[], true, schema_of::<core::Secret>),
        with(
            res("", "v1", ("ServiceAccount", "serviceaccounts", "serviceaccount"), &["sa"], true, schema_of::<core::ServiceAccount>),
            &["token"],
            &[],
        ),
        res("", "v1", ("Event", "events", "event"), &["ev"], true, schema_of::<core::Event>),
        with(
            res(
                "",
                "v1",
                ("PersistentVolume", "persistentvolumes", "persistentvolume"),
                &["pv"],
                false,
                schema_of::<core::PersistentVolume>,
            ),
            STATUS,
            &[],
        ),
        with(
            res(
                "",
                "v1",
                ("PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim"),
                &["pvc"],
                true,
                schema_of::<core::PersistentVolumeClaim>,
            ),
            STATUS,
            &[],
        ),
        with(
            res(
                "",
                "v1",
                ("ReplicationController", "replicationcontrollers", "replicationcontroller"),
                &["rc"],
                true,
                schema_of::<core::ReplicationController>,
            ),
            STATUS_SCALE,
            ALL,
        ),
        res("", "v1", ("LimitRange", "limitranges", "limitrange"), &["limits"], true, schema_of::<core::LimitRange>),
        with(
            res("", "v1", ("ResourceQuota", "resourcequotas", "resourcequota"), &["quota"], true, schema_of::<core::ResourceQuota>),
            STATUS,
            &[],
        ),
        with(
            res("apps", "v1", ("Deployment", "deployments", "deployment"), &["deploy"], true, schema_of::<apps::Deployment>),
            STATUS_SCALE,
            ALL,
        ),
        with(
            res("apps", "v1", ("ReplicaSet", "replicasets", "replicaset"), &["rs"], true, schema_of::<apps::ReplicaSet>),
            STATUS_SCALE,
            ALL,
        ),
        with(
            res("apps", "v1", ("StatefulSet", "statefulsets", "statefulset"), &["sts"], true, schema_of::<apps::StatefulSet>),
            STATUS_SCALE,
            ALL,
        ),
        with(res("apps", "v1", ("DaemonSet", "daemonsets", "daemonset"), &["ds"], true, schema_of::<apps::DaemonSet>), STATUS, ALL),
        res(
            "apps",
            "v1",
            ("ControllerRevision", "controllerrevisions", "controllerrevision"),
            &[],
            true,
            schema_of::<apps::ControllerRevision>,
        ),
        with(res("batch", "v1", ("Job", "jobs", "job"), &[], true, schema_of::<batch::Job>), STATUS, ALL),
        with(res("batch", "v1", ("CronJob", "cronjobs", "cronjob"), &["cj"], true, schema_of::<batch::CronJob>), STATUS, ALL),
        with(
            res(
                "autoscaling",
                "v2",
                ("HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler"),
                &["hpa"],
                true,
                schema_of::<hpa2::HorizontalPodAutoscaler>,
            ),
            STATUS,
            ALL,
        ),
        with(
            res(
                "autoscaling",
                "v1",
                ("HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler"),
                &["hpa"],
                true,
                schema_of::<hpa1::HorizontalPodAutoscaler>,
            ),
            STATUS,
            ALL,
        ),
        with(
            res(
                "policy",
                "v1",
                ("PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget"),
                &["pdb"],
                true,
                schema_of::<policy::PodDisruptionBudget>,
            ),
            STATUS,
            &[],
        ),
        res("coordination.k8s.io", "v1", ("Lease", "leases", "lease"), &[], true, schema_of::<coordination::Lease>),
        res(
            "discovery.k8s.io",
            "v1",
            ("EndpointSlice", "endpointslices", "endpointslice"),
            &[],
            true,
            schema_of::<discovery::EndpointSlice>,
        ),
        res(RBAC, "v1", ("Role", "roles", "role"), &[], true, schema_of::<rbac::Role>),
        res(RBAC, "v1", ("RoleBinding", "rolebindings", "rolebinding"), &[], true, schema_of::<rbac::RoleBinding>),
        res(RBAC, "v1", ("ClusterRole", "clusterroles", "clusterrole"), &[], false, schema_of::<rbac::ClusterRole>),
        res(
            RBAC,
            "v1",
            ("ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding"),
            &[],
            false,
            schema_of::<rbac::ClusterRoleBinding>,
        ),
        with(res("networking.k8s.io", "v1", ("Ingress", "ingresses", "ingress"), &["ing"], true, schema_of::<net::Ingress>), STATUS, &[]),
        res("networking.k8s.io", "v1", ("IngressClass", "ingressclasses", "ingressclass"), &[], false, schema_of::<net::IngressClass>),
        res(
            "networking.k8s.io",
            "v1",
            ("NetworkPolicy", "networkpolicies", "networkpolicy"),
            &["netpol"],
            true,
            schema_of::<net::NetworkPolicy>,
        ),
        res("storage.k8s.io", "v1", ("StorageClass", "storageclasses", "storageclass"), &["sc"], false, schema_of::<storage::StorageClass>),
        res(
            "scheduling.k8s.io",
            "v1",
            ("PriorityClass", "priorityclasses", "priorityclass"),
            &["pc"],
            false,
            schema_of::<scheduling::PriorityClass>,
        ),
        res("events.k8s.io", "v1", ("Event", "events", "event"), &["ev"], true, schema_of::<events::Event>),
        with(
            res(
                "apiextensions.k8s.io",
                "v1",
                ("CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition"),
                &["crd", "crds"],
                false,
                schema_of::<ext::CustomResourceDefinition>,
            ),
            STATUS,
            &["api-extensions"],
        ),
        // Stored and listed; proxying to the Service it names is not served yet.
        with(
            res(
                "apiregistration.k8s.io",
                "v1",
                ("APIService", "apiservices", "apiservice"),
                &[],
                false,
                schema_of::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>,
            ),
            STATUS,
            &["api-extensions"],
        ),
        with(
            res(
                ADMISSION,
                "v1",
                ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration"),
                &[],
                false,
                schema_of::<admission::ValidatingWebhookConfiguration>,
            ),
            &[],
            &["api-extensions"],
        ),
        with(
            res(
                ADMISSION,
                "v1",
                ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration"),
                &[],
                false,
                schema_of::<admission::MutatingWebhookConfiguration>,
            ),
            &[],
            &["api-extensions"],
        ),
        review(res(
            AUTHZ,
            "v1",
            ("SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview"),
            &[],
            false,
            schema_of::<authz::SelfSubjectAccessReview>,
        )),
        review(res(
            AUTHZ,
            "v1",
            ("SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview"),
            &[],
            false,
            schema_of::<authz::SubjectAccessReview>,
        )),
        review(res(
            "authentication.k8s.io",
            "v1",
            ("TokenReview", "tokenreviews", "tokenreview"),
            &[],
            false,
            schema_of::<authn::TokenReview>,
        )),
        review(res(
            "authentication.k8s.io",
            "v1",
            ("SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview"),
            &[],
            false,
            schema_of::<authn::SelfSubjectReview>,
        )),
    ]
};

impl Resource {
    /// Whether objects of this resource are kept in the store.
    pub fn stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    /// The status kube-apiserver gives a new object of this resource (its Go status types'
    /// fields without `omitempty`), if it gives one.
    pub fn initial_status(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        Some(match (self.group, self.kind) {
            ("", "Service") | ("networking.k8s.io", "Ingress") => json!({ "loadBalancer": {} }),
            ("apps", "Deployment") | ("batch", "Job" | "CronJob") => json!({}),
            ("apps", "ReplicaSet") | ("", "ReplicationController") => json!({ "replicas": 0 }),
            ("apps", "StatefulSet") => json!({ "replicas": 0, "availableReplicas": 0 }),
            ("apps", "DaemonSet") => {
                json!({ "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0 })
            }
            ("policy", "PodDisruptionBudget") => {
                json!({ "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0 })
            }
            _ => return None,
        })
    }

    /// Whether a DELETE that removes an object answers with the object rather than a `Status`
    /// (kube-apiserver's registries that set `ReturnDeletedObject`).
    pub fn returns_deleted_object(&self) -> bool {
        matches!(
            (self.group, self.plural),
            ("", "pods" | "services" | "namespaces" | "serviceaccounts" | "persistentvolumes" | "persistentvolumeclaims")
                | ("storage.k8s.io", "storageclasses")
        )
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

/// The namespaces resource (namespaced objects' parent).
pub fn namespaces() -> &'static Resource {
    &BUILTIN[0]
}

/// What a subresource's discovery entry says: (kind, group, version, verbs); group and
/// version are empty when they are the parent's.
pub fn subresource_info(sub: &str) -> (&'static str, &'static str, &'static str, &'static [&'static str]) {
    const READ_WRITE: &[&str] = &["get", "patch", "update"];
    match sub {
        "scale" => ("Scale", "autoscaling", "v1", READ_WRITE),
        "binding" => ("Binding", "", "", &["create"]),
        "eviction" => ("Eviction", "policy", "v1", &["create"]),
        "log" => ("Pod", "", "", &["get"]),
        "exec" => ("PodExecOptions", "", "", &["create", "get"]),
        "attach" => ("PodAttachOptions", "", "", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", "", "", &["create", "get"]),
        "proxy" => ("NodeProxyOptions", "", "", &["create", "delete", "get", "patch", "update"]),
        "finalize" => ("Namespace", "", "", &["update"]),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        _ => ("", "", "", READ_WRITE),
    }
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
