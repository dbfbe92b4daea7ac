//! The scheduling plugins kube-scheduler enables by default, each a small pure function over
//! k8s-openapi types and the cache's `NodeInfo`: filters return a `Rejection` worded as
//! kube-scheduler words it, scores return a raw number that `normalize` brings to 0–100.

use std::borrow::Cow;

pub mod fit;
pub mod interpod;
pub mod node_affinity;
pub mod ports;
pub mod spread;
pub mod taints;
pub mod volume_binding;

/// The best score a node can get from one plugin.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a filter turned a node down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// kube-scheduler's reason strings; NodeResourcesFit may give several.
    pub reasons: Vec<Cow<'static, str>>,
    /// Evicting pods from the node would not help (kube's UnschedulableAndUnresolvable).
    pub unresolvable: bool,
}

impl Rejection {
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self { reasons: vec![reason.into()], unresolvable: false }
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self { reasons: vec![reason.into()], unresolvable: true }
    }
}

pub type Filtered = Result<(), Rejection>;

/// kube-scheduler's `DefaultNormalizeScore`: scales raw scores so the highest is 100 (or,
/// `reverse`d, so the highest becomes 0 and zero becomes 100).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_kube() {
        let mut s = [0, 5, 10];
        normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 5, 10];
        normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
    }
}
