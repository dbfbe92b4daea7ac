//! The API's authenticated path to kubelets: `kubectl logs` and an upgraded exec stream reach
//! a stub kubelet (TLS with a cluster-CA serving certificate) as the API server's own identity.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use orch::pki::{CertSpec, ClusterCa, Identity, PemPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{kube_client, kubectl, ready_server};

/// A kubelet stand-in: logs name the caller; exec upgrades and echoes.
async fn stub_kubelet(ca: &ClusterCa) -> u16 {
    let serving = ca
        .sign(&CertSpec {
            common_name: "system:node:stub".into(),
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            server_auth: true,
            ..Default::default()
        })
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(orch::pki::server_config(&ca.pem().cert, &serving).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let caller = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| Identity::from_der(c));
                let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let caller = caller.clone();
                    async move {
                        if req.uri().path().starts_with("/exec/") {
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(upgrade.await.unwrap());
                                let mut buf = [0u8; 4];
                                io.read_exact(&mut buf).await.unwrap();
                                io.write_all(&buf).await.unwrap();
                            });
                            return Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .status(101)
                                    .header("connection", "Upgrade")
                                    .header("upgrade", "test-stream")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        let who = caller.map(|c| format!("{} {:?}", c.user, c.groups)).unwrap_or_else(|| "anonymous".into());
                        let text = format!("hello from the kubelet at {} to {who}\n", req.uri());
                        Ok(http::Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_streams_reach_the_kubelet_as_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let ca_pem = PemPair::read(&server.data_dir.join("server/tls"), "server-ca").unwrap().expect("the cluster CA");
    let port = stub_kubelet(&ClusterCa::from_pem(ca_pem).unwrap()).await;

    let client = kube_client(&server).await;
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "stub" }, "status": {
        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": port } } } }))
    .unwrap();
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({ "metadata": { "name": "p" },
        "spec": { "nodeName": "stub", "containers": [{ "name": "c", "image": "busybox" }] } }))
    .unwrap();
    Api::<Pod>::namespaced(client, "default").create(&PostParams::default(), &pod).await.unwrap();

    let home = dir.path().join("home");
    let (ok, out, err) = kubectl(&server, &home, &["logs", "p", "--tail=5"], None).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("/containerLogs/default/p/c?") && out.contains("tailLines=5") && out.contains("system:orch-kubelet-clients"),
        "{out}"
    );

    // An upgraded exec stream is spliced through to the kubelet and back.
    let admin = PemPair::read(&server.data_dir.join("server/tls"), "client-admin").unwrap().expect("the admin certificate");
    let ca = PemPair::read(&server.data_dir.join("server/tls"), "server-ca").unwrap().unwrap();
    let mut config = orch::pki::client_config(&ca.cert, Some(&admin)).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let request = "POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: test-stream\r\nContent-Length: 0\r\n\r\n";
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut byte)).await.expect("no answer").unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut echo)).await.expect("no echo").unwrap();
    assert_eq!(&echo, b"ping");
}
