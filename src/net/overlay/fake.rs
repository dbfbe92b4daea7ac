//! An in-memory [`Dataplane`] for the reconcile logic's unit tests: one uplink, devices and
//! entries in maps keyed like the kernel's, and a log of every change in order.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;
use parking_lot::Mutex;

use super::{Dataplane, Device, Entry, Key, OverlayError, Scope, Uplink, VxlanSpec};

#[derive(Default)]
struct State {
    devices: BTreeMap<String, (VxlanSpec, Device)>,
    /// Host routes (`dst`, device name) for `route_overlapping`.
    host_routes: Vec<(Ipv4Network, String)>,
    entries: BTreeMap<Key, Entry>,
    log: Vec<String>,
}

pub struct FakeDataplane {
    uplink: Uplink,
    /// The uplink's connected subnet (for `on_link`).
    subnet: Ipv4Network,
    state: Mutex<State>,
}

impl FakeDataplane {
    /// A dataplane whose uplink `eth0` (index 2, MTU 1500) holds `ip` in `subnet`.
    pub fn new(ip: Ipv4Addr, subnet: Ipv4Network) -> Self {
        Self { uplink: Uplink { name: "eth0".into(), index: 2, ip, mtu: 1500 }, subnet, state: Mutex::default() }
    }

    /// The entries held now, in key order.
    pub fn entries_now(&self) -> Vec<Entry> {
        self.state.lock().entries.values().copied().collect()
    }

    /// Every change so far (`+entry`, `-entry`, `device …`), in order.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().log.clone()
    }

    /// The VXLAN devices created, by name.
    pub fn devices(&self) -> BTreeMap<String, (VxlanSpec, Device)> {
        self.state.lock().devices.clone()
    }

    /// Adds a route of the host's own, out of `dev`.
    pub fn add_host_route(&self, dst: Ipv4Network, dev: &str) {
        self.state.lock().host_routes.push((dst, dev.to_string()));
    }

    /// Puts `entry` in as if someone else (or an earlier run) had.
    pub fn insert(&self, entry: Entry) {
        self.state.lock().entries.insert(entry.key(), entry);
    }
}

#[async_trait]
impl Dataplane for FakeDataplane {
    async fn uplink(&self, iface: Option<&str>, _node_ip: Ipv4Addr) -> Result<Uplink, OverlayError> {
        match iface {
            Some(name) if name != self.uplink.name => Err(OverlayError::Setup(format!("no interface {name}"))),
            _ => Ok(self.uplink.clone()),
        }
    }

    async fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<Device, OverlayError> {
        let mut state = self.state.lock();
        let index = 10 + state.devices.len() as u32;
        let device = match state.devices.get(&spec.name) {
            Some((old, device)) if old == spec => *device,
            _ => Device { index, mac: [0x02, 0, 0, 0, 0, index as u8] },
        };
        state.devices.insert(spec.name.clone(), (spec.clone(), device));
        state.log.push(format!("device {} #{}", spec.name, device.index));
        Ok(device)
    }

    async fn route_overlapping(&self, cidr: Ipv4Network, except: &[&str]) -> Result<Option<String>, OverlayError> {
        let state = self.state.lock();
        let hit = state.host_routes.iter().find(|(dst, dev)| dst.overlaps(cidr) && !except.contains(&dev.as_str()));
        Ok(hit.map(|(dst, dev)| format!("{dst} dev {dev}")))
    }

    async fn on_link(&self, dev: u32, ip: Ipv4Addr) -> Result<bool, OverlayError> {
        Ok(dev == self.uplink.index && self.subnet.contains(ip))
    }

    async fn entries(&self, scope: &Scope) -> Result<Vec<Entry>, OverlayError> {
        let state = self.state.lock();
        let in_scope = |e: &&Entry| match **e {
            Entry::Route { dev, dst, .. } => dev == scope.dev && scope.cluster_cidr.contains(dst.network()),
            Entry::Neighbour { dev, .. } | Entry::Fdb { dev, .. } => scope.owns_device && dev == scope.dev,
        };
        Ok(state.entries.values().filter(in_scope).copied().collect())
    }

    async fn apply(&self, entry: &Entry) -> Result<(), OverlayError> {
        let mut state = self.state.lock();
        state.entries.insert(entry.key(), *entry);
        state.log.push(format!("+{entry}"));
        Ok(())
    }

    async fn remove(&self, entry: &Entry) -> Result<(), OverlayError> {
        let mut state = self.state.lock();
        state.entries.remove(&entry.key());
        state.log.push(format!("-{entry}"));
        Ok(())
    }
}
