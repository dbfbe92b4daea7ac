//! Exec, attach, cp and port-forward end to end on a real node (root only; the node is the
//! one of `kubelet`): kubectl over WebSockets (its default) and over SPDY
//! (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`),
//! a raw `v5.channel.k8s.io` WebSocket client with a terminal and a resize, and the Python
//! client's exec and port-forward (`tests/python/streams.py`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use orch::pki::PemPair;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::kubelet::{phase, pod_where, start_real_node};
use crate::support::{free_port, kubectl, kubectl_with, skip_without_containers, ServerProc};

const SPDY_EXEC: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
const SPDY_PORT_FORWARD: &[(&str, &str)] = &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: streams
spec:
  containers:
  - name: web
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello-through-port-forward > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata:
  name: attacher
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "read line; echo \"got: $line\""]
"#;

/// Runs `kubectl port-forward pod/streams LOCAL:8080` and fetches the page through it twice.
async fn fetch_through_port_forward(server: &ServerProc, home: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let local = free_port();
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.data_dir.join("orch.yaml"))
        .args(["port-forward", "pod/streams", &format!("{local}:8080")])
        .env("HOME", home)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running kubectl port-forward");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Forwarding from") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let _ = child.kill().await;
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
        panic!("kubectl port-forward did not start: {err}");
    }
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let fetch = async {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", local)).await.unwrap();
            tcp.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.unwrap();
            let mut out = String::new();
            tcp.read_to_string(&mut out).await.unwrap();
            out
        };
        bodies.push(tokio::time::timeout(Duration::from_secs(20), fetch).await.expect("a fetch through port-forward"));
    }
    let _ = child.kill().await;
    bodies
}

/// Execs `sh` with a terminal over a raw `v5.channel.k8s.io` WebSocket, resizes it, runs
/// `stty size; exit 7` and returns the terminal output and the error channel's status.
async fn tty_exec(server: &ServerProc) -> (String, serde_json::Value) {
    let tls_dir = server.data_dir.join("server/tls");
    let admin = PemPair::read(&tls_dir, "client-admin").unwrap().expect("the admin certificate");
    let ca = PemPair::read(&tls_dir, "server-ca").unwrap().expect("the cluster CA");
    let mut config = orch::pki::client_config(&ca.cert, Some(&admin)).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let url = format!(
        "wss://127.0.0.1:{}/api/v1/namespaces/default/pods/streams/exec?container=web&command=sh&stdin=true&stdout=true&tty=true",
        server.port
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.expect("the WebSocket upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    let send = |channel: u8, data: &[u8]| Message::Binary([&[channel][..], data].concat().into());
    ws.send(send(4, br#"{"Width":100,"Height":40}"#)).await.unwrap();
    let (mut output, mut status, mut sent) = (String::new(), serde_json::Value::Null, false);
    let session = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(data) = msg else { continue };
            match data.split_first() {
                Some((1, out)) => output.push_str(&String::from_utf8_lossy(out)),
                Some((3, s)) => status = serde_json::from_slice(s).unwrap(),
                _ => {}
            }
            // The prompt is up (so the resize has been applied): run the command.
            if !sent && output.contains('#') {
                sent = true;
                ws.send(send(0, b"stty size; exit 7\n")).await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), session).await.expect("the tty session to end");
    (output, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_attach_cp_and_port_forward_reach_containers() {
    if skip_without_containers("kubelet streaming tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _) = start_real_node(dir.path(), &[]).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(PODS)).await;
    assert!(ok, "kubectl apply failed: {out}{err}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod_where(&pods, "streams", "Running", &node, |p| phase(p) == "Running").await;

    // Output, stderr and the exit code, over WebSocket and over SPDY.
    let script = ["exec", "streams", "--", "sh", "-c", "echo out; echo err >&2; exit 3"];
    for env in [&[][..], SPDY_EXEC] {
        let (code, out, err) = kubectl_with(&server, &home, &script, None, env).await;
        assert_eq!((code, out.as_str()), (Some(3), "out\n"), "exec with {env:?}: {err}");
        assert!(err.contains("err\n") && err.contains("command terminated with exit code 3"), "exec with {env:?}: {err}");
    }

    // stdin reaches the command and its end closes the command's stdin.
    for env in [&[][..], SPDY_EXEC] {
        let (code, out, err) = kubectl_with(&server, &home, &["exec", "-i", "streams", "--", "cat"], Some("hi\nthere\n"), env).await;
        assert_eq!((code, out.as_str()), (Some(0), "hi\nthere\n"), "exec -i with {env:?}: {err}");
    }

    // A terminal, resized.
    let (output, status) = tty_exec(&server).await;
    assert!(output.contains("40 100"), "stty saw the resized terminal: {output:?}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // kubectl cp in and out (tar through exec).
    let payload: String = (0..20_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let local = dir.path().join("payload.txt");
    std::fs::write(&local, &payload).unwrap();
    let (ok, _, err) = kubectl(&server, &home, &["cp", local.to_str().unwrap(), "streams:/tmp/payload.txt"], None).await;
    assert!(ok, "kubectl cp into the pod: {err}");
    let back = dir.path().join("back.txt");
    let (ok, _, err) = kubectl(&server, &home, &["cp", "streams:/tmp/payload.txt", back.to_str().unwrap()], None).await;
    assert!(ok, "kubectl cp out of the pod: {err}");
    assert!(std::fs::read_to_string(&back).unwrap() == payload, "the file came back unchanged");

    // Port-forward to the pod's httpd, tunneled in a WebSocket and over plain SPDY.
    for env in [&[][..], SPDY_PORT_FORWARD] {
        for body in fetch_through_port_forward(&server, &home, env).await {
            assert!(body.starts_with("HTTP/1.") && body.contains("hello-through-port-forward"), "port-forward with {env:?}: {body}");
        }
    }

    // The Python client's exec and port-forward (WebSocket v4).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/streams.py");
    // `timeout` keeps what the script printed when it hangs.
    let python = tokio::process::Command::new("timeout").args(["50", "python3", script]).arg(server.data_dir.join("orch.yaml")).output();
    let out =
        tokio::time::timeout(Duration::from_secs(60), python).await.expect("the python streams script hung").expect("running python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("python streams: ok"),
        "python streams failed (`make deps` installs the client):\n{stdout}\n{stderr}"
    );

    // Attach to a container waiting on its stdin.
    pod_where(&pods, "attacher", "Running", &node, |p| phase(p) == "Running").await;
    let (code, out, err) = kubectl_with(&server, &home, &["attach", "-i", "attacher"], Some("hello\n"), &[]).await;
    assert_eq!(code, Some(0), "kubectl attach: {out}{err}");
    assert!(out.contains("got: hello"), "the container read the attached stdin: {out}{err}");
    pod_where(&pods, "attacher", "Succeeded after its stdin was used once", &node, |p| phase(p) == "Succeeded").await;
}
