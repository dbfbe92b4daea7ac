//! The objects a pod refers to — ConfigMaps and Secrets (env, envFrom, volumes), ServiceAccount
//! tokens, PersistentVolumeClaims — read through the API as the node (the Node authorizer lets
//! it read them); [`DataSource`] is the seam unit tests fill.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

use super::claims::{self, ClaimError};
use super::layout::PodRef;

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

/// An object a pod refers to that cannot be had (the message a pod's status or event shows).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A required ConfigMap or Secret does not exist.
    #[error("{} \"{name}\" not found", .kind.as_str())]
    Missing { kind: DataKind, name: String },
    #[error("cannot read {kind} {name}: {source}")]
    Read { kind: &'static str, name: String, source: kube::Error },
    #[error("cannot get a token of serviceaccount {namespace}/{account}: {source}")]
    Token { namespace: String, account: String, source: kube::Error },
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

impl ObjectError {
    /// The error of reading `name` (`namespace/name` when namespaced) of `kind`, for `map_err`.
    fn read(kind: &'static str, name: String) -> impl FnOnce(kube::Error) -> ObjectError {
        move |source| ObjectError::Read { kind, name, source }
    }
}

/// Reads what a pod in one namespace refers to.
#[async_trait::async_trait]
pub trait DataSource: Send + Sync {
    /// The object's keys and values; `None` when it does not exist; `Err` when it cannot be read.
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, ObjectError>;
    /// A token of ServiceAccount `account` for `audience` (the API's when `None`) valid `seconds`.
    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, ObjectError>;
    /// Where the volume bound to PersistentVolumeClaim `claim` is on this node.
    async fn claim_path(&self, claim: &str) -> Result<PathBuf, ObjectError>;
}

/// The API as a [`DataSource`] for one pod: each object read alone by name (the Node
/// authorizer lets a node get only what its pods refer to, and list nothing), tokens bound to
/// the pod.
pub struct ApiData {
    pub client: kube::Client,
    pub pod: PodRef,
}

#[async_trait::async_trait]
impl DataSource for ApiData {
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, ObjectError> {
        let err = || ObjectError::read(kind.as_str(), format!("{}/{name}", self.pod.namespace));
        match kind {
            DataKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.pod.namespace);
                Ok(api.get_opt(name).await.map_err(err())?.map(|cm| {
                    let mut out: Data = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    out.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                    out
                }))
            }
            DataKind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.pod.namespace);
                Ok(api.get_opt(name).await.map_err(err())?.map(|s| {
                    let mut out: Data = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    out.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
                    out
                }))
            }
        }
    }

    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, ObjectError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.pod.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.pod.name.clone()),
                    uid: Some(self.pod.uid.clone()),
                }),
            },
            ..Default::default()
        };
        let answer = api.create_token_request(account, &PostParams::default(), &request).await.map_err(|source| ObjectError::Token {
            namespace: self.pod.namespace.clone(),
            account: account.to_string(),
            source,
        })?;
        Ok(answer.status.map(|s| s.token).unwrap_or_default())
    }

    async fn claim_path(&self, claim: &str) -> Result<PathBuf, ObjectError> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.pod.namespace);
        let pvc =
            claims.get_opt(claim).await.map_err(ObjectError::read("persistentvolumeclaim", format!("{}/{claim}", self.pod.namespace)))?;
        let volume = claims::bound_volume(claim, pvc.as_ref())?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = volumes.get_opt(&volume).await.map_err(ObjectError::read("persistentvolume", volume.clone()))?;
        Ok(claims::volume_path(claim, &volume, pv.as_ref())?)
    }
}

/// A fixed set of objects and claim paths (for tests), counting the tokens asked for.
#[cfg(test)]
#[derive(Default)]
pub struct StaticData(pub BTreeMap<(DataKind, String), Data>, pub BTreeMap<String, PathBuf>, std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl StaticData {
    pub fn token_requests(&self) -> usize {
        self.2.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
#[async_trait::async_trait]
impl DataSource for StaticData {
    async fn data(&self, kind: DataKind, name: &str) -> Result<Option<Data>, ObjectError> {
        Ok(self.0.get(&(kind, name.to_string())).cloned())
    }

    async fn service_account_token(&self, account: &str, audience: Option<&str>, seconds: i64) -> Result<String, ObjectError> {
        self.2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(format!("token-of-{account}-for-{}-{seconds}s", audience.unwrap_or("api")))
    }

    async fn claim_path(&self, claim: &str) -> Result<PathBuf, ObjectError> {
        self.1.get(claim).cloned().ok_or_else(|| ClaimError::NotFound(claim.to_string()).into())
    }
}
