//! Exec and attach over a WebSocket (`v5.channel.k8s.io` … `channel.k8s.io`): binary messages
//! prefixed with their channel; the session's status goes on the error channel, then the
//! socket is closed. Also a WebSocket as a byte stream, for SPDY tunneled inside one.

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::channel::{self, Outcome, Version};
use super::session::{self, ClientStreams, Kind};
use super::Options;
use crate::node::runtime::{Result as RuntimeResult, StreamSession};

/// Serves a remote command on `socket`; `start` opens the runtime session.
pub async fn serve_command(
    socket: WebSocket,
    version: Version,
    opts: Options,
    kind: Kind,
    start: impl std::future::Future<Output = RuntimeResult<StreamSession>>,
) {
    let (mut sink, mut incoming) = socket.split();
    let (stdin_tx, stdin) = mpsc::channel(16);
    let (resize_tx, resize) = mpsc::channel(4);
    let (stdout, mut stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr, mut stderr_rx) = mpsc::channel::<Bytes>(16);
    let client = ClientStreams {
        stdin: opts.stdin.then_some(stdin),
        resize: opts.tty.then_some(resize),
        stdout: opts.stdout.then_some(stdout),
        stderr: (opts.stderr && !opts.tty).then_some(stderr),
    };
    // Tells the client the streams are ready (as the kubelet does): an empty message on the
    // first channel it reads.
    let first = if opts.stdout {
        channel::STDOUT
    } else if opts.stderr && !opts.tty {
        channel::STDERR
    } else {
        channel::ERROR
    };
    if sink.send(Message::Binary(vec![first].into())).await.is_err() {
        return;
    }
    let reader = async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(msg)) = incoming.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                // The Python client sends its channel messages as text.
                Message::Text(text) => Bytes::from(text),
                Message::Close(_) => break,
                _ => continue,
            };
            match channel::parse(&data) {
                Some((channel::STDIN, chunk)) if !chunk.is_empty() => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(data.slice(1..)).await;
                    }
                }
                Some((channel::RESIZE, json)) => {
                    for size in channel::resizes(&mut json.to_vec()) {
                        let _ = resize_tx.send(size).await;
                    }
                }
                Some((channel::CLOSE, [channel::STDIN])) if version >= Version::V5 => stdin_tx = None,
                _ => {}
            }
        }
    };
    let command = async {
        match start.await {
            Ok(session) => session::run(session, client, kind).await,
            Err(e) => Outcome::Error(e.to_string()),
        }
    };
    let writer = async {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let (ch, chunk) = tokio::select! {
                c = stdout_rx.recv(), if out_open => (channel::STDOUT, c),
                c = stderr_rx.recv(), if err_open => (channel::STDERR, c),
            };
            match chunk {
                Some(chunk) => {
                    if sink.send(Message::Binary(channel::message(ch, &chunk).into())).await.is_err() {
                        return None;
                    }
                }
                None if ch == channel::STDOUT => out_open = false,
                None => err_open = false,
            }
        }
        Some(sink)
    };
    let (outcome, sink) = tokio::select! {
        both = async { tokio::join!(command, writer) } => both,
        // The client went away: dropping the session ends (kills) its process.
        _ = reader => return,
    };
    let Some(mut sink) = sink else { return };
    if let Some(payload) = outcome.error_payload(version) {
        let _ = sink.send(Message::Binary(channel::message(channel::ERROR, &payload).into())).await;
    }
    let _ = sink.send(normal_close()).await;
}

/// A close with status 1000: Go clients read any other close (even one without a status) as
/// an error.
pub fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: "".into() }))
}

/// A byte stream over `socket`'s binary messages (each write becomes a message).
pub fn into_bytes(socket: WebSocket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut read, mut write) = tokio::io::split(ours);
    let (mut sink, mut incoming) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = incoming.next().await {
            let written = match msg {
                Message::Binary(data) => write.write_all(&data).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !written {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 || sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    theirs
}
