//! The reconcile logic against the fake dataplane.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::fake::FakeDataplane;
use super::host_gw::HostGw;
use super::vxlan::Vxlan;
use super::*;

fn local() -> LocalNode {
    LocalNode {
        name: "n1".into(),
        pod_cidr: "10.42.1.0/24".parse().unwrap(),
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        node_ip: Ipv4Addr::new(192, 0, 2, 1),
        iface: None,
    }
}

fn peer(i: u8, mac_last: u8) -> Peer {
    Peer {
        node: format!("n{i}"),
        pod_cidr: format!("10.42.{i}.0/24").parse().unwrap(),
        public_ip: Ipv4Addr::new(192, 0, 2, i),
        backend_type: "vxlan".into(),
        vtep_mac: Some([2, 0, 0, 0, i, mac_last]),
    }
}

fn peers(list: &[Peer]) -> BTreeMap<String, Peer> {
    list.iter().map(|p| (p.node.clone(), p.clone())).collect()
}

async fn vxlan_overlay() -> (Arc<FakeDataplane>, Overlay) {
    let dp = Arc::new(FakeDataplane::new(Ipv4Addr::new(192, 0, 2, 1), "192.0.2.0/24".parse().unwrap()));
    let overlay = Overlay::attach(dp.clone(), Arc::new(Vxlan), local()).await.unwrap();
    (dp, overlay)
}

#[tokio::test]
async fn vxlan_attaches_flannel_1_like_flannel() {
    let (dp, overlay) = vxlan_overlay().await;
    let (spec, device) = dp.devices()["flannel.1"].clone();
    assert_eq!((spec.vni, spec.port, spec.local, spec.uplink), (1, 8472, Ipv4Addr::new(192, 0, 2, 1), 2));
    assert_eq!(spec.mtu, 1450, "uplink MTU - 50");
    assert_eq!(spec.address, Ipv4Addr::new(10, 42, 1, 0), "the podCIDR's network address");
    assert_eq!(overlay.attached.pod_mtu, 1450);
    let data: serde_json::Value = serde_json::from_str(overlay.attached.backend_data.as_deref().unwrap()).unwrap();
    assert_eq!(data["VNI"], 1);
    assert_eq!(data["VtepMAC"], mac_string(&device.mac));
}

#[tokio::test]
async fn a_peer_gets_neighbour_then_fdb_then_route_and_nothing_twice() {
    let (dp, overlay) = vxlan_overlay().await;
    let changes = overlay.reconcile(&peers(&[peer(2, 1)])).await.unwrap();
    let log: Vec<String> = dp.log().into_iter().filter(|l| !l.starts_with("device")).collect();
    assert_eq!(
        log,
        [
            "+neighbour 10.42.2.0 lladdr 02:00:00:00:02:01 dev #10",
            "+fdb 02:00:00:00:02:01 dst 192.0.2.2 dev #10",
            "+route 10.42.2.0/24 via 10.42.2.0 dev #10 onlink",
        ]
    );
    assert_eq!(changes.applied.len(), 3);
    let again = overlay.reconcile(&peers(&[peer(2, 1)])).await.unwrap();
    assert_eq!(again, Changes::default(), "a second reconcile of the same peers changes nothing");
}

#[tokio::test]
async fn an_update_replaces_and_a_deleted_peer_goes_routes_first() {
    let (dp, overlay) = vxlan_overlay().await;
    overlay.reconcile(&peers(&[peer(2, 1), peer(3, 1)])).await.unwrap();
    // n2 came back with a new VTEP MAC: its neighbour and FDB entry change, its route stays.
    let changes = overlay.reconcile(&peers(&[peer(2, 9), peer(3, 1)])).await.unwrap();
    let applied: Vec<String> = changes.applied.iter().map(|e| e.to_string()).collect();
    assert_eq!(applied, ["neighbour 10.42.2.0 lladdr 02:00:00:00:02:09 dev #10", "fdb 02:00:00:00:02:09 dst 192.0.2.2 dev #10"]);
    assert_eq!(changes.removed.len(), 1, "the FDB entry of the old MAC goes: {changes:?}");
    // n3 deleted: its three entries go, the route first.
    let changes = overlay.reconcile(&peers(&[peer(2, 9)])).await.unwrap();
    let removed: Vec<String> = changes.removed.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        removed,
        [
            "route 10.42.3.0/24 via 10.42.3.0 dev #10 onlink",
            "fdb 02:00:00:00:03:01 dst 192.0.2.3 dev #10",
            "neighbour 10.42.3.0 lladdr 02:00:00:00:03:01 dev #10",
        ]
    );
    assert_eq!(dp.entries_now().len(), 3, "only n2's entries are left");
}

#[tokio::test]
async fn a_restart_removes_entries_of_nodes_that_went_while_it_was_down() {
    let (dp, overlay) = vxlan_overlay().await;
    // Left by an earlier run for a node that no longer exists, plus a route outside the cluster.
    dp.insert(Entry::Neighbour { dev: 10, ip: Ipv4Addr::new(10, 42, 9, 0), mac: [2, 0, 0, 0, 9, 9] });
    dp.insert(Entry::Fdb { dev: 10, mac: [2, 0, 0, 0, 9, 9], dst: Ipv4Addr::new(192, 0, 2, 9) });
    dp.insert(Entry::Route { dev: 10, dst: "10.42.9.0/24".parse().unwrap(), via: Ipv4Addr::new(10, 42, 9, 0), onlink: true });
    let foreign = Entry::Route { dev: 10, dst: "172.16.0.0/24".parse().unwrap(), via: Ipv4Addr::new(172, 16, 0, 1), onlink: true };
    dp.insert(foreign);
    let changes = overlay.reconcile(&peers(&[peer(2, 1)])).await.unwrap();
    assert_eq!(changes.removed.len(), 3);
    assert_eq!(changes.applied.len(), 3);
    assert!(dp.entries_now().contains(&foreign), "routes outside the cluster CIDR are not the overlay's");
}

#[tokio::test]
async fn unusable_peers_are_skipped_with_a_reason() {
    let (dp, overlay) = vxlan_overlay().await;
    let mut other_backend = peer(2, 1);
    other_backend.backend_type = "host-gw".into();
    let mut overlapping = peer(3, 1);
    overlapping.pod_cidr = "10.42.1.0/24".parse().unwrap();
    let mut no_mac = peer(4, 1);
    no_mac.vtep_mac = None;
    let changes = overlay.reconcile(&peers(&[other_backend, overlapping, no_mac, peer(5, 1)])).await.unwrap();
    let skipped: Vec<&str> = changes.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped, ["n2", "n3", "n4"]);
    assert!(changes.skipped[1].1.contains("overlaps"));
    assert_eq!(dp.entries_now().len(), 3, "n5 is served");
}

#[tokio::test]
async fn host_gw_routes_via_the_peer_and_refuses_one_off_the_segment() {
    let dp = Arc::new(FakeDataplane::new(Ipv4Addr::new(192, 0, 2, 1), "192.0.2.0/24".parse().unwrap()));
    let overlay = Overlay::attach(dp.clone(), Arc::new(HostGw), local()).await.unwrap();
    assert_eq!(overlay.attached.pod_mtu, 1500, "no encapsulation");
    assert!(dp.devices().is_empty());
    let mut near = peer(2, 1);
    near.backend_type = "host-gw".into();
    let mut far = peer(3, 1);
    far.backend_type = "host-gw".into();
    far.public_ip = Ipv4Addr::new(198, 51, 100, 3);
    let changes = overlay.reconcile(&peers(&[near, far])).await.unwrap();
    assert_eq!(
        dp.entries_now(),
        [Entry::Route { dev: 2, dst: "10.42.2.0/24".parse().unwrap(), via: Ipv4Addr::new(192, 0, 2, 2), onlink: false }]
    );
    assert_eq!(changes.skipped.len(), 1);
    assert!(changes.skipped[0].1.contains("not directly reachable"), "{:?}", changes.skipped);
}

#[tokio::test]
async fn the_loop_follows_peer_changes_until_cancelled() {
    let (dp, overlay) = vxlan_overlay().await;
    let (tx, rx) = watch::channel(peers(&[peer(2, 1)]));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(overlay.run(rx, cancel.clone()));
    let wait = |n: usize| {
        let dp = dp.clone();
        async move {
            for _ in 0..200 {
                if dp.entries_now().len() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("expected {n} entries, have {:?}", dp.entries_now());
        }
    };
    wait(3).await;
    tx.send_replace(peers(&[peer(2, 1), peer(3, 1)]));
    wait(6).await;
    tx.send_replace(peers(&[]));
    wait(0).await;
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_pod_cidr_overlapping_a_host_route_is_refused() {
    let dp = Arc::new(FakeDataplane::new(Ipv4Addr::new(192, 0, 2, 1), "192.0.2.0/24".parse().unwrap()));
    dp.add_host_route("10.42.1.0/24".parse().unwrap(), "cni0");
    dp.add_host_route("10.42.2.0/24".parse().unwrap(), "flannel.1");
    assert!(Overlay::attach(dp.clone(), Arc::new(Vxlan), local()).await.is_ok(), "the node's own bridge and overlay routes are fine");
    dp.add_host_route("10.0.0.0/8".parse().unwrap(), "eth1");
    let err = Overlay::attach(dp, Arc::new(Vxlan), local()).await.err().expect("refused").to_string();
    assert!(err.contains("overlaps the host's route 10.0.0.0/8 dev eth1") && err.contains("--cluster-cidr"), "{err}");
}

#[test]
fn macs_parse_and_print() {
    assert_eq!(parse_mac("0a:1B:2c:3d:4e:5f"), Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]));
    assert_eq!(mac_string(&[0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]), "0a:1b:2c:3d:4e:5f");
    for bad in ["", "0a:1b", "0a:1b:2c:3d:4e:5f:00", "zz:1b:2c:3d:4e:5f", "a:1b:2c:3d:4e:5f"] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}
