//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` answers: the columns kube-apiserver
//! 1.33 prints for each resource (what `kubectl get` shows), with `PartialObjectMetadata` rows.
//! The server always renders the wide columns; they carry priority 1 so kubectl shows them only
//! with `-o wide`. Resources without a printer get the default Name / Created At table.

mod cells;
mod cluster;
mod core;
mod pod;
mod workloads;

use std::borrow::Cow;

use serde_json::{json, Value};

use super::registry::Resource;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|part| part.contains("as=Table"))
}

/// One column: its definition and how a cell is computed from the object.
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
    cell: fn(&Value) -> Value,
}

/// A column of `kind` ("string", "integer", "boolean", "date") shown by plain `kubectl get`.
const fn col(name: &'static str, kind: &'static str, description: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column { name, kind, format: "", priority: 0, description, cell }
}

/// A column shown only with `-o wide` (priority 1).
const fn wide(name: &'static str, kind: &'static str, description: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column { priority: 1, ..col(name, kind, description, cell) }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The Name column (format "name").
const NAME: Column = Column { format: "name", ..col("Name", "string", NAME_DOC, |o| o["metadata"]["name"].clone()) };
/// The Age column.
const AGE: Column = col("Age", "string", CREATED_DOC, cells::age);
/// The wide Containers and Images columns of a pod template at `spec.template.spec`.
const CONTAINERS: Column =
    wide("Containers", "string", "Names of each container in the template.", |o| cells::containers(&o["spec"]["template"]["spec"]).0);
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.", |o| {
    cells::containers(&o["spec"]["template"]["spec"]).1
});

/// kube-apiserver's default table (`rest.NewDefaultTableConvertor`), for kinds without a printer.
fn default_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Created At", "date", CREATED_DOC, |o| {
            json!(cells::timestamp(&o["metadata"]["creationTimestamp"])
                .and_then(|t| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok())
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()))
        }),
    ]
}

fn columns(resource: &Resource) -> Vec<Column> {
    core::columns(resource)
        .or_else(|| pod::columns(resource))
        .or_else(|| workloads::columns(resource))
        .or_else(|| cluster::columns(resource))
        .unwrap_or_else(default_columns)
}

/// The object as its printer reads it: events.k8s.io Events are printed as core Events.
fn printable<'a>(resource: &Resource, obj: &'a Value) -> Cow<'a, Value> {
    match (resource.group, resource.plural) {
        ("events.k8s.io", "events") => Cow::Owned(core::as_core_event(obj)),
        _ => Cow::Borrowed(obj),
    }
}

/// A custom resource's columns: NAME, then its additionalPrinterColumns (Age by default, as
/// the CRD's definition fills them in);
/// `date` cells read as ages, as kube-apiserver's CRD table convertor writes them.
fn custom_columns(custom: &'static crate::api::crd::definition::Custom) -> (Vec<Value>, Box<dyn Fn(&Value) -> Vec<Value>>) {
    let printer = &custom.columns;
    let mut definitions =
        vec![json!({ "name": NAME.name, "type": NAME.kind, "format": NAME.format, "description": NAME.description, "priority": 0 })];
    definitions.extend(
        printer
            .iter()
            .map(|c| json!({ "name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority })),
    );
    let cells = move |o: &Value| -> Vec<Value> {
        let mut row = vec![(NAME.cell)(o)];
        row.extend(printer.iter().map(|c| {
            match crate::api::crd::definition::json_path(o, &c.json_path) {
                Some(v) if c.kind == "date" => cells::timestamp(v)
                    .map(|t| json!(cells::human_duration((time::OffsetDateTime::now_utc() - t).whole_seconds())))
                    .unwrap_or(Value::Null),
                Some(v) => v.clone(),
                None => Value::Null,
            }
        }));
        row
    };
    (definitions, Box::new(cells))
}

/// Builds the Table for `objects` at `resource_version`.
pub fn render(resource: &Resource, objects: &[Value], resource_version: &str, continue_token: Option<&str>) -> Value {
    let (definitions, cells): (Vec<Value>, Box<dyn Fn(&Value) -> Vec<Value>>) = match resource.custom {
        Some(custom) => custom_columns(custom),
        None => {
            let cols = columns(resource);
            let definitions = cols
                .iter()
                .map(
                    |c| json!({ "name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority }),
                )
                .collect();
            (definitions, Box::new(move |o| cols.iter().map(|c| (c.cell)(o)).collect()))
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let shown = printable(resource, o);
            let cells: Vec<Value> = cells(&shown);
            let mut row = json!({ "cells": cells, "object": { "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"] } });
            if let Some(conditions) = pod::row_conditions(resource, o) {
                row["conditions"] = conditions;
            }
            row
        })
        .collect();
    let mut meta = json!({ "resourceVersion": resource_version });
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": definitions, "rows": rows })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Renders one object of `group/version/plural`, returning (column names, wide flags, cells).
    pub fn table(group: &str, version: &str, plural: &str, obj: Value) -> (Vec<String>, Vec<bool>, Vec<Value>) {
        let resource = crate::api::registry::lookup(group, version, plural).expect("a registered resource");
        let t = render(resource, &[obj], "1", None);
        let defs = t["columnDefinitions"].as_array().unwrap();
        let names = defs.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        let wide = defs.iter().map(|c| c["priority"] == 1).collect();
        (names, wide, t["rows"][0]["cells"].as_array().unwrap().clone())
    }

    /// The header kubectl prints: plain columns, then (with `-o wide`) the priority-1 ones.
    pub fn header(group: &str, version: &str, plural: &str) -> (String, String) {
        let (names, wide, _) = table(group, version, plural, json!({"metadata": {"name": "x"}}));
        let upper = |keep: &dyn Fn(bool) -> bool| {
            names.iter().zip(&wide).filter(|(_, w)| keep(**w)).map(|(n, _)| n.to_uppercase()).collect::<Vec<_>>().join("|")
        };
        (upper(&|w| !w), upper(&|_| true))
    }

    #[test]
    fn every_resource_renders_matching_cells() {
        for r in crate::api::registry::BUILTIN.iter().filter(|r| r.stored()) {
            let (names, _, cells) = table(r.group, r.version, r.plural, json!({"metadata": {"name": "x"}}));
            assert_eq!(names.len(), cells.len(), "{}", r.plural);
        }
    }

    #[test]
    fn kinds_without_a_printer_get_name_and_created_at() {
        for (group, plural) in
            [("rbac.authorization.k8s.io", "roles"), ("", "limitranges"), ("apiextensions.k8s.io", "customresourcedefinitions")]
        {
            let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00.123Z"}});
            let (names, _, cells) = table(group, "v1", plural, obj);
            assert_eq!(names, ["Name", "Created At"]);
            assert_eq!(cells, [json!("x"), json!("2024-05-01T10:00:00Z")]);
        }
    }

    #[test]
    fn configmap_rows_count_data() {
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2020-01-01T00:00:00Z"}, "data": {"x": "1", "y": "2"}});
        let (names, _, cells) = table("", "v1", "configmaps", obj);
        assert_eq!(names, ["Name", "Data", "Age"]);
        assert_eq!(cells[1], 2);
    }
}
