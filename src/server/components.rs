//! The packaged components `orch server --disable` names, with k3s's names so that k3s
//! command lines and config files work unchanged. `servicelb`, `coredns`, `local-storage` and
//! `metrics-server` (`metrics.k8s.io` served by the API server itself) are orch's own;
//! `traefik` is not packaged with orch, so disabling it is accepted and changes nothing.

use std::fmt;
use std::str::FromStr;

/// A component `--disable` can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    CoreDns,
    ServiceLb,
    Traefik,
    LocalStorage,
    MetricsServer,
}

impl Component {
    pub const ALL: [Component; 5] =
        [Component::CoreDns, Component::ServiceLb, Component::Traefik, Component::LocalStorage, Component::MetricsServer];

    /// The name on the command line (k3s's).
    pub fn name(self) -> &'static str {
        match self {
            Component::CoreDns => "coredns",
            Component::ServiceLb => "servicelb",
            Component::Traefik => "traefik",
            Component::LocalStorage => "local-storage",
            Component::MetricsServer => "metrics-server",
        }
    }

    /// Whether orch ships this component (disabling one it does not ship changes nothing).
    pub fn packaged(self) -> bool {
        matches!(self, Component::CoreDns | Component::ServiceLb | Component::LocalStorage | Component::MetricsServer)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--disable` value that names no component.
#[derive(Debug, thiserror::Error)]
#[error("unknown component {name:?}: valid values are {}", Component::ALL.map(Component::name).join(", "), name = .0)]
pub struct UnknownComponent(String);

impl FromStr for Component {
    type Err = UnknownComponent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Component::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownComponent(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_valid_values() {
        for c in Component::ALL {
            assert_eq!(c.name().parse::<Component>().unwrap(), c);
        }
        let err = "servicelbx".parse::<Component>().unwrap_err().to_string();
        assert_eq!(err, "unknown component \"servicelbx\": valid values are coredns, servicelb, traefik, local-storage, metrics-server");
    }
}
