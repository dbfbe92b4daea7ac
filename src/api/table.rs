//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` answers: the columns kube-apiserver
//! prints for each resource (what `kubectl get` shows), with `PartialObjectMetadata` rows.

use serde_json::{json, Value};

use super::registry::Resource;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|part| part.contains("as=Table"))
}

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    cell: fn(&Value) -> Value,
}

const fn col(name: &'static str, kind: &'static str, format: &'static str, description: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column { name, kind, format, description, cell }
}

fn name(o: &Value) -> Value {
    o["metadata"]["name"].clone()
}

fn age(o: &Value) -> Value {
    let created = o["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    let parsed = time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) => json!(human_duration((time::OffsetDateTime::now_utc() - t).whole_seconds())),
        Err(_) => json!("<unknown>"),
    }
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len()) + v.as_array().map_or(0, |a| a.len())
}

const NAME: Column = col("Name", "string", "name", "Name must be unique within a namespace.", name);
const AGE: Column =
    col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", age);

fn columns(resource: &Resource) -> Vec<Column> {
    match resource.plural {
        "namespaces" => vec![NAME, col("Status", "string", "", "The status of the namespace", |o| o["status"]["phase"].clone()), AGE],
        "configmaps" => {
            vec![NAME, col("Data", "integer", "", "Number of data items", |o| json!(count(&o["data"]) + count(&o["binaryData"]))), AGE]
        }
        "secrets" => vec![
            NAME,
            col("Type", "string", "", "The type of the secret", |o| o.get("type").cloned().unwrap_or(json!("Opaque"))),
            col("Data", "integer", "", "Number of data items", |o| json!(count(&o["data"]))),
            AGE,
        ],
        "serviceaccounts" => vec![NAME, col("Secrets", "integer", "", "Number of secrets", |o| json!(count(&o["secrets"]))), AGE],
        "services" => vec![
            NAME,
            col("Type", "string", "", "The type of the service", |o| o["spec"]["type"].clone()),
            col("Cluster-IP", "string", "", "The cluster IP of the service", |o| o["spec"]["clusterIP"].clone()),
            col("External-IP", "string", "", "External addresses of the service", |o| {
                let ips: Vec<&str> = o["spec"]["externalIPs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                json!(if ips.is_empty() { "<none>".to_string() } else { ips.join(",") })
            }),
            col("Port(s)", "string", "", "The ports of the service", |o| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let node = p["nodePort"].as_u64().map(|n| format!(":{n}")).unwrap_or_default();
                        format!("{}{node}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                    })
                    .collect();
                json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") })
            }),
            AGE,
        ],
        "roles" | "clusterroles" => {
            vec![NAME, col("Created At", "date", "", "Time the role was created", |o| o["metadata"]["creationTimestamp"].clone())]
        }
        "rolebindings" | "clusterrolebindings" => vec![
            NAME,
            col("Role", "string", "", "The role bound", |o| {
                json!(format!("{}/{}", o["roleRef"]["kind"].as_str().unwrap_or(""), o["roleRef"]["name"].as_str().unwrap_or("")))
            }),
            AGE,
        ],
        "leases" => vec![NAME, col("Holder", "string", "", "The holder of the lease", |o| o["spec"]["holderIdentity"].clone()), AGE],
        "events" => vec![
            col("Last Seen", "string", "", "Time of the last occurrence", |o| {
                let mut probe = o.clone();
                if let Some(t) = o.get("lastTimestamp").filter(|t| !t.is_null()) {
                    probe["metadata"]["creationTimestamp"] = t.clone();
                }
                age(&probe)
            }),
            col("Type", "string", "", "Type of the event", |o| o["type"].clone()),
            col("Reason", "string", "", "Short reason", |o| o["reason"].clone()),
            col("Object", "string", "", "The object the event is about", |o| {
                json!(format!(
                    "{}/{}",
                    o["involvedObject"]["kind"].as_str().unwrap_or("").to_lowercase(),
                    o["involvedObject"]["name"].as_str().unwrap_or("")
                ))
            }),
            col("Message", "string", "", "Human-readable description", |o| o["message"].clone()),
        ],
        _ => vec![NAME, AGE],
    }
}

/// Builds the Table for `objects` at `resource_version`.
pub fn render(resource: &Resource, objects: &[Value], resource_version: &str, continue_token: Option<&str>) -> Value {
    let cols = columns(resource);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| json!({ "name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": 0 }))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o)).collect();
            json!({ "cells": cells, "object": { "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"] } })
        })
        .collect();
    let mut meta = json!({ "resourceVersion": resource_version });
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": definitions, "rows": rows })
}

/// Kubernetes' `HumanDuration`: "45s", "5m30s", "3h", "12d", "2y10d".
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let days = h / 24 % 365;
        if days == 0 {
            format!("{}y", h / 24 / 365)
        } else {
            format!("{}y{days}d", h / 24 / 365)
        }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400, "3y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn configmap_rows_count_data() {
        let cm = super::super::registry::lookup("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2020-01-01T00:00:00Z"}, "data": {"x": "1", "y": "2"}});
        let t = render(cm, &[obj], "7", None);
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(),
            ["Name", "Data", "Age"]
        );
        assert_eq!(t["rows"][0]["cells"][1], 2);
    }
}
