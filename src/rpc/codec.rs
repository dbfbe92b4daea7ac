//! Binary bodies for node-to-node RPC (bincode), the length-prefixed framing of streams, and
//! the server-side helpers every bincode endpoint uses.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

use super::RpcError;

pub fn encode<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(bincode::serialize(v).expect("in-memory serialisation cannot fail"))
}

pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, RpcError> {
    bincode::deserialize(raw).map_err(|e| RpcError::Decode(e.to_string()))
}

/// A 200 reply carrying `v`.
pub fn reply<T: Serialize>(v: &T) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], encode(v)).into_response()
}

/// Decodes a request body, or answers 400 saying why it is unreadable.
pub fn request_body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, axum::response::Response> {
    use axum::response::IntoResponse;
    decode(raw).map_err(|e| (axum::http::StatusCode::BAD_REQUEST, format!("unreadable request body: {e}")).into_response())
}

/// Defines an axum handler `$name` that decodes a `$ty` body into `$req`, evaluates `$call`
/// with the state `$s`, and replies with its bincode encoding.
macro_rules! bincode_handler {
    ($name:ident, $state:ty, $ty:ty, |$s:ident, $req:ident| $call:expr) => {
        async fn $name(axum::extract::State($s): axum::extract::State<$state>, raw: axum::body::Bytes) -> axum::response::Response {
            match $crate::rpc::request_body::<$ty>(&raw) {
                Ok($req) => $crate::rpc::reply(&$call),
                Err(r) => r,
            }
        }
    };
}
pub(crate) use bincode_handler;

/// One frame of a stream: a big-endian u32 length, then the encoded value.
pub fn frame<T: Serialize>(v: &T) -> Bytes {
    let body = encode(v);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Splits complete frames off the front of `buf`, leaving a partial frame in place.
pub fn take_frame(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 4 {
        return None;
    }
    let len = (&buf[..4]).get_u32() as usize;
    if buf.len() < 4 + len {
        return None;
    }
    buf.advance(4);
    Some(buf.split_to(len).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_boundary() {
        let a = frame(&("hello".to_string(), 1u32));
        let b = frame(&vec![1u8, 2, 3]);
        let all = [a.clone(), b.clone()].concat();
        for cut in 0..all.len() {
            let mut buf = BytesMut::from(&all[..cut]);
            let mut got = Vec::new();
            while let Some(f) = take_frame(&mut buf) {
                got.push(f);
            }
            buf.extend_from_slice(&all[cut..]);
            while let Some(f) = take_frame(&mut buf) {
                got.push(f);
            }
            assert_eq!(got.len(), 2);
            assert_eq!(decode::<Vec<u8>>(&got[1]).unwrap(), vec![1, 2, 3]);
        }
    }
}
