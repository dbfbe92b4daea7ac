//! Exec and attach over SPDY (`v4.channel.k8s.io` … `channel.k8s.io`): the client opens one
//! stream per channel, named by its `streamType` header; the session starts once all the
//! streams its options call for are there, and ends with the status on the error stream.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::channel::{self, Outcome, Version};
use super::session::{self, ClientStreams, Kind};
use super::spdy::conn::{Connection, Stream, StreamWriter};
use super::spdy::headers;
use super::Options;
use crate::node::runtime::{Result as RuntimeResult, StreamSession};

/// How long the client has to open its streams (the kubelet's streamCreationTimeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams of one session.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    fn count(&self) -> usize {
        [&self.error, &self.stdin, &self.stdout, &self.stderr, &self.resize].iter().filter(|s| s.is_some()).count()
    }
}

/// How many streams a client with `opts` opens.
fn expected(opts: &Options, version: Version) -> usize {
    1 + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr && !opts.tty)
        + usize::from(opts.tty && version >= Version::V3)
}

/// Writes what arrives on `rx` to `writer`, then ends the stream.
async fn forward(mut rx: mpsc::Receiver<Bytes>, writer: StreamWriter) {
    while let Some(chunk) = rx.recv().await {
        if !writer.write(chunk).await {
            return;
        }
    }
    writer.finish().await;
}

/// Serves a remote command on a SPDY connection; `start` opens the runtime session.
pub async fn serve_command(
    mut conn: Connection,
    version: Version,
    opts: Options,
    kind: Kind,
    start: impl std::future::Future<Output = RuntimeResult<StreamSession>>,
) {
    let mut streams = Streams::default();
    let want = expected(&opts, version);
    let gathered = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while streams.count() < want {
            let Some(stream) = conn.streams.recv().await else { return false };
            let slot = match headers::get(&stream.headers, "streamType") {
                Some("error") => &mut streams.error,
                Some("stdin") => &mut streams.stdin,
                Some("stdout") => &mut streams.stdout,
                Some("stderr") => &mut streams.stderr,
                Some("resize") => &mut streams.resize,
                other => {
                    tracing::debug!(stream_type = ?other, "unexpected SPDY stream");
                    continue;
                }
            };
            *slot = Some(stream);
        }
        true
    })
    .await;
    if gathered != Ok(true) {
        tracing::debug!(got = streams.count(), want, "the client did not open its streams");
        return conn.close().await;
    }
    let mut writers = Vec::new();
    let mut output = |stream: Option<Stream>| {
        stream.map(|s| {
            let (tx, rx) = mpsc::channel(16);
            writers.push(tokio::spawn(forward(rx, s.writer)));
            tx
        })
    };
    let (stdout, stderr) = (output(streams.stdout), output(streams.stderr));
    let resize = streams.resize.map(|mut s| {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(chunk) = s.data.recv().await {
                pending.extend_from_slice(&chunk);
                for size in channel::resizes(&mut pending) {
                    let _ = tx.send(size).await;
                }
            }
        });
        rx
    });
    let client = ClientStreams { stdin: streams.stdin.map(|s| s.data), resize, stdout, stderr };
    let command = async {
        match start.await {
            Ok(session) => session::run(session, client, kind).await,
            Err(e) => Outcome::Error(e.to_string()),
        }
    };
    let gone = async { while conn.streams.recv().await.is_some() {} };
    let outcome = tokio::select! {
        outcome = command => outcome,
        // The client went away: dropping the session ends (kills) its process.
        _ = gone => return conn.close().await,
    };
    for w in writers {
        let _ = w.await;
    }
    if let Some(error) = streams.error {
        if let Some(payload) = outcome.error_payload(version) {
            error.writer.write(payload.into()).await;
        }
        error.writer.finish().await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_streams_follow_the_options() {
        let opts = Options { stdin: true, stdout: true, stderr: true, tty: false, command: vec![] };
        assert_eq!(expected(&opts, Version::V4), 4);
        let tty = Options { tty: true, ..opts.clone() };
        assert_eq!(expected(&tty, Version::V4), 4, "no stderr but a resize stream");
        assert_eq!(expected(&tty, Version::V2), 3);
    }
}
