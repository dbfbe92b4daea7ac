//! Pieces the workload controllers share, as kube-controller-manager's `controller` package:
//! selectors, hashes, owner references and adoption, pods from templates, pod state and
//! delete ranking, expectations, the reflected pod stream, ControllerRevisions, and the retry
//! back-off of failed reconciles.

pub mod backoff;
pub mod batch;
pub mod events;
pub mod expectations;
pub mod hash;
pub mod intstr;
pub mod owner;
pub mod pods;
pub mod revision;
pub mod selector;
pub mod template;
pub mod watch;

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{0}")]
    Conflict(String),
}

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A read or write whose object may be gone: `None` for a 404.
pub fn ok_if_gone<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an API error is a 409.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The current time as Kubernetes writes it (for tests' object timestamps).
#[cfg(test)]
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    crate::k8s::time::now()
}
