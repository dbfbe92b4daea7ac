//! Connection limits of an HTTPS listener: the process's open-file limit raised to its hard
//! limit (as Go programs such as kube-apiserver do at start), a cap on open connections sized
//! from it, and per-connection activity (requests in flight, last activity) so that idle
//! connections time out and, at the cap, the connection idle the longest makes room for a new
//! one — 2,000 idle or half-open connections never lock clients out.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Body as HttpBody;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// The soft open-file limit after raising it to the hard limit (once per process).
pub fn fd_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(raise_fd_limit)
}

fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass; no other preconditions.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(from = lim.rlim_cur, to = lim.rlim_max, "raised the open-file limit");
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// Most connections one listener keeps open: a quarter of the open-file limit (the rest is for
/// the other listener, the store, containers' logs…), between 64 and 16,384.
pub fn default_connection_cap() -> usize {
    (fd_limit() / 4).clamp(64, 16_384) as usize
}

/// The open connections of one listener.
pub struct ConnLimits {
    cap: usize,
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
}

/// What the listener knows of one connection.
pub struct ConnState {
    in_flight: AtomicUsize,
    /// Milliseconds since the listener's epoch of the last request's end (or of the accept).
    last_active: AtomicU64,
    /// A request was ever received on it.
    requested: AtomicBool,
    /// Fired when the connection is evicted to make room.
    pub evicted: CancellationToken,
    epoch: Instant,
}

impl ConnState {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now().saturating_sub(self.last_active.load(Ordering::Acquire)))
    }

    /// Whether a request was ever received (an idle limit applies, else the first-request one).
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.requested.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }
}

/// A request in flight on a connection; dropped when its response body ends.
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last_active.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted connection; leaving the listener's table when dropped.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limits.conns.lock().remove(&self.id);
    }
}

impl ConnLimits {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self { cap: cap.max(1), epoch: Instant::now(), conns: Mutex::default(), next_id: AtomicU64::new(0) })
    }

    /// Admits a new connection. At the cap the connection idle the longest is evicted for it;
    /// `None` when every connection has a request in flight.
    pub fn admit(self: &Arc<Self>) -> Option<ConnSlot> {
        let mut conns = self.conns.lock();
        let open = conns.values().filter(|c| !c.evicted.is_cancelled()).count();
        if open >= self.cap {
            let idlest = conns
                .values()
                .filter(|c| !c.evicted.is_cancelled() && c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.last_active.load(Ordering::Acquire))?;
            idlest.evicted.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            requested: AtomicBool::new(false),
            evicted: CancellationToken::new(),
            epoch: self.epoch,
        });
        conns.insert(id, state.clone());
        Some(ConnSlot { limits: self.clone(), id, state })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.lock().len()
    }
}

/// A response whose body holds `guard` until it is fully sent or dropped (a slot of a limit).
pub fn hold_until_sent<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|body| Body::new(Guarded { body, _guard: guard }))
}

struct Guarded<G> {
    body: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        // Both fields are Unpin.
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_idlest_connection_makes_room() {
        let limits = ConnLimits::new(2);
        let busy = limits.admit().unwrap();
        let _request = busy.state.begin_request();
        let idle = limits.admit().unwrap();
        let newcomer = limits.admit().expect("an idle connection is evicted");
        assert!(idle.state.evicted.is_cancelled(), "the idle one goes");
        assert!(!busy.state.evicted.is_cancelled(), "a connection with a request in flight stays");
        drop(idle);
        let _req2 = newcomer.state.begin_request();
        assert!(limits.admit().is_none(), "every connection busy: the new one is refused");
        assert_eq!(limits.open(), 2);
    }

    #[test]
    fn idle_time_counts_from_the_last_request() {
        let limits = ConnLimits::new(4);
        let slot = limits.admit().unwrap();
        assert!(!slot.state.requested());
        let guard = slot.state.begin_request();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(slot.state.idle_for(), Duration::ZERO);
        drop(guard);
        assert!(slot.state.requested());
        assert!(slot.state.idle_for() < Duration::from_millis(20));
    }

    #[test]
    fn the_fd_limit_is_the_hard_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let limit = fd_limit();
        // SAFETY: getrlimit writes into the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(limit, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
