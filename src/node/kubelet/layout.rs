//! Where a node keeps its pods' things, and how containers are named and labelled so a
//! restarted agent finds them again: `<data-dir>/agent/pods/<uid>/{etc,volumes/<name>}` and the
//! CRI logs in `<data-dir>/agent/logs/<ns>_<name>_<uid>/<container>/<attempt>.log` (the layout
//! of the kubelet's /var/log/pods).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::node::runtime::ContainerInfo;

pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_ATTEMPT: &str = "io.orch.attempt";

/// The node's directories under `<data-dir>/agent`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub agent_dir: PathBuf,
}

/// Which pod a file or container belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        Self { agent_dir: data_dir.join("agent") }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.agent_dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// The pod's hosts, resolv.conf and hostname files.
    pub fn etc_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("etc")
    }

    pub fn volume_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(volume)
    }

    /// Where the subPath bind mounts of a container's volumeMounts are (one per mount index).
    pub fn subpaths_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join("volume-subpaths").join(container)
    }

    /// Where a container's termination message is written (mounted at its terminationMessagePath).
    pub fn termination_log(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(container).join("termination-log")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.agent_dir.join("logs")
    }

    pub fn pod_logs_dir(&self, pod: &PodRef) -> PathBuf {
        self.logs_dir().join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
    }

    /// The CRI log file of a container's `attempt`-th run.
    pub fn log_path(&self, pod: &PodRef, container: &str, attempt: u32) -> PathBuf {
        self.pod_logs_dir(pod).join(container).join(format!("{attempt}.log"))
    }
}

/// A fresh containerd id (random, so a restarted container never collides with its remains).
pub fn new_container_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// The labels of a container of `pod`.
pub fn labels(pod: &PodRef, container: &str, attempt: u32) -> BTreeMap<String, String> {
    [
        (LABEL_POD_UID, pod.uid.clone()),
        (LABEL_POD_NAME, pod.name.clone()),
        (LABEL_POD_NAMESPACE, pod.namespace.clone()),
        (LABEL_CONTAINER_NAME, container.to_string()),
        (LABEL_ATTEMPT, attempt.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The pod uid, container name and attempt a container was labelled with.
pub fn owner(info: &ContainerInfo) -> Option<(&str, &str, u32)> {
    let uid = info.labels.get(LABEL_POD_UID)?;
    let name = info.labels.get(LABEL_CONTAINER_NAME)?;
    let attempt = info.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
    Some((uid, name, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_labels() {
        let l = Layout::new(Path::new("/d"));
        let pod = PodRef { namespace: "ns".into(), name: "p".into(), uid: "u1".into() };
        assert_eq!(l.log_path(&pod, "c", 2), Path::new("/d/agent/logs/ns_p_u1/c/2.log"));
        assert_eq!(l.volume_dir("u1", "data"), Path::new("/d/agent/pods/u1/volumes/data"));
        let info = ContainerInfo {
            id: new_container_id(),
            image: String::new(),
            labels: labels(&pod, "c", 3),
            state: crate::node::runtime::ContainerState::Created,
            netns: None,
        };
        assert_eq!(info.id.len(), 32);
        assert_eq!(owner(&info), Some(("u1", "c", 3)));
    }
}
