//! Image garbage collection, as the kubelet's image manager does it: when the image file
//! system is fuller than the high threshold (85 %), images no container uses are removed, least
//! recently used first (then first detected), until the usage would drop below the low
//! threshold (80 %). Tags of one image (one digest) go together; pinned images (imported from
//! the airgap directory) are kept like images in use. The node is reached through
//! [`ImageHost`]; [`ContainerdImages`] is the real one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::host;
use crate::node::runtime::containerd::Containerd;
use crate::node::runtime::images::reference::normalize;
use crate::node::runtime::{ContainerRuntime, ImageInfo, RuntimeError};

/// How often the image file system is checked.
pub const INTERVAL: Duration = Duration::from_secs(300);

/// Used and total bytes of the image file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub used: u64,
}

/// Why the images or the image file system cannot be looked at or an image cannot be removed.
#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    #[error("cannot statvfs {}", .0.display())]
    Statvfs(PathBuf),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What image garbage collection needs of the node.
#[async_trait::async_trait]
pub trait ImageHost: Send + Sync {
    fn usage(&self) -> Result<FsUsage, ImageGcError>;
    async fn images(&self) -> Result<Vec<ImageInfo>, ImageGcError>;
    /// The (normalised) image names containers were created from, running or not.
    async fn images_in_use(&self) -> Result<HashSet<String>, ImageGcError>;
    async fn remove_image(&self, name: &str) -> Result<(), ImageGcError>;
}

/// The usage thresholds, in percent of the file system.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub high: u64,
    pub low: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { high: 85, low: 80 }
    }
}

/// When the node saw an image first and when it last saw a container use it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: SystemTime,
    last_used: Option<SystemTime>,
}

/// The tags of one image (one digest), its size and whether a container uses it.
#[derive(Debug, Default)]
struct ImageGroup {
    names: Vec<String>,
    size: u64,
    in_use: bool,
}

/// The collector: thresholds and what it has seen of each image (by digest).
pub struct ImageGc<H> {
    host: H,
    thresholds: Thresholds,
    seen: HashMap<String, Seen>,
}

impl<H: ImageHost> ImageGc<H> {
    pub fn new(host: H, thresholds: Thresholds) -> Self {
        Self { host, thresholds, seen: HashMap::new() }
    }

    /// One check at `now`; returns the image names it removed.
    pub async fn collect(&mut self, now: SystemTime) -> Result<Vec<String>, ImageGcError> {
        let images = self.host.images().await?;
        let in_use = self.host.images_in_use().await?;
        let mut by_digest: BTreeMap<String, ImageGroup> = BTreeMap::new();
        for image in images {
            let group = by_digest.entry(image.digest.clone()).or_default();
            group.in_use |= image.pinned || in_use.contains(&normalize(&image.name));
            group.size = group.size.max(image.size);
            group.names.push(image.name);
        }
        self.seen.retain(|digest, _| by_digest.contains_key(digest));
        for (digest, group) in &by_digest {
            let seen = self.seen.entry(digest.clone()).or_insert(Seen { first: now, last_used: None });
            if group.in_use {
                seen.last_used = Some(now);
            }
        }
        let usage = self.host.usage()?;
        if usage.capacity == 0 || usage.used * 100 <= usage.capacity * self.thresholds.high {
            return Ok(Vec::new());
        }
        let target = usage.capacity * self.thresholds.low / 100;
        let mut to_free = usage.used.saturating_sub(target);
        tracing::info!(
            used = usage.used,
            capacity = usage.capacity,
            to_free,
            "image file system above the high threshold; removing unused images"
        );
        let mut unused: Vec<(&String, &ImageGroup)> = by_digest.iter().filter(|(_, g)| !g.in_use).collect();
        unused.sort_by_key(|(digest, _)| self.seen.get(*digest).map(|s| (s.last_used, s.first)));
        let mut removed = Vec::new();
        for (digest, group) in unused {
            if to_free == 0 {
                break;
            }
            for name in &group.names {
                match self.host.remove_image(name).await {
                    Ok(()) => removed.push(name.clone()),
                    Err(e) => tracing::warn!(image = %name, error = %e, "cannot remove an unused image"),
                }
            }
            tracing::info!(images = ?group.names, %digest, bytes = group.size, "removed an unused image");
            to_free = to_free.saturating_sub(group.size);
        }
        if to_free > 0 {
            tracing::warn!(short_by = to_free, "removing every unused image did not bring usage below the low threshold");
        }
        Ok(removed)
    }

    /// Checks every [`INTERVAL`] until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.collect(SystemTime::now()).await {
                        tracing::warn!(error = %e, "image garbage collection failed");
                    }
                }
            }
        }
    }
}

/// The node's containerd and the file system of its data dir (where containerd keeps images).
pub struct ContainerdImages {
    pub runtime: Containerd,
    pub data_dir: PathBuf,
}

#[async_trait::async_trait]
impl ImageHost for ContainerdImages {
    fn usage(&self) -> Result<FsUsage, ImageGcError> {
        let (capacity, free) = host::filesystem(&self.data_dir).ok_or_else(|| ImageGcError::Statvfs(self.data_dir.clone()))?;
        Ok(FsUsage { capacity, used: capacity.saturating_sub(free) })
    }

    async fn images(&self) -> Result<Vec<ImageInfo>, ImageGcError> {
        Ok(self.runtime.list_images().await?)
    }

    async fn images_in_use(&self) -> Result<HashSet<String>, ImageGcError> {
        let containers = self.runtime.list_containers().await?;
        Ok(containers.iter().map(|c| normalize(&c.image)).collect())
    }

    async fn remove_image(&self, name: &str) -> Result<(), ImageGcError> {
        self.runtime.remove_image(name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A node whose usage drops by an image's size when it is removed.
    struct FakeHost {
        capacity: u64,
        used: Mutex<u64>,
        images: Mutex<Vec<ImageInfo>>,
        in_use: HashSet<String>,
    }

    #[async_trait::async_trait]
    impl ImageHost for FakeHost {
        fn usage(&self) -> Result<FsUsage, ImageGcError> {
            Ok(FsUsage { capacity: self.capacity, used: *self.used.lock() })
        }
        async fn images(&self) -> Result<Vec<ImageInfo>, ImageGcError> {
            Ok(self.images.lock().clone())
        }
        async fn images_in_use(&self) -> Result<HashSet<String>, ImageGcError> {
            Ok(self.in_use.clone())
        }
        async fn remove_image(&self, name: &str) -> Result<(), ImageGcError> {
            let mut images = self.images.lock();
            let no_such_image = || RuntimeError::Image { image: name.to_string(), message: "no such image".into() };
            let gone = images.iter().position(|i| i.name == name).ok_or_else(no_such_image)?;
            let image = images.remove(gone);
            if !images.iter().any(|i| i.digest == image.digest) {
                *self.used.lock() -= image.size;
            }
            Ok(())
        }
    }

    fn image(name: &str, digest: &str, size: u64) -> ImageInfo {
        ImageInfo { name: format!("docker.io/library/{name}"), digest: digest.into(), size, pinned: false }
    }

    #[tokio::test]
    async fn removes_unused_images_oldest_first_down_to_the_low_threshold() {
        let host = FakeHost {
            capacity: 1000,
            used: Mutex::new(800),
            images: Mutex::new(vec![
                image("old:1", "sha256:old", 40),
                image("older:1", "sha256:older", 30),
                image("older:alias", "sha256:older", 30),
                image("busy:1", "sha256:busy", 500),
                image("new:1", "sha256:new", 40),
            ]),
            in_use: ["docker.io/library/busy:1".to_string()].into(),
        };
        let mut gc = ImageGc::new(host, Thresholds::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(gc.collect(t0).await.unwrap().is_empty(), "80 % is below the high threshold");
        // "new" showed up later; "old" was used by a container once.
        gc.seen.get_mut("sha256:new").unwrap().first = t0 + Duration::from_secs(10);
        gc.seen.get_mut("sha256:old").unwrap().last_used = Some(t0 + Duration::from_secs(5));
        *gc.host.used.lock() = 860;

        let removed = gc.collect(t0 + Duration::from_secs(60)).await.unwrap();
        // 860 → below 800 needs 60 bytes: "older" (never used, both tags, 30) then "new"
        // (never used, seen later, 40); "old" (used once) and "busy" (in use) stay.
        assert_eq!(removed, ["docker.io/library/older:1", "docker.io/library/older:alias", "docker.io/library/new:1"]);
        assert_eq!(*gc.host.used.lock(), 790);
        let left: Vec<String> = gc.host.images.lock().iter().map(|i| i.name.clone()).collect();
        assert_eq!(left, ["docker.io/library/old:1", "docker.io/library/busy:1"]);
    }

    #[tokio::test]
    async fn never_removes_images_in_use_or_pinned() {
        let host = FakeHost {
            capacity: 100,
            used: Mutex::new(99),
            images: Mutex::new(vec![
                image("busy:1", "sha256:busy", 40),
                ImageInfo { pinned: true, ..image("airgap:1", "sha256:airgap", 40) },
            ]),
            in_use: ["docker.io/library/busy:1".to_string()].into(),
        };
        let mut gc = ImageGc::new(host, Thresholds::default());
        assert!(gc.collect(SystemTime::now()).await.unwrap().is_empty());
        assert_eq!(gc.host.images.lock().len(), 2);
    }
}
