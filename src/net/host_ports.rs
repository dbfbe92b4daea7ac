//! The hostPorts of each pod on this node, one JSON file per pod under
//! `<data-dir>/agent/net/hostports/`, so the node's DNAT rules can be rebuilt after a restart.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use super::pod_network::HostPort;
use super::NetError;

#[derive(Debug)]
pub struct HostPortStore {
    dir: PathBuf,
}

impl HostPortStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, pod_id: &str) -> PathBuf {
        self.dir.join(format!("{pod_id}.json"))
    }

    fn io(what: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> NetError {
        move |source| NetError::Io { what, path, source }
    }

    /// Records `ports` for the pod (none = forget it); returns whether anything changed.
    pub fn save(&self, pod_id: &str, ports: &[HostPort]) -> Result<bool, NetError> {
        if ports.is_empty() {
            return self.remove(pod_id);
        }
        let path = self.path(pod_id);
        let json = serde_json::to_string(ports).expect("host ports serialise");
        if fs::read_to_string(&path).is_ok_and(|old| old == json) {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir).map_err(Self::io("creating", self.dir.clone()))?;
        let tmp = self.dir.join(format!(".{pod_id}.tmp"));
        fs::write(&tmp, json).map_err(Self::io("writing", tmp.clone()))?;
        fs::rename(&tmp, &path).map_err(Self::io("renaming", path))?;
        Ok(true)
    }

    /// Forgets the pod's hostPorts; returns whether it had any.
    pub fn remove(&self, pod_id: &str) -> Result<bool, NetError> {
        let path = self.path(pod_id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Self::io("removing", path)(e)),
        }
    }

    /// Every recorded pod with its hostPorts (unreadable records are skipped with a warning).
    pub fn all(&self) -> Result<Vec<(String, Vec<HostPort>)>, NetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("listing", self.dir.clone())(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json").filter(|id| !id.starts_with('.')) else { continue };
            match fs::read(entry.path()).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                Ok(ports) => out.push((id.to_string(), ports)),
                Err(error) => tracing::warn!(path = %entry.path().display(), %error, "ignoring an unreadable hostPort record"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::pod_network::Protocol;

    #[test]
    fn save_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = HostPortStore::new(tmp.path().join("hostports"));
        assert!(store.all().unwrap().is_empty());
        let ports = vec![HostPort { protocol: Protocol::Udp, host_ip: None, host_port: 53, container_port: 5353 }];
        assert!(store.save("pod-a", &ports).unwrap());
        assert!(!store.save("pod-a", &ports).unwrap(), "unchanged");
        assert!(!store.save("pod-b", &[]).unwrap(), "nothing to record");
        assert_eq!(store.all().unwrap(), vec![("pod-a".to_string(), ports)]);
        assert!(store.remove("pod-a").unwrap());
        assert!(!store.remove("pod-a").unwrap());
        assert!(store.all().unwrap().is_empty());
    }
}
