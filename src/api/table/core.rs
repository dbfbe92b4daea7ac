//! Printers of the core group's kinds other than pods: namespaces, config, services and
//! endpoints, events, nodes, volumes and quotas.

use serde_json::{json, Value};

use super::cells::{count, int, items, labels, or_none, since, text, text_or_none};
use super::{col, wide, Column, AGE, NAME};
use crate::api::registry::Resource;

pub(super) fn columns(resource: &Resource) -> Option<Vec<Column>> {
    if !resource.group.is_empty() && resource.group != "events.k8s.io" {
        return None;
    }
    Some(match resource.plural {
        "namespaces" => vec![NAME, col("Status", "string", "The status of the namespace", |o| o["status"]["phase"].clone()), AGE],
        "configmaps" => vec![NAME, col("Data", "string", "Data contains the configuration data.", |o| json!(count(&o["data"]) + count(&o["binaryData"]))), AGE],
        "secrets" => vec![
            NAME,
            col("Type", "string", "Used to facilitate programmatic handling of secret data.", |o| json!(o["type"].as_str().unwrap_or("Opaque"))),
            col("Data", "string", "Data contains the secret data.", |o| json!(count(&o["data"]))),
            AGE,
        ],
        "serviceaccounts" => vec![NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace.", |o| json!(count(&o["secrets"]))), AGE],
        "services" => vec![
            NAME,
            col("Type", "string", "type determines how the Service is exposed.", |o| o["spec"]["type"].clone()),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service.", |o| text_or_none(&o["spec"]["clusterIPs"][0])),
            col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", external_ip),
            col("Port(s)", "string", "The list of ports that are exposed by this service.", service_ports),
            AGE,
            wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", |o| labels(&o["spec"]["selector"])),
        ],
        "endpoints" => vec![NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets.", endpoints), AGE],
        "events" => vec![
            col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", |o| json!(last_seen(o))),
            col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", |o| o["type"].clone()),
            col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", |o| o["reason"].clone()),
            col("Object", "string", "The object that this event is about.", event_object),
            wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.", |o| json!(text(&o["involvedObject"]["fieldPath"]))),
            wide("Source", "string", "The component reporting this event.", event_source),
            col("Message", "string", "A human-readable description of the status of this operation.", |o| json!(text(&o["message"]).trim())),
            wide("First Seen", "string", "The time at which the event was first recorded.", |o| json!(first_seen(o))),
            wide("Count", "string", "The number of times this event has occurred.", event_count),
            super::Column { priority: 1, ..NAME },
        ],
        "nodes" => vec![
            NAME,
            col("Status", "string", "The status of the node", node_status),
            col("Roles", "string", "The roles of the node", node_roles),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node.", |o| json!(text(&o["status"]["nodeInfo"]["kubeletVersion"]))),
            wide("Internal-IP", "string", "List of addresses reachable to the node.", |o| node_address(o, "InternalIP")),
            wide("External-IP", "string", "List of addresses reachable to the node.", |o| node_address(o, "ExternalIP")),
            wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release.", |o| node_info(o, "osImage")),
            wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r'.", |o| node_info(o, "kernelVersion")),
            wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API.", |o| node_info(o, "containerRuntimeVersion")),
        ],
        "persistentvolumes" => vec![
            NAME,
            col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity.", |o| json!(text(&o["spec"]["capacity"]["storage"]))),
            col("Access Modes", "string", "accessModes contains all ways the volume can be mounted.", |o| json!(access_modes(&o["spec"]["accessModes"]))),
            col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.", |o| json!(text(&o["spec"]["persistentVolumeReclaimPolicy"]))),
            col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim.", volume_phase),
            col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.", claim_ref),
            col("StorageClass", "string", "StorageClass of the pv", storage_class),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv", volume_attributes_class),
            col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.", |o| json!(text(&o["status"]["reason"]))),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.", volume_mode),
        ],
        "persistentvolumeclaims" => vec![
            NAME,
            col("Status", "string", "phase represents the current phase of PersistentVolumeClaim.", volume_phase),
            col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim.", |o| json!(text(&o["spec"]["volumeName"]))),
            col("Capacity", "string", "capacity represents the actual resources of the underlying volume.", |o| {
                json!(if text(&o["spec"]["volumeName"]).is_empty() { "" } else { text(&o["status"]["capacity"]["storage"]) })
            }),
            col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has.", |o| {
                json!(if text(&o["spec"]["volumeName"]).is_empty() { String::new() } else { access_modes(&o["status"]["accessModes"]) })
            }),
            col("StorageClass", "string", "StorageClass of the pvc", storage_class),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc", volume_attributes_class),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim.", volume_mode),
        ],
        "resourcequotas" => vec![
            NAME,
            col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume.", |o| quota(o, false)),
            col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.", |o| quota(o, true)),
            AGE,
        ],
        _ => return None,
    })
}

/// An events.k8s.io/v1 Event in core/v1 shape, as kube-apiserver converts it before printing.
pub(super) fn as_core_event(e: &Value) -> Value {
    let mut core = e.clone();
    for (from, to) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
        ("reportingController", "reportingComponent"),
    ] {
        if let Some(v) = core.as_object_mut().and_then(|m| m.remove(from)) {
            core[to] = v;
        }
    }
    core
}

fn external_ip(o: &Value) -> Value {
    let external: Vec<&str> = items(&o["spec"]["externalIPs"]).map(text).collect();
    match text(&o["spec"]["type"]) {
        "ClusterIP" | "NodePort" => or_none(external.join(",")),
        "LoadBalancer" => {
            let mut balancer: Vec<&str> = items(&o["status"]["loadBalancer"]["ingress"])
                .map(|i| if text(&i["ip"]).is_empty() { text(&i["hostname"]) } else { text(&i["ip"]) })
                .filter(|s| !s.is_empty())
                .collect();
            balancer.sort_unstable();
            balancer.dedup();
            balancer.extend(external);
            json!(if balancer.is_empty() { "<pending>".to_string() } else { balancer.join(",") })
        }
        "ExternalName" => json!(text(&o["spec"]["externalName"])),
        _ => json!("<unknown>"),
    }
}

fn service_ports(o: &Value) -> Value {
    let ports: Vec<String> = items(&o["spec"]["ports"])
        .map(|p| match int(&p["nodePort"]) {
            0 => format!("{}/{}", int(&p["port"]), text(&p["protocol"])),
            node => format!("{}:{node}/{}", int(&p["port"]), text(&p["protocol"])),
        })
        .collect();
    or_none(ports.join(","))
}

/// `formatEndpoints`: up to three `ip:port` pairs, then "+ N more...".
fn endpoints(o: &Value) -> Value {
    let subsets: Vec<&Value> = items(&o["subsets"]).collect();
    if subsets.is_empty() {
        return json!("<none>");
    }
    let (mut list, mut total) = (Vec::new(), 0);
    for ss in subsets {
        let addresses: Vec<&str> = items(&ss["addresses"]).map(|a| text(&a["ip"])).collect();
        let ports: Vec<i64> = items(&ss["ports"]).map(|p| int(&p["port"])).collect();
        if ports.is_empty() {
            total += addresses.len();
            list.extend(addresses.iter().map(|a| a.to_string()));
        }
        for port in ports {
            total += addresses.len();
            list.extend(addresses.iter().map(|a| if a.contains(':') { format!("[{a}]:{port}") } else { format!("{a}:{port}") }));
        }
    }
    json!(super::cells::first_of(&list, total, 3))
}

fn first_seen(o: &Value) -> String {
    if o["firstTimestamp"].is_string() {
        since(&o["firstTimestamp"])
    } else {
        since(&o["eventTime"])
    }
}

fn last_seen(o: &Value) -> String {
    if o["series"].is_object() {
        since(&o["series"]["lastObservedTime"])
    } else if o["lastTimestamp"].is_string() {
        since(&o["lastTimestamp"])
    } else {
        first_seen(o)
    }
}

fn event_count(o: &Value) -> Value {
    match (o["series"].is_object(), int(&o["count"])) {
        (true, _) => json!(int(&o["series"]["count"])),
        (false, 0) => json!(1),
        (false, n) => json!(n),
    }
}

fn event_object(o: &Value) -> Value {
    let (kind, name) = (text(&o["involvedObject"]["kind"]).to_lowercase(), text(&o["involvedObject"]["name"]));
    json!(if name.is_empty() { kind } else { format!("{kind}/{name}") })
}

fn event_source(o: &Value) -> Value {
    let first = |a: &str, b: &str| if a.is_empty() { text(&o[b]).to_string() } else { a.to_string() };
    let component = first(text(&o["source"]["component"]), "reportingComponent");
    let instance = first(text(&o["source"]["host"]), "reportingInstance");
    json!(if instance.is_empty() { component } else { format!("{component}, {instance}") })
}

/// "Ready", "NotReady" or "Unknown" from the Ready condition, plus ",SchedulingDisabled".
fn node_status(o: &Value) -> Value {
    let ready = items(&o["status"]["conditions"]).rfind(|c| c["type"] == "Ready");
    let mut status = match ready {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label.
fn node_roles(o: &Value) -> Value {
    let mut roles: Vec<&str> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => Some(text(v)),
            None => None,
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    or_none(roles.join(","))
}

fn node_address(o: &Value, kind: &str) -> Value {
    text_or_none(&items(&o["status"]["addresses"]).find(|a| a["type"] == kind).map_or(Value::Null, |a| a["address"].clone()))
}

fn node_info(o: &Value, field: &str) -> Value {
    json!(match text(&o["status"]["nodeInfo"][field]) {
        "" => "<unknown>",
        v => v,
    })
}

/// `GetAccessModesAsString`: "RWO,ROX,RWX,RWOP" in that order, each once.
fn access_modes(modes: &Value) -> String {
    let has = |m: &str| items(modes).any(|v| v == m);
    let short = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];
    short.iter().filter(|(m, _)| has(m)).map(|(_, s)| *s).collect::<Vec<_>>().join(",")
}

fn volume_phase(o: &Value) -> Value {
    json!(if o["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { text(&o["status"]["phase"]) })
}

fn claim_ref(o: &Value) -> Value {
    let claim = &o["spec"]["claimRef"];
    json!(if claim.is_object() { format!("{}/{}", text(&claim["namespace"]), text(&claim["name"])) } else { String::new() })
}

/// The beta storage-class annotation, else `spec.storageClassName`.
fn storage_class(o: &Value) -> Value {
    match o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str() {
        Some(class) => json!(class),
        None => json!(text(&o["spec"]["storageClassName"])),
    }
}

fn volume_attributes_class(o: &Value) -> Value {
    json!(o["spec"]["volumeAttributesClassName"].as_str().unwrap_or("<unset>"))
}

fn volume_mode(o: &Value) -> Value {
    json!(o["spec"]["volumeMode"].as_str().unwrap_or("<unset>"))
}

/// "resource: used/hard, ..." over `status.hard`, sorted; `limits.*` go to the Limit column.
fn quota(o: &Value, limits: bool) -> Value {
    let mut names: Vec<&String> = o["status"]["hard"].as_object().into_iter().flatten().map(|(k, _)| k).collect();
    names.sort();
    let parts: Vec<String> = names
        .into_iter()
        .filter(|n| n.split_once('.').is_some_and(|(p, _)| p == "limits") == limits)
        .map(|n| {
            let used = o["status"]["used"][n.as_str()].as_str().unwrap_or("0");
            format!("{n}: {used}/{}", text(&o["status"]["hard"][n.as_str()]))
        })
        .collect();
    json!(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header, table};
    use serde_json::json;

    #[test]
    fn core_headers_match_kubectl() {
        for (plural, plain, all) in [
            (
                "nodes",
                "NAME|STATUS|ROLES|AGE|VERSION",
                "NAME|STATUS|ROLES|AGE|VERSION|INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|KERNEL-VERSION|CONTAINER-RUNTIME",
            ),
            ("services", "NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE", "NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE|SELECTOR"),
            (
                "events",
                "LAST SEEN|TYPE|REASON|OBJECT|MESSAGE",
                "LAST SEEN|TYPE|REASON|OBJECT|SUBOBJECT|SOURCE|MESSAGE|FIRST SEEN|COUNT|NAME",
            ),
            (
                "persistentvolumeclaims",
                "NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|VOLUMEATTRIBUTESCLASS|AGE",
                "NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|VOLUMEATTRIBUTESCLASS|AGE|VOLUMEMODE",
            ),
            ("secrets", "NAME|TYPE|DATA|AGE", "NAME|TYPE|DATA|AGE"),
        ] {
            assert_eq!(header("", "v1", plural), (plain.to_string(), all.to_string()), "{plural}");
        }
        assert_eq!(header("events.k8s.io", "v1", "events").0, "LAST SEEN|TYPE|REASON|OBJECT|MESSAGE");
    }

    #[test]
    fn node_status_and_roles() {
        let node = |conditions: serde_json::Value, unschedulable: bool, labels: serde_json::Value| {
            let obj = json!({"metadata": {"name": "n", "labels": labels}, "spec": {"unschedulable": unschedulable},
                "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.33.0+orch"}, "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}});
            let cells = table("", "v1", "nodes", obj).2;
            (cells[1].as_str().unwrap().to_string(), cells[2].as_str().unwrap().to_string(), cells)
        };
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        let (status, roles, cells) =
            node(ready.clone(), false, json!({"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}));
        assert_eq!((status.as_str(), roles.as_str()), ("Ready", "control-plane,master"));
        assert_eq!(cells[4], "v1.33.0+orch");
        assert_eq!(&cells[5..], [json!("10.0.0.5"), json!("<none>"), json!("<unknown>"), json!("<unknown>"), json!("<unknown>")]);
        assert_eq!(node(ready, true, json!({"kubernetes.io/role": "edge"})).0, "Ready,SchedulingDisabled");
        assert_eq!(node(json!([{"type": "Ready", "status": "Unknown"}]), false, json!({})).0, "NotReady");
        let (status, roles, _) = node(json!([]), false, json!({}));
        assert_eq!((status.as_str(), roles.as_str()), ("Unknown", "<none>"));
    }

    #[test]
    fn services_and_endpoints() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIPs": ["10.43.0.9"], "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
        let cells = table("", "v1", "services", svc).2;
        assert_eq!(cells[1..5], [json!("NodePort"), json!("10.43.0.9"), json!("<none>"), json!("80:30080/TCP,53/UDP")]);
        assert_eq!(cells[6], "app=web");
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(table("", "v1", "services", lb).2[3], "<pending>");

        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.1.3"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.42.2.7"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(table("", "v1", "endpoints", ep).2[1], "10.42.0.5:80,10.42.1.3:80,10.42.2.7:80 + 1 more...");
        assert_eq!(table("", "v1", "endpoints", json!({"metadata": {"name": "e"}})).2[1], "<none>");
    }

    #[test]
    fn events_of_both_groups_print_alike() {
        let core = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "message": " assigned \n",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"}, "source": {"component": "scheduler"}});
        let cells = table("", "v1", "events", core).2;
        assert_eq!(
            cells[1..],
            [
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("scheduler"),
                json!("assigned"),
                json!("<unknown>"),
                json!(1),
                json!("e1")
            ]
        );
        let new = json!({"metadata": {"name": "e2"}, "type": "Warning", "reason": "Failed", "note": "boom", "regarding": {"kind": "Node", "name": "n1"},
            "reportingController": "kubelet", "reportingInstance": "n1", "series": {"count": 4, "lastObservedTime": "2020-01-01T00:00:00.000000Z"}});
        let cells = table("events.k8s.io", "v1", "events", new).2;
        assert_eq!(
            cells[2..],
            [json!("Failed"), json!("node/n1"), json!(""), json!("kubelet, n1"), json!("boom"), json!("<unknown>"), json!(4), json!("e2")]
        );
        assert!(cells[0].as_str().unwrap().contains('y'), "{}", cells[0]);
    }

    #[test]
    fn volumes_and_quotas() {
        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "local", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
        let cells = table("", "v1", "persistentvolumeclaims", pvc).2;
        assert_eq!(cells[1..7], [json!("Bound"), json!("pv1"), json!("1Gi"), json!("RWO,RWX"), json!("local"), json!("<unset>")]);
        let quota = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"}, "used": {"pods": "3"}}});
        let cells = table("", "v1", "resourcequotas", quota).2;
        assert_eq!(cells[1..3], [json!("pods: 3/10, requests.cpu: 0/1"), json!("limits.cpu: 0/2")]);
    }
}
