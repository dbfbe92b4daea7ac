//! Pulls over the Docker Registry HTTP API v2 (containerd 1.6 has no transfer service, so
//! orch fetches): the manifest (an index resolves to linux/<arch>), then config and layers
//! streamed into the content store with their digests checked, then unpack. Endpoints come from
//! registries.yaml (mirrors first); auth is anonymous, Basic, or a Bearer token fetched from
//! the realm the registry's `WWW-Authenticate` names. Errors carry the registry's message.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use super::manifest::{self, Descriptor, Index, Manifest};
use super::reference::Reference;
use super::registries::Registries;
use super::{content, store};
use crate::node::runtime::client::Client;
use crate::node::runtime::{ImageInfo, RegistryAuth, Result, RuntimeError};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Pulls `image` (normalised) and records it; `auth` (from imagePullSecrets) wins over
/// registries.yaml's credentials.
pub async fn pull(client: &Client, registries: &Registries, image: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
    let reference = Reference::parse(image)?;
    let mut errors = Vec::new();
    for endpoint in registries.endpoints(&reference.registry) {
        let creds = auth.cloned().or_else(|| registries.auth_for(&endpoint));
        let session = Session::new(&endpoint, &reference, creds, registries.ca_file_for(&endpoint))?;
        tracing::info!(%image, %endpoint, "pulling image");
        let leased = client.with_lease(Duration::from_secs(3600)).await?;
        let result = session.pull(&leased, image).await;
        leased.end_lease().await;
        match result {
            Ok(info) => return Ok(info),
            Err(e) => {
                tracing::warn!(%image, %endpoint, error = %e, "pull failed");
                errors.push(e);
            }
        }
    }
    let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
    Err(RuntimeError::Image { image: image.to_string(), message: format!("pull failed: {message}") })
}

/// The TLS settings of a registry client: the system's roots plus an extra CA file.
fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = crate::pki::system_roots();
    if let Some(file) = ca_file {
        let certs =
            CertificateDer::pem_file_iter(file).map_err(|_| RuntimeError::Invalid(format!("cannot read the registry CA file {file}")))?;
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
    }
    crate::pki::roots_client_config(roots).map_err(|e| RuntimeError::Invalid(e.to_string()))
}

/// One endpoint and repository, with the token it earned.
struct Session {
    http: HyperClient<Https, Full<Bytes>>,
    base: String,
    repository: String,
    reference: String,
    auth: Option<RegistryAuth>,
    token: tokio::sync::Mutex<Option<String>>,
}

impl Session {
    fn new(endpoint: &str, r: &Reference, auth: Option<RegistryAuth>, ca_file: Option<&str>) -> Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            base: endpoint.to_string(),
            repository: r.repository.clone(),
            reference: r.api_reference().to_string(),
            auth,
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        let a = self.auth.as_ref()?;
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", a.username, a.password))))
    }

    /// GET `url`, answering one auth challenge; returns the response on 2xx.
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<http::Response<hyper::body::Incoming>> {
        let mut challenged = false;
        let mut url = url.to_string();
        for _ in 0..6 {
            let mut req = Request::get(&url);
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            let same_host = url.starts_with(&self.base);
            if let Some(t) = self.token.lock().await.clone().filter(|_| same_host) {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            } else if let Some(b) = self.basic().filter(|_| same_host && challenged) {
                req = req.header(header::AUTHORIZATION, b);
            }
            let req = req.body(Full::default()).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
                .await
                .map_err(|_| self.error(format!("GET {url}: timed out")))?
                .map_err(|e| self.error(format!("GET {url}: {e}")))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status.is_redirection() {
                let location = resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or_default();
                url = if location.starts_with('/') { format!("{}{location}", self.base) } else { location.to_string() };
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
                if challenge.to_ascii_lowercase().starts_with("bearer") {
                    let token = self.fetch_token(&challenge).await?;
                    *self.token.lock().await = Some(token);
                }
                continue;
            }
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(self.error(format!("GET {url}: {status}: {}", registry_message(&body))));
        }
        Err(self.error(format!("GET {url}: too many redirects or auth rounds")))
    }

    /// Fetches a Bearer token from the challenge's realm (with Basic credentials if any).
    async fn fetch_token(&self, challenge: &str) -> Result<String> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| self.error(format!("no realm in the auth challenge {challenge:?}")))?;
        let mut query = vec![];
        if let Some(s) = params.get("service") {
            query.push(format!("service={}", urlencode(s)));
        }
        let scope = params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        query.push(format!("scope={}", urlencode(&scope)));
        let url = format!("{realm}?{}", query.join("&"));
        let mut req = Request::get(&url);
        if let Some(b) = self.basic() {
            req = req.header(header::AUTHORIZATION, b);
        }
        let req = req.body(Full::default()).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| self.error(format!("token {realm}: timed out")))?
            .map_err(|e| self.error(format!("token {realm}: {e}")))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if !status.is_success() {
            return Err(self.error(format!("token {realm}: {status}: {}", registry_message(&body))));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| self.error(format!("token {realm}: no token in the answer")))
    }

    fn error(&self, message: String) -> RuntimeError {
        RuntimeError::Invalid(format!("{}: {message}", self.base))
    }

    /// A whole document (manifest or index) and its descriptor.
    async fn document(&self, reference: &str) -> Result<(Descriptor, Vec<u8>)> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let resp = self.get(&url, Some(ACCEPT)).await?;
        let media_type = resp.headers().get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.into_body().collect().await.map_err(|e| self.error(format!("GET {url}: {e}")))?.to_bytes().to_vec();
        let digest = manifest::sha256_digest(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(self.error(format!("{url} has digest {digest}")));
        }
        let media_type =
            if manifest::is_index(&media_type) || manifest::is_manifest(&media_type) { media_type } else { store::sniff_media_type(&body) };
        Ok((Descriptor { media_type, digest, size: body.len() as i64, ..Default::default() }, body))
    }

    async fn pull(&self, client: &Client, image: &str) -> Result<ImageInfo> {
        let (target, body) = self.document(&self.reference).await?;
        let manifest_body = if manifest::is_index(&target.media_type) {
            let index: Index = serde_json::from_slice(&body).map_err(|e| self.error(format!("bad index: {e}")))?;
            let picked = manifest::pick_platform(&index)
                .ok_or_else(|| self.error(format!("no manifest for linux/{} in the index", crate::host::kube_arch())))?;
            let (_, bytes) = self.document(&picked.digest).await?;
            content::write_bytes(client, body, content::index_labels(&index)).await?;
            bytes
        } else {
            body
        };
        let m: Manifest = serde_json::from_slice(&manifest_body).map_err(|e| self.error(format!("bad manifest: {e}")))?;
        let total = m.layers.len() + 1;
        for (i, blob) in std::iter::once(&m.config).chain(&m.layers).enumerate() {
            if content::exists(client, &blob.digest).await? {
                continue;
            }
            tracing::info!(%image, blob = %blob.digest, bytes = blob.size, n = i + 1, of = total, "fetching blob");
            self.fetch_blob(client, &blob.digest).await?;
        }
        content::write_bytes(client, manifest_body, content::manifest_labels(&m)).await?;
        Ok(store::register(client, image, &target, false).await?.info())
    }

    /// Streams one blob into the content store (containerd checks the digest at commit).
    async fn fetch_blob(&self, client: &Client, digest: &str) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let mut body = self.get(&url, None).await?.into_body();
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let copy = tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return false };
                if let Some(data) = frame.data_ref() {
                    if writer.write_all(data).await.is_err() {
                        return false;
                    }
                }
            }
            true
        });
        let written = content::write(client, reader, Some(digest), HashMap::new()).await;
        let complete = copy.await.unwrap_or(false);
        match written {
            Err(e) if !complete => Err(self.error(format!("GET {url}: the download broke off ({e})"))),
            other => other.map(|_| ()),
        }
    }
}

/// The `message` of a registry's JSON error body (else the body's text).
fn registry_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let messages: Vec<String> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} ({})", e["message"].as_str().unwrap_or(""), e["code"].as_str().unwrap_or("")))
        .collect();
    if messages.is_empty() {
        String::from_utf8_lossy(body).trim().chars().take(300).collect()
    } else {
        messages.join(", ")
    }
}

/// `Bearer realm="…",service="…",scope="…"` → its parameters.
fn parse_challenge(challenge: &str) -> HashMap<String, String> {
    let rest = challenge.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().skip_while(|c| *c == ',' || c.is_whitespace()).take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v = chars.by_ref().take_while(|c| *c != '"').collect();
            chars.next_if_eq(&',');
            v
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        assert_eq!(urlencode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn registry_errors_keep_their_message() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(registry_message(body), "manifest unknown (MANIFEST_UNKNOWN)");
        assert_eq!(registry_message(b"plain text\n"), "plain text");
    }
}
