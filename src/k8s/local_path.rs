//! The names of k3s's local-path volumes, shared by the provisioner (which names them) and the
//! kubelet (which removes only directories named so): the provisioner's name, the volume
//! `pvc-<claim uid>`, its directory `<storage path>/pvc-<uid>_<namespace>_<claim>`, and the
//! kubelet route that removes such a directory.

use std::path::Path;

/// The provisioner name StorageClasses use.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The kubelet API route that removes a local-path volume's directory (`?path=`).
pub const KUBELET_REMOVE_ROUTE: &str = "/localPath";

/// A claim's volume name (kube's provisioning controller's naming).
pub fn volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// A volume's directory under `root` (local-path-provisioner's naming).
pub fn directory(root: &Path, volume: &str, namespace: &str, claim: &str) -> String {
    root.join(format!("{volume}_{namespace}_{claim}")).to_string_lossy().into_owned()
}

/// Whether a directory name is one the provisioner makes (`pvc-<uid>_<namespace>_<claim>`
/// with DNS names: no `/`, no `..`).
pub fn is_volume_directory(name: &str) -> bool {
    let mut parts = name.splitn(3, '_');
    let (Some(volume), Some(ns), Some(claim)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let dns = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    volume.strip_prefix("pvc-").is_some_and(dns) && dns(ns) && dns(claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_which_directories_are_volumes() {
        let dir = directory(Path::new("/var/lib/orch/storage"), &volume_name("1234-ab"), "web", "data");
        assert_eq!(dir, "/var/lib/orch/storage/pvc-1234-ab_web_data");
        assert!(is_volume_directory("pvc-1234-ab_web_data"));
        for bad in ["pvc-1_web", "x-1_web_data", "pvc-1_web_..", "pvc-1_we/b_data", "pvc-_web_data", "pvc-1_web_.x", "pvc-1_web_a_b"] {
            assert!(!is_volume_directory(bad), "{bad}");
        }
    }
}
