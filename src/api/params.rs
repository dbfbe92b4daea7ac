//! Query parameters of get, list, watch, delete and log requests, parsed as kube-apiserver's
//! parameter codec and option validation do: a malformed number is 400 with Go's `strconv`
//! wording, a malformed `resourceVersion` is 400, bad `resourceVersionMatch` and log options
//! are 422; numbers at any edge of their type come out as values no arithmetic overflows on.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::status::{ApiError, FieldError};
use crate::k8s::time::wait;

type Query = HashMap<String, String>;

/// The largest revision a request may name; no store ever gets there.
pub const LATEST_REVISION: i64 = i64::MAX - 1;

/// An int64 query parameter; 400 `strconv.ParseInt: parsing "x": invalid syntax` when it is
/// not one.
pub fn int(query: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    query.get(name).map(|raw| parse_int(raw)).transpose()
}

fn parse_int(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        ApiError::bad_request(format!("strconv.ParseInt: parsing {raw:?}: {why}"))
    })
}

/// `resourceVersion` of a get, list or watch: absent, empty and `"0"` are 0 ("any"); anything
/// but a revision is 400, as kube-apiserver's storage answers it. A revision is at most
/// [`LATEST_REVISION`], so that the one after it (where a watch resumes) is one too.
pub fn resource_version(query: &Query) -> Result<i64, ApiError> {
    let raw = query.get("resourceVersion").map_or("", String::as_str);
    if raw.is_empty() {
        return Ok(0);
    }
    let invalid = |why: &str| {
        ApiError::bad_request(format!(
            "invalid resource version: resourceVersion: Invalid value: {raw:?}: strconv.ParseUint: parsing {raw:?}: {why}"
        ))
    };
    match raw.parse::<u64>() {
        Ok(rv) => i64::try_from(rv).map(|rv| rv.min(LATEST_REVISION)).map_err(|_| invalid("value out of range")),
        Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => Err(invalid("value out of range")),
        Err(_) => Err(invalid("invalid syntax")),
    }
}

/// The list options of a get, list or watch, validated as kube-apiserver's
/// `ValidateListOptions` does (422 on `ListOptions.meta.k8s.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The requested revision (0: any).
    pub resource_version: i64,
    /// `limit`, 0 for none (as negative is).
    pub limit: u64,
    /// `timeoutSeconds` of a watch: none when absent or 0 (the server decides), zero when
    /// negative (the watch ends at once), as kube-apiserver reads it.
    pub timeout: Option<Duration>,
}

impl ReadOptions {
    pub fn parse(query: &Query, watching: bool) -> Result<Self, ApiError> {
        let resource_version = resource_version(query)?;
        let limit = int(query, "limit")?.map_or(0, |n| n.max(0) as u64);
        let timeout = int(query, "timeoutSeconds")?.filter(|&s| s != 0).map(wait);
        let mut errs = Vec::new();
        let rv_match = query.get("resourceVersionMatch").map_or("", String::as_str);
        if watching {
            if !rv_match.is_empty() && !query.contains_key("sendInitialEvents") {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
        } else if !rv_match.is_empty() {
            let rv = query.get("resourceVersion").map_or("", String::as_str);
            if rv.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if query.get("continue").is_some_and(|c| !c.is_empty()) {
                errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"));
            }
            if !matches!(rv_match, "Exact" | "NotOlderThan") {
                errs.push(FieldError::not_supported("resourceVersionMatch", &json!(rv_match), &["Exact", "NotOlderThan", ""]));
            }
            if rv_match == "Exact" && rv == "0" {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid_fields("meta.k8s.io", "ListOptions", "", errs));
        }
        Ok(Self { resource_version, limit, timeout })
    }
}

/// `gracePeriodSeconds` of a delete, from the query or else the DeleteOptions body; a negative
/// period means one second, as kube-apiserver's `BeforeDelete` has it.
pub fn grace_period(query: &Query, body: &Value) -> Result<Option<i64>, ApiError> {
    let seconds = match int(query, "gracePeriodSeconds")? {
        Some(s) => Some(s),
        None => body_int(body, "gracePeriodSeconds", "DeleteOptions")?,
    };
    Ok(seconds.map(|s| if s < 0 { 1 } else { s }))
}

/// An int64 field of a request body that is not an object kind (DeleteOptions, Eviction):
/// 400 as Go's JSON decoder words it when present and not an int64.
pub fn body_int(body: &Value, field: &str, kind: &str) -> Result<Option<i64>, ApiError> {
    match &body[field] {
        Value::Null => Ok(None),
        v => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("json: cannot unmarshal {} into Go struct field {kind}.{field} of type int64", go_json_type(v)))
        }),
    }
}

/// Go's name for a JSON value in its decoder's errors (`number 1e+300`, `string`).
pub(super) fn go_json_type(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Bool(_) => "bool".into(),
        Value::Array(_) => "array".into(),
        _ => "object".into(),
    }
}

/// The options of `pods/<name>/log`, checked as kube-apiserver's `ValidatePodLogOptions` (422
/// on `PodLogOptions`) before the request reaches a kubelet.
pub fn log_options(query: &Query, pod: &str) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    if let Some(n) = int(query, "tailLines")?.filter(|n| *n < 0) {
        errs.push(FieldError::invalid("tailLines", &json!(n), "must be greater than or equal to 0"));
    }
    if let Some(n) = int(query, "limitBytes")?.filter(|n| *n < 1) {
        errs.push(FieldError::invalid("limitBytes", &json!(n), "must be greater than 0"));
    }
    let since_seconds = int(query, "sinceSeconds")?;
    if let Some(t) = query.get("sinceTime") {
        if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err() {
            return Err(ApiError::bad_request(format!("parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?}")));
        }
        if since_seconds.is_some() {
            errs.push(FieldError::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"));
        }
    } else if let Some(n) = since_seconds.filter(|n| *n < 1) {
        errs.push(FieldError::invalid("sinceSeconds", &json!(n), "must be greater than 0"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields("", "PodLogOptions", pod, errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn numbers_parse_or_are_bad_requests_worded_as_go() {
        assert_eq!(int(&q(&[("limit", "7")]), "limit").unwrap(), Some(7));
        assert_eq!(int(&q(&[]), "limit").unwrap(), None);
        let e = int(&q(&[("limit", "abc")]), "limit").unwrap_err();
        assert_eq!((e.code.as_u16(), e.message.as_str()), (400, "strconv.ParseInt: parsing \"abc\": invalid syntax"));
        let e = int(&q(&[("limit", "9223372036854775808")]), "limit").unwrap_err();
        assert!(e.message.ends_with("value out of range"), "{}", e.message);
    }

    #[test]
    fn resource_versions_are_revisions_or_400() {
        assert_eq!(resource_version(&q(&[])).unwrap(), 0);
        assert_eq!(resource_version(&q(&[("resourceVersion", "")])).unwrap(), 0);
        assert_eq!(resource_version(&q(&[("resourceVersion", "42")])).unwrap(), 42);
        assert_eq!(resource_version(&q(&[("resourceVersion", "9223372036854775807")])).unwrap(), LATEST_REVISION);
        for bad in ["abc", "-1", "1.5", "18446744073709551615", "99999999999999999999"] {
            let e = resource_version(&q(&[("resourceVersion", bad)])).unwrap_err();
            assert_eq!(e.code.as_u16(), 400, "{bad}");
            assert!(
                e.message.starts_with(&format!("invalid resource version: resourceVersion: Invalid value: \"{bad}\"")),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn list_options_follow_kube_validation() {
        let o = ReadOptions::parse(&q(&[("limit", "-3"), ("timeoutSeconds", "9223372036854775807")]), true).unwrap();
        assert_eq!((o.limit, o.timeout), (0, Some(crate::k8s::time::FOREVER)));
        assert_eq!(ReadOptions::parse(&q(&[("timeoutSeconds", "-1")]), true).unwrap().timeout, Some(Duration::ZERO));
        let e = ReadOptions::parse(&q(&[("resourceVersionMatch", "Bogus"), ("resourceVersion", "1")]), false).unwrap_err();
        assert_eq!(e.code.as_u16(), 422);
        assert!(
            e.message.starts_with("ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Bogus\""),
            "{}",
            e.message
        );
        assert!(ReadOptions::parse(&q(&[("resourceVersionMatch", "NotOlderThan")]), false).is_err(), "needs a resourceVersion");
        assert!(ReadOptions::parse(&q(&[("resourceVersionMatch", "NotOlderThan"), ("resourceVersion", "5")]), false).is_ok());
        assert!(ReadOptions::parse(&q(&[("resourceVersionMatch", "Exact")]), true).is_err());
    }

    #[test]
    fn grace_periods_are_clamped_as_kube_does() {
        assert_eq!(grace_period(&q(&[("gracePeriodSeconds", "-5")]), &Value::Null).unwrap(), Some(1));
        assert_eq!(grace_period(&q(&[("gracePeriodSeconds", "9223372036854775807")]), &Value::Null).unwrap(), Some(i64::MAX));
        assert_eq!(grace_period(&q(&[]), &json!({ "gracePeriodSeconds": 0 })).unwrap(), Some(0));
        let e = grace_period(&q(&[]), &json!({ "gracePeriodSeconds": 1e300 })).unwrap_err();
        assert_eq!(e.code.as_u16(), 400);
        assert!(grace_period(&q(&[("gracePeriodSeconds", "1e3")]), &Value::Null).is_err());
    }

    #[test]
    fn log_options_follow_kube_validation() {
        assert!(log_options(&q(&[("tailLines", "10"), ("sinceSeconds", "5"), ("limitBytes", "1")]), "p").is_ok());
        for (k, v) in [("tailLines", "-1"), ("limitBytes", "0"), ("sinceSeconds", "0"), ("sinceSeconds", "-9223372036854775808")] {
            let e = log_options(&q(&[(k, v)]), "p").unwrap_err();
            assert_eq!(e.code.as_u16(), 422, "{k}={v}: {}", e.message);
        }
        assert_eq!(log_options(&q(&[("sinceSeconds", "x")]), "p").unwrap_err().code.as_u16(), 400);
        assert_eq!(log_options(&q(&[("sinceTime", "yesterday")]), "p").unwrap_err().code.as_u16(), 400);
        assert_eq!(log_options(&q(&[("sinceTime", "2024-01-01T00:00:00Z"), ("sinceSeconds", "5")]), "p").unwrap_err().code.as_u16(), 422);
    }
}
