//! Service admission: defaulting, ClusterIP allocation from the service CIDR and NodePort
//! allocation from the node-port range. Every allocation is a store key written in the same
//! transaction as the Service (compare: absent), so no address or port is ever handed out
//! twice — under concurrency, across servers and across restarts — and deleting the Service
//! releases them in the same transaction.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::status::ApiError;
use crate::k8s::cidr::Ipv4Network;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The service network: `--service-cidr` and `--service-node-port-range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNetwork {
    range: Ipv4Network,
    ports: (u16, u16),
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        Self::parse("10.43.0.0/16", "30000-32767").expect("the defaults are valid")
    }
}

impl ServiceNetwork {
    pub fn parse(cidr: &str, port_range: &str) -> Result<Self, String> {
        let range = crate::k8s::cidr::parse(cidr).map_err(|e| e.to_string())?;
        if !(8..=28).contains(&range.prefix()) {
            return Err(format!("prefix length in {cidr:?} must be between 8 and 28"));
        }
        let (lo, hi) = port_range.split_once('-').ok_or_else(|| format!("{port_range:?} is not a port range (e.g. 30000-32767)"))?;
        let ports =
            (lo.trim().parse().map_err(|_| format!("bad port {lo:?}"))?, hi.trim().parse().map_err(|_| format!("bad port {hi:?}"))?);
        if ports.0 == 0 || ports.0 > ports.1 {
            return Err(format!("{port_range:?} is not an increasing port range"));
        }
        Ok(Self { range, ports })
    }

    /// The address of the `kubernetes` Service: the first of the range.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.range.nth(1).expect("a /28 or wider range")
    }

    /// Whether `ip` may be a ClusterIP: inside the range, not its network or broadcast address.
    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.range.contains(ip) && ip != self.range.network() && ip != self.range.broadcast()
    }

    /// How many addresses at the bottom of the range are kept for ClusterIPs chosen by hand
    /// (kube-apiserver's static subrange, KEP-3070: `min(max(16, size/16), 256)`), such as
    /// the cluster DNS address 10.43.0.10; random picks come from above it unless the range is
    /// too small to have one.
    fn static_band(&self) -> u32 {
        let band = (self.range.size() / 16).clamp(16, 256);
        if self.range.size() > band + 16 {
            band
        } else {
            2
        }
    }

    fn random_ip(&self) -> Ipv4Addr {
        // Skip the static band (which holds the network and kubernetes addresses) and the broadcast address.
        let band = self.static_band();
        self.range.nth(band + rand::random::<u32>() % (self.range.size() - band - 1)).expect("inside the range")
    }

    fn random_port(&self) -> u16 {
        self.ports.0 + (rand::random::<u32>() % u32::from(self.ports.1 - self.ports.0 + 1)) as u16
    }
}

/// Store keys held by a Service object (its ClusterIP and NodePorts).
pub fn allocations(obj: &Value) -> Vec<String> {
    if obj["kind"] != "Service" {
        return Vec::new();
    }
    let mut keys = Vec::new();
    if let Some(ip) = obj["spec"]["clusterIP"].as_str().filter(|ip| ip.parse::<Ipv4Addr>().is_ok()) {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    for p in obj["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(port) = p["nodePort"].as_u64() {
            keys.push(format!("{PORT_PREFIX}{port}"));
        }
    }
    keys
}

fn invalid(name: &str, field: &str, reason: &str) -> ApiError {
    ApiError::invalid("", "Service", name, field, reason)
}

/// Defaults a new Service and fills in its allocations. `explicit` tells which allocations the
/// user chose (a conflict on those is an error; on the others, a retry with new picks).
pub fn admit_create(net: &ServiceNetwork, obj: &mut Value) -> Result<Vec<(String, bool)>, ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = obj.get_mut("spec").filter(|s| s.is_object()).ok_or_else(|| invalid(&name, "spec", "Required value"))?;
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if !matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        return Err(invalid(
            &name,
            "spec.type",
            &format!("Unsupported value: {kind:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ));
    }
    spec["type"] = json!(kind);
    if spec.get("sessionAffinity").is_none() {
        spec["sessionAffinity"] = json!("None");
    }
    // A LoadBalancer gets NodePorts unless `allocateLoadBalancerNodePorts: false` (ports the
    // user chose are still held).
    let allocate = match kind.as_str() {
        "NodePort" => true,
        "LoadBalancer" => {
            let allocate = spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool).unwrap_or(true);
            spec["allocateLoadBalancerNodePorts"] = json!(allocate);
            allocate
        }
        _ => false,
    };
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    let ports = match ports {
        Some(p) if !p.is_empty() => p,
        _ if kind == "ExternalName" => &mut Vec::new(),
        _ => return Err(invalid(&name, "spec.ports", "Required value")),
    };
    let mut held = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let port = p["port"]
            .as_u64()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| invalid(&name, &format!("spec.ports[{i}].port"), "Invalid value: must be between 1 and 65535, inclusive"))?;
        if p.get("protocol").is_none() {
            p["protocol"] = json!("TCP");
        }
        if p.get("targetPort").is_none() {
            p["targetPort"] = json!(port);
        }
        if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
            match p["nodePort"].as_u64() {
                Some(n) if n >= u64::from(net.ports.0) && n <= u64::from(net.ports.1) => held.push((format!("{PORT_PREFIX}{n}"), true)),
                Some(n) => {
                    return Err(invalid(
                        &name,
                        &format!("spec.ports[{i}].nodePort"),
                        &format!(
                            "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                            net.ports.0, net.ports.1
                        ),
                    ))
                }
                None if !allocate => {}
                None => {
                    let n = net.random_port();
                    p["nodePort"] = json!(n);
                    held.push((format!("{PORT_PREFIX}{n}"), false));
                }
            }
        }
    }
    if kind != "ExternalName" {
        match spec.get("clusterIP").and_then(Value::as_str) {
            Some("None") => {}
            Some(ip) if !ip.is_empty() => {
                let addr: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| invalid(&name, "spec.clusterIPs[0]", &format!("Invalid value: {ip:?}: must be a valid IP address")))?;
                if !net.contains(addr) {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        &format!("Invalid value: {ip:?}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range"),
                    ));
                }
                held.push((format!("{IP_PREFIX}{ip}"), true));
            }
            _ => {
                let ip = net.random_ip().to_string();
                spec["clusterIP"] = json!(ip);
                held.push((format!("{IP_PREFIX}{ip}"), false));
            }
        }
        spec["clusterIPs"] = json!([spec["clusterIP"]]);
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        spec["internalTrafficPolicy"] = json!(spec.get("internalTrafficPolicy").cloned().unwrap_or(json!("Cluster")));
    }
    Ok(held)
}

/// The message for an allocation a user chose that someone else holds.
pub fn taken(name: &str, key: &str) -> ApiError {
    match key.strip_prefix(IP_PREFIX) {
        Some(ip) => invalid(
            name,
            "spec.clusterIPs[0]",
            &format!("Invalid value: {ip:?}: failed to allocate IP {ip}: provided IP is already allocated"),
        ),
        None => {
            let port = key.strip_prefix(PORT_PREFIX).unwrap_or(key);
            invalid(name, "spec.ports[0].nodePort", &format!("Invalid value: {port}: provided port is already allocated"))
        }
    }
}

/// On update: the allocations are immutable; unset values are carried over.
pub fn admit_update(before: &Value, obj: &mut Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        match obj["spec"].get(field) {
            None | Some(Value::Null) => obj["spec"][field] = before["spec"][field].clone(),
            Some(v) if v != &before["spec"][field] && field.starts_with("clusterIP") => {
                return Err(invalid(&name, "spec.clusterIPs[0]", "Invalid value: field is immutable"));
            }
            _ => {}
        }
    }
    let old: Vec<Value> = before["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
        for p in ports.iter_mut() {
            let previous = old.iter().find(|o| o["port"] == p["port"]).map(|o| o["nodePort"].clone()).unwrap_or(Value::Null);
            if p.get("nodePort").is_none_or(Value::is_null) && !previous.is_null() {
                p["nodePort"] = previous;
            }
        }
    }
    if allocations(before) != allocations(obj) {
        return Err(invalid(&name, "spec.ports", "changing a Service's type or node ports is not supported yet; delete and re-create it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_allocations() {
        let net = ServiceNetwork::default();
        assert_eq!(net.kubernetes_ip(), Ipv4Addr::new(10, 43, 0, 1));
        let mut svc = json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let held = admit_create(&net, &mut svc).unwrap();
        assert_eq!(held.len(), 2);
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(net.contains(ip) && ip != net.kubernetes_ip());
        let port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&port));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(allocations(&svc).len(), 2);
        let mut outside = json!({"kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIP": "10.99.0.1", "ports": [{"port": 1}]}});
        assert_eq!(admit_create(&net, &mut outside).unwrap_err().code.as_u16(), 422);
        assert!(ServiceNetwork::parse("10.43.0.0", "30000-32767").is_err());
        let mut lb = json!({"kind": "Service", "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        assert_eq!(admit_create(&net, &mut lb).unwrap().len(), 2, "a LoadBalancer gets a ClusterIP and NodePorts");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let mut bare = json!({"kind": "Service", "metadata": {"name": "bare"},
            "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}, {"port": 81, "nodePort": 30081}]}});
        assert_eq!(admit_create(&net, &mut bare).unwrap().len(), 2, "the ClusterIP and the chosen NodePort only");
        assert!(bare["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn random_cluster_ips_leave_the_static_band_to_fixed_ones() {
        let net = ServiceNetwork::default();
        for _ in 0..2000 {
            let ip = net.random_ip();
            assert!(ip >= Ipv4Addr::new(10, 43, 1, 0) && ip < Ipv4Addr::new(10, 43, 255, 255), "{ip} is outside 10.43.1.0-10.43.255.254");
        }
        let small = ServiceNetwork::parse("10.43.0.0/28", "30000-32767").unwrap();
        for _ in 0..200 {
            let ip = small.random_ip();
            assert!(small.contains(ip) && ip != small.kubernetes_ip(), "{ip}");
        }
    }
}
