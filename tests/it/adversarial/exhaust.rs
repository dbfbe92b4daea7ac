//! Adversarial tests: exhaust (see mod.rs). Thousands of idle or half-open connections, more
//! requests in flight than allowed, token guessing on the join routes, stalled watchers and
//! Events piling up must neither lock users out nor grow the server without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use orch::pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{assert_alive, make_namespace_admin, Caller};
use crate::support::{kubectl, orch_binary, wait_for, ServerProc};

/// A TLS client config (HTTP/1.1) for `user` in `groups` (no certificate when `None`).
fn tls_client(server: &ServerProc, user: Option<&str>, groups: &[&str]) -> Arc<rustls::ClientConfig> {
    let tls = server.data_dir.join("server/tls");
    let ca = pki::ClusterCa::from_pem(pki::PemPair::read(&tls, "server-ca").unwrap().unwrap()).unwrap();
    let organizations = groups.iter().map(|g| g.to_string()).collect();
    let pair =
        user.map(|u| ca.sign(&pki::CertSpec { common_name: u.into(), organizations, client_auth: true, ..Default::default() }).unwrap());
    let mut config = pki::client_config(&ca.pem().cert, pair.as_ref()).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to the server that has written `bytes` and then stalls.
async fn stalled_tls(
    server: &ServerProc,
    tls: &Arc<rustls::ClientConfig>,
    bytes: &[u8],
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(("127.0.0.1", server.port))).await.ok()?.ok()?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await.ok()?.ok()?;
    stream.write_all(bytes).await.ok()?;
    stream.flush().await.ok()?;
    Some(stream)
}

/// A plain TCP connection to the server that has written `bytes` (maybe none) and then stalls.
async fn stalled_tcp(server: &ServerProc, bytes: &'static [u8]) -> Option<TcpStream> {
    let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(("127.0.0.1", server.port))).await.ok()?.ok()?;
    tcp.write_all(bytes).await.ok()?;
    Some(tcp)
}

/// Runs `n` connection attempts, 100 at a time, and keeps those that succeeded.
async fn open_many<T, F: std::future::Future<Output = Option<T>>>(n: usize, connect: impl Fn() -> F) -> Vec<T> {
    use futures::StreamExt;
    futures::stream::iter(0..n).map(|_| connect()).buffer_unordered(100).filter_map(futures::future::ready).collect().await
}

/// The soft open-file limit of process `pid`.
fn open_file_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// 2,000 idle TCP connections, 1,000 half TLS handshakes and 1,000 half HTTP headers against a
/// server started (as systemd starts services) with a soft open-file limit of 1,024: kubectl
/// still answers within seconds, while they are all held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_idle_and_half_open_connections_do_not_lock_out_kubectl() {
    orch::rpc::limits::fd_limit(); // this test process holds 4,000 sockets
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("orch-low-nofile");
    std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -Sn 1024\nulimit -Hn 4096\nexec {} \"$@\"\n", orch_binary().display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server = ServerProc::start(&wrapper, &dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let home = dir.path().join("home");
    let (ok, out, err) = kubectl(&server, &home, &["get", "ns"], None).await;
    assert!(ok, "kubectl before the attack: {out}{err}");
    assert_eq!(open_file_limit(server.pid().unwrap()), Some(4096), "the server raises its soft open-file limit to the hard one");

    let tls = tls_client(&server, None, &[]);
    let half_headers =
        open_many(1000, || stalled_tls(&server, &tls, b"GET /api/v1/namespaces HTTP/1.1\r\nHost: localhost\r\nAccept: app")).await;
    // A TLS record header announcing a ClientHello, and the first bytes of it.
    let half_handshakes = open_many(1000, || stalled_tcp(&server, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])).await;
    let idle = open_many(2000, || stalled_tcp(&server, b"")).await;
    eprintln!("holding {} half headers, {} half handshakes, {} idle connections", half_headers.len(), half_handshakes.len(), idle.len());
    assert!(idle.len() + half_handshakes.len() >= 2500, "the attack opened its connections");

    let started = Instant::now();
    let (ok, out, err) = kubectl(&server, &home, &["get", "ns", "--request-timeout=15s"], None).await;
    let took = started.elapsed();
    assert!(ok && out.contains("kube-system"), "kubectl under 4,000 stalled connections: {out}{err}");
    assert!(took < Duration::from_secs(10), "kubectl took {took:?} under 4,000 stalled connections");
    assert_alive(&server).await;
    drop((half_headers, half_handshakes, idle));
}

/// More API requests than `--max-requests-inflight` / `--max-mutating-requests-inflight` allow
/// get kube-apiserver's 429 with `Retry-After: 1`; `system:masters` and watches are exempt.
/// Refused requests on the join routes are rate-limited per address (429 with Retry-After).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_limits_and_refused_join_requests_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let flags: Vec<String> = ["--max-requests-inflight=2", "--max-mutating-requests-inflight=1"].map(String::from).into();
    let server = crate::support::ready_server(dir.path(), &flags).await;
    let home = dir.path().join("home");
    let alice = make_namespace_admin(&server, &home, "team", "alice").await;

    // A create whose body never finishes holds the one mutating slot.
    let head = "POST /api/v1/namespaces/team/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let slow = stalled_tls(&server, &tls_client(&server, Some("alice"), &[]), head.as_bytes()).await.expect("a TLS connection as alice");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let configmap = |name: &str| format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"k":"v"}}}}"#);
    let refused = send_with_headers(&alice, "POST", "/api/v1/namespaces/team/configmaps", configmap("second")).await;
    assert_eq!(refused.0, 429, "a second mutating request: {}", refused.2);
    assert_eq!(refused.1.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let status: serde_json::Value = serde_json::from_str(&refused.2).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["message"], "Too many requests, please try again later.");
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    let admin = Caller::admin(&server);
    let answer = admin.send("POST", "/api/v1/namespaces/team/configmaps", "application/json", configmap("by-admin")).await;
    assert_eq!(answer.code, 201, "system:masters is never limited: {}", answer.text);
    let watch = send_with_headers(&alice, "GET", "/api/v1/namespaces/team/configmaps?watch=true&timeoutSeconds=1", String::new()).await;
    assert_eq!(watch.0, 200, "watches are long-running and not limited: {}", watch.2);
    drop(slow);
    wait_for(Duration::from_secs(10), "the mutating slot to be free again", || async {
        let answer = alice.send("POST", "/api/v1/namespaces/team/configmaps", "application/json", configmap("third")).await;
        (answer.code == 201).then_some(())
    })
    .await;

    // A burst of reads beyond two at once: some are refused, none fails otherwise.
    for i in 0..50 {
        admin.send("POST", "/api/v1/namespaces/team/configmaps", "application/json", configmap(&format!("c{i}"))).await;
    }
    let reads = futures::future::join_all((0..200).map(|_| alice.get("/api/v1/namespaces/team/configmaps"))).await;
    let codes: Vec<u16> = reads.iter().map(|a| a.code).collect();
    assert!(codes.contains(&429), "200 concurrent reads with --max-requests-inflight=2 got no 429: {codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");

    // Guessing the join token: after ten refusals the address is told to wait.
    let guesser = Caller::anonymous(&server);
    let join = r#"{"name":"evil","password":"0123456789"}"#;
    let mut codes = Vec::new();
    for i in 0..12 {
        let req = http::Request::post(format!("{}/v1-orch/node-bootstrap", server.url()))
            .header("authorization", format!("Basic {}", base64_basic(&format!("server:guess-{i}"))))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(join)))
            .unwrap();
        let (status, _) = guesser.client.fetch(req, Duration::from_secs(10)).await.unwrap();
        codes.push(status.as_u16());
    }
    assert_eq!(codes[..10], [401; 10], "{codes:?}");
    assert_eq!(codes[10..], [429, 429], "{codes:?}");
    let cacerts = send_with_headers(&guesser, "GET", "/cacerts", String::new()).await;
    assert_eq!(cacerts.0, 429, "the limit covers every join route");
    assert!(cacerts.1.contains_key("retry-after"));
    assert_alive(&server).await;
}

/// `Authorization: Basic` credentials.
fn base64_basic(credentials: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

/// Sends a request as `caller` and returns (status, headers, body text).
async fn send_with_headers(caller: &Caller, method: &str, path: &str, body: String) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let mut req = http::Request::builder().method(method).uri(format!("{}{path}", caller.base));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(http_body_util::Full::new(Bytes::from(body))).unwrap();
    let resp = caller.client.send(req, Duration::from_secs(30)).await.expect("the server answers");
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect()).await.expect("a body").unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// A watcher that never reads while 60 MiB of ConfigMap updates go by is terminated (its
/// queue, bounded in bytes, is freed — see the watch cache's unit tests) and its stream ends
/// once it reads again, instead of receiving all of them. Events expire after `--event-ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_watchers_are_dropped_and_events_expire() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--event-ttl=3s".to_string()]).await;
    let admin = Caller::admin(&server);
    let event = |name: &str| {
        format!(
            r#"{{"metadata":{{"name":"{name}"}},"involvedObject":{{"kind":"Pod","name":"p","namespace":"default"}},"reason":"Test","message":"m","type":"Normal"}}"#
        )
    };
    let answer = admin.send("POST", "/api/v1/namespaces/default/events", "application/json", event("old")).await;
    assert_eq!(answer.code, 201, "{}", answer.text);
    let new_style = r#"{"metadata":{"name":"new"},"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"t","reportingInstance":"t","action":"A","reason":"R","type":"Normal","regarding":{"kind":"Pod","name":"p","namespace":"default"}}"#;
    let answer = admin.send("POST", "/apis/events.k8s.io/v1/namespaces/default/events", "application/json", new_style).await;
    assert_eq!(answer.code, 201, "{}", answer.text);

    let answer = admin.send("POST", "/api/v1/namespaces/default/configmaps", "application/json", r#"{"metadata":{"name":"big"}}"#).await;
    assert_eq!(answer.code, 201, "{}", answer.text);
    let tls = tls_client(&server, Some("stalled"), &["system:masters"]);
    let request = "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut stalled = stalled_tls(&server, &tls, request.as_bytes()).await.expect("a watch connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = server.pid().unwrap();
    let before = rss_mib(pid);
    for i in 0..60u32 {
        let filler: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), 1 << 20).collect();
        let patch = format!(r#"{{"data":{{"k":"{filler}"}}}}"#);
        let answer = admin.send("PATCH", "/api/v1/namespaces/default/configmaps/big", "application/merge-patch+json", patch).await;
        assert_eq!(answer.code, 200, "update {i}: {}", &answer.text[..answer.text.len().min(300)]);
    }
    let after = rss_mib(pid);
    eprintln!("server RSS {before} MiB before, {after} MiB after 60 MiB of updates with a stalled watcher");

    let mut seen = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen.ends_with(b"0\r\n\r\n") {
                return true;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled watch did not end ({} bytes read)", seen.len());
    assert!(seen.len() < 40 << 20, "the stalled watcher got everything ({} bytes): it was never dropped", seen.len());

    wait_for(Duration::from_secs(20), "both Events to expire", || async {
        let core = admin.get("/api/v1/namespaces/default/events/old").await.code;
        let new = admin.get("/apis/events.k8s.io/v1/namespaces/default/events/new").await.code;
        (core == 404 && new == 404).then_some(())
    })
    .await;
    assert_alive(&server).await;
}

/// The data dir, `server/` and everything in it (CA key, token, the sled store with every
/// Secret) are owner-only whatever the umask, and a data dir left open is closed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    fn open_to_others(path: &std::path::Path, found: &mut Vec<String>) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        if meta.file_type().is_symlink() {
            return;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            found.push(format!("{} {:o}", path.display(), meta.permissions().mode() & 0o777));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                open_to_others(&entry.unwrap().path(), found);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n0");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut server = crate::support::start_server(&data, &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let mut found = Vec::new();
    open_to_others(&data.join("server"), &mut found);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700, "the data dir");
    assert!(found.is_empty(), "readable by others: {found:?}");

    server.terminate(Duration::from_secs(10));
    for path in [data.clone(), data.join("server"), data.join("server/raft/db")] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(data.join("server/raft/db/conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    server.restart();
    server.wait_member(Duration::from_secs(20)).await;
    open_to_others(&data, &mut found);
    assert!(found.is_empty(), "still readable by others after a restart: {found:?}");
}
