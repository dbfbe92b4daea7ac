//! The command-line syntax of labels (`key=value`) and taints (`key=value:Effect`), as
//! kubelet's `--node-labels` and `--register-with-taints` take them.

use k8s_openapi::api::core::v1::Taint;

/// Parses `key=value:Effect` (the value is optional).
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not a taint; use key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("taint effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("{s:?} has no taint key"));
    }
    Ok(Taint { key: key.into(), value, effect: effect.into(), time_added: None })
}

/// Parses `key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into(), v.into()))
        .ok_or_else(|| format!("{s:?} is not a label; use key=value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_labels_parse() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect.as_str()), ("dedicated", Some("gpu"), "NoSchedule"));
        assert_eq!(parse_taint("special:NoExecute").unwrap().value, None);
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert_eq!(parse_label("a=b").unwrap(), ("a".to_string(), "b".to_string()));
        assert!(parse_label("=b").is_err());
    }
}
