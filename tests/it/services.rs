//! Services across real nodes (root only; containerd, runc, busybox-static): on a three-node
//! VXLAN [`ClusterBed`](orch::testkit::cluster::ClusterBed) a NodePort Service in front of the
//! echo DaemonSet (`overlay`) is reached by ClusterIP from a pod of every node with the pod's own
//! address as source and by name through each node's cluster DNS, the API through the
//! `kubernetes` Service from every pod, by NodePort on every node's underlay address from another node and from
//! the node itself; a LoadBalancer Service gets every node's address from ServiceLB and answers
//! on them; and once its pods are gone the node port refuses at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use orch::testkit::cluster::BedNode;

use super::overlay::Bed;
use crate::support::HEAVY;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"#;

const LOAD_BALANCER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo-lb}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{port: 8081, targetPort: 8080}]
"#;

/// `GET /cgi-bin/ip` to `to` from inside `node`'s namespace: the body (the caller's address as
/// the echo pod sees it), or the connection error.
fn fetch_from(node: &BedNode, to: SocketAddr) -> std::io::Result<String> {
    node.within(|| {
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        conn.write_all(b"GET /cgi-bin/ip HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        conn.read_to_string(&mut out)?;
        Ok(out.trim().lines().last().unwrap_or_default().trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_load_balancer_reach_pods_across_nodes() {
    let _one_bed = HEAVY.lock().await;
    let Some(t) = Bed::start(3, &[]).await else { return };
    let pods = t.echo_pods(3).await;
    let (ok, out, err) = t.kubectl(&["apply", "-f", "-"], Some(SERVICE)).await;
    assert!(ok, "applying the Service: {out}{err}");
    let (ok, cluster_ip, err) = t.kubectl(&["get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"], None).await;
    assert!(ok, "reading the ClusterIP: {err}");

    for (from, from_ip) in pods.values() {
        for _ in 0..3 {
            let script = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80");
            let body = t
                .wait(Duration::from_secs(30), &format!("{from} reaching the ClusterIP {cluster_ip}"), || async {
                    let (ok, out, _) = t.kubectl(&["exec", from, "--", "sh", "-c", &script], None).await;
                    (ok && out.contains("200 OK")).then(|| out.trim().lines().last().unwrap_or_default().trim().to_string())
                })
                .await;
            // A pod that lands on itself (hairpin) is masqueraded to its bridge's address.
            let gateway = from_ip.rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap_or_default();
            assert!(body == *from_ip || body == gateway, "the endpoint sees {body}, not the pod's own address {from_ip}");
        }
    }

    // In-cluster clients reach the API at the `kubernetes` Service (10.43.0.1:443 → the
    // server's 6443): a plain HTTP line to the TLS port gets some answer back (a TLS alert).
    for (from, _) in pods.values() {
        t.wait(Duration::from_secs(30), &format!("{from} reaching the API at 10.43.0.1:443"), || async {
            let script = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.43.0.1 443 | wc -c";
            let (ok, out, _) = t.kubectl(&["exec", from, "--", "sh", "-c", script], None).await;
            (ok && out.trim().parse::<usize>().is_ok_and(|n| n > 0)).then_some(())
        })
        .await;
    }

    // Every node answers cluster DNS on the cluster DNS address itself (the proxy leaves it
    // alone): the Service's name resolves from a pod of every node.
    for (from, _) in pods.values() {
        t.wait(Duration::from_secs(30), &format!("{from} resolving echo.default.svc.cluster.local"), || async {
            let (ok, out, _) = t.kubectl(&["exec", from, "--", "nslookup", "echo.default.svc.cluster.local"], None).await;
            (ok && out.contains(&format!("Address: {cluster_ip}"))).then_some(())
        })
        .await;
    }

    let nodes = &t.bed.nodes;
    for (i, target) in nodes.iter().enumerate() {
        let to = SocketAddr::from((target.ip, 30080));
        for from in [&nodes[(i + 1) % nodes.len()], target] {
            t.wait(Duration::from_secs(30), &format!("{} reaching node port {to}", from.name), || async { fetch_from(from, to).ok() })
                .await;
        }
    }

    let (ok, out, err) = t.kubectl(&["apply", "-f", "-"], Some(LOAD_BALANCER)).await;
    assert!(ok, "applying the LoadBalancer Service: {out}{err}");
    let mut want: Vec<String> = nodes.iter().map(|n| n.ip.to_string()).collect();
    want.sort();
    t.wait(Duration::from_secs(30), "ServiceLB giving the LoadBalancer every node's address", || async {
        let (_, out, _) = t.kubectl(&["get", "service", "echo-lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"], None).await;
        let mut got: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        got.sort();
        (got == want).then_some(())
    })
    .await;
    for (i, target) in nodes.iter().enumerate() {
        let to = SocketAddr::from((target.ip, 8081));
        let from = &nodes[(i + 1) % nodes.len()];
        t.wait(Duration::from_secs(30), &format!("{} reaching the load balancer at {to}", from.name), || async {
            fetch_from(from, to).ok()
        })
        .await;
    }

    let (ok, out, err) = t.kubectl(&["delete", "daemonset", "echo", "--wait=false"], None).await;
    assert!(ok, "deleting the DaemonSet: {out}{err}");
    let to = SocketAddr::from((nodes[0].ip, 30080));
    t.wait(Duration::from_secs(60), "the node port refusing once no pod is left", || async {
        let started = Instant::now();
        let refused = matches!(fetch_from(&nodes[1], to), Err(e) if e.kind() == ErrorKind::ConnectionRefused);
        (refused && started.elapsed() < Duration::from_secs(1)).then_some(())
    })
    .await;
}
