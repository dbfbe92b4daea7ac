//! Port-forward: TCP connections to 127.0.0.1:PORT inside a pod's network namespace (opened by
//! a helper thread that joined it), carried over SPDY (`portforward.k8s.io`: per connection
//! an `error` and a `data` stream with the same `requestID` and a `port` header; also
//! tunneled inside a WebSocket, as kubectl does) or over a WebSocket (`v4.channel.k8s.io`
//! with `?ports=`: channels 2i and 2i+1 are port i's data and errors, each opened with the
//! port as two little-endian bytes).

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::channel;
use super::spdy::conn::{Connection, Stream};
use super::spdy::headers;

/// The SPDY protocol of port-forward.
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol kubectl tunnels SPDY port-forward in.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Connects to 127.0.0.1:`port` in the network namespace `netns` (`None`: this process's).
pub async fn dial(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let connect = move || crate::net::netns::run_in(netns.as_deref(), || std::net::TcpStream::connect(("127.0.0.1", port)));
    let std = tokio::task::spawn_blocking(connect).await.map_err(std::io::Error::other)?.map_err(std::io::Error::other)??;
    std.set_nonblocking(true)?;
    TcpStream::from_std(std)
}

fn dial_error(port: u16, e: &std::io::Error) -> String {
    format!("error forwarding port {port} to pod: failed to connect to localhost:{port}: {e}")
}

/// Copies from the pod's side of a connection into `send` until it ends.
async fn pod_to_client<F: std::future::Future<Output = bool>>(mut from: OwnedReadHalf, mut send: impl FnMut(Bytes) -> F) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || !send(Bytes::copy_from_slice(&buf[..n])).await {
            return;
        }
    }
}

/// Writes what the client sends into the pod's side; half-closes it when the client is done.
async fn client_to_pod(mut from: mpsc::Receiver<Bytes>, mut to: OwnedWriteHalf) {
    while let Some(chunk) = from.recv().await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Serves SPDY port-forward on `conn` until the client closes it.
pub async fn serve_spdy(mut conn: Connection, netns: Option<PathBuf>) {
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(stream) = conn.streams.recv().await {
        let request = headers::get(&stream.headers, "requestID").unwrap_or_default().to_string();
        let entry = pending.entry(request.clone()).or_default();
        match headers::get(&stream.headers, "streamType") {
            Some("error") => entry.0 = Some(stream),
            Some("data") => entry.1 = Some(stream),
            other => {
                tracing::debug!(stream_type = ?other, "unexpected port-forward stream");
                stream.writer.reset(super::spdy::frame::REFUSED_STREAM).await;
                continue;
            }
        }
        if let (Some(_), Some(_)) = entry {
            if let Some((Some(error), Some(data))) = pending.remove(&request) {
                tokio::spawn(forward_pair(error, data, netns.clone()));
            }
        }
    }
    conn.close().await;
}

/// One forwarded connection: the pod's end closing ends it (the client's only half-closes).
async fn forward_pair(error: Stream, data: Stream, netns: Option<PathBuf>) {
    let port = headers::get(&data.headers, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
    let result = match port {
        Some(port) => dial(netns, port).await.map_err(|e| dial_error(port, &e)),
        None => Err(format!("invalid port header {:?}", headers::get(&data.headers, "port"))),
    };
    match result {
        Ok(tcp) => {
            let (read, write) = tcp.into_split();
            let up = tokio::spawn(client_to_pod(data.data, write));
            let writer = data.writer.clone();
            pod_to_client(read, |chunk| {
                let writer = writer.clone();
                async move { writer.write(chunk).await }
            })
            .await;
            up.abort();
        }
        Err(message) => {
            tracing::debug!(%message, "port-forward failed");
            error.writer.write(message.into()).await;
        }
    }
    data.writer.finish().await;
    error.writer.finish().await;
}

/// Serves WebSocket port-forward of `ports` on `socket` until every connection or the socket
/// has ended.
pub async fn serve_websocket(socket: WebSocket, ports: Vec<u16>, netns: Option<PathBuf>) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let mut to_pod = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let _ = out.send(channel::message(data, &port.to_le_bytes())).await;
        let _ = out.send(channel::message(error, &port.to_le_bytes())).await;
        match dial(netns.clone(), *port).await {
            Ok(tcp) => {
                let (read, write) = tcp.into_split();
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(client_to_pod(rx, write));
                to_pod.push(Some(tx));
                let out = out.clone();
                tokio::spawn(pod_to_client(read, move |chunk| {
                    let out = out.clone();
                    async move { out.send(channel::message(data, &chunk)).await.is_ok() }
                }));
            }
            Err(e) => {
                to_pod.push(None);
                let _ = out.send(channel::message(error, dial_error(*port, &e).as_bytes())).await;
            }
        }
    }
    // From here on, the pod-to-client copies hold the only senders: when they have all
    // ended, the writer below sends the close.
    drop(out);
    let writer = async {
        while let Some(msg) = out_rx.recv().await {
            if sink.send(Message::Binary(msg.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(super::websocket::normal_close()).await;
    };
    let reader = async {
        while let Some(Ok(msg)) = incoming.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                // The Python client sends its channel messages as text.
                Message::Text(text) => Bytes::from(text),
                Message::Close(_) => return,
                _ => continue,
            };
            if let Some((ch, chunk)) = channel::parse(&data) {
                let tx = to_pod.get(usize::from(ch / 2)).filter(|_| ch % 2 == 0).and_then(Option::as_ref);
                if let (Some(tx), false) = (tx, chunk.is_empty()) {
                    let _ = tx.send(data.slice(1..)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}
