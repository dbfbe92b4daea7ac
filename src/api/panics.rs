//! kube-apiserver's panic recovery: a panic while serving a request answers that request 500
//! ("This request caused apiserver to panic. Look in the logs for details.") and the server
//! carries on. The release build unwinds so that such a panic can be caught; the hook keeps
//! every other panic (raft, controllers, the kubelet) fatal there, as `panic = "abort"` was.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use super::status::ApiError;

tokio::task_local! {
    /// Set while a request handler runs.
    static SERVING: ();
}

/// Makes a panic outside a request handler end the process in release builds (debug builds
/// and tests keep Rust's default: the panicking task ends).
pub fn install_hook() {
    if cfg!(debug_assertions) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if SERVING.try_with(|_| ()).is_err() {
            std::process::abort();
        }
    }));
}

/// Runs a request handler, answering 500 if it panics.
pub async fn recover(handler: impl Future<Output = Response>) -> Response {
    match AssertUnwindSafe(SERVING.scope((), handler)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("a request handler panicked; answered 500");
            ApiError::internal("This request caused apiserver to panic. Look in the logs for details.").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let answer = recover(async { panic!("boom") }).await;
        assert_eq!(answer.status().as_u16(), 500);
        let answer = recover(async { "fine".into_response() }).await;
        assert_eq!(answer.status().as_u16(), 200);
    }
}
