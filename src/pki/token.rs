//! Join tokens, k3s's format: `K10<sha256 of the CA certificate PEM>::<user>:<secret>`. The
//! hash lets a joiner verify the server it first talks to; a bare secret is accepted too (then
//! the joiner cannot check the CA).

use sha2::{Digest, Sha256};

use super::PkiError;

/// SHA-256 of the CA certificate as served (PEM), in lowercase hex.
pub fn ca_hash(ca_pem: &str) -> String {
    hex(&Sha256::digest(ca_pem.as_bytes()))
}

/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is a bootstrap token `<6 chars>.<16 chars>` of `[a-z0-9]`.
pub fn is_bootstrap(s: &str) -> bool {
    let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.split_once('.').is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// A new agent-only bootstrap token for the cluster whose CA is `ca_pem`.
pub fn new_bootstrap(ca_pem: &str) -> JoinToken {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |n: usize| (0..n).map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char).collect::<String>();
    JoinToken { ca_hash: Some(ca_hash(ca_pem)), user: "node".into(), secret: format!("{}.{}", pick(6), pick(16)) }
}

/// Whether `a` equals `b`, in a time that depends only on their lengths (token and password
/// checks: the server's one comparison of secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The default agent token secret of a cluster whose server token secret is `server_secret`:
/// derived one way (SHA-256), so every server computes the same one and its holder learns
/// nothing of the server token.
pub fn derived_agent_secret(server_secret: &str) -> String {
    let digest = Sha256::digest(format!("orch agent token\0{server_secret}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A join token: `user` is `server` for the server token (joins servers and agents) or `node`
/// for an agent token (`node:<secret>`) or an agent-only bootstrap token (`<id>.<secret>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Expected CA hash, when the token carries one.
    pub ca_hash: Option<String>,
    pub user: String,
    pub secret: String,
}

impl JoinToken {
    /// The server token for a cluster whose CA is `ca_pem`.
    pub fn server(ca_pem: &str, secret: &str) -> Self {
        Self { ca_hash: Some(ca_hash(ca_pem)), user: "server".into(), secret: secret.into() }
    }

    /// The agent token for a cluster whose CA is `ca_pem`: it joins agents only.
    pub fn agent(ca_pem: &str, secret: &str) -> Self {
        Self { ca_hash: Some(ca_hash(ca_pem)), user: "node".into(), secret: secret.into() }
    }

    pub fn parse(raw: &str) -> Result<Self, PkiError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PkiError::Token("the token is empty".into()));
        }
        let Some(rest) = raw.strip_prefix("K10") else {
            return Ok(Self { ca_hash: None, user: "server".into(), secret: raw.into() });
        };
        let (hash, creds) = rest.split_once("::").ok_or_else(|| PkiError::Token("expected K10<ca-hash>::<user>:<secret>".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token("the CA hash after K10 must be 64 hex digits".into()));
        }
        if is_bootstrap(creds) {
            return Ok(Self { ca_hash: Some(hash.to_ascii_lowercase()), user: "node".into(), secret: creds.into() });
        }
        let (user, secret) =
            creds.split_once(':').ok_or_else(|| PkiError::Token("expected <user>:<secret> or <id>.<secret> after ::".into()))?;
        if user.is_empty() || secret.is_empty() {
            return Err(PkiError::Token("user and secret must not be empty".into()));
        }
        Ok(Self { ca_hash: Some(hash.to_ascii_lowercase()), user: user.into(), secret: secret.into() })
    }

    /// Whether `ca_pem` is the CA this token names (always true for a bare secret).
    pub fn matches_ca(&self, ca_pem: &str) -> bool {
        self.ca_hash.as_deref().is_none_or(|h| h == ca_hash(ca_pem))
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_hash {
            Some(h) if self.user == "node" && is_bootstrap(&self.secret) => write!(f, "K10{h}::{}", self.secret),
            Some(h) => write!(f, "K10{h}::{}:{}", self.user, self.secret),
            None => write!(f, "{}", self.secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_check_the_ca() {
        let t = JoinToken::server("CA PEM", "s3cret");
        let parsed = JoinToken::parse(&t.to_string()).unwrap();
        assert_eq!(parsed, t);
        assert!(parsed.matches_ca("CA PEM"));
        assert!(!parsed.matches_ca("OTHER CA"));
        assert!(JoinToken::parse("plain").unwrap().matches_ca("anything"));
    }

    #[test]
    fn bootstrap_tokens_round_trip() {
        let t = new_bootstrap("CA");
        assert!(is_bootstrap(&t.secret));
        assert_eq!(JoinToken::parse(&t.to_string()).unwrap(), t);
        assert!(t.to_string().contains("::") && !t.to_string().contains(":node:"));
    }

    #[test]
    fn agent_tokens_round_trip_and_differ_from_the_server_token() {
        let secret = derived_agent_secret("s3cret");
        assert_eq!(secret.len(), 32);
        assert_ne!(secret, derived_agent_secret("other"));
        let t = JoinToken::agent("CA", &secret);
        assert!(t.to_string().contains("::node:"));
        assert_eq!(JoinToken::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn malformed_tokens_are_explained() {
        for bad in ["", "K10abc::server:x", &format!("K10{}server:x", "a".repeat(64)), &format!("K10{}::server:", "a".repeat(64))] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
