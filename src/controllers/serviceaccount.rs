//! The service-account and root-CA publishers: every active namespace has a `default`
//! ServiceAccount and a `kube-root-ca.crt` ConfigMap holding the cluster CA (`ca.crt`), and
//! gets them back when they are deleted or the ConfigMap is changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use super::common::backoff;
use super::Context;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "kubernetes.io/description";
const DESCRIPTION_TEXT: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let by_namespace = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let namespace_of = |ns: Option<String>| ns.map(|ns| ObjectRef::<Namespace>::new(&ns));
    let controller = Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(Api::<ServiceAccount>::all(client.clone()), by_namespace(DEFAULT_SERVICE_ACCOUNT), move |sa| namespace_of(sa.namespace()))
        .watches(Api::<ConfigMap>::all(client), by_namespace(ROOT_CA_CONFIG_MAP), move |cm| namespace_of(cm.namespace()))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    backoff::run(controller, reconcile, ctx).await;
}

/// Whether creating into a namespace failed only because it is going away (or already gone).
fn closing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 403 || s.code == 409)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let terminating =
        ns.metadata.deletion_timestamp.is_some() || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if accounts.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT_SERVICE_ACCOUNT.into()), ..Default::default() },
            ..Default::default()
        };
        match accounts.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created the default service account"),
            Err(e) if closing(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !ctx.settings.ca_pem.is_empty() {
        publish_root_ca(&Api::namespaced(ctx.client.clone(), &name), &ctx.settings.ca_pem).await?;
    }
    Ok(Action::await_change())
}

/// Creates or corrects the `kube-root-ca.crt` ConfigMap.
async fn publish_root_ca(maps: &Api<ConfigMap>, ca_pem: &str) -> Result<(), Error> {
    let data = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    let annotations = BTreeMap::from([(DESCRIPTION.to_string(), DESCRIPTION_TEXT.to_string())]);
    match maps.get_opt(ROOT_CA_CONFIG_MAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some(ROOT_CA_CONFIG_MAP.into()), annotations: Some(annotations), ..Default::default() },
                data: Some(data),
                ..Default::default()
            };
            match maps.create(&PostParams::default(), &cm).await {
                Err(e) if !closing(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Some(mut cm) if cm.data.as_ref() != Some(&data) => {
            cm.data = Some(data);
            cm.metadata.annotations.get_or_insert_with(BTreeMap::new).extend(annotations);
            match maps.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm).await {
                Err(e) if !closing(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Some(_) => {}
    }
    Ok(())
}
