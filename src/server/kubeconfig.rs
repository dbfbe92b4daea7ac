//! The admin kubeconfig `orch server` writes for kubectl: the cluster CA, the server URL and
//! the `system:admin` client certificate, embedded; written with a private file mode.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;

use crate::pki::{PemPair, PkiError};

pub fn render(server_url: &str, ca_pem: &str, admin: &PemPair) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "default", "user": {"client-certificate-data": b64(&admin.cert), "client-key-data": b64(&admin.key)}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("a JSON value always renders as YAML")
}

/// Writes the kubeconfig to `path` with permission bits `mode` (e.g. 0o600).
pub fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    crate::pki::write_private(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}
