//! The Kubernetes remote command protocols (`channel.k8s.io` v1 to v5): the streams of an
//! exec or attach session — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize — framed over a
//! WebSocket as messages whose first byte is the channel (v5 adds 255: "close channel N"), or
//! carried as SPDY streams named by their `streamType` header. The error stream ends a
//! session: a `metav1.Status` from v4 on, plain text before.

use serde_json::json;

use crate::node::runtime::TermSize;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: the client closed the channel in the next byte.
pub const CLOSE: u8 = 255;

/// A protocol version, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

/// WebSocket subprotocols served, best first.
pub const WEBSOCKET_PROTOCOLS: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
/// SPDY stream protocols served (v5 is WebSocket only).
pub const SPDY_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

impl Version {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "v5.channel.k8s.io" => Version::V5,
            "v4.channel.k8s.io" => Version::V4,
            "v3.channel.k8s.io" => Version::V3,
            "v2.channel.k8s.io" => Version::V2,
            "channel.k8s.io" => Version::V1,
            _ => return None,
        })
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The exec'd command exited with this non-zero code.
    ExitCode(i32),
    /// The session could not run (or broke).
    Error(String),
}

impl Outcome {
    /// An exec's outcome from its process's exit code.
    pub fn of_exit(code: i32) -> Self {
        if code == 0 {
            Outcome::Success
        } else {
            Outcome::ExitCode(code)
        }
    }

    /// What is written on the error stream (`None`: nothing, for success before v4).
    pub fn error_payload(&self, version: Version) -> Option<Vec<u8>> {
        let message = match self {
            Outcome::Success => None,
            Outcome::ExitCode(code) => Some(format!("command terminated with non-zero exit code: exit status {code}")),
            Outcome::Error(e) => Some(e.clone()),
        };
        if version < Version::V4 {
            return message.map(String::into_bytes);
        }
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
        if let Some(message) = message {
            status["status"] = json!("Failure");
            status["message"] = json!(message);
            if let Outcome::ExitCode(code) = self {
                status["reason"] = json!("NonZeroExitCode");
                status["details"] = json!({"causes": [{"reason": "ExitCode", "message": code.to_string()}]});
            }
        }
        Some(status.to_string().into_bytes())
    }
}

/// A WebSocket message on `channel`.
pub fn message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The channel and payload of a WebSocket message (`None` for an empty one).
pub fn parse(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(c, rest)| (*c, rest))
}

/// Terminal sizes in a resize stream's bytes: JSON objects one after another (SPDY), or one per
/// message (WebSocket). Complete ones are taken from `pending`; a partial one stays.
pub fn resizes(pending: &mut Vec<u8>) -> Vec<TermSize> {
    let mut sizes = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(pending).into_iter::<TermSize>();
    let mut used = 0;
    loop {
        match stream.next() {
            Some(Ok(size)) => {
                sizes.push(size);
                used = stream.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                used = pending.len();
                break;
            }
            None => {
                used = pending.len();
                break;
            }
        }
    }
    pending.drain(..used);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_payloads_by_version() {
        let ok: serde_json::Value = serde_json::from_slice(&Outcome::Success.error_payload(Version::V4).unwrap()).unwrap();
        assert_eq!(ok["status"], "Success");
        assert_eq!(Outcome::Success.error_payload(Version::V3), None);
        let failed: serde_json::Value = serde_json::from_slice(&Outcome::of_exit(3).error_payload(Version::V5).unwrap()).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let text = Outcome::Error("container not found".into()).error_payload(Version::V2).unwrap();
        assert_eq!(text, b"container not found");
        assert_eq!(Outcome::of_exit(0), Outcome::Success);
    }

    #[test]
    fn messages_carry_their_channel() {
        assert_eq!(message(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(parse(b"\x00input"), Some((STDIN, &b"input"[..])));
        assert_eq!(parse(&[CLOSE, STDIN]), Some((CLOSE, &[STDIN][..])));
        assert_eq!(parse(b""), None);
        assert_eq!(Version::from_name("v5.channel.k8s.io"), Some(Version::V5));
        assert!(Version::V5 > Version::V4 && Version::from_name("base64.channel.k8s.io").is_none());
        assert!(WEBSOCKET_PROTOCOLS.iter().chain(SPDY_PROTOCOLS).all(|p| Version::from_name(p).is_some()));
    }

    #[test]
    fn resize_objects_are_taken_as_they_complete() {
        let mut pending = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        assert_eq!(resizes(&mut pending), [TermSize { width: 80, height: 24 }]);
        pending.extend_from_slice(br#""Height":40}"#);
        assert_eq!(resizes(&mut pending), [TermSize { width: 100, height: 40 }]);
        assert!(pending.is_empty());
        pending.extend_from_slice(b"garbage");
        assert!(resizes(&mut pending).is_empty() && pending.is_empty());
    }
}
