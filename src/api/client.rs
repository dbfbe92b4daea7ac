//! The in-process client: a `kube::Client` whose transport is the API router itself (a tower
//! service, no socket, no TLS), carrying an identity of its own so that controllers inside the
//! server pass the same authentication, authorisation and admission as everyone else.

use axum::Router;
use tower::ServiceBuilder;

use crate::pki::{Identity, Peer};

/// A client of `router` acting as `identity`; `default_namespace` is used by namespaced
/// `Api::default_namespaced` calls.
pub fn in_process_client(router: Router, identity: Identity, default_namespace: &str) -> kube::Client {
    let peer = Peer(Some(identity));
    let service = ServiceBuilder::new()
        .map_request(move |request: http::Request<kube::client::Body>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(peer.clone());
            request
        })
        .service(router);
    kube::Client::new(service, default_namespace)
}
