//! Image references as Docker normalises them: `busybox` is `docker.io/library/busybox:latest`,
//! `localhost:5000/app` is on the registry `localhost:5000`, `app@sha256:…` names a digest.

use std::fmt;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// An image reference that does not parse, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {why}")]
pub struct ReferenceError {
    reference: String,
    why: &'static str,
}

impl Reference {
    /// Parses `s`, filling in `docker.io`, `library/` and `:latest` as Docker does.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let bad = |why| ReferenceError { reference: s.to_string(), why };
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_ascii_uppercase() && !s.contains('@')) {
            return Err(bad("empty, or contains spaces or upper-case letters"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) if d.starts_with("sha256:") && d.len() == 71 => (n, Some(d.to_string())),
            Some(_) => return Err(bad("the digest must be sha256:<64 hex digits>")),
            None => (s, None),
        };
        let (name, tag) = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if repository.is_empty() || repository.split('/').any(|c| c.is_empty()) {
            return Err(bad("empty path component"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Self { registry, repository, tag, digest })
    }

    /// Tag or digest as the registry API's `<reference>` (the digest wins).
    pub fn api_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The normalised form of `s`, or `s` itself when it does not parse.
pub fn normalize(s: &str) -> String {
    Reference::parse(s).map(|r| r.to_string()).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("registry.example/a/b:v1"), "registry.example/a/b:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref(), r.api_reference()), (None, Some(d.as_str()), d.as_str()));
        let r = Reference::parse("127.0.0.1:5000/x/y:t").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.api_reference()), ("127.0.0.1:5000", "x/y", "t"));
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("Busybox").is_err());
        assert!(Reference::parse("a@md5:1").is_err());
        assert!(Reference::parse("a//b").is_err());
    }
}
