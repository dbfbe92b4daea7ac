//! Owner-only directories: the data dir, the server's `server/` (CA key, token, the store
//! with every Secret) and the store's sled files get modes 0700 (dirs) and 0600 (files)
//! whatever the umask, and directories created by older versions are fixed at start.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by its owner only, and makes an existing one so.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes everything under `dir` owner-only: directories 0700, files 0600 (symlinks are left
/// alone, never followed).
pub fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700))?;
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o700 | 0o600))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn existing_trees_become_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("server/db")).unwrap();
        for d in ["", "server", "server/db"] {
            std::fs::set_permissions(data.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(data.join("server/db/conf"), "x").unwrap();
        std::fs::set_permissions(data.join("server/db/conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", data.join("server/link")).unwrap();
        private_dir(&data).unwrap();
        private_dir(&data.join("server")).unwrap();
        restrict_tree(&data.join("server")).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("server/db")), 0o700);
        assert_eq!(mode(&data.join("server/db/conf")), 0o600);
        assert_ne!(mode(Path::new("/etc/hostname")) & 0o044, 0, "a symlink's target is left alone");
        private_dir(&data.join("new/deeper")).unwrap();
        assert_eq!(mode(&data.join("new/deeper")), 0o700);
    }
}
