//! Printers of the cluster plumbing kinds: RBAC bindings, leases, endpoint slices, ingresses and
//! ingress classes, network policies, storage and priority classes, API services, admission
//! webhook configurations.

use serde_json::{json, Value};

use super::cells::{first_of, int, items, selector_or_none, text};
use super::{col, wide, Column, AGE, NAME};
use crate::api::registry::Resource;

/// An APIService's Available condition as kube-aggregator prints it: `True`, or the status
/// with its reason.
fn api_service_available(o: &Value) -> Value {
    let conditions = o["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    json!(match conditions.iter().find(|c| c["type"] == "Available") {
        Some(c) if c["status"] == "True" => "True".to_string(),
        Some(c) => format!("{} ({})", text(&c["status"]), text(&c["reason"])),
        None => "Unknown".to_string(),
    })
}

pub(super) fn columns(resource: &Resource) -> Option<Vec<Column>> {
    Some(match resource.plural {
        "rolebindings" | "clusterrolebindings" => vec![
            NAME,
            col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.", |o| {
                json!(format!("{}/{}", text(&o["roleRef"]["kind"]), text(&o["roleRef"]["name"])))
            }),
            AGE,
            wide("Users", "string", "Users in the roleBinding", |o| subjects(o, "User")),
            wide("Groups", "string", "Groups in the roleBinding", |o| subjects(o, "Group")),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", |o| subjects(o, "ServiceAccount")),
        ],
        "leases" => vec![NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease.", |o| json!(text(&o["spec"]["holderIdentity"]))), AGE],
        "endpointslices" => vec![
            NAME,
            col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice.", |o| json!(text(&o["addressType"]))),
            col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice.", slice_ports),
            col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice.", slice_endpoints),
            AGE,
        ],
        "ingresses" => vec![
            NAME,
            col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration", |o| {
                json!(o["spec"]["ingressClassName"].as_str().unwrap_or("<none>"))
            }),
            col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule", ingress_hosts),
            col("Address", "string", "Address is a list containing ingress points for the load-balancer", ingress_address),
            col("Ports", "string", "Ports of TLS configurations that open", |o| json!(if items(&o["spec"]["tls"]).next().is_some() { "80, 443" } else { "80" })),
            AGE,
        ],
        "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => vec![
            NAME,
            col("Webhooks", "integer", "Webhooks indicates the number of webhooks in the configuration", |o| json!(items(&o["webhooks"]).count())),
            AGE,
        ],
        "apiservices" => vec![
            NAME,
            col("Service", "string", "The reference to the service that hosts this API endpoint.", |o| {
                let svc = &o["spec"]["service"];
                json!(if svc.is_object() { format!("{}/{}", text(&svc["namespace"]), text(&svc["name"])) } else { "Local".into() })
            }),
            col("Available", "string", "Whether this service is available.", api_service_available),
            AGE,
        ],
        "ingressclasses" => vec![
            NAME,
            col("Controller", "string", "Controller that is responsible for handling this class", |o| json!(text(&o["spec"]["controller"]))),
            col("Parameters", "string", "A reference to a resource with additional parameters", ingress_class_parameters),
            AGE,
        ],
        "networkpolicies" => vec![
            NAME,
            col("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies.", |o| selector_or_none(&o["spec"]["podSelector"])),
            AGE,
        ],
        "storageclasses" => vec![
            super::Column { cell: storage_class_name, ..NAME },
            col("Provisioner", "string", "provisioner indicates the type of the provisioner.", |o| json!(text(&o["provisioner"]))),
            col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.", |o| {
                json!(o["reclaimPolicy"].as_str().unwrap_or("Delete"))
            }),
            col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.", |o| {
                json!(o["volumeBindingMode"].as_str().unwrap_or("Immediate"))
            }),
            col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand.", |o| {
                json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false))
            }),
            AGE,
        ],
        "priorityclasses" => vec![
            NAME,
            col("Value", "integer", "value represents the integer value of this priority class.", |o| json!(int(&o["value"]))),
            col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.", |o| {
                json!(o["globalDefault"].as_bool().unwrap_or(false))
            }),
            AGE,
            wide("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority.", |o| json!(text(&o["preemptionPolicy"]))),
        ],
        _ => return None,
    })
}

/// `rbac.SubjectsStrings`: the names of one kind of subject ("namespace/name" for service accounts).
fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = items(&o["subjects"])
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            if kind == "ServiceAccount" {
                format!("{}/{}", text(&s["namespace"]), text(&s["name"]))
            } else {
                text(&s["name"]).to_string()
            }
        })
        .collect();
    json!(names.join(", "))
}

/// Up to three entries, "+ N more...", or `"<unset>"` when there are none.
fn listed(list: Vec<String>) -> Value {
    json!(if list.is_empty() { "<unset>".to_string() } else { first_of(&list, list.len(), 3) })
}

fn slice_ports(o: &Value) -> Value {
    listed(
        items(&o["ports"])
            .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            })
            .collect(),
    )
}

fn slice_endpoints(o: &Value) -> Value {
    listed(items(&o["endpoints"]).flat_map(|e| items(&e["addresses"]).map(|a| text(a).to_string())).collect())
}

/// `formatHosts`: the first three rule hosts, "*" when no rule names one.
fn ingress_hosts(o: &Value) -> Value {
    let rules: Vec<&Value> = items(&o["spec"]["rules"]).collect();
    let (mut hosts, mut more) = (Vec::new(), false);
    for rule in &rules {
        more |= hosts.len() == 3;
        if !more && !text(&rule["host"]).is_empty() {
            hosts.push(text(&rule["host"]));
        }
    }
    json!(match (hosts.is_empty(), more) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
        (false, false) => hosts.join(","),
    })
}

/// The load balancer's IPs (or hostnames), sorted and unique.
fn ingress_address(o: &Value) -> Value {
    let mut addresses: Vec<&str> = items(&o["status"]["loadBalancer"]["ingress"])
        .map(|i| if text(&i["ip"]).is_empty() { text(&i["hostname"]) } else { text(&i["ip"]) })
        .filter(|a| !a.is_empty())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    json!(addresses.join(","))
}

fn ingress_class_parameters(o: &Value) -> Value {
    let p = &o["spec"]["parameters"];
    if !p.is_object() {
        return json!("<none>");
    }
    let kind = match p["apiGroup"].as_str() {
        Some(group) => format!("{}.{group}", text(&p["kind"])),
        None => text(&p["kind"]).to_string(),
    };
    json!(format!("{kind}/{}", text(&p["name"])))
}

/// The name, with " (default)" for the default storage class.
fn storage_class_name(o: &Value) -> Value {
    let annotations = &o["metadata"]["annotations"];
    let default = ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
        .iter()
        .any(|a| annotations[*a] == "true");
    let name = text(&o["metadata"]["name"]);
    json!(if default { format!("{name} (default)") } else { name.to_string() })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header, table};
    use serde_json::json;

    #[test]
    fn cluster_headers_match_kubectl() {
        for (group, plural, plain, all) in [
            ("networking.k8s.io", "ingresses", "NAME|CLASS|HOSTS|ADDRESS|PORTS|AGE", "NAME|CLASS|HOSTS|ADDRESS|PORTS|AGE"),
            ("networking.k8s.io", "ingressclasses", "NAME|CONTROLLER|PARAMETERS|AGE", "NAME|CONTROLLER|PARAMETERS|AGE"),
            ("apiregistration.k8s.io", "apiservices", "NAME|SERVICE|AVAILABLE|AGE", "NAME|SERVICE|AVAILABLE|AGE"),
            ("networking.k8s.io", "networkpolicies", "NAME|POD-SELECTOR|AGE", "NAME|POD-SELECTOR|AGE"),
            (
                "storage.k8s.io",
                "storageclasses",
                "NAME|PROVISIONER|RECLAIMPOLICY|VOLUMEBINDINGMODE|ALLOWVOLUMEEXPANSION|AGE",
                "NAME|PROVISIONER|RECLAIMPOLICY|VOLUMEBINDINGMODE|ALLOWVOLUMEEXPANSION|AGE",
            ),
            ("scheduling.k8s.io", "priorityclasses", "NAME|VALUE|GLOBAL-DEFAULT|AGE", "NAME|VALUE|GLOBAL-DEFAULT|AGE|PREEMPTIONPOLICY"),
            ("discovery.k8s.io", "endpointslices", "NAME|ADDRESSTYPE|PORTS|ENDPOINTS|AGE", "NAME|ADDRESSTYPE|PORTS|ENDPOINTS|AGE"),
            ("rbac.authorization.k8s.io", "rolebindings", "NAME|ROLE|AGE", "NAME|ROLE|AGE|USERS|GROUPS|SERVICEACCOUNTS"),
            ("coordination.k8s.io", "leases", "NAME|HOLDER|AGE", "NAME|HOLDER|AGE"),
        ] {
            assert_eq!(header(group, "v1", plural), (plain.to_string(), all.to_string()), "{plural}");
        }
    }

    #[test]
    fn cluster_cells() {
        let sc = json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"});
        let cells = table("storage.k8s.io", "v1", "storageclasses", sc).2;
        assert_eq!(
            cells[..5],
            [json!("local-path (default)"), json!("rancher.io/local-path"), json!("Delete"), json!("WaitForFirstConsumer"), json!(false)]
        );
        let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns"}, {}, {"port": 1}],
            "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}]});
        assert_eq!(
            table("discovery.k8s.io", "v1", "endpointslices", slice).2[1..4],
            [json!("IPv4"), json!("80,dns,* + 1 more..."), json!("10.42.0.5,10.42.0.6")]
        );
        assert_eq!(table("discovery.k8s.io", "v1", "endpointslices", json!({"metadata": {"name": "s"}})).2[2], "<unset>");
        let ing = json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example"}, {}, {"host": "c.example"}, {"host": "d.example"}, {"host": "e.example"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example"}]}}});
        assert_eq!(
            table("networking.k8s.io", "v1", "ingresses", ing).2[1..5],
            [json!("<none>"), json!("a.example,c.example,d.example + 2 more..."), json!("192.0.2.9,lb.example"), json!("80, 443")]
        );
        let np = json!({"metadata": {"name": "n"}, "spec": {"podSelector": {}}});
        assert_eq!(table("networking.k8s.io", "v1", "networkpolicies", np).2[1], "<none>");
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}, {"kind": "User", "name": "bob"}]});
        let cells = table("rbac.authorization.k8s.io", "v1", "rolebindings", rb).2;
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(cells[3..], [json!("alice, bob"), json!(""), json!("ns/sa")]);
        let pc = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"});
        let cells = table("scheduling.k8s.io", "v1", "priorityclasses", pc).2;
        assert_eq!((cells[1].clone(), cells[2].clone(), cells[4].clone()), (json!(1000), json!(false), json!("PreemptLowerPriority")));
    }
}
