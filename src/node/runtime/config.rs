//! The layout and config file of the containerd that orch runs for a node:
//! `<data-dir>/agent/containerd/{config.toml, root/, state/, containerd.sock}` (config version 2,
//! as containerd 1.6 reads it; overlayfs snapshots; no CRI plugin, orch speaks the native API).

use std::path::{Path, PathBuf};

use super::{Result, RuntimeError};

/// Where the supervised containerd keeps everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdPaths {
    pub dir: PathBuf,
}

impl ContainerdPaths {
    /// The paths under `<data_dir>/agent/containerd`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("agent").join("containerd") }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// FIFOs for container and exec output.
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// The config file's text.
    pub fn config_toml(&self) -> String {
        let q = |p: PathBuf| toml_string(&p.display().to_string());
        format!(
            "# Written by orch on every start; edits are overwritten.\n\
             version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             \n\
             [grpc]\n  address = {sock}\n\
             \n\
             [ttrpc]\n  address = {ttrpc}\n\
             \n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
            root = q(self.dir.join("root")),
            state = q(self.dir.join("state")),
            sock = q(self.socket()),
            ttrpc = q(self.dir.join("containerd.sock.ttrpc")),
            opt = q(self.dir.join("opt")),
        )
    }

    /// Creates the directories and writes the config file.
    pub fn write_config(&self) -> Result<()> {
        for d in [self.dir.clone(), self.dir.join("root"), self.dir.join("state"), self.fifo_dir()] {
            std::fs::create_dir_all(&d).map_err(RuntimeError::io(d.display()))?;
        }
        let path = self.config();
        std::fs::write(&path, self.config_toml()).map_err(RuntimeError::io(path.display()))
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_points_everything_into_the_data_dir() {
        let paths = ContainerdPaths::for_data_dir(Path::new("/var/lib/orch"));
        let toml = paths.config_toml();
        assert!(toml.contains("version = 2\n"));
        assert!(toml.contains("root = \"/var/lib/orch/agent/containerd/root\""));
        assert!(toml.contains("state = \"/var/lib/orch/agent/containerd/state\""));
        assert!(toml.contains("address = \"/var/lib/orch/agent/containerd/containerd.sock\""));
        assert!(toml.contains("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"));
        assert_eq!(toml_string("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
