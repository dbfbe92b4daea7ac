//! Cell helpers shared by every printer: JSON field access with Go's zero values, ages and
//! durations as kubectl reads them, joined lists with "+ N more...", label and selector text.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A string field, `""` when absent (Go's zero value).
pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An integer field, 0 when absent.
pub fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The elements of an array field (none when absent).
pub fn items(v: &Value) -> std::slice::Iter<'_, Value> {
    v.as_array().map_or([].iter(), |a| a.iter())
}

/// `s`, or `"<none>"` when empty.
pub fn or_none(s: impl Into<String>) -> Value {
    let s = s.into();
    json!(if s.is_empty() { "<none>".to_string() } else { s })
}

/// A string field, or `"<none>"` when absent or empty.
pub fn text_or_none(v: &Value) -> Value {
    or_none(text(v))
}

/// Number of entries of a map or list field.
pub fn count(v: &Value) -> i64 {
    (v.as_object().map_or(0, |m| m.len()) + v.as_array().map_or(0, |a| a.len())) as i64
}

/// Go's `printBoolPtr`: "True", "False" or "<unset>".
pub fn bool_ptr(v: &Value) -> Value {
    json!(match v.as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    })
}

/// An IntOrString field as Go's `String()` prints it.
pub fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// A timestamp field (RFC 3339, with or without fractional seconds).
pub fn timestamp(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

/// `translateTimestampSince`: the human age of a timestamp, `"<unknown>"` when absent.
pub fn since(v: &Value) -> String {
    timestamp(v).map_or_else(|| "<unknown>".to_string(), |t| human_duration((OffsetDateTime::now_utc() - t).whole_seconds()))
}

/// The AGE cell: time since creation.
pub fn age(o: &Value) -> Value {
    json!(since(&o["metadata"]["creationTimestamp"]))
}

/// Kubernetes' `HumanDuration`: "45s", "5m30s", "3h", "12d", "2y10d".
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        with(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        with(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        with(h / 24, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        with(h / 24 / 365, "y", h / 24 % 365, "d")
    } else {
        format!("{}y", h / 24 / 365)
    }
}

/// The first `max` entries joined with ",", then " + N more..." for the rest (`count` in all).
pub fn first_of(list: &[String], count: usize, max: usize) -> String {
    let shown = list[..list.len().min(max)].join(",");
    if count > max {
        format!("{shown} + {} more...", count - max)
    } else {
        shown
    }
}

/// `labels.FormatLabels`: a label map as sorted `k=v` pairs, `"<none>"` when empty.
pub fn labels(v: &Value) -> Value {
    let mut pairs: Vec<String> = v.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", text(v))).collect();
    pairs.sort();
    or_none(pairs.join(","))
}

/// A `metav1.LabelSelector` as `labels.Selector.String()` prints it: requirements sorted by
/// key, set values sorted; empty for an empty or absent selector.
pub fn selector(v: &Value) -> String {
    let mut reqs: Vec<(String, String)> =
        v["matchLabels"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), format!("{k}={}", text(v)))).collect();
    for e in items(&v["matchExpressions"]) {
        let key = text(&e["key"]);
        let mut values: Vec<&str> = items(&e["values"]).map(text).collect();
        values.sort_unstable();
        let req = match text(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(",")
}

/// `metav1.FormatLabelSelector`: [`selector`], or `"<none>"` when it selects by nothing.
pub fn selector_or_none(v: &Value) -> Value {
    or_none(selector(v))
}

/// The CONTAINERS and IMAGES cells of a pod spec: names and images joined with ",".
pub fn containers(spec: &Value) -> (Value, Value) {
    let list: Vec<&Value> = items(&spec["containers"]).collect();
    let join = |field: &str| json!(list.iter().map(|c| text(&c[field])).collect::<Vec<_>>().join(","));
    (join("name"), join("image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400 * 4, "3y4d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn selectors_print_sorted() {
        let sel = json!({"matchLabels": {"tier": "web", "app": "a"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "zone", "operator": "DoesNotExist"},
        ]});
        assert_eq!(selector(&sel), "app=a,env in (dev,prod),tier=web,!zone");
        assert_eq!(selector_or_none(&json!({})), "<none>");
        assert_eq!(selector(&Value::Null), "");
        assert_eq!(labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(labels(&Value::Null), "<none>");
    }

    #[test]
    fn lists_say_how_many_more() {
        let list: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(first_of(&list, 5, 3), "a,b,c + 2 more...");
        assert_eq!(first_of(&list[..2], 2, 3), "a,b");
    }
}
