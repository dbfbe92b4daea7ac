//! flannel's Node annotations (its kube subnet manager's vocabulary): what a node publishes
//! about itself, and how another node's Node becomes a [`Peer`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use super::{parse_mac, Peer};

pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const PUBLIC_IP_OVERWRITE: &str = "flannel.alpha.coreos.com/public-ip-overwrite";
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// The annotations a node writes on its own Node. `public_ip` is its tunnel end; a
/// `public-ip-overwrite` already on the Node (set by an administrator) wins over it.
pub fn own(node: Option<&Node>, backend_type: &str, backend_data: Option<&str>, public_ip: Ipv4Addr) -> BTreeMap<String, String> {
    let overwrite = node.and_then(|n| annotation(n, PUBLIC_IP_OVERWRITE)).and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let mut out = BTreeMap::from([
        (BACKEND_TYPE.to_string(), backend_type.to_string()),
        (PUBLIC_IP.to_string(), overwrite.unwrap_or(public_ip).to_string()),
        (KUBE_SUBNET_MANAGER.to_string(), "true".to_string()),
    ]);
    out.insert(BACKEND_DATA.to_string(), backend_data.unwrap_or("null").to_string());
    out
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.annotations.as_ref()?.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// The peer `node` describes, or `None` while it has not published itself (no podCIDR, no
/// backend annotations yet). A `public-ip-overwrite` wins over `public-ip`.
pub fn peer(node: &Node) -> Option<Peer> {
    let name = node.metadata.name.clone()?;
    let spec = node.spec.as_ref()?;
    let cidr = spec.pod_cidr.clone().or_else(|| spec.pod_cidrs.as_ref()?.first().cloned())?;
    let pod_cidr = cidr.parse().ok()?;
    let public_ip = annotation(node, PUBLIC_IP_OVERWRITE).or_else(|| annotation(node, PUBLIC_IP))?.parse().ok()?;
    let backend_type = annotation(node, BACKEND_TYPE)?.to_string();
    let data: serde_json::Value = annotation(node, BACKEND_DATA).and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    let vtep_mac = data["VtepMAC"].as_str().and_then(parse_mac);
    Some(Peer { node: name, pod_cidr, public_ip, backend_type, vtep_mac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(annotations: serde_json::Value, cidr: Option<&str>) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n2", "annotations": annotations}, "spec": {"podCIDR": cidr}})).unwrap()
    }

    #[test]
    fn a_published_node_is_a_peer_and_the_overwrite_wins() {
        let ann = json!({
            BACKEND_TYPE: "vxlan", BACKEND_DATA: r#"{"VNI":1,"VtepMAC":"0a:1b:2c:3d:4e:5f"}"#,
            PUBLIC_IP: "192.0.2.2", KUBE_SUBNET_MANAGER: "true",
        });
        let p = peer(&node(ann.clone(), Some("10.42.2.0/24"))).unwrap();
        assert_eq!(p.node, "n2");
        assert_eq!(p.pod_cidr.to_string(), "10.42.2.0/24");
        assert_eq!(p.public_ip, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(p.vtep_mac, Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]));
        let mut over = ann.clone();
        over[PUBLIC_IP_OVERWRITE] = json!("198.51.100.7");
        assert_eq!(peer(&node(over, Some("10.42.2.0/24"))).unwrap().public_ip, Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(peer(&node(ann, None)), None, "no podCIDR yet");
        assert_eq!(peer(&node(json!({}), Some("10.42.2.0/24"))), None, "not published yet");
    }

    #[test]
    fn own_annotations_are_flannels_and_honour_an_overwrite() {
        let a = own(None, "vxlan", Some(r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}"#), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(a[BACKEND_TYPE], "vxlan");
        assert_eq!(a[PUBLIC_IP], "192.0.2.1");
        assert_eq!(a[KUBE_SUBNET_MANAGER], "true");
        assert!(a[BACKEND_DATA].contains("VtepMAC"));
        let n = node(json!({PUBLIC_IP_OVERWRITE: "203.0.113.9"}), None);
        assert_eq!(own(Some(&n), "host-gw", None, Ipv4Addr::new(192, 0, 2, 1))[PUBLIC_IP], "203.0.113.9");
    }
}
