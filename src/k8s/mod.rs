//! Kubernetes vocabulary shared by every part of orch: resource quantities, well-known names,
//! label and taint syntax, QoS classes, quota usage and the version orch reports. A leaf: it imports
//! nothing else of the crate.

pub mod cidr;
pub mod labels;
pub mod local_path;
pub mod names;
pub mod qos;
pub mod quantity;
pub mod quota;
pub mod stats;
pub mod storage_class;
pub mod time;
pub mod version;
