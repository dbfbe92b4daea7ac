//! `?watch=true`: newline-delimited JSON watch events (ADDED / MODIFIED / DELETED / ERROR)
//! from the shared watch cache (or the store's history for old resourceVersions), with
//! synthetic ADDED events for the current state when the client gives no resourceVersion,
//! BOOKMARKs when allowed, and a 410 ERROR event when the requested one is compacted.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use super::conversion;
use super::objects::{self, Scope, SharedStore};
use super::registry::Resource;
use super::status::ApiError;
use super::table;
use super::watch_cache::{indexes_nodes, line, ResourceCache, Subscription, WatchCaches};
use crate::store::{EventKind, KeyRange, Revision, StoreError, WatchRequest};

/// How the events' objects are shaped.
#[derive(Clone, Copy)]
pub enum Shape {
    Object,
    /// A one-row Table per event (`kubectl get -w`).
    Table(&'static Resource),
}

impl Shape {
    fn apply(self, obj: Value) -> Value {
        match self {
            Shape::Object => obj,
            Shape::Table(resource) => {
                let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                table::render(resource, &[obj], &rv, None)
            }
        }
    }
}

/// The server's `--min-request-timeout` (kube-apiserver's default: 1800 s), carried to the
/// API as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct MinRequestTimeout(pub Duration);

impl Default for MinRequestTimeout {
    fn default() -> Self {
        Self(Duration::from_secs(1800))
    }
}

impl MinRequestTimeout {
    /// How long a watch runs, as kube-apiserver decides: what the client asked
    /// (`timeoutSeconds`, see [`super::params::ReadOptions`]), else a random time in
    /// [min, 2 × min) so that watchers do not all re-list at once.
    pub fn watch_timeout(self, asked: Option<Duration>) -> Duration {
        asked.unwrap_or_else(|| self.0.mul_f64(1.0 + rand::random::<f64>()))
    }
}

/// What a watch request asks for.
pub struct WatchOptions {
    /// The client's resourceVersion (0 or absent: send the current objects as ADDED first).
    pub from: Revision,
    /// When the server ends the watch.
    pub timeout: Duration,
    pub shape: Shape,
    /// `allowWatchBookmarks=true`: periodic BOOKMARK events carrying the latest revision.
    pub bookmarks: bool,
}

/// How often a watcher that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

pub async fn watch(
    store: SharedStore,
    caches: Arc<WatchCaches>,
    scope: Scope<'_>,
    selector: objects::Selection,
    options: WatchOptions,
) -> Result<Response, ApiError> {
    let shape = options.shape;
    let mut initial = Vec::new();
    let from = if options.from > 0 {
        options.from
    } else {
        let page = objects::list(store.as_ref(), &scope, &selector, 0, None).await?;
        initial = page.items.into_iter().map(|o| (page.revision, line("ADDED", &shape.apply(o)))).collect();
        page.revision
    };
    let resource = scope.resource;
    let index_nodes = indexes_nodes(resource);
    // Node agents' `spec.nodeName=<node>` watches are served from the cache's node index.
    let node = selector.fields.equals("spec.nodeName").filter(|n| index_nodes && !n.is_empty()).map(str::to_string);
    let namespace = scope.namespace.filter(|_| resource.namespaced).map(str::to_string);
    let cache = caches.get(&store, resource).await;
    let feed = Feed { resource, namespace, selector, shape, index_nodes, node };
    let live: Lines = match cache.as_ref().and_then(|c| c.subscribe(from, feed.node.clone())) {
        Some(sub) => feed.cached_lines(sub, from),
        None => match catch_up(&store, &scope, feed, from, cache).await? {
            Ok(stream) => stream,
            Err(gone) => return Ok(json_stream(Body::from(gone))),
        },
    };
    let live = if options.bookmarks { with_bookmarks(live, resource, from) } else { live };
    let stream = futures::stream::iter(initial).chain(live).map(|(_, bytes)| Ok::<_, std::io::Error>(bytes));
    let body = Body::from_stream(stream.take_until(tokio::time::sleep(options.timeout)));
    Ok(json_stream(body))
}

/// Watch lines with the revision of the change each reports.
type Lines = BoxStream<'static, (Revision, bytes::Bytes)>;

/// What one watcher selects and how its events are shaped.
struct Feed {
    /// The resource (and so the version) the events are served as.
    resource: &'static Resource,
    /// Only objects of this namespace (a namespaced watch).
    namespace: Option<String>,
    selector: objects::Selection,
    shape: Shape,
    /// The resource's cache indexes `spec.nodeName` (pods).
    index_nodes: bool,
    /// The node whose pods this watcher follows through the index.
    node: Option<String>,
}

impl Feed {
    /// Events from the shared watch cache: each line rendered once for all watchers.
    fn cached_lines(self, sub: Subscription, from: Revision) -> Lines {
        let replay = futures::stream::iter(sub.replay);
        let live = futures::stream::unfold(sub.live, |rx| async move { rx.recv().await.map(|c| (c, rx)) });
        replay
            .chain(live)
            .filter_map(move |change| {
                let in_scope = change.revision > from && self.namespace.as_deref().is_none_or(|ns| change.namespace == ns);
                let out = in_scope
                    .then(|| {
                        let (now, before) = change.selected_by(&self.selector, self.index_nodes);
                        match self.shape {
                            Shape::Object if !conversion::converts(self.resource) => change.line(now, before),
                            _ => {
                                let kind = change.event_type(now, before)?;
                                let obj = conversion::from_storage(self.resource, change.object()?.clone());
                                Some(line(kind, &self.shape.apply(obj)))
                            }
                        }
                    })
                    .flatten()
                    .map(|l| (change.revision, l));
                futures::future::ready(out)
            })
            .boxed()
    }

    /// The watch lines of a batch of events read from the store's history.
    fn history_lines(&self, events: Vec<crate::store::Event>) -> Vec<(Revision, bytes::Bytes)> {
        events
            .into_iter()
            .filter_map(|ev| {
                let (kind, kv) = match ev.kind {
                    EventKind::Put if ev.prev_kv.is_none() => ("ADDED", &ev.kv),
                    EventKind::Put => ("MODIFIED", &ev.kv),
                    EventKind::Delete => ("DELETED", ev.prev_kv.as_ref()?),
                };
                let mut obj = objects::decode_as(self.resource, kv).ok()?;
                if ev.kind == EventKind::Delete {
                    obj["metadata"]["resourceVersion"] = json!(ev.kv.mod_revision.to_string());
                }
                self.selector.matches(&obj).then(|| (ev.kv.mod_revision, line(kind, &self.shape.apply(obj))))
            })
            .collect()
    }
}

/// Where a catching-up watcher reads next.
enum Source {
    History(BoxStream<'static, Result<Vec<crate::store::Event>, StoreError>>, Feed),
    Cache(Lines),
}

/// A watcher resuming from a resourceVersion older than the watch cache holds: events from the
/// store's history (decoded for this watcher alone) until they reach what the cache covers,
/// then the cache's shared lines. `Err` carries the 410 ERROR line when that history is
/// compacted.
async fn catch_up(
    store: &SharedStore,
    scope: &Scope<'_>,
    feed: Feed,
    from: Revision,
    cache: Option<Arc<ResourceCache>>,
) -> Result<Result<Lines, bytes::Bytes>, ApiError> {
    let range = KeyRange::prefix(scope.resource.key_prefix(scope.namespace));
    let history = match store.watch(WatchRequest { range, start_revision: from + 1 }).await {
        Ok(w) => w,
        Err(e @ StoreError::Compacted { .. }) => {
            let status = ApiError::gone(format!("too old resource version: {from} ({e})")).to_status();
            return Ok(Err(line("ERROR", &status)));
        }
        Err(e) => return Err(e.into()),
    };
    let lines = futures::stream::unfold(Some(Source::History(history, feed)), move |source| {
        let cache = cache.clone();
        async move {
            match source? {
                Source::Cache(lines) => Some((lines, None)),
                Source::History(mut history, feed) => {
                    match history.next().await? {
                        Err(e) => Some((futures::stream::iter([(from, line("ERROR", &ApiError::from(e).to_status()))]).boxed(), None)),
                        Ok(events) => {
                            // Batches end at revision boundaries: everything up to `last` is sent.
                            let last = events.last().map(|e| e.kv.mod_revision);
                            let lines = futures::stream::iter(feed.history_lines(events)).boxed();
                            let handover =
                                last.zip(cache).and_then(|(last, cache)| Some((last, cache.subscribe(last, feed.node.clone())?)));
                            let next = match handover {
                                Some((last, sub)) => {
                                    tracing::debug!(
                                        from,
                                        caught_up_at = last,
                                        "watch caught up with the store's history; following the watch cache"
                                    );
                                    Source::Cache(feed.cached_lines(sub, last))
                                }
                                None => Source::History(history, feed),
                            };
                            Some((lines, Some(next)))
                        }
                    }
                }
            }
        }
    });
    Ok(Ok(lines.flatten().boxed()))
}

/// Interleaves BOOKMARK events carrying the revision of the last event sent.
fn with_bookmarks(lines: Lines, resource: &'static Resource, from: Revision) -> Lines {
    enum Item {
        Line(Revision, bytes::Bytes),
        Tick,
    }
    let ticks = tokio_stream_interval(BOOKMARK_INTERVAL).map(|_| Item::Tick);
    let merged = futures::stream::select(lines.map(|(rv, l)| Item::Line(rv, l)), ticks);
    let mut last = from;
    merged
        .map(move |item| match item {
            Item::Line(rv, bytes) => {
                last = last.max(rv);
                (rv, bytes)
            }
            Item::Tick => {
                let object = json!({ "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": { "resourceVersion": last.to_string() } });
                (last, line("BOOKMARK", &object))
            }
        })
        .boxed()
}

fn tokio_stream_interval(period: Duration) -> BoxStream<'static, ()> {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    futures::stream::poll_fn(move |cx| interval.poll_tick(cx).map(|_| Some(()))).boxed()
}

fn json_stream(body: Body) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(body)
        .expect("valid response")
}
