//! The forwarder (CoreDNS's `forward . /etc/resolv.conf` + `cache 30`): questions outside the
//! cluster go to the host's resolvers in turn, over UDP (TCP when the reply is truncated),
//! each from a fresh socket with a fresh id; replies are cached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::cache::Cache;
use super::metrics::Metrics;

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest reply read from an upstream over UDP.
const MAX_UDP: usize = 4096;

#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {UPSTREAM_TIMEOUT:?}")]
    Timeout,
    #[error("bad reply: {0}")]
    Decode(String),
}

/// Sends questions to the upstream resolvers and caches their replies.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<Cache>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, metrics: Arc<Metrics>) -> Self {
        Self { upstreams, cache: Mutex::new(Cache::default()), metrics }
    }

    /// The reply to `request` from the cache or an upstream; SERVFAIL when none answers.
    pub async fn forward(&self, request: &Message) -> Message {
        if let Some(hit) = self.cache.lock().get(request, Instant::now()) {
            self.metrics.cache(true);
            return hit;
        }
        self.metrics.cache(false);
        let mut outgoing = request.clone();
        outgoing.metadata.id = rand::random();
        for upstream in &self.upstreams {
            self.metrics.forwarded();
            match ask(*upstream, &outgoing).await {
                Ok(mut reply) => {
                    reply.metadata.id = request.metadata.id;
                    reply.queries = request.queries.clone();
                    self.cache.lock().put(request, &reply, Instant::now());
                    return reply;
                }
                Err(e) => tracing::debug!(%upstream, error = %e, "upstream DNS server failed"),
            }
        }
        let mut fail = Message::error_msg(request.metadata.id, request.metadata.op_code, ResponseCode::ServFail);
        fail.metadata.recursion_desired = request.metadata.recursion_desired;
        fail.metadata.recursion_available = true;
        fail.queries = request.queries.clone();
        fail
    }
}

/// Asks `upstream` once over UDP, again over TCP when the reply is truncated.
async fn ask(upstream: SocketAddr, request: &Message) -> Result<Message, UpstreamError> {
    let bytes = request.to_vec().map_err(|e| UpstreamError::Decode(e.to_string()))?;
    let reply = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(upstream).await?;
        socket.send(&bytes).await?;
        let mut buf = vec![0; MAX_UDP];
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything that is not the reply to this question (a stray or spoofed packet) is ignored.
            if let Ok(reply) = Message::from_vec(&buf[..n]) {
                if reply.metadata.id == request.metadata.id && same_question(&reply, request) {
                    return Ok::<_, UpstreamError>(reply);
                }
            }
        }
    })
    .await
    .map_err(|_| UpstreamError::Timeout)??;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(upstream, &bytes)).await.map_err(|_| UpstreamError::Timeout)?
}

fn same_question(reply: &Message, request: &Message) -> bool {
    match (reply.queries.first(), request.queries.first()) {
        (Some(a), Some(b)) => a.name().eq_ignore_root(b.name()) && a.query_type() == b.query_type(),
        _ => false,
    }
}

async fn ask_tcp(upstream: SocketAddr, bytes: &[u8]) -> Result<Message, UpstreamError> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::Decode("query too long".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| UpstreamError::Decode(e.to_string()))
}
