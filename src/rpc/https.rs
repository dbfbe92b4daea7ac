//! The accept loop of an HTTPS port (the server's :6443, the kubelet's :10250): TLS (HTTP/2
//! and HTTP/1.1 by ALPN) with optional client certificates; each request carries the
//! connection's verified [`Peer`] identity and the client's address. Connections are bounded
//! (see [`super::limits`]): a TLS handshake gets 10 s, the first request 10 s more (HTTP/1.1
//! headers, too, must arrive within 10 s), an idle connection is closed after 90 s, and at
//! the listener's cap the connection idle the longest is closed for a new one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::limits::{self, ConnLimits, ConnState};
use crate::pki::{Identity, Peer};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection (or an HTTP/1.1 request's headers) may take to send a request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection with no request in flight stays open (Go's and kube-apiserver's
/// `IdleTimeout`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a connection being closed (idle, or the server stopping) may take to say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How often connections are checked for idleness.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `cancel` fires; connections are tracked by `tasks` and
/// capped at [`limits::default_connection_cap`].
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router, cancel: CancellationToken, tasks: TaskTracker) {
    let acceptor = TlsAcceptor::from(tls);
    let conns = ConnLimits::new(limits::default_connection_cap());
    loop {
        let (tcp, remote) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = conns.admit() else {
            tracing::debug!(%remote, "connection refused: every connection of this port has a request in flight");
            continue;
        };
        // Raft and store RPC are small request/response messages: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tasks.spawn(async move {
            let state = slot.state.clone();
            let stream = tokio::select! {
                _ = state.evicted.cancelled() => return tracing::debug!(%remote, "connection closed to make room"),
                accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match accepted {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
                },
            };
            let identity = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| Identity::from_der(c));
            let requests = state.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let guard = requests.begin_request();
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(Peer(identity.clone()));
                req.extensions_mut().insert(ConnectInfo(remote));
                let call = app.clone().oneshot(req);
                async move {
                    let response = call.await.unwrap_or_else(|never: Infallible| match never {});
                    Ok::<_, Infallible>(limits::hold_until_sent(response, guard))
                }
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(FIRST_REQUEST_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut check = tokio::time::interval(IDLE_CHECK);
            let mut closing: Option<Instant> = None;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = state.evicted.cancelled() => return tracing::debug!(%remote, "idle connection closed to make room"),
                    _ = cancel.cancelled(), if closing.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    _ = check.tick() => match closing {
                        Some(deadline) if Instant::now() >= deadline => return tracing::debug!(%remote, "connection dropped after its close grace"),
                        Some(_) => {}
                        None if idle_expired(&state) => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now() + CLOSE_GRACE);
                        }
                        None => {}
                    },
                }
            }
        });
    }
}

/// Whether a connection has been idle for longer than it may.
fn idle_expired(state: &ConnState) -> bool {
    let limit = if state.requested() { IDLE_TIMEOUT } else { FIRST_REQUEST_TIMEOUT };
    state.idle_for() > limit
}

/// The client address of a request served by [`serve`].
pub fn remote_addr<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
