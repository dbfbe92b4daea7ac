//! The server side of `orch secrets-encrypt` (k3s's `/v1-k3s/encrypt/*`): `GET
//! /v1-orch/encrypt/status` and `PUT /v1-orch/encrypt/config`, for cluster admins only. Key
//! changes are written to the configuration file, reloaded into the running store and followed
//! by a re-encryption of the stored values; the rotation stage is kept beside the file as k3s
//! keeps it (`encryption-state.json`: `<stage>-<sha256 of the configuration file>`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};

use crate::api::encryption::k3s::{self, ManagedKeys, ProviderKind, Request, Status};
use crate::api::encryption::{ConfigError, EncryptingStore, EncryptionConfiguration};
use crate::pki::{Peer, MASTERS_GROUP};
use crate::store::StoreError;

pub const STATUS_PATH: &str = "/v1-orch/encrypt/status";
pub const CONFIG_PATH: &str = "/v1-orch/encrypt/config";

#[derive(Debug, thiserror::Error)]
enum EncryptError {
    #[error("secrets encryption is not configured on this server (start it with --secrets-encryption)")]
    Disabled,
    #[error("incorrect stage: {0} found on this server (use --force to override)")]
    Stage(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encryption state file: {0}")]
    Io(#[from] std::io::Error),
}

/// What the two endpoints work on.
pub struct EncryptState {
    /// `None` when this server does not encrypt.
    pub store: Option<Arc<EncryptingStore>>,
    /// The provider new keys are made for (`--secrets-encryption-provider`).
    pub kind: ProviderKind,
    /// `encryption-state.json`.
    pub stage_file: PathBuf,
    /// One change at a time.
    pub busy: tokio::sync::Mutex<()>,
    /// How many servers the cluster has now: new keys reach only this server's file, so
    /// rotations are refused while there are others.
    pub servers: Box<dyn Fn() -> usize + Send + Sync>,
}

/// The recorded stage and configuration hash (`start` and none when nothing is recorded).
fn read_stage(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.trim().rsplit_once('-') {
        Some((stage, hash)) => (stage.to_string(), hash.to_string()),
        None => (k3s::STAGE_START.to_string(), String::new()),
    }
}

/// Records `stage` with the hash of the configuration file in force.
pub fn write_stage(path: &Path, config: &Path, stage: &str) -> std::io::Result<()> {
    let line = format!("{stage}-{}", k3s::config_hash(config)?);
    crate::pki::write_private(path, &line).map_err(|e| std::io::Error::other(e.to_string()))
}

pub fn routes(state: Arc<EncryptState>) -> Router {
    Router::new().route(STATUS_PATH, get(status)).route(CONFIG_PATH, put(change)).with_state(state)
}

/// `None` for a cluster admin, else the refusal of a request to `what`.
pub(super) fn admin_only(peer: &Peer, what: &str) -> Option<Response> {
    match &peer.0 {
        Some(id) if id.in_group(MASTERS_GROUP) => None,
        Some(id) => Some((StatusCode::FORBIDDEN, format!("user {:?} may not {what}", id.user)).into_response()),
        None => Some((StatusCode::UNAUTHORIZED, "a cluster admin's client certificate is required").into_response()),
    }
}

async fn status(State(s): State<Arc<EncryptState>>, Extension(peer): Extension<Peer>) -> Response {
    if let Some(refused) = admin_only(&peer, "manage secrets encryption") {
        return refused;
    }
    let Some(store) = &s.store else { return Json(Status::default()).into_response() };
    let path = store.encryption().path();
    match EncryptionConfiguration::read(path) {
        Ok(config) => {
            let mut status = k3s::key_status(&config);
            let (stage, hash) = read_stage(&s.stage_file);
            status.stage = stage;
            status.hashmatch = k3s::config_hash(path).is_ok_and(|h| h == hash);
            if !status.hashmatch {
                status.hasherror = Some(format!("hash does not match: {} changed outside of `orch secrets-encrypt`", path.display()));
            }
            Json(status).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn change(State(s): State<Arc<EncryptState>>, Extension(peer): Extension<Peer>, Json(req): Json<Request>) -> Response {
    if let Some(refused) = admin_only(&peer, "manage secrets encryption") {
        return refused;
    }
    let _one = s.busy.lock().await;
    match apply(&s, &req).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, ?req, "secrets-encrypt request refused");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

/// Writes `keys` in k3s's layout and puts them in force.
fn save(store: &EncryptingStore, keys: &ManagedKeys, kind: ProviderKind) -> Result<(), EncryptError> {
    keys.to_config(kind).write(store.encryption().path())?;
    Ok(store.encryption().reload()?)
}

async fn apply(s: &EncryptState, req: &Request) -> Result<(), EncryptError> {
    let store = s.store.as_deref().ok_or(EncryptError::Disabled)?;
    let path = store.encryption().path().to_path_buf();
    let set_stage = |stage: &str| write_stage(&s.stage_file, &path, stage);
    let (stage, _) = read_stage(&s.stage_file);
    let expect = |allowed: &[&str]| match req.force || allowed.contains(&stage.as_str()) {
        true => Ok(()),
        false => Err(EncryptError::Stage(stage.clone())),
    };
    let managed = || ManagedKeys::from_config(&EncryptionConfiguration::read(&path)?).map_err(EncryptError::Refused);
    let single_server = || {
        match (s.servers)() {
        1 => Ok(()),
        n => Err(EncryptError::Refused(format!(
            "this cluster has {n} servers and a new key would reach this one only: rotate with the same --encryption-provider-config file on every server instead (docs/security.md)"
        ))),
    }
    };
    let aescbc_only = |what: &str| match s.kind {
        ProviderKind::Aescbc => Ok(()),
        ProviderKind::Secretbox => {
            Err(EncryptError::Refused(format!("{what} does not support secretbox key type, use rotate-keys instead")))
        }
    };
    match (req.stage.as_deref(), req.enable) {
        (Some(k3s::STAGE_PREPARE), _) => {
            expect(&[k3s::STAGE_START, k3s::STAGE_REENCRYPT_FINISHED])?;
            aescbc_only("prepare")?;
            single_server()?;
            let mut keys = managed()?;
            keys.append_new(s.kind);
            save(store, &keys, s.kind)?;
            set_stage(k3s::STAGE_PREPARE)?;
        }
        (Some(k3s::STAGE_ROTATE), _) => {
            expect(&[k3s::STAGE_PREPARE])?;
            aescbc_only("rotate")?;
            single_server()?;
            let mut keys = managed()?;
            keys.rotate(s.kind);
            save(store, &keys, s.kind)?;
            set_stage(k3s::STAGE_ROTATE)?;
        }
        (Some(k3s::STAGE_REENCRYPT_ACTIVE), _) => {
            // A hand-edited configuration is re-read first, then rewritten with, whatever its stage.
            let keys = managed().ok();
            if keys.is_some() {
                expect(&[k3s::STAGE_ROTATE])?;
                aescbc_only("reencrypt")?;
            }
            store.encryption().reload()?;
            set_stage(k3s::STAGE_REENCRYPT_ACTIVE)?;
            store.reencrypt().await?;
            if let Some(mut keys) = keys.filter(|_| !req.skip) {
                keys.drop_oldest(s.kind);
                save(store, &keys, s.kind)?;
            }
            set_stage(k3s::STAGE_REENCRYPT_FINISHED)?;
        }
        (Some(k3s::STAGE_ROTATE_KEYS), _) => {
            expect(&[k3s::STAGE_START, k3s::STAGE_REENCRYPT_FINISHED])?;
            single_server()?;
            let mut keys = managed()?;
            set_stage(k3s::STAGE_REENCRYPT_ACTIVE)?;
            keys.append_new(s.kind);
            keys.rotate(s.kind);
            save(store, &keys, s.kind)?;
            store.reencrypt().await?;
            keys.drop_oldest(s.kind);
            save(store, &keys, s.kind)?;
            set_stage(k3s::STAGE_REENCRYPT_FINISHED)?;
        }
        (Some(other), _) => return Err(EncryptError::Refused(format!("unknown stage {other} requested"))),
        (None, Some(enable)) => {
            let mut keys = managed()?;
            if keys.enabled == enable {
                tracing::info!(enable, "secrets encryption already in that state");
                return Ok(());
            }
            let has_keys = match s.kind {
                ProviderKind::Aescbc => !keys.aescbc.is_empty(),
                ProviderKind::Secretbox => !keys.secretbox.is_empty(),
            };
            if enable && !has_keys {
                return Err(EncryptError::Refused(format!(
                    "cannot enable secrets encryption with {} key type, no keys found",
                    s.kind.name()
                )));
            }
            keys.enabled = enable;
            save(store, &keys, s.kind)?;
            store.reencrypt().await?;
            set_stage(&stage)?;
        }
        (None, None) => return Err(EncryptError::Refused("the request names neither a stage nor enable".into())),
    }
    Ok(())
}
