//! The cluster CA: created once, kept as PEM in the data dir, and used to sign every leaf.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::PkiError;

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

impl PemPair {
    /// Reads `<stem>.crt` and `<stem>.key` from `dir`, if both exist.
    pub fn read(dir: &Path, stem: &str) -> Result<Option<Self>, PkiError> {
        let (c, k) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        if !c.exists() || !k.exists() {
            return Ok(None);
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| PkiError::Read { path: p.display().to_string(), source });
        Ok(Some(Self { cert: read(&c)?, key: read(&k)? }))
    }

    /// Writes `<stem>.crt` and `<stem>.key` (mode 600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), PkiError> {
        super::private_dir(dir).map_err(|source| PkiError::Write { path: dir.display().to_string(), source })?;
        write_private(&dir.join(format!("{stem}.key")), &self.key)?;
        write_private(&dir.join(format!("{stem}.crt")), &self.cert)
    }
}

/// Writes a file readable by its owner only, atomically and durably (see [`super::write_durably`]).
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    super::write_durably(path, contents.as_bytes()).map_err(|source| PkiError::Write { path: path.display().to_string(), source })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Default)]
pub struct CertSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

pub struct ClusterCa {
    pem: PemPair,
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn pem_err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Pem { what: what.to_string(), reason: e.to_string() }
}

impl ClusterCa {
    /// A new CA, valid for ten years.
    pub fn create(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity(10);
        let cert = params.self_signed(&key)?;
        let pem = PemPair { cert: cert.pem(), key: key.serialize_pem() };
        Ok(Self { pem, cert, key })
    }

    /// The CA from its PEM certificate and key (as stored, or as received by a joining server).
    pub fn from_pem(pem: PemPair) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&pem.key).map_err(pem_err("CA key"))?;
        let params = CertificateParams::from_ca_cert_pem(&pem.cert).map_err(pem_err("CA certificate"))?;
        // Re-signing the parsed parameters gives an issuer with the same name and key; leaves
        // it signs verify against the original certificate.
        let cert = params.self_signed(&key)?;
        Ok(Self { pem, cert, key })
    }

    /// Loads the CA stored in `dir`, or creates and stores a new one when neither its
    /// certificate nor its key is there (half a CA is an error, never replaced).
    pub fn load_or_create(dir: &Path, stem: &str, name: &str) -> Result<Self, PkiError> {
        if let Some(pem) = PemPair::read(dir, stem)? {
            return Self::from_pem(pem);
        }
        if ["crt", "key"].iter().any(|ext| dir.join(format!("{stem}.{ext}")).exists()) {
            return Err(PkiError::CaIncomplete(dir.join(stem).display().to_string()));
        }
        let ca = Self::create(name)?;
        ca.pem.write(dir, stem)?;
        Ok(ca)
    }

    pub fn pem(&self) -> &PemPair {
        &self.pem
    }

    /// Signs a new leaf certificate (with a fresh key), valid for one year.
    pub fn sign(&self, spec: &CertSpec) -> Result<PemPair, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, spec.common_name.as_str());
        for o in &spec.organizations {
            params.distinguished_name.push(DnType::OrganizationName, o.as_str());
        }
        for d in &spec.dns_names {
            params.subject_alt_names.push(SanType::DnsName(d.clone().try_into()?));
        }
        params.subject_alt_names.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if spec.server_auth {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client_auth {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        (params.not_before, params.not_after) = validity(1);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(PemPair { cert: cert.pem(), key: key.serialize_pem() })
    }
}

/// From an hour ago (tolerating clock skew between machines) to `years` from now.
fn validity(years: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::hours(1), now + time::Duration::days(365 * years))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn leaves_are_current_and_a_reloaded_ca_signs_verifiable_certificates() {
        let ca = ClusterCa::create("test").unwrap();
        let reloaded = ClusterCa::from_pem(ca.pem().clone()).unwrap();
        let leaf = reloaded
            .sign(&CertSpec { common_name: "x".into(), organizations: vec!["g".into()], client_auth: true, ..Default::default() })
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.validity().is_valid(), "leaf must be valid now: {:?}", cert.validity());
        let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().cert.as_bytes()).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).expect("a leaf of the reloaded CA verifies against the original");
        assert_eq!(crate::pki::Identity::from_der(&der).unwrap(), crate::pki::Identity { user: "x".into(), groups: vec!["g".into()] });
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), "ca", "test").unwrap();
        assert_eq!(ClusterCa::load_or_create(dir.path(), "ca", "test").unwrap().pem(), ca.pem(), "a stored CA is reused");
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = ClusterCa::load_or_create(dir.path(), "ca", "test").err().expect("a CA without its key must not be replaced");
        assert!(matches!(err, PkiError::CaIncomplete(_)), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(), ca.pem().cert, "the certificate is left alone");
    }
}
