//! `orch kubectl`, `orch ctr` and `orch crictl` (k3s's multicall wrappers): each runs the
//! system's program pointed at this orch — kubectl at the admin kubeconfig when the user has
//! none, ctr at orch's containerd socket and namespace. The binary behaves the same when it
//! is invoked as `kubectl`, `ctr` or `crictl` through a symlink (what `install.sh` makes).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::node::runtime::config::ContainerdPaths;
use crate::node::runtime::supervisor::is_executable;

/// A program orch wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Kubectl,
    Ctr,
    Crictl,
}

impl Tool {
    /// The wrapper a binary invoked as `argv0` is (its file name), if any.
    pub fn invoked_as(argv0: &std::ffi::OsStr) -> Option<Tool> {
        match Path::new(argv0).file_name()?.to_str()? {
            "kubectl" => Some(Tool::Kubectl),
            "ctr" => Some(Tool::Ctr),
            "crictl" => Some(Tool::Crictl),
            _ => None,
        }
    }

    fn program(self) -> &'static str {
        match self {
            Tool::Kubectl => "kubectl",
            Tool::Ctr => "ctr",
            Tool::Crictl => "crictl",
        }
    }

    /// The Debian package that has the program.
    fn package(self) -> &'static str {
        match self {
            Tool::Kubectl => "kubectl",
            Tool::Ctr => "containerd",
            Tool::Crictl => "cri-tools",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error("{program} is not installed (install the {package} package); orch runs the system's {program}")]
    Missing { program: &'static str, package: &'static str },
    #[error("orch's containerd serves no CRI (the kubelet uses containerd's own API), so crictl cannot talk to it; use `orch ctr` (namespace `orch`) or `orch images`")]
    NoCri,
    #[error("cannot run {program}: {source}")]
    Exec { program: String, source: std::io::Error },
}

/// `name` in the directories of `path`, skipping `myself` (a symlink to orch named like the
/// program must not run orch again).
fn find_program(name: &str, path: &str, myself: Option<&Path>) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| is_executable(p) && (myself.is_none() || std::fs::canonicalize(p).ok().as_deref() != myself))
}

/// The kubeconfig to give kubectl: none when the user has one (`KUBECONFIG` or
/// `~/.kube/config`), else orch's admin kubeconfig when it exists.
fn kubeconfig_for(data_dir: &Path, kubeconfig_env: Option<OsString>, home: Option<PathBuf>) -> Option<PathBuf> {
    if kubeconfig_env.is_some_and(|k| !k.is_empty()) || home.is_some_and(|h| h.join(".kube/config").exists()) {
        return None;
    }
    [data_dir.join("orch.yaml"), PathBuf::from("/etc/orch/orch.yaml")].into_iter().find(|p| p.exists())
}

/// Runs `tool` with `args` in place of this process; returns only on failure.
pub fn exec(tool: Tool, data_dir: &Path, args: Vec<OsString>) -> WrapperError {
    if tool == Tool::Crictl {
        return WrapperError::NoCri;
    }
    let myself = std::env::current_exe().ok().and_then(|e| std::fs::canonicalize(e).ok());
    let path = std::env::var("PATH").unwrap_or_default();
    let Some(program) = find_program(tool.program(), &path, myself.as_deref()) else {
        return WrapperError::Missing { program: tool.program(), package: tool.package() };
    };
    let mut command = std::process::Command::new(&program);
    command.arg0(tool.program()).args(args);
    match tool {
        Tool::Kubectl => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            if let Some(kubeconfig) = kubeconfig_for(data_dir, std::env::var_os("KUBECONFIG"), home) {
                command.env("KUBECONFIG", kubeconfig);
            }
        }
        Tool::Ctr => {
            // ctr reads these; its own --address/--namespace flags still win.
            let socket = ContainerdPaths::for_data_dir(data_dir).socket();
            command.env("CONTAINERD_ADDRESS", socket).env("CONTAINERD_NAMESPACE", crate::node::runtime::NAMESPACE);
        }
        Tool::Crictl => unreachable!("answered above"),
    }
    let source = command.exec();
    WrapperError::Exec { program: program.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_names_select_the_wrapper() {
        assert_eq!(Tool::invoked_as("/usr/local/bin/kubectl".as_ref()), Some(Tool::Kubectl));
        assert_eq!(Tool::invoked_as("ctr".as_ref()), Some(Tool::Ctr));
        assert_eq!(Tool::invoked_as("/usr/local/bin/orch".as_ref()), None);
    }

    #[test]
    fn the_program_found_is_never_orch_itself() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&first, &second] {
            std::fs::create_dir_all(d).unwrap();
        }
        let orch = dir.path().join("orch");
        std::fs::write(&orch, "").unwrap();
        std::fs::set_permissions(&orch, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&orch, first.join("kubectl")).unwrap();
        let path = format!("{}:{}", first.display(), second.display());
        let me = std::fs::canonicalize(&orch).unwrap();
        assert_eq!(find_program("kubectl", &path, Some(&me)), None);
        std::fs::write(second.join("kubectl"), "").unwrap();
        std::fs::set_permissions(second.join("kubectl"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("kubectl", &path, Some(&me)), Some(second.join("kubectl")));
    }

    #[test]
    fn kubectl_gets_the_admin_kubeconfig_only_when_the_user_has_none() {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        assert_eq!(kubeconfig_for(data.path(), None, Some(home.path().into())), None, "no kubeconfig written yet");
        std::fs::write(data.path().join("orch.yaml"), "x").unwrap();
        assert_eq!(kubeconfig_for(data.path(), None, Some(home.path().into())), Some(data.path().join("orch.yaml")));
        assert_eq!(kubeconfig_for(data.path(), Some("/mine".into()), Some(home.path().into())), None);
        std::fs::create_dir_all(home.path().join(".kube")).unwrap();
        std::fs::write(home.path().join(".kube/config"), "x").unwrap();
        assert_eq!(kubeconfig_for(data.path(), None, Some(home.path().into())), None);
    }
}
