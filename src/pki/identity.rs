//! Who a client certificate says its holder is: CN = user name, O = groups (Kubernetes' rule).

use x509_parser::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// Reads the subject of a DER certificate already verified by the TLS layer.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
        Some(Self { user, groups })
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The identity of a request's verified TLS client certificate (`None`: no certificate),
/// attached to every request by the server's accept loop.
#[derive(Debug, Clone)]
pub struct Peer(pub Option<Identity>);
