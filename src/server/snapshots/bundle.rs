//! The server's credentials carried inside a snapshot, so that a snapshot restores on a machine
//! that never ran this cluster (k3s keeps its bootstrap data in etcd for the same reason): the
//! CA and keys (`server/tls/`), the tokens and the encryption-at-rest keys (`server/cred/`),
//! sealed with AES-256-GCM under a key derived from the server token's secret (PBKDF2-SHA256),
//! so the snapshot file alone does not give the cluster away.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

const ITERATIONS: u32 = 100_000;
const SALT_LEN: usize = 16;

/// The files, relative to the data dir, that make a server of this cluster.
fn credential_files(data_dir: &Path) -> Vec<PathBuf> {
    let server = data_dir.join("server");
    let mut files = vec![server.join("token"), server.join("agent-token")];
    for dir in [server.join("tls"), server.join("cred")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn key(secret: &str, salt: &[u8]) -> LessSafeKey {
    let mut raw = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("nonzero"),
        salt,
        secret.as_bytes(),
        &mut raw,
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("a 32-byte key"))
}

/// The credential files of `data_dir`, sealed with `secret`: base64 of salt, nonce, ciphertext.
pub fn seal(data_dir: &Path, secret: &str) -> std::io::Result<String> {
    let mut files = BTreeMap::new();
    for path in credential_files(data_dir) {
        let relative = path.strip_prefix(data_dir).unwrap_or(&path).to_string_lossy().into_owned();
        files.insert(relative, B64.encode(std::fs::read(&path)?));
    }
    let mut plain = serde_json::to_vec(&files).map_err(std::io::Error::other)?;
    let (salt, nonce): ([u8; SALT_LEN], [u8; NONCE_LEN]) = (rand::random(), rand::random());
    key(secret, &salt)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut plain)
        .map_err(|_| std::io::Error::other("sealing the credentials"))?;
    Ok(B64.encode([&salt[..], &nonce[..], &plain[..]].concat()))
}

/// Writes the credentials sealed in `sealed` into `data_dir` (owner-only, durably). Fails
/// when `secret` is not the token the snapshot was taken with.
pub fn unseal_into(sealed: &str, secret: &str, data_dir: &Path) -> Result<usize, String> {
    let raw = B64.decode(sealed).map_err(|e| format!("the snapshot's credentials are not base64: {e}"))?;
    if raw.len() < SALT_LEN + NONCE_LEN {
        return Err("the snapshot's credentials are truncated".into());
    }
    let (salt, rest) = raw.split_at(SALT_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let mut buf = sealed.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let plain = key(secret, salt).open_in_place(nonce, Aad::empty(), &mut buf).map_err(|_| {
        "the token does not open this snapshot's credentials: give --token the server token of the cluster the snapshot was taken from"
            .to_string()
    })?;
    let files: BTreeMap<String, String> = serde_json::from_slice(plain).map_err(|e| format!("the snapshot's credentials: {e}"))?;
    for (relative, content) in &files {
        let path = data_dir.join(relative);
        if !path.starts_with(data_dir.join("server")) || relative.contains("..") {
            return Err(format!("the snapshot's credentials name a path outside the data dir: {relative}"));
        }
        let content = B64.decode(content).map_err(|e| format!("{relative}: {e}"))?;
        if let Some(parent) = path.parent() {
            crate::pki::private_dir(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        crate::pki::write_durably(&path, &content).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_only_with_the_token() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(from.path().join("server/tls")).unwrap();
        std::fs::write(from.path().join("server/tls/server-ca.key"), "KEY").unwrap();
        std::fs::write(from.path().join("server/token"), "K10x::server:s3cret\n").unwrap();
        let sealed = seal(from.path(), "s3cret").unwrap();
        assert!(!sealed.contains("KEY") && !String::from_utf8_lossy(&B64.decode(&sealed).unwrap()).contains("KEY"));
        assert!(unseal_into(&sealed, "wrong", to.path()).unwrap_err().contains("--token"));
        assert_eq!(unseal_into(&sealed, "s3cret", to.path()).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(to.path().join("server/tls/server-ca.key")).unwrap(), "KEY");
        assert_eq!(std::fs::read_to_string(to.path().join("server/token")).unwrap(), "K10x::server:s3cret\n");
    }
}
