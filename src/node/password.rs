//! The node password in `<data-dir>/agent/node-password` (k3s keeps it in
//! /etc/rancher/node/password): created on first use, it proves this machine owns its node
//! name on later joins.

use std::path::Path;

use super::NodeError;

/// The node password of this data dir, created on first use.
pub fn node_password(data_dir: &Path) -> Result<String, NodeError> {
    let path = data_dir.join("agent").join("node-password");
    let io = |source| NodeError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(p) if p.trim().len() >= 8 => return Ok(p.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let password: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    std::fs::create_dir_all(path.parent().expect("a file in a dir")).map_err(io)?;
    crate::pki::write_private(&path, &password)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_password_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_password(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(node_password(dir.path()).unwrap(), first);
    }
}
