//! The node's images: import of tarballs (and the airgap directory), pulls from registries,
//! listing and removal, and the imagePullPolicy decision the kubelet makes before a container
//! starts.

pub mod airgap;
pub mod archive;
pub mod content;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod store;
pub mod unpack;

/// Kubernetes' imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The policy a container spells (`None` = the API's default: Always for `:latest` or an
    /// untagged image, else IfNotPresent).
    pub fn for_container(policy: Option<&str>, image: &str) -> Self {
        match policy {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ => match reference::Reference::parse(image) {
                Ok(r) if r.digest.is_none() && r.tag.as_deref() == Some("latest") => Self::Always,
                _ => Self::IfNotPresent,
            },
        }
    }
}

/// What to do about an image before starting a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the image that is there.
    UsePresent,
    Pull,
    /// Policy Never and the image is missing: the kubelet reports ErrImageNeverPull.
    NeverPullMissing,
}

/// The kubelet's decision for `policy` when the image is (or is not) `present`.
pub fn pull_decision(policy: PullPolicy, present: bool) -> PullDecision {
    match (policy, present) {
        (PullPolicy::Always, _) => PullDecision::Pull,
        (_, true) => PullDecision::UsePresent,
        (PullPolicy::IfNotPresent, false) => PullDecision::Pull,
        (PullPolicy::Never, false) => PullDecision::NeverPullMissing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_decide_like_the_kubelet() {
        assert_eq!(pull_decision(PullPolicy::Always, true), PullDecision::Pull);
        assert_eq!(pull_decision(PullPolicy::IfNotPresent, true), PullDecision::UsePresent);
        assert_eq!(pull_decision(PullPolicy::IfNotPresent, false), PullDecision::Pull);
        assert_eq!(pull_decision(PullPolicy::Never, true), PullDecision::UsePresent);
        assert_eq!(pull_decision(PullPolicy::Never, false), PullDecision::NeverPullMissing);
        assert_eq!(PullPolicy::for_container(None, "busybox"), PullPolicy::Always);
        assert_eq!(PullPolicy::for_container(None, "busybox:1.36"), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::for_container(Some("Never"), "busybox"), PullPolicy::Never);
    }
}
