//! Pod address allocation from a node's podCIDR, persisted on disk like CNI's host-local plugin:
//! `<root>/<network>_<prefix>/` holds one file per allocated address (named after it) whose
//! content is the owner's id. Files are created with `O_EXCL` and synced before the address is
//! handed out, so no address is given twice — across threads, processes, restarts and crashes.
//! The network, gateway (first) and broadcast addresses are never allocated; allocation goes
//! round-robin from the last address handed out (kept in `last_reserved_ip`) so a just-released
//! address is not reused at once.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use parking_lot::Mutex;

const LAST_RESERVED: &str = "last_reserved_ip";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("{0} has no room for pod addresses (at most /30)")]
    TooSmall(Ipv4Network),
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Network),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IpamError + 'a {
    move |source| IpamError::Io { what, path: path.to_path_buf(), source }
}

/// One node's pod address pool.
#[derive(Debug)]
pub struct Ipam {
    range: Ipv4Network,
    dir: PathBuf,
    /// Serialises this process's allocations (one owner never gets two addresses).
    lock: Mutex<()>,
}

impl Ipam {
    /// Opens (creating if needed) the pool of `range` under `root` (`<data-dir>/agent/ipam`).
    pub fn open(root: &Path, range: Ipv4Network) -> Result<Self, IpamError> {
        if range.prefix() > 30 {
            return Err(IpamError::TooSmall(range));
        }
        let dir = root.join(format!("{}_{}", range.network(), range.prefix()));
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(Self { range, dir, lock: Mutex::new(()) })
    }

    pub fn range(&self) -> Ipv4Network {
        self.range
    }

    /// The address of `owner`, allocating one if it has none yet (idempotent).
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let _guard = self.lock.lock();
        if let Some((ip, _)) = self.allocations()?.into_iter().find(|(_, o)| o == owner) {
            return Ok(ip);
        }
        let first = 2u32;
        let usable = self.range.size() - 3;
        let start = self.last_reserved().map_or(first, |last| last + 1);
        for i in 0..usable {
            let offset = first + (start - first + i) % usable;
            let ip = self.range.nth(offset).expect("offsets stay inside the range");
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let written = file.write_all(owner.as_bytes()).and_then(|_| file.sync_all());
                    if let Err(e) = written {
                        let _ = fs::remove_file(&path);
                        return Err(io("writing", &path)(e));
                    }
                    self.sync_dir()?;
                    self.write_last_reserved(ip);
                    return Ok(ip);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("creating", &path)(e)),
            }
        }
        Err(IpamError::Exhausted(self.range))
    }

    /// Frees the address(es) of `owner`; returns what was freed.
    pub fn release(&self, owner: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let _guard = self.lock.lock();
        self.remove_where(|o| o == owner)
    }

    /// Frees every allocation whose owner does not exist any more according to `exists`
    /// (also ones left empty by a crash between create and write); returns them.
    pub fn gc(&self, exists: impl Fn(&str) -> bool) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let _guard = self.lock.lock();
        let stale: Vec<_> = self.allocations()?.into_iter().filter(|(_, o)| o.is_empty() || !exists(o)).collect();
        for (ip, _) in &stale {
            self.remove(*ip)?;
        }
        Ok(stale)
    }

    /// Every allocation as (address, owner), in address order.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let entry = entry.map_err(io("listing", &self.dir))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            if !self.range.contains(ip) {
                continue;
            }
            let owner = match fs::read_to_string(entry.path()) {
                Ok(owner) => owner.trim().to_string(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("reading", &entry.path())(e)),
            };
            out.push((ip, owner));
        }
        out.sort();
        Ok(out)
    }

    fn remove_where(&self, pred: impl Fn(&str) -> bool) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut freed = Vec::new();
        for (ip, owner) in self.allocations()? {
            if pred(&owner) {
                self.remove(ip)?;
                freed.push(ip);
            }
        }
        Ok(freed)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &path)(e)),
        }
    }

    /// The offset in the range of the address last handed out.
    fn last_reserved(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?;
        let ip: Ipv4Addr = text.trim().parse().ok()?;
        self.range.contains(ip).then(|| u32::from(ip) - u32::from(self.range.network()))
    }

    /// Best effort: losing it only changes where the next search starts.
    fn write_last_reserved(&self, ip: Ipv4Addr) {
        let path = self.dir.join(LAST_RESERVED);
        if let Err(e) = fs::write(&path, ip.to_string()) {
            tracing::warn!(path = %path.display(), error = %e, "could not record the last reserved pod address");
        }
    }

    fn sync_dir(&self) -> Result<(), IpamError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("syncing", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &Path, cidr: &str) -> Ipam {
        Ipam::open(dir, cidr.parse().unwrap()).unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = pool(tmp.path(), "10.42.3.0/29");
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 42, 3, 2));
        assert_eq!(ipam.allocate("a").unwrap(), a, "same owner, same address");
        let rest: Vec<_> = ["b", "c", "d", "e"].iter().map(|o| ipam.allocate(o).unwrap().octets()[3]).collect();
        assert_eq!(rest, vec![3, 4, 5, 6]);
        assert!(matches!(ipam.allocate("f"), Err(IpamError::Exhausted(_))));
        assert!(tmp.path().join("10.42.3.0_29/10.42.3.4").is_file());
        assert_eq!(fs::read_to_string(tmp.path().join("10.42.3.0_29/10.42.3.4")).unwrap(), "c");
    }

    #[test]
    fn release_then_round_robin_then_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = pool(tmp.path(), "10.42.3.0/29");
        let a = ipam.allocate("a").unwrap();
        ipam.allocate("b").unwrap();
        assert_eq!(ipam.release("a").unwrap(), vec![a]);
        assert!(ipam.release("a").unwrap().is_empty(), "releasing twice is fine");
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 42, 3, 4), "not the just-freed one");
        for o in ["d", "e"] {
            ipam.allocate(o).unwrap();
        }
        assert_eq!(ipam.allocate("f").unwrap(), a, "wraps around to the freed address");
    }

    #[test]
    fn survives_a_restart_and_shares_with_another_process_view() {
        let tmp = tempfile::tempdir().unwrap();
        let first = pool(tmp.path(), "10.42.3.0/24");
        let a = first.allocate("pod-a").unwrap();
        drop(first);
        let reopened = pool(tmp.path(), "10.42.3.0/24");
        let other = pool(tmp.path(), "10.42.3.0/24");
        assert_eq!(reopened.allocate("pod-a").unwrap(), a);
        let b = other.allocate("pod-b").unwrap();
        let c = reopened.allocate("pod-c").unwrap();
        assert!(a != b && b != c && a != c);
        assert_eq!(reopened.allocations().unwrap().len(), 3);
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let pools: Vec<_> = (0..4).map(|_| std::sync::Arc::new(pool(tmp.path(), "10.42.3.0/26"))).collect();
        let threads: Vec<_> = pools
            .iter()
            .enumerate()
            .map(|(t, p)| {
                let p = p.clone();
                std::thread::spawn(move || (0..15).map(|i| p.allocate(&format!("t{t}-{i}")).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 60, "61 usable addresses, 60 distinct allocations");
    }

    #[test]
    fn gc_frees_owners_that_are_gone_and_crash_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = pool(tmp.path(), "10.42.3.0/24");
        ipam.allocate("alive").unwrap();
        let dead = ipam.allocate("dead").unwrap();
        fs::write(tmp.path().join("10.42.3.0_24/10.42.3.77"), "").unwrap();
        fs::write(tmp.path().join("10.42.3.0_24/not-an-ip"), "x").unwrap();
        let freed = ipam.gc(|o| o == "alive").unwrap();
        assert_eq!(freed, vec![(dead, "dead".to_string()), (Ipv4Addr::new(10, 42, 3, 77), String::new())]);
        assert_eq!(ipam.allocations().unwrap(), vec![(Ipv4Addr::new(10, 42, 3, 2), "alive".to_string())]);
    }

    #[test]
    fn tiny_ranges_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(Ipam::open(tmp.path(), "10.0.0.0/31".parse().unwrap()), Err(IpamError::TooSmall(_))));
        let p30 = pool(tmp.path(), "10.0.0.0/30");
        assert_eq!(p30.allocate("x").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p30.allocate("y").is_err());
    }
}
