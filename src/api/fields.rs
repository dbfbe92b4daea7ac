//! Field selectors (`?fieldSelector=metadata.name=a,status.phase!=Active`): equality on the
//! fields each resource supports, as kube-apiserver allows them.

use serde_json::Value;

use super::registry::Resource;

/// Fields every resource can be selected by, plus those specific to some resources.
fn supported(resource: &Resource, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || match resource.plural {
            "namespaces" => field == "status.phase",
            "secrets" => field == "type",
            "pods" => matches!(
                field,
                "spec.nodeName"
                    | "spec.restartPolicy"
                    | "spec.schedulerName"
                    | "spec.serviceAccountName"
                    | "status.phase"
                    | "status.podIP"
                    | "status.nominatedNodeName"
            ),
            "events" => field.starts_with("involvedObject.") || matches!(field, "reason" | "type" | "source" | "reportingComponent"),
            _ => false,
        }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(resource: &Resource, raw: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: {part:?}; expected field=value or field!=value"));
            };
            let field = field.trim();
            if !supported(resource, field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = field.split('.').try_fold(obj, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_selectors_match_supported_fields_only() {
        let events = super::super::registry::lookup("", "v1", "events").unwrap();
        let sel = FieldSelector::parse(events, "involvedObject.name=web,type!=Warning").unwrap();
        assert!(sel.matches(&json!({"involvedObject": {"name": "web"}, "type": "Normal"})));
        assert!(!sel.matches(&json!({"involvedObject": {"name": "db"}, "type": "Normal"})));
        let cms = super::super::registry::lookup("", "v1", "configmaps").unwrap();
        assert!(FieldSelector::parse(cms, "metadata.name=a").unwrap().matches(&json!({"metadata": {"name": "a"}})));
        assert_eq!(FieldSelector::parse(cms, "data.k=v").unwrap_err(), "field label not supported: data.k");
    }
}
