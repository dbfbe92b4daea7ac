//! The node client's transport: sends each request to the API server in use, and moves to the
//! next one when that server cannot be reached (the request is then sent again: it never left),
//! does not answer in time, or answers 503. A watch that breaks with its server is taken up
//! again by kube's watcher through here, from its last resourceVersion (a 410 relists).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use kube::client::Body;

use super::ApiServers;

/// How long a request other than a watch may take before its server counts as failed. A server
/// that died without closing its connections is noticed sooner by HTTP/2 keep-alive pings.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/2 client underneath: TLS to any server the cluster CA signed.
pub type HyperClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service sending kube's requests to the API server in use.
#[derive(Clone)]
pub struct Failover {
    servers: ApiServers,
    http: HyperClient,
}

impl Failover {
    pub fn new(servers: ApiServers, http: HyperClient) -> Self {
        Self { servers, http }
    }
}

/// Whether `uri` asks for a watch (a long-running request without a deadline).
fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// `server` (e.g. `https://10.0.0.1:6443`) with the path and query of `uri`.
fn on_server(server: &str, uri: &Uri) -> Result<Uri, BoxError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("{server}{path}").parse()?)
}

/// One copy of `template` (whose body is kept as bytes) addressed to `server`.
fn copy_to(template: &Request<Body>, server: &str) -> Result<Request<Body>, BoxError> {
    let mut req = Request::builder().method(template.method().clone()).uri(on_server(server, template.uri())?).version(template.version());
    if let Some(headers) = req.headers_mut() {
        headers.extend(template.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(req.body(template.body().try_clone().ok_or("a streaming request body cannot be sent again")?)?)
}

impl Failover {
    async fn send(self, req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        let watch = is_watch(req.uri());
        // kube's request bodies are whole buffers, so each attempt gets its own copy.
        let (parts, body) = req.into_parts();
        let template = Request::from_parts(parts, Body::from(body.collect_bytes().await?));
        let attempts = self.servers.len();
        let mut attempt = 1;
        loop {
            let server = self.servers.current();
            let sent = self.http.request(copy_to(&template, &server)?);
            let answer = match watch {
                true => sent.await,
                false => match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        self.servers.failed(&server);
                        return Err(format!("{server} did not answer within {REQUEST_TIMEOUT:?}").into());
                    }
                },
            };
            match answer {
                Ok(resp) => {
                    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                        self.servers.failed(&server);
                    }
                    return Ok(resp);
                }
                // The request never reached the server: safe to send to the next one.
                Err(e) if e.is_connect() && attempt < attempts => {
                    tracing::debug!(%server, error = %e, "cannot connect to the API server; trying the next one");
                    self.servers.failed(&server);
                    attempt += 1;
                }
                Err(e) => {
                    self.servers.failed(&server);
                    return Err(e.into());
                }
            }
        }
    }
}

impl tower::Service<Request<Body>> for Failover {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_told_apart() {
        assert!(is_watch(&"/api/v1/pods?fieldSelector=a&watch=true&resourceVersion=5".parse().unwrap()));
        assert!(!is_watch(&"/api/v1/pods?watchx=true".parse().unwrap()));
        assert!(!is_watch(&"/api/v1/pods".parse().unwrap()));
    }

    #[test]
    fn requests_are_addressed_to_the_server_in_use() {
        let uri = on_server("https://10.0.0.2:6443", &"/api/v1/nodes/n1?x=1".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "https://10.0.0.2:6443/api/v1/nodes/n1?x=1");
    }
}
