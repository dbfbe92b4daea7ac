//! The HPA's status conditions (AbleToScale, ScalingActive, ScalingLimited), set as kube's
//! `setCondition`: a condition's transition time moves only when its status changes.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Sets condition `type_` to `status` with `reason` and `message`.
pub fn set(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status;
            c.reason = Some(reason.to_string());
            c.message = Some(message);
        }
        None => conditions.push(HorizontalPodAutoscalerCondition {
            type_: type_.to_string(),
            status,
            reason: Some(reason.to_string()),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        set(&mut conditions, "ScalingActive", true, "ValidMetricFound", "a".into(), t0);
        set(&mut conditions, "ScalingActive", true, "ValidMetricFound", "b".into(), t1);
        assert_eq!((conditions[0].last_transition_time.as_ref().unwrap().0, conditions[0].message.as_deref()), (t0, Some("b")));
        set(&mut conditions, "ScalingActive", false, "FailedGetResourceMetric", "c".into(), t1);
        assert_eq!(conditions[0].last_transition_time.as_ref().unwrap().0, t1);
        assert_eq!(conditions.len(), 1);
    }
}
