//! Which [`Chain`] applies to which store key: kube's resource matching (`secrets`,
//! `deployments.apps`, `*.apps`, `*.` for the core group, `*.*` for everything), built from an
//! [`EncryptionConfiguration`]. Keys of resources not configured get no chain at all.

use std::sync::Arc;

use super::chain::Chain;
use super::config::{ConfigError, EncryptionConfiguration};

/// A group and resource; `*` is the wildcard, `""` the core group.
type GroupResource = (String, String);

/// The chains of one configuration, by resource (a handful: searched in place, no allocation
/// per lookup).
pub struct Table {
    chains: Vec<(GroupResource, Arc<Chain>)>,
}

/// kube's `schema.ParseGroupResource`: the resource before the first dot, the group after.
fn parse(resource: &str) -> GroupResource {
    match resource.split_once('.') {
        Some((r, g)) => (g.to_string(), r.to_string()),
        None => (String::new(), resource.to_string()),
    }
}

fn yaml(gr: &GroupResource) -> String {
    if gr.0.is_empty() {
        gr.1.clone()
    } else {
        format!("{}.{}", gr.1, gr.0)
    }
}

impl Table {
    pub fn new(config: &EncryptionConfiguration) -> Result<Table, ConfigError> {
        let mut chains: Vec<(GroupResource, Arc<Chain>)> = Vec::new();
        for entry in &config.resources {
            let chain = Chain::new(&entry.providers)?;
            for resource in &entry.resources {
                let gr = parse(resource);
                for mask in [(gr.0.clone(), "*".to_string()), ("*".to_string(), "*".to_string())] {
                    if chains.iter().any(|(gr, _)| *gr == mask) {
                        return Err(ConfigError::Invalid(format!("resource {:?} is masked by earlier rule {:?}", yaml(&gr), yaml(&mask))));
                    }
                }
                // A resource listed twice keeps its first entry (kube appends; the first wins).
                if !chains.iter().any(|(known, _)| *known == gr) {
                    chains.push((gr, chain.clone()));
                }
            }
        }
        Ok(Table { chains })
    }

    /// The chain for a store key `/registry/<group or core>/<resource>/...`, if configured.
    pub fn chain_for(&self, key: &[u8]) -> Option<&Arc<Chain>> {
        let mut parts = key.strip_prefix(b"/registry/")?.splitn(3, |b| *b == b'/');
        let group = std::str::from_utf8(parts.next()?).ok()?;
        let resource = std::str::from_utf8(parts.next()?).ok()?;
        let group = if group == "core" { "" } else { group };
        let get = |g: &str, r: &str| self.chains.iter().find(|((cg, cr), _)| cg == g && cr == r).map(|(_, c)| c);
        get(group, resource).or_else(|| get(group, "*")).or_else(|| get("*", "*"))
    }

    /// The store prefixes holding every configured resource (what a re-encryption rewrites).
    pub fn prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .chains
            .iter()
            .map(|((g, r), _)| match (g.as_str(), r.as_str()) {
                ("*", _) => "/registry/".to_string(),
                ("", "*") => "/registry/core/".to_string(),
                (g, "*") => format!("/registry/{g}/"),
                ("", r) => format!("/registry/core/{r}/"),
                (g, r) => format!("/registry/{g}/{r}/"),
            })
            .collect();
        prefixes.sort();
        // Drop prefixes inside another one.
        let mut kept: Vec<String> = Vec::new();
        for p in prefixes {
            if !kept.iter().any(|k| p.starts_with(k.as_str())) {
                kept.push(p);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::ProviderConfiguration;
    use super::*;

    fn config(entries: &[&[&str]]) -> EncryptionConfiguration {
        let mut c = EncryptionConfiguration::new(entries[0], vec![ProviderConfiguration::identity()]);
        for e in &entries[1..] {
            c.resources.push(EncryptionConfiguration::new(e, vec![ProviderConfiguration::identity()]).resources.remove(0));
        }
        c
    }

    #[test]
    fn matches_resources_groups_and_wildcards() {
        let t = Table::new(&config(&[&["secrets", "*.apps"]])).unwrap();
        assert!(t.chain_for(b"/registry/core/secrets/default/a").is_some());
        assert!(t.chain_for(b"/registry/apps/deployments/default/a").is_some());
        assert!(t.chain_for(b"/registry/core/configmaps/default/a").is_none());
        assert!(t.chain_for(b"/registry/batch/jobs/default/a").is_none());
        assert_eq!(t.prefixes(), ["/registry/apps/", "/registry/core/secrets/"]);
        let all = Table::new(&config(&[&["*.*"]])).unwrap();
        assert!(all.chain_for(b"/registry/batch/jobs/default/a").is_some());
        assert_eq!(all.prefixes(), ["/registry/"]);
        let core = Table::new(&config(&[&["*."]])).unwrap();
        assert!(core.chain_for(b"/registry/core/configmaps/x/y").is_some());
        assert!(core.chain_for(b"/registry/apps/deployments/x/y").is_none());
    }

    #[test]
    fn refuses_rules_masked_by_earlier_wildcards() {
        let err = Table::new(&config(&[&["*.apps"], &["deployments.apps"]])).err().unwrap().to_string();
        assert!(err.contains(r#"resource "deployments.apps" is masked by earlier rule "*.apps""#), "{err}");
    }
}
