//! The ConfigMaps and Secrets a pod refers to (env, envFrom, volumes), read through the API as
//! the node (the Node authorizer lets it read them); [`DataSource`] is the seam unit tests fill.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

/// Which kind of object holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataKind {
    ConfigMap,
    Secret,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::ConfigMap => "configmap",
            DataKind::Secret => "secret",
        }
    }
}

pub type Data = BTreeMap<String, Vec<u8>>;

/// Reads the data of ConfigMaps and Secrets in the pod's namespace.
#[async_trait::async_trait]
pub trait DataSource: Send + Sync {
    /// The object's keys and values; `None` when it does not exist; `Err` when it cannot be read.
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, String>;
    /// A token of ServiceAccount `account` for `audience` (the API's when `None`) valid `seconds`.
    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, String>;
}

/// The API as a [`DataSource`] for one namespace.
pub struct ApiData {
    pub client: kube::Client,
    pub namespace: String,
}

#[async_trait::async_trait]
impl DataSource for ApiData {
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, String> {
        let err = |e: kube::Error| format!("cannot read {} {}/{name}: {e}", kind.as_str(), self.namespace);
        match kind {
            DataKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                Ok(api.get_opt(name).await.map_err(err)?.map(|cm| {
                    let mut out: Data = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    out.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                    out
                }))
            }
            DataKind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                Ok(api.get_opt(name).await.map_err(err)?.map(|s| {
                    let mut out: Data = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    out.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
                    out
                }))
            }
        }
    }

    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(seconds),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let answer = api
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("cannot get a token of serviceaccount {}/{account}: {e}", self.namespace))?;
        Ok(answer.status.map(|s| s.token).unwrap_or_default())
    }
}

/// A fixed set of objects (for tests).
#[cfg(test)]
#[derive(Default)]
pub struct StaticData(pub BTreeMap<(DataKind, String), Data>);

#[cfg(test)]
#[async_trait::async_trait]
impl DataSource for StaticData {
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, String> {
        Ok(self.0.get(&(kind, name.to_string())).cloned())
    }

    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, String> {
        Ok(format!("token-of-{account}-for-{}-{seconds}s", audience.unwrap_or("api")))
    }
}
