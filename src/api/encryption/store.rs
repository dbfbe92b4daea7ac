//! [`EncryptingStore`]: a [`Store`] decorator that encrypts the values of configured resources
//! on their way in and decrypts them on their way out (ranges, transaction results, watch
//! events), so everything above it, the watch cache included, sees plain object bytes and
//! nothing below it (raft log, snapshots, sled) does. Keys of other resources pass untouched.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use super::table::Table;
use super::Encryption;
use crate::store::{
    prefix_end, Compare, CompareTarget, KeyRange, KeyValue, Op, OpResponse, RangeRequest, RangeResponse, Revision, Store, StoreError,
    TxnRequest, TxnResponse, WatchRequest, WatchStream,
};

/// How many keys one re-encryption step reads.
const REENCRYPT_PAGE: u64 = 256;

pub struct EncryptingStore {
    inner: Arc<dyn Store>,
    encryption: Arc<Encryption>,
}

fn transform_error(key: &[u8], e: impl ToString) -> StoreError {
    StoreError::Transform { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() }
}

/// Replaces `kv`'s stored value by its plain value, where its resource is encrypted.
fn decrypt(table: &Table, kv: &mut KeyValue) -> Result<(), StoreError> {
    if let Some(chain) = table.chain_for(&kv.key).filter(|_| !kv.value.is_empty()) {
        kv.value = chain.from_storage(&kv.value, &kv.key).map_err(|e| transform_error(&kv.key, e))?;
    }
    Ok(())
}

fn encrypt_ops(table: &Table, ops: &mut [Op]) {
    for op in ops {
        if let Op::Put { key, value } = op {
            if let Some(chain) = table.chain_for(key) {
                *value = chain.to_storage(value, key);
            }
        }
    }
}

impl EncryptingStore {
    pub fn new(inner: Arc<dyn Store>, encryption: Arc<Encryption>) -> Arc<EncryptingStore> {
        Arc::new(EncryptingStore { inner, encryption })
    }

    pub fn encryption(&self) -> &Arc<Encryption> {
        &self.encryption
    }

    /// Rewrites every stored value of every configured resource with the configuration in
    /// force (its first provider and key), also values already in that form; returns how many
    /// were rewritten. A value changed meanwhile was written with the current key already and
    /// is skipped. Each rewrite is a new revision, as an update through kube's API would be.
    pub async fn reencrypt(&self) -> Result<usize, StoreError> {
        let table = self.encryption.table();
        let mut rewritten = 0;
        for prefix in table.prefixes() {
            let end = prefix_end(prefix.as_bytes());
            let mut start = prefix.into_bytes();
            loop {
                let range = KeyRange { key: start.clone(), range_end: end.clone() };
                let page = self.inner.range(RangeRequest { range, limit: REENCRYPT_PAGE, ..Default::default() }).await?;
                for kv in &page.kvs {
                    let Some(chain) = table.chain_for(&kv.key) else { continue };
                    let plain = chain.from_storage(&kv.value, &kv.key).map_err(|e| transform_error(&kv.key, e))?;
                    let put = Op::Put { key: kv.key.clone(), value: chain.to_storage(&plain, &kv.key) };
                    let txn = TxnRequest {
                        compare: vec![Compare::mod_revision(kv.key.clone(), kv.mod_revision)],
                        success: vec![put],
                        failure: vec![],
                    };
                    rewritten += usize::from(self.inner.txn(txn).await?.succeeded);
                }
                match page.kvs.last() {
                    Some(last) if page.more => start = [last.key.as_slice(), &[0]].concat(),
                    _ => break,
                }
            }
        }
        tracing::info!(rewritten, "re-encrypted the stored values of the encrypted resources");
        Ok(rewritten)
    }
}

#[async_trait]
impl Store for EncryptingStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let mut resp = self.inner.range(req).await?;
        let table = self.encryption.table();
        for kv in &mut resp.kvs {
            decrypt(&table, kv)?;
        }
        Ok(resp)
    }

    /// Value compares cannot hold on encrypted keys (every seal is randomised), so they are
    /// refused there rather than silently failing.
    async fn txn(&self, mut req: TxnRequest) -> Result<TxnResponse, StoreError> {
        let table = self.encryption.table();
        if let Some(c) = req.compare.iter().find(|c| matches!(c.target, CompareTarget::Value(_)) && table.chain_for(&c.key).is_some()) {
            return Err(StoreError::InvalidArgument(format!(
                "value compares are not possible on encrypted key {}",
                String::from_utf8_lossy(&c.key)
            )));
        }
        encrypt_ops(&table, &mut req.success);
        encrypt_ops(&table, &mut req.failure);
        let mut resp = self.inner.txn(req).await?;
        for r in &mut resp.responses {
            match r {
                OpResponse::Put { prev_kv: Some(kv) } | OpResponse::Delete { prev_kv: Some(kv) } | OpResponse::Get { kv: Some(kv) } => {
                    decrypt(&table, kv)?
                }
                _ => {}
            }
        }
        Ok(resp)
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError> {
        let encryption = self.encryption.clone();
        let stream = self.inner.watch(req).await?.map(move |batch| {
            let mut events = batch?;
            let table = encryption.table();
            for e in &mut events {
                decrypt(&table, &mut e.kv)?;
                if let Some(prev) = &mut e.prev_kv {
                    decrypt(&table, prev)?;
                }
            }
            Ok(events)
        });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{EncryptionConfiguration, Key, Keys, ProviderConfiguration};
    use super::*;
    use crate::store::{LocalStore, StoreConfig};

    fn aescbc(keys: Vec<Key>) -> EncryptionConfiguration {
        let p = ProviderConfiguration { aescbc: Some(Keys { keys }), ..Default::default() };
        EncryptionConfiguration::new(&["secrets"], vec![p, ProviderConfiguration::identity()])
    }

    async fn raw(store: &dyn Store, key: &str) -> Vec<u8> {
        store.range(RangeRequest { range: KeyRange::single(key), ..Default::default() }).await.unwrap().kvs.remove(0).value
    }

    #[tokio::test]
    async fn encrypts_configured_resources_only_and_reencrypts_with_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(LocalStore::open(&dir.path().join("db"), &StoreConfig::default()).unwrap());
        let path = dir.path().join("encryption-config.json");
        let old = Key::random("old", 32);
        aescbc(vec![old.clone()]).write(&path).unwrap();
        let store = EncryptingStore::new(inner.clone(), Encryption::load(&path).unwrap());
        let mut events = store.watch(WatchRequest { range: KeyRange::prefix("/registry/"), start_revision: 0 }).await.unwrap();

        let (secret, cm) = ("/registry/core/secrets/default/s", "/registry/core/configmaps/default/c");
        store.txn(TxnRequest::put(secret, "{\"data\":\"hunter2\"}")).await.unwrap();
        store.txn(TxnRequest::put(cm, "{\"data\":\"open\"}")).await.unwrap();
        let stored = raw(inner.as_ref(), secret).await;
        assert!(stored.starts_with(b"k8s:enc:aescbc:v1:old:"));
        assert!(!stored.windows(7).any(|w| w == b"hunter2"), "the plain value reached the store");
        assert_eq!(raw(inner.as_ref(), cm).await, b"{\"data\":\"open\"}", "other resources are stored as they are");
        assert_eq!(raw(store.as_ref(), secret).await, b"{\"data\":\"hunter2\"}");
        let first = futures::StreamExt::next(&mut events).await.unwrap().unwrap();
        assert_eq!(first[0].kv.value, b"{\"data\":\"hunter2\"}", "watchers see plain values");

        let value_compare = Compare { key: secret.into(), op: crate::store::CompareOp::Equal, target: CompareTarget::Value(vec![]) };
        assert!(store.txn(TxnRequest { compare: vec![value_compare], ..Default::default() }).await.is_err());

        aescbc(vec![Key::random("new", 32), old]).write(&path).unwrap();
        store.encryption().reload().unwrap();
        assert_eq!(store.reencrypt().await.unwrap(), 1);
        assert!(raw(inner.as_ref(), secret).await.starts_with(b"k8s:enc:aescbc:v1:new:"));

        aescbc(vec![Key::random("other", 32)]).write(&path).unwrap();
        store.encryption().reload().unwrap();
        let err = store.range(RangeRequest { range: KeyRange::single(secret), ..Default::default() }).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to transform key \"/registry/core/secrets/default/s\": no matching key was found for the provided AES transformer"
        );
    }
}
