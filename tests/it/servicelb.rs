//! ServiceLB against a real server with hollow nodes: a LoadBalancer Service's ingress is the
//! Ready nodes' addresses, the `svccontroller.k3s.cattle.io/enablelb` label restricts them, a
//! second Service on a taken port stays pending with a Warning Event (and gets the nodes once
//! the port is free), a Service switched to NodePort loses its ingress, and
//! `--disable servicelb` leaves LoadBalancer Services without one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use orch::node::hollow::{start_many, HollowConfig, HollowNode};
use serde_json::json;

use crate::support::{kube_client, ready_server, wait_for, ServerProc};

const WAIT: Duration = Duration::from_secs(60);
const ENABLE_LB: &str = "svccontroller.k3s.cattle.io/enablelb";

/// Starts hollow nodes `{prefix}-{i}` with InternalIPs 192.0.2.{10+i} and waits until they are Ready.
async fn hollow_nodes(server: &ServerProc, client: &kube::Client, prefix: &str, n: u8) -> Vec<HollowNode> {
    let (url, token) = (server.url(), server.agent_token());
    let configs = (0..n)
        .map(|i| {
            let mut c = HollowConfig::new(&url, &token, &format!("{prefix}-{i}"), &format!("password-of-{prefix}-{i}"));
            c.shape.internal_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i));
            c
        })
        .collect();
    let nodes: Vec<HollowNode> = start_many(configs, 4).await.into_iter().map(|r| r.expect("a hollow node starts")).collect();
    let api: Api<Node> = Api::all(client.clone());
    wait_for(WAIT, "the hollow nodes Ready", || async {
        let list = api.list(&ListParams::default().labels("type=hollow")).await.ok()?;
        let ready = list.items.iter().filter(|n| {
            let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
        });
        (ready.count() == usize::from(n)).then_some(())
    })
    .await;
    nodes
}

fn load_balancer(name: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "type": "LoadBalancer", "selector": { "app": name }, "ports": [{ "port": port, "protocol": "TCP" }] },
    }))
    .unwrap()
}

fn ingress(svc: &Service) -> Vec<String> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

/// Waits until Service `name`'s ingress IPs are `want`.
async fn ingress_becomes(services: &Api<Service>, name: &str, want: &[&str]) {
    wait_for(WAIT, &format!("the ingress of {name} to be {want:?}"), || async {
        (ingress(&services.get(name).await.ok()?) == want).then_some(())
    })
    .await;
}

async fn label(nodes: &Api<Node>, node: &str, value: Option<&str>) {
    let patch = json!({ "metadata": { "labels": { ENABLE_LB: value } } });
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_ingress_is_the_serving_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let client = kube_client(&server).await;
    let _nodes = hollow_nodes(&server, &client, "lb", 3).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());

    let web = services.create(&PostParams::default(), &load_balancer("web", 80)).await.unwrap();
    let node_port = web.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port;
    assert!(node_port.is_some_and(|p| (30000..=32767).contains(&p)), "a LoadBalancer gets a NodePort: {node_port:?}");
    ingress_becomes(&services, "web", &["192.0.2.10", "192.0.2.11", "192.0.2.12"]).await;

    // Once any node has the enablelb label, only the labelled nodes serve.
    label(&nodes, "lb-1", Some("true")).await;
    ingress_becomes(&services, "web", &["192.0.2.11"]).await;
    label(&nodes, "lb-2", Some("true")).await;
    ingress_becomes(&services, "web", &["192.0.2.11", "192.0.2.12"]).await;
    label(&nodes, "lb-1", None).await;
    label(&nodes, "lb-2", None).await;
    ingress_becomes(&services, "web", &["192.0.2.10", "192.0.2.11", "192.0.2.12"]).await;

    // Port 80/TCP is web's on every node: a second Service on it has no node and is told so.
    services.create(&PostParams::default(), &load_balancer("clash", 80)).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "an UnAvailableLoadBalancer Warning about clash", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("clash")
                    && e.reason.as_deref() == Some("UnAvailableLoadBalancer")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await;
    assert!(ingress(&services.get("clash").await.unwrap()).is_empty(), "clash is pending");
    // Another port of the same nodes is free.
    services.create(&PostParams::default(), &load_balancer("other", 8080)).await.unwrap();
    ingress_becomes(&services, "other", &["192.0.2.10", "192.0.2.11", "192.0.2.12"]).await;
    assert!(ingress(&services.get("clash").await.unwrap()).is_empty(), "clash is still pending");

    // Freeing the port hands the nodes to the waiting Service.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    ingress_becomes(&services, "clash", &["192.0.2.10", "192.0.2.11", "192.0.2.12"]).await;

    // A Service that is no longer a LoadBalancer loses its ingress.
    let patch = json!({ "spec": { "type": "NodePort", "allocateLoadBalancerNodePorts": null } });
    services.patch("clash", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    ingress_becomes(&services, "clash", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_servicelb_leaves_load_balancers_pending() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &["--disable=traefik,servicelb".into(), "--disable".into(), "coredns".into()]).await;
    let client = kube_client(&server).await;
    let _nodes = hollow_nodes(&server, &client, "off", 1).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &load_balancer("web", 80)).await.unwrap();
    // The controllers run (the endpoints controller made web's Endpoints); ServiceLB would
    // have written the ingress within a second.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "Endpoints web", || async { endpoints.get_opt("web").await.ok()? }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ingress(&services.get("web").await.unwrap()).is_empty(), "no ServiceLB, no ingress");
}
