//! A node's resource figures on the kubelet port, as the kubelet serves them:
//! `/stats/summary` (the Summary API JSON the API server's `metrics.k8s.io` is built from) and
//! `/metrics/resource` (the same figures in Prometheus text). Where the figures come from is a
//! [`StatsSource`]: the real kubelet's cgroup sampler, or a hollow node's fixed usage. The
//! caller puts its authorisation in front of the routes.

mod prometheus;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use crate::k8s::stats::Summary;

/// Where a node's figures come from; asked once per request, so it must be cheap.
pub trait StatsSource: Send + Sync {
    fn summary(&self) -> Arc<Summary>;
}

/// The latest summary a sampler published.
impl StatsSource for watch::Receiver<Arc<Summary>> {
    fn summary(&self) -> Arc<Summary> {
        self.borrow().clone()
    }
}

/// `/stats/summary` and `/metrics/resource` over `source`.
pub fn router<S>(source: Arc<dyn StatsSource>) -> Router<S> {
    Router::new().route("/stats/summary", get(summary)).route("/metrics/resource", get(resource_metrics)).with_state(source)
}

async fn summary(State(source): State<Arc<dyn StatsSource>>) -> Json<Arc<Summary>> {
    Json(source.summary())
}

async fn resource_metrics(State(source): State<Arc<dyn StatsSource>>) -> Response {
    let text = prometheus::render(&source.summary());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
