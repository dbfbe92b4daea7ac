//! From a metrics' proposal to the replica count set, as kube's HPA normalizes it: the
//! stabilization windows over past recommendations, then the scaling policies' rate limits
//! over past scale events (`behavior`), or without a behavior kube's older rules (a 5-minute
//! downscale stabilization and at most doubling, at least to 4, per sync); then min/max.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The downscale stabilization of HPAs without a behavior
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
const DOWNSCALE_STABILIZATION: SignedDuration = SignedDuration::from_secs(300);

/// A past recommendation of one HPA.
#[derive(Debug, Clone, Copy)]
struct Recommendation {
    replicas: i32,
    at: Timestamp,
}

/// A past scaling of one HPA's target in one direction.
#[derive(Debug, Clone, Copy)]
struct ScaleEvent {
    change: i32,
    at: Timestamp,
    outdated: bool,
}

/// What one HPA remembers between syncs.
#[derive(Debug, Default)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_ups: Vec<ScaleEvent>,
    scale_downs: Vec<ScaleEvent>,
}

/// A condition's status, reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// The normalized replica count with its AbleToScale and ScalingLimited conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Verdict,
    pub scaling_limited: Verdict,
}

/// One HPA's bounds and state for a normalization.
pub struct Bounds<'a> {
    pub current: i32,
    pub min: i32,
    pub max: i32,
    /// The behavior's scale-up and scale-down rules, defaulted (`None`: no behavior).
    pub rules: Option<(&'a HPAScalingRules, &'a HPAScalingRules)>,
}

const RECOMMENDED: Verdict = Verdict { status: true, reason: "ReadyForNewScale", message: "recommended size matches current size" };
const UP_STABILIZED: Verdict = Verdict {
    status: true,
    reason: "ScaleUpStabilized",
    message: "recent recommendations were lower than current one, applying the lowest recent recommendation",
};
const DOWN_STABILIZED: Verdict = Verdict {
    status: true,
    reason: "ScaleDownStabilized",
    message: "recent recommendations were higher than current one, applying the highest recent recommendation",
};
const WITHIN_RANGE: (&str, &str) = ("DesiredWithinRange", "the desired count is within the acceptable range");
const SCALE_UP_LIMIT: (&str, &str) = ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate");
const SCALE_DOWN_LIMIT: (&str, &str) = ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate");
const TOO_MANY: (&str, &str) = ("TooManyReplicas", "the desired replica count is more than the maximum replica count");
const TOO_FEW: (&str, &str) = ("TooFewReplicas", "the desired replica count is less than the minimum replica count");

impl History {
    /// Seeds the recommendations with the current size on the first sync, as kube's
    /// `recordInitialRecommendation`.
    pub fn start(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation { replicas: current, at: now });
        }
    }

    /// The replica count to set for a proposal of `desired`, recording the proposal.
    pub fn normalize(&mut self, bounds: &Bounds<'_>, desired: i32, now: Timestamp) -> Normalized {
        let (stabilized, stabilizing) = match bounds.rules {
            Some((up, down)) => self.stabilize(bounds.current, desired, window(up), window(down), now),
            // Without a behavior only the downscale window holds: the highest recent
            // recommendation wins (an unbounded "current" leaves that bound alone).
            None => self.stabilize(i32::MAX, desired, SignedDuration::ZERO, DOWNSCALE_STABILIZATION, now),
        };
        let able_to_scale = if stabilized == desired { RECOMMENDED } else { stabilizing };
        let (replicas, (reason, message)) = match bounds.rules {
            Some((up, down)) => self.rate_limited(bounds, stabilized, up, down, now),
            None => legacy_limited(bounds, stabilized),
        };
        let scaling_limited = Verdict { status: replicas != stabilized, reason, message };
        Normalized { replicas, able_to_scale, scaling_limited }
    }

    /// kube's `stabilizeRecommendationWithBehaviors`: the current size moved no further than
    /// the lowest recommendation of the scale-up window and the highest of the scale-down
    /// window allow.
    fn stabilize(
        &mut self,
        current: i32,
        desired: i32,
        up_window: SignedDuration,
        down_window: SignedDuration,
        now: Timestamp,
    ) -> (i32, Verdict) {
        let (up_cutoff, down_cutoff) = (now - up_window, now - down_window);
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, rec) in self.recommendations.iter().enumerate() {
            if rec.at > up_cutoff {
                up = up.min(rec.replicas);
            }
            if rec.at > down_cutoff {
                down = down.max(rec.replicas);
            }
            if rec.at < up_cutoff && rec.at < down_cutoff {
                old = Some(i);
            }
        }
        let fresh = Recommendation { replicas: desired, at: now };
        match old {
            Some(i) => self.recommendations[i] = fresh,
            None => self.recommendations.push(fresh),
        }
        let verdict = if desired >= current { UP_STABILIZED } else { DOWN_STABILIZED };
        (current.max(up).min(down), verdict)
    }

    /// kube's `convertDesiredReplicasWithBehaviorRate`.
    fn rate_limited(
        &self,
        bounds: &Bounds<'_>,
        desired: i32,
        up: &HPAScalingRules,
        down: &HPAScalingRules,
        now: Timestamp,
    ) -> (i32, (&'static str, &'static str)) {
        let current = bounds.current;
        if desired > current {
            let limit = self.limit(current, up, true, now).max(current);
            let (allowed, why) = if bounds.max > limit { (limit, SCALE_UP_LIMIT) } else { (bounds.max, TOO_MANY) };
            if desired > allowed {
                return (allowed, why);
            }
        } else if desired < current {
            let limit = self.limit(current, down, false, now).min(current);
            let (allowed, why) = if bounds.min < limit { (limit, SCALE_DOWN_LIMIT) } else { (bounds.min, TOO_FEW) };
            if desired < allowed {
                return (allowed, why);
            }
        }
        (desired, WITHIN_RANGE)
    }

    /// The furthest the policies of `rules` let the size go from `current` (up or down),
    /// counting the changes made within each policy's period.
    fn limit(&self, current: i32, rules: &HPAScalingRules, up: bool, now: Timestamp) -> i32 {
        let select = rules.select_policy.as_deref().unwrap_or("Max");
        if select == "Disabled" {
            return current;
        }
        // "Max" picks the largest change: the highest limit up, the lowest down.
        let largest = select != "Min";
        let mut result: Option<i32> = None;
        for policy in &rules.policies.clone().unwrap_or_default() {
            let period = SignedDuration::from_secs(i64::from(policy.period_seconds));
            let changed = |events: &[ScaleEvent]| events.iter().filter(|e| e.at > now - period).map(|e| e.change).sum::<i32>();
            let start = current - changed(&self.scale_ups) + changed(&self.scale_downs);
            let proposed = match (policy.type_.as_str(), up) {
                ("Pods", true) => start + policy.value,
                ("Pods", false) => start - policy.value,
                (_, true) => (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32,
                (_, false) => (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32,
            };
            result = Some(match result {
                None => proposed,
                Some(r) if largest == up => r.max(proposed),
                Some(r) => r.min(proposed),
            });
        }
        result.unwrap_or(current)
    }

    /// Records a scaling from `previous` to `next` for the rate limits (kube's
    /// `storeScaleEvent`; HPAs without a behavior keep none).
    pub fn record_scale(&mut self, rules: Option<(&HPAScalingRules, &HPAScalingRules)>, previous: i32, next: i32, now: Timestamp) {
        let Some((up, down)) = rules else { return };
        let (events, rules, change) =
            if next > previous { (&mut self.scale_ups, up, next - previous) } else { (&mut self.scale_downs, down, previous - next) };
        let longest = rules.policies.iter().flatten().map(|p| p.period_seconds).max().unwrap_or(0);
        let cutoff = now - SignedDuration::from_secs(i64::from(longest));
        for event in events.iter_mut() {
            event.outdated |= event.at <= cutoff;
        }
        let fresh = ScaleEvent { change, at: now, outdated: false };
        match events.iter_mut().find(|e| e.outdated) {
            Some(slot) => *slot = fresh,
            None => events.push(fresh),
        }
    }
}

/// A behavior's scale-up and scale-down rules with kube's defaults filled in.
pub fn defaulted(behavior: &HorizontalPodAutoscalerBehavior) -> (HPAScalingRules, HPAScalingRules) {
    let fill = |rules: Option<&HPAScalingRules>, defaults: fn(&serde_json::Value) -> serde_json::Value| {
        let given = rules.and_then(|r| serde_json::to_value(r).ok()).unwrap_or_default();
        serde_json::from_value(defaults(&given)).unwrap_or_default()
    };
    (
        fill(behavior.scale_up.as_ref(), crate::api::hpa::scale_up_rules),
        fill(behavior.scale_down.as_ref(), crate::api::hpa::scale_down_rules),
    )
}

fn window(rules: &HPAScalingRules) -> SignedDuration {
    SignedDuration::from_secs(i64::from(rules.stabilization_window_seconds.unwrap_or(0)))
}

/// kube's `convertDesiredReplicasWithRules`: at most doubling (at least to 4), then min/max.
fn legacy_limited(bounds: &Bounds<'_>, desired: i32) -> (i32, (&'static str, &'static str)) {
    let scale_up_limit = (2 * bounds.current).max(4);
    let (max, why) = if bounds.max > scale_up_limit { (scale_up_limit, SCALE_UP_LIMIT) } else { (bounds.max, TOO_MANY) };
    if desired < bounds.min {
        return (bounds.min, TOO_FEW);
    }
    if desired > max {
        return (max, why);
    }
    (desired, WITHIN_RANGE)
}

/// Examples from kube's HPA documentation ("Configurable scaling behavior") and
/// `horizontal_test.go`.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn rules(value: serde_json::Value) -> HPAScalingRules {
        serde_json::from_value(value).unwrap()
    }

    fn behavior(value: serde_json::Value) -> (HPAScalingRules, HPAScalingRules) {
        defaulted(&serde_json::from_value(value).unwrap())
    }

    fn normalize(
        history: &mut History,
        rules: &(HPAScalingRules, HPAScalingRules),
        current: i32,
        desired: i32,
        now: Timestamp,
    ) -> Normalized {
        let bounds = Bounds { current, min: 1, max: 100, rules: Some((&rules.0, &rules.1)) };
        history.normalize(&bounds, desired, now)
    }

    #[test]
    fn default_scale_up_adds_4_pods_or_doubles_per_15_seconds() {
        let defaults = behavior(json!({}));
        let mut history = History::default();
        history.start(1, t(0));
        let n = normalize(&mut history, &defaults, 1, 20, t(0));
        assert_eq!(n.replicas, 5);
        assert_eq!((n.scaling_limited.status, n.scaling_limited.reason), (true, "ScaleUpLimit"));
        history.record_scale(Some((&defaults.0, &defaults.1)), 1, 5, t(0));
        // Within the same 15 s period the 4 pods are spent (1 + 4, or 1 doubled).
        assert_eq!(normalize(&mut history, &defaults, 5, 20, t(10)).replicas, 5);
        // A period later: 5 doubled is more than 5 + 4.
        assert_eq!(normalize(&mut history, &defaults, 5, 20, t(16)).replicas, 10);
    }

    #[test]
    fn the_documented_scale_down_policies_remove_at_most_10_percent_or_5_pods_per_minute() {
        let down = rules(json!({ "stabilizationWindowSeconds": 0, "policies": [
            { "type": "Percent", "value": 10, "periodSeconds": 60 }, { "type": "Pods", "value": 5, "periodSeconds": 60 }] }));
        let both = behavior(json!({ "scaleDown": down }));
        let mut history = History::default();
        history.start(80, t(0));
        let n = normalize(&mut history, &both, 80, 10, t(0));
        assert_eq!((n.replicas, n.scaling_limited.reason), (72, "ScaleDownLimit"));
        history.record_scale(Some((&both.0, &both.1)), 80, 72, t(0));
        assert_eq!(normalize(&mut history, &both, 72, 10, t(30)).replicas, 72, "the minute's 8 pods are spent");
        // A minute later 10 % of 72 is 7.2: 64 remain (kube truncates the scaled-down count).
        assert_eq!(normalize(&mut history, &both, 72, 10, t(61)).replicas, 64);
        // With selectPolicy Min the smaller change wins: 5 pods.
        let min = behavior(json!({ "scaleDown": { "stabilizationWindowSeconds": 0, "selectPolicy": "Min", "policies": [
            { "type": "Percent", "value": 10, "periodSeconds": 60 }, { "type": "Pods", "value": 5, "periodSeconds": 60 }] } }));
        assert_eq!(normalize(&mut History::default(), &min, 80, 10, t(0)).replicas, 75);
    }

    #[test]
    fn a_900_percent_policy_grows_tenfold() {
        let fast = behavior(json!({ "scaleUp": { "policies": [{ "type": "Percent", "value": 900, "periodSeconds": 60 }] } }));
        assert_eq!(normalize(&mut History::default(), &fast, 1, 50, t(0)).replicas, 10);
    }

    #[test]
    fn disabled_scale_down_keeps_the_size() {
        let off = behavior(json!({ "scaleDown": { "selectPolicy": "Disabled" } }));
        let n = normalize(&mut History::default(), &off, 10, 2, t(0));
        assert_eq!((n.replicas, n.scaling_limited.reason), (10, "ScaleDownLimit"));
    }

    #[test]
    fn the_scale_down_window_applies_the_highest_recent_recommendation() {
        let defaults = behavior(json!({}));
        let mut history = History::default();
        history.start(5, t(0));
        // 5 minutes of recommendations: the highest within the 300 s window holds.
        assert_eq!(normalize(&mut history, &defaults, 5, 4, t(60)).replicas, 5);
        let n = normalize(&mut history, &defaults, 5, 3, t(120));
        assert_eq!((n.replicas, n.able_to_scale.reason), (5, "ScaleDownStabilized"));
        // Once the 5 and the 4 are older than 300 s, the 3 is the highest left.
        assert_eq!(normalize(&mut history, &defaults, 5, 3, t(301)).replicas, 4);
        assert_eq!(normalize(&mut history, &defaults, 5, 3, t(361)).replicas, 3);
    }

    #[test]
    fn a_scale_up_window_applies_the_lowest_recent_recommendation() {
        let slow = behavior(json!({ "scaleUp": { "stabilizationWindowSeconds": 60 } }));
        let mut history = History::default();
        history.start(2, t(0));
        let n = normalize(&mut history, &slow, 2, 6, t(10));
        assert_eq!((n.replicas, n.able_to_scale.reason), (2, "ScaleUpStabilized"));
        assert_eq!(normalize(&mut history, &slow, 2, 6, t(61)).replicas, 6);
    }

    #[test]
    fn min_and_max_bound_the_result() {
        let defaults = behavior(json!({}));
        let bounds = Bounds { current: 4, min: 1, max: 5, rules: Some((&defaults.0, &defaults.1)) };
        let n = History::default().normalize(&bounds, 9, t(0));
        assert_eq!((n.replicas, n.scaling_limited.reason, n.scaling_limited.status), (5, "TooManyReplicas", true));
        let n = History::default().normalize(&bounds, 4, t(0));
        assert_eq!((n.replicas, n.scaling_limited.reason, n.scaling_limited.status), (4, "DesiredWithinRange", false));
    }

    #[test]
    fn without_a_behavior_kube_doubles_at_most_and_stabilizes_down_for_5_minutes() {
        let bounds = |current| Bounds { current, min: 2, max: 20, rules: None };
        let mut history = History::default();
        history.start(3, t(0));
        let n = history.normalize(&bounds(3), 10, t(0));
        assert_eq!((n.replicas, n.scaling_limited.reason), (6, "ScaleUpLimit"));
        let n = history.normalize(&bounds(6), 1, t(60));
        assert_eq!((n.replicas, n.able_to_scale.reason), (10, "ScaleDownStabilized"), "the 10 recommended a minute ago holds");
        let n = history.normalize(&bounds(6), 1, t(400));
        assert_eq!((n.replicas, n.scaling_limited.reason), (2, "TooFewReplicas"));
    }
}
