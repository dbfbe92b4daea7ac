//! When certificates expire: read from PEM, for renewal at start (leaves with less than
//! [`RENEW_BEFORE`] left are signed again), the 30-day warning, and `orch certificate check`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use x509_parser::prelude::*;

/// Leaves are renewed when less than this is left (k3s: 90 days).
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Anything expiring within this is warned about at start.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// One certificate's subject and end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub common_name: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub is_ca: bool,
}

impl Expiry {
    /// The first certificate of a PEM text.
    pub fn of_pem(pem: &str) -> Option<Self> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        let (_, cert) = X509Certificate::from_der(&block.contents).ok()?;
        let common_name = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_string();
        Some(Self { common_name, not_after: cert.validity().not_after.timestamp(), is_ca: cert.is_ca() })
    }

    /// Time left from `now` (seconds since the epoch); negative once expired.
    pub fn left(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// Whether less than `within` is left at `now`.
    pub fn within(&self, within: Duration, now: i64) -> bool {
        self.left(now) < within.as_secs() as i64
    }
}

/// Seconds since the Unix epoch now.
pub fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Every `*.crt` below `dir` with its expiry (unreadable ones skipped), sorted by path.
pub fn certificates_under(dir: &Path) -> Vec<(PathBuf, Expiry)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "crt") {
                if let Some(e) = std::fs::read_to_string(&path).ok().as_deref().and_then(Expiry::of_pem) {
                    out.push((path, e));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Logs a warning for every certificate below `dir` that expires within [`WARN_BEFORE`].
pub fn warn_expiring(dir: &Path) {
    let now = now();
    for (path, e) in certificates_under(dir) {
        if e.within(WARN_BEFORE, now) {
            let days = e.left(now) / 86_400;
            tracing::warn!(certificate = %path.display(), subject = %e.common_name, days_left = days, "certificate expires soon; `orch certificate rotate` (or a restart, for leaves) renews it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertSpec, ClusterCa};

    #[test]
    fn a_fresh_leaf_has_a_year_and_is_not_due() {
        let ca = ClusterCa::create("test-ca").unwrap();
        let leaf = ca.sign(&CertSpec { common_name: "system:admin".into(), client_auth: true, ..Default::default() }).unwrap();
        let e = Expiry::of_pem(&leaf.cert).unwrap();
        assert_eq!(e.common_name, "system:admin");
        assert!(!e.is_ca);
        let now = now();
        assert!((364 * 86_400..=366 * 86_400).contains(&e.left(now)), "{}", e.left(now));
        assert!(!e.within(RENEW_BEFORE, now));
        assert!(e.within(RENEW_BEFORE, now + 300 * 86_400), "due 65 days before the end");
        assert!(Expiry::of_pem(&ca.pem().cert).unwrap().is_ca);
        assert_eq!(Expiry::of_pem("not a certificate"), None);
    }

    #[test]
    fn certificates_are_found_below_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create("test-ca").unwrap();
        std::fs::create_dir_all(dir.path().join("server/tls")).unwrap();
        std::fs::write(dir.path().join("server/tls/ca.crt"), &ca.pem().cert).unwrap();
        std::fs::write(dir.path().join("server/tls/junk.crt"), "junk").unwrap();
        std::fs::write(dir.path().join("server/tls/ca.key"), &ca.pem().key).unwrap();
        let found = certificates_under(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.common_name, "test-ca");
    }
}
