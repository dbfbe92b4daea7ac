//! [`RemoteStore`]: a [`Store`] reached over the `/store/*` RPC of a node.

use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use serde::{de::DeserializeOwned, Serialize};

use super::client::{HttpClient, RpcError};
use super::codec::{decode, encode, take_frame};
use crate::store::*;

/// How long one unary store call may take before it fails as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct RemoteStore {
    base: String,
    http: HttpClient,
}

impl RemoteStore {
    /// A client of the node at `base` (e.g. `https://127.0.0.1:6443`) over `http`, whose TLS
    /// identity must be an orch server or in `system:masters`.
    pub fn new(base: impl Into<String>, http: HttpClient) -> Self {
        Self { base: base.into().trim_end_matches('/').to_string(), http }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(&self, path: &str, req: &Req) -> Result<Resp, StoreError> {
        let url = format!("{}{path}", self.base);
        let result: Result<Resp, StoreError> = self.http.call(&url, req, CALL_TIMEOUT).await.map_err(unavailable)?;
        result
    }
}

fn unavailable(e: RpcError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl Store for RemoteStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.call("/store/range", &req).await
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.call("/store/txn", &req).await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError> {
        let url = format!("{}/store/watch", self.base);
        let http_req = http::Request::post(&url).body(Full::new(encode(&req))).map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
        let resp = self.http.send(http_req, CALL_TIMEOUT).await.map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(StoreError::Unavailable(format!("{url} answered HTTP {}", resp.status())));
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        // The first frame says whether the watch started.
        let first = loop {
            if let Some(f) = take_frame(&mut buf) {
                break f;
            }
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                _ => return Err(StoreError::Unavailable(format!("{url} closed the watch before it started"))),
            }
        };
        decode::<Result<Vec<Event>, StoreError>>(&first).map_err(unavailable)??;
        let stream = futures::stream::unfold(Some((body, buf)), |state| async move {
            let (mut body, mut buf) = state?;
            loop {
                if let Some(f) = take_frame(&mut buf) {
                    let item = decode::<Result<Vec<Event>, StoreError>>(&f).map_err(unavailable).and_then(|r| r);
                    let done = item.is_err();
                    return Some((item, if done { None } else { Some((body, buf)) }));
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => return Some((Err(StoreError::Unavailable(format!("watch stream broke: {e}"))), None)),
                    None => return Some((Err(StoreError::Unavailable("watch stream ended".into())), None)),
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.call("/store/compact", &revision).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.call("/store/revision", &()).await
    }
}
