//! The DNS server: UDP and TCP listeners feeding one [`Handler`] that rate-limits by source,
//! decodes, answers cluster names from the current [`Records`] and hands the rest to the
//! [`Forwarder`]. A malformed packet gets FORMERR (or nothing, when it has no id) and never
//! affects other queries; UDP replies larger than the client accepts are truncated.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::answer::{answer, Outcome};
use super::forward::Forwarder;
use super::metrics::{Dropped, Metrics};
use super::rate_limit::{Limit, RateLimiter};
use super::records::Records;

/// The DNS header's length: anything shorter has no id to answer to.
const HEADER_LEN: usize = 12;
/// How long a TCP connection may sit idle.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The most TCP connections served at once.
const MAX_TCP: usize = 256;
/// The most UDP queries waiting on the upstreams at once; more are dropped.
const MAX_FORWARDS: usize = 1024;

/// What to do with one packet.
pub enum Step {
    Reply(Vec<u8>),
    /// Ask the upstreams (the decoded request and when it arrived).
    Forward(Message, Instant),
    Drop,
}

/// Everything a query needs: the records, the domain, the forwarder, the limiter, the counters.
pub struct Handler {
    records: watch::Receiver<Arc<Records>>,
    domain: String,
    forwarder: Forwarder,
    limiter: RateLimiter,
    /// Who may have names outside the cluster domain resolved (empty: everyone), so a node
    /// address reachable from the LAN is no open resolver.
    forward_for: Vec<ipnetwork::IpNetwork>,
    pub metrics: Arc<Metrics>,
}

impl Handler {
    /// A handler for cluster domain `domain` answering from `records` as they change.
    pub fn new(domain: &str, records: watch::Receiver<Arc<Records>>, upstreams: Vec<SocketAddr>, limit: Limit) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            records,
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            forwarder: Forwarder::new(upstreams, metrics.clone()),
            limiter: RateLimiter::new(limit),
            forward_for: Vec::new(),
            metrics,
        }
    }

    /// Forwards (recursion) only for sources in `networks`; others get REFUSED for names
    /// outside the cluster domain, as CoreDNS's `acl` answers.
    pub fn forwarding_only_for(mut self, networks: Vec<ipnetwork::IpNetwork>) -> Self {
        self.forward_for = networks;
        self
    }

    /// The first step for `packet` from `source`; `udp` when replies must fit the client's
    /// UDP payload size.
    pub fn prepare(&self, packet: &[u8], source: IpAddr, udp: bool) -> Step {
        let now = Instant::now();
        if !self.limiter.allow(source, now) {
            self.metrics.dropped(Dropped::RateLimited);
            return Step::Drop;
        }
        if packet.len() < HEADER_LEN {
            self.metrics.dropped(Dropped::Malformed);
            return Step::Drop;
        }
        let request = match Message::from_vec(packet) {
            Ok(m) if m.metadata.message_type == MessageType::Query => m,
            // A response sent to us (or a reflection): never answered.
            Ok(_) => return Step::Drop,
            Err(_) => {
                let mut reply = Message::error_msg(u16::from_be_bytes([packet[0], packet[1]]), OpCode::Query, ResponseCode::FormErr);
                reply.metadata.recursion_available = true;
                return self.encode(&reply, None, now, udp);
            }
        };
        if request.metadata.op_code != OpCode::Query {
            return self.encode(
                &Message::error_msg(request.metadata.id, request.metadata.op_code, ResponseCode::NotImp),
                Some(&request),
                now,
                udp,
            );
        }
        if request.queries.len() != 1 {
            return self.encode(&Message::error_msg(request.metadata.id, OpCode::Query, ResponseCode::FormErr), Some(&request), now, udp);
        }
        self.metrics.query(request.queries[0].query_type());
        let outcome = answer(&self.records.borrow(), &self.domain, &request);
        match outcome {
            Outcome::Reply(reply) => self.encode(&reply, Some(&request), now, udp),
            Outcome::Forward if !self.forward_for.is_empty() && !self.forward_for.iter().any(|n| n.contains(source)) => {
                let mut reply = Message::error_msg(request.metadata.id, OpCode::Query, ResponseCode::Refused);
                reply.add_query(request.queries[0].clone());
                self.encode(&reply, Some(&request), now, udp)
            }
            Outcome::Forward => Step::Forward(request, now),
        }
    }

    /// The reply to a request [`Handler::prepare`] gave back as [`Step::Forward`].
    pub async fn forward(&self, request: Message, arrived: Instant, udp: bool) -> Step {
        let reply = self.forwarder.forward(&request).await;
        self.encode(&reply, Some(&request), arrived, udp)
    }

    /// `reply` on the wire, truncated to what the client takes over UDP; counted.
    fn encode(&self, reply: &Message, request: Option<&Message>, arrived: Instant, udp: bool) -> Step {
        let max = request.map_or(512, |r| usize::from(r.max_payload()));
        let bytes = match reply.to_vec() {
            Ok(b) if udp && b.len() > max => reply.truncate().to_vec(),
            other => other,
        };
        match bytes {
            Ok(bytes) => {
                self.metrics.reply(reply.metadata.response_code, arrived.elapsed());
                Step::Reply(bytes)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a DNS reply");
                Step::Drop
            }
        }
    }
}

/// Serves DNS over UDP on `socket` until `cancel` fires.
pub async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, cancel: CancellationToken) {
    let socket = Arc::new(socket);
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors from earlier replies surface here; they concern no one else.
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            },
        };
        match handler.prepare(&buf[..n], from.ip(), true) {
            Step::Reply(bytes) => {
                let _ = socket.send_to(&bytes, from).await;
            }
            Step::Forward(request, arrived) => {
                let Ok(slot) = forwards.clone().try_acquire_owned() else {
                    handler.metrics.dropped(Dropped::Busy);
                    continue;
                };
                let (socket, handler) = (socket.clone(), handler.clone());
                tokio::spawn(async move {
                    if let Step::Reply(bytes) = handler.forward(request, arrived, true).await {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                    drop(slot);
                });
            }
            Step::Drop => {}
        }
    }
}

/// Serves DNS over TCP on `listener` until `cancel` fires.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (stream, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            got = listener.accept() => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let (handler, cancel) = (handler.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = connection(stream, from.ip(), &handler) => {}
            }
            drop(slot);
        });
    }
}

/// Answers length-prefixed queries on one TCP connection until it closes or idles.
async fn connection(mut stream: TcpStream, source: IpAddr, handler: &Handler) -> std::io::Result<()> {
    loop {
        let Ok(len) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return Ok(()) };
        let mut packet = vec![0; usize::from(len?)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        let step = match handler.prepare(&packet, source, false) {
            Step::Forward(request, arrived) => handler.forward(request, arrived, false).await,
            step => step,
        };
        match step {
            Step::Reply(bytes) => {
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                stream.write_all(&framed).await?;
            }
            Step::Forward(..) | Step::Drop => return Ok(()),
        }
    }
}
