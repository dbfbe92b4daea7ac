//! The `pod-security.kubernetes.io/<mode>` and `<mode>-version` labels of a namespace: the
//! level (privileged, baseline, restricted) and version (`latest` or `v1.N`) of each mode
//! (enforce, audit, warn), with kube's messages for invalid values.

use serde_json::{json, Value};

use crate::api::status::FieldError;

pub const PREFIX: &str = "pod-security.kubernetes.io/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "privileged" => Some(Self::Privileged),
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// A policy: a level at a version (`None`: latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub minor: Option<u32>,
}

impl Policy {
    const RESTRICTED_LATEST: Self = Self { level: Level::Restricted, minor: None };

    /// Whether a check introduced in `1.since` applies at this version.
    pub fn has(&self, since: u32) -> bool {
        self.minor.is_none_or(|m| m >= since)
    }

    /// `baseline:latest`, `restricted:v1.30`: how messages name the policy.
    pub fn name(&self) -> String {
        match self.minor {
            None => format!("{}:latest", self.level.as_str()),
            Some(m) => format!("{}:v1.{m}", self.level.as_str()),
        }
    }
}

/// The policies of the three modes (`None`: not set, i.e. privileged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modes {
    pub enforce: Option<Policy>,
    pub audit: Option<Policy>,
    pub warn: Option<Policy>,
}

fn parse_version(v: &str) -> Result<Option<u32>, ()> {
    if v == "latest" {
        return Ok(None);
    }
    let minor = v.strip_prefix("v1.").ok_or(())?;
    if minor.is_empty() || !minor.chars().all(|c| c.is_ascii_digit()) || (minor.len() > 1 && minor.starts_with('0')) {
        return Err(());
    }
    minor.parse().map(Some).map_err(|_| ())
}

/// The modes set by `labels`, and what is wrong with them. An invalid level or version falls
/// back to restricted:latest, as kube's admission does (fail closed).
pub fn modes(labels: &Value) -> (Modes, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut one = |mode: &str| -> Option<Policy> {
        let level_key = format!("{PREFIX}{mode}");
        let version_key = format!("{PREFIX}{mode}-version");
        let level_value = labels[&level_key].as_str();
        let version_value = labels[&version_key].as_str();
        let level = match level_value.map(|l| (l, Level::parse(l))) {
            None => None,
            Some((_, Some(level))) => Some(level),
            Some((l, None)) => {
                errs.push(FieldError::invalid(
                    &format!("metadata.labels[{level_key}]"),
                    &json!(l),
                    "must be one of privileged, baseline, restricted",
                ));
                return Some(Policy::RESTRICTED_LATEST);
            }
        };
        let minor = match version_value.map(|v| (v, parse_version(v))) {
            None => None,
            Some((_, Ok(minor))) => minor,
            Some((v, Err(()))) => {
                errs.push(FieldError::invalid(
                    &format!("metadata.labels[{version_key}]"),
                    &json!(v),
                    "must be \"latest\" or of the form \"v1.x\"",
                ));
                return Some(Policy::RESTRICTED_LATEST);
            }
        };
        level.filter(|l| *l != Level::Privileged).map(|level| Policy { level, minor })
    };
    let modes = Modes { enforce: one("enforce"), audit: one("audit"), warn: one("warn") };
    (modes, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_make_modes() {
        let (m, errs) = modes(&json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "v1.21",
            "pod-security.kubernetes.io/audit": "privileged",
        }));
        assert!(errs.is_empty());
        assert_eq!(m.enforce.unwrap().name(), "baseline:latest");
        assert_eq!(m.warn.unwrap().name(), "restricted:v1.21");
        assert!(!m.warn.unwrap().has(22) && m.warn.unwrap().has(19));
        assert_eq!(m.audit, None);

        let (m, errs) = modes(&json!({ "pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn-version": "1.2" }));
        assert_eq!(m.enforce, Some(Policy::RESTRICTED_LATEST), "fails closed");
        let messages: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        assert_eq!(
            messages,
            vec![
                "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted",
                "metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: \"1.2\": must be \"latest\" or of the form \"v1.x\"",
            ]
        );
    }
}
