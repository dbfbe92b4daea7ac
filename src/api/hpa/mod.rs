//! The HorizontalPodAutoscaler's API machinery: autoscaling/v2 defaults, and autoscaling/v1
//! served as a conversion of the stored autoscaling/v2 object, as kube-apiserver serves it.

mod convert;
mod defaults;
mod metrics;

pub use convert::{to_v1, to_v2};
pub use defaults::{apply_defaults, scale_down_rules, scale_up_rules};
