//! Live streams of running containers, for attach: a container's output is published to the
//! clients attached at the time while it is copied into the CRI log, and its stdin (for
//! containers created with one) is shared by the attached clients and closed after the first
//! session ends when the container has `stdinOnce`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc};

use super::cri_log::Stream;
use super::{Result, RuntimeError, SessionControl, StreamRequest, StreamSession};

/// Output chunks an attached client may fall behind by before it misses some.
const BACKLOG: usize = 256;

/// The live streams of one running container.
pub struct LiveStreams {
    id: String,
    /// stdout and stderr; taken when the output has ended.
    outputs: Mutex<Option<[broadcast::Sender<Bytes>; 2]>>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    has_stdin: bool,
    stdin_once: bool,
    closer: Option<StdinCloser>,
}

/// Closes a running container's stdin on the runtime's side (containerd's shim holds a
/// writer of the FIFO itself), by container id.
pub type StdinCloser = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

impl LiveStreams {
    /// Hands a chunk of the container's output to the attached clients.
    pub fn publish(&self, stream: Stream, chunk: &[u8]) {
        let outputs = self.outputs.lock();
        if let Some(tx) = outputs.as_ref().map(|o| &o[stream as usize]).filter(|tx| tx.receiver_count() > 0) {
            let _ = tx.send(Bytes::copy_from_slice(chunk));
        }
    }

    /// The container's output has ended: attached clients' output channels close, and so does
    /// the container's stdin.
    pub async fn end(&self) {
        self.outputs.lock().take();
        self.stdin.lock().await.take();
    }

    fn subscribe(&self, stream: Stream) -> mpsc::Receiver<Bytes> {
        let outputs = self.outputs.lock();
        match outputs.as_ref() {
            Some(o) => follow(o[stream as usize].subscribe()),
            None => mpsc::channel(1).1,
        }
    }

    /// Closes the container's stdin (its process reads end of file).
    async fn close_stdin(&self) {
        let had = self.stdin.lock().await.take().is_some();
        if let (true, Some(closer)) = (had, &self.closer) {
            closer(self.id.clone()).await;
        }
    }

    async fn write_stdin(&self, chunk: &[u8]) -> bool {
        match self.stdin.lock().await.as_mut() {
            Some(pipe) => pipe.write_all(chunk).await.is_ok(),
            None => false,
        }
    }
}

/// The live streams of a node's running containers, by container id; clones share them.
#[derive(Clone, Default)]
pub struct AttachRegistry {
    live: Arc<Mutex<HashMap<String, Arc<LiveStreams>>>>,
    closer: Option<StdinCloser>,
}

impl AttachRegistry {
    /// A registry whose containers' stdin is closed with `closer`.
    pub fn new(closer: StdinCloser) -> Self {
        Self { live: Arc::default(), closer: Some(closer) }
    }

    fn map(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Arc<LiveStreams>>> {
        self.live.lock()
    }

    /// Registers the streams of container `id` (with its stdin FIFO, if it has one).
    pub fn register(&self, id: &str, stdin: Option<pipe::Sender>, stdin_once: bool) -> Arc<LiveStreams> {
        let live = Arc::new(LiveStreams {
            id: id.to_string(),
            closer: self.closer.clone(),
            outputs: Mutex::new(Some([broadcast::channel(BACKLOG).0, broadcast::channel(BACKLOG).0])),
            has_stdin: stdin.is_some(),
            stdin: tokio::sync::Mutex::new(stdin),
            stdin_once,
        });
        self.map().insert(id.to_string(), live.clone());
        live
    }

    /// Forgets the streams of container `id` (when its output has ended); attached clients'
    /// output channels close.
    pub fn remove(&self, id: &str, live: &Arc<LiveStreams>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|l| Arc::ptr_eq(l, live)) {
            map.remove(id);
        }
    }

    /// An attach session to container `id`'s streams.
    pub fn session(&self, id: &str, req: StreamRequest, control: Box<dyn SessionControl>) -> Result<StreamSession> {
        let live = self.map().get(id).cloned();
        let live = live.ok_or_else(|| RuntimeError::Container { id: id.to_string(), message: "is not running".into() })?;
        let stdin = (req.stdin && live.has_stdin).then(|| {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(feed_stdin(live.clone(), rx));
            tx
        });
        Ok(StreamSession {
            stdin,
            stdout: req.stdout.then(|| live.subscribe(Stream::Stdout)),
            stderr: (req.stderr && !req.tty).then(|| live.subscribe(Stream::Stderr)),
            control,
        })
    }
}

/// Writes a client's stdin chunks into the container's; closes it after them when `stdinOnce`.
async fn feed_stdin(live: Arc<LiveStreams>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(chunk) = rx.recv().await {
        if !live.write_stdin(&chunk).await {
            break;
        }
    }
    if live.stdin_once {
        live.close_stdin().await;
    }
}

/// A channel with the output published from now on, until the container's output ends or the
/// client goes away.
fn follow(mut rx: broadcast::Receiver<Bytes>) -> mpsc::Receiver<Bytes> {
    let (tx, out) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                r = rx.recv() => r,
                _ = tx.closed() => return,
            };
            match chunk {
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(missed = n, "an attached client fell behind"),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoControl;

    #[async_trait::async_trait]
    impl SessionControl for NoControl {
        async fn resize(&self, _: super::super::TermSize) -> Result<()> {
            Ok(())
        }
        async fn wait(&self) -> Result<i32> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn attached_clients_get_output_published_after_they_attach() {
        let registry = AttachRegistry::default();
        assert!(registry.session("c", StreamRequest::default(), Box::new(NoControl)).is_err());
        let live = registry.register("c", None, false);
        live.publish(Stream::Stdout, b"before");
        let req = StreamRequest { stdin: true, stdout: true, stderr: true, tty: false };
        let mut s = registry.session("c", req, Box::new(NoControl)).unwrap();
        assert!(s.stdin.is_none(), "the container has no stdin");
        live.publish(Stream::Stdout, b"out");
        live.publish(Stream::Stderr, b"err");
        assert_eq!(s.stdout.as_mut().unwrap().recv().await.unwrap(), "out");
        assert_eq!(s.stderr.as_mut().unwrap().recv().await.unwrap(), "err");
        live.end().await;
        registry.remove("c", &live);
        assert!(s.stdout.as_mut().unwrap().recv().await.is_none(), "output ends with the container's");
    }
}
