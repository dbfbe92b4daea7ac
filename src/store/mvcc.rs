//! The MVCC engine: applies transactions and compactions to one sled tree and serves reads at
//! the current or a past revision. Writers must be serialised by the caller (one applier: the
//! local store's writer task or the raft state machine); readers may run concurrently.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::keys::{self, HISTORY, LATEST};
use super::types::*;

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
/// How many entries a snapshot load writes per sled batch.
const LOAD_CHUNK: usize = 4096;

/// The live version of a key, with its value (read from its history entry).
#[derive(Debug, Clone)]
struct Latest {
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    value: Vec<u8>,
}

/// What is stored under `l<key>`: where the live version is. Its value lives once, in the
/// history entry `h<key><mod_revision>` (compaction always keeps the newest version), so a
/// write puts each value into the tree once instead of twice. Records of earlier releases
/// carried the value after these fields; decoding ignores those trailing bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct LatestRef {
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
}

/// One retained version of a key (stored under `h<key><rev>`); `value: None` is a tombstone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    create_revision: Revision,
    version: i64,
    value: Option<Vec<u8>>,
}

impl Latest {
    fn to_kv(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

impl Version {
    fn to_kv(&self, key: &[u8], rev: Revision) -> Option<KeyValue> {
        self.value.as_ref().map(|value| KeyValue {
            key: key.to_vec(),
            value: value.clone(),
            create_revision: self.create_revision,
            mod_revision: rev,
            version: self.version,
        })
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory serialisation cannot fail")
}

fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Transactions being applied as one batch: their writes so far (`overlay`, read by later
/// operations and transactions of the batch) and the sled batch that will persist them.
struct Pending<'a> {
    engine: &'a MvccEngine,
    overlay: HashMap<Vec<u8>, Option<Latest>>,
    batch: sled::Batch,
    revision: Revision,
}

impl Pending<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Latest>, StoreError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.engine.latest(key),
        }
    }

    fn compare_holds(&self, c: &Compare) -> Result<bool, StoreError> {
        use std::cmp::Ordering as O;
        let cur = self.get(&c.key)?;
        let ord = match &c.target {
            CompareTarget::ModRevision(r) => cur.as_ref().map_or(0, |l| l.mod_revision).cmp(r),
            CompareTarget::CreateRevision(r) => cur.as_ref().map_or(0, |l| l.create_revision).cmp(r),
            CompareTarget::Version(v) => cur.as_ref().map_or(0, |l| l.version).cmp(v),
            CompareTarget::Value(v) => match &cur {
                Some(l) => l.value.as_slice().cmp(v.as_slice()),
                None => return Ok(false),
            },
        };
        Ok(match c.op {
            CompareOp::Equal => ord == O::Equal,
            CompareOp::NotEqual => ord != O::Equal,
            CompareOp::Less => ord == O::Less,
            CompareOp::Greater => ord == O::Greater,
        })
    }

    /// Evaluates one transaction against the state so far and stages its writes.
    fn apply(&mut self, req: &TxnRequest) -> Result<Applied, StoreError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare_holds(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &req.success } else { &req.failure };
        let rev = self.revision + 1;
        let mut responses = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        let mut sub: u32 = 0;
        for op in ops {
            match op {
                Op::Get { key } => responses.push(OpResponse::Get { kv: self.get(key)?.map(|l| l.to_kv(key)) }),
                Op::Put { key, value } => {
                    let prev = self.get(key)?;
                    let next = Latest {
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: value.clone(),
                    };
                    let hist = Version { create_revision: next.create_revision, version: next.version, value: Some(value.clone()) };
                    let live = LatestRef { create_revision: next.create_revision, mod_revision: rev, version: next.version };
                    self.batch.insert(keys::latest_key(key), encode(&live));
                    self.batch.insert(keys::history_key(key, rev), encode(&hist));
                    self.batch.insert(keys::revlog_key(rev, sub), key.clone());
                    sub += 1;
                    let prev_kv = prev.map(|p| p.to_kv(key));
                    events.push(Event { kind: EventKind::Put, kv: next.to_kv(key), prev_kv: prev_kv.clone() });
                    responses.push(OpResponse::Put { prev_kv });
                    self.overlay.insert(key.clone(), Some(next));
                }
                Op::Delete { key } => {
                    let prev = self.get(key)?;
                    if let Some(p) = &prev {
                        let tomb = Version { create_revision: 0, version: 0, value: None };
                        self.batch.remove(keys::latest_key(key));
                        self.batch.insert(keys::history_key(key, rev), encode(&tomb));
                        self.batch.insert(keys::revlog_key(rev, sub), key.clone());
                        sub += 1;
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: KeyValue { key: key.clone(), mod_revision: rev, ..tombstone_kv() },
                            prev_kv: Some(p.to_kv(key)),
                        });
                    }
                    responses.push(OpResponse::Delete { prev_kv: prev.map(|p| p.to_kv(key)) });
                    self.overlay.insert(key.clone(), None);
                }
            }
        }
        if sub > 0 {
            self.revision = rev;
        }
        Ok(Applied { response: TxnResponse { succeeded, revision: self.revision, responses }, events })
    }
}

/// The result of applying a transaction: the client's answer and the events it produced.
pub struct Applied {
    pub response: TxnResponse,
    pub events: Vec<Event>,
}

pub struct MvccEngine {
    tree: sled::Tree,
    revision: AtomicI64,
    compacted: AtomicI64,
}

impl MvccEngine {
    /// Opens (or creates) the engine over `tree`.
    pub fn open(tree: sled::Tree) -> Result<Self, StoreError> {
        let read = |name| -> Result<Revision, StoreError> {
            Ok(match tree.get(keys::meta_key(name))? {
                Some(raw) => decode(&raw)?,
                None => 0,
            })
        };
        let revision = read(META_REVISION)?;
        let compacted = read(META_COMPACTED)?;
        Ok(Self { tree, revision: AtomicI64::new(revision), compacted: AtomicI64::new(compacted) })
    }

    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    pub fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    /// Reads an application metadata value stored alongside the data (e.g. raft's applied id).
    pub fn meta<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.tree.get(keys::meta_key(name))?.map(|raw| decode(&raw)).transpose()
    }

    /// A batch entry that stores an application metadata value atomically with a write.
    pub fn meta_entry<T: Serialize>(name: &str, value: &T) -> (Vec<u8>, Vec<u8>) {
        (keys::meta_key(name), encode(value))
    }

    /// The revision recorded by a dumped entry, if it is the entry recording it.
    pub fn revision_entry(key: &[u8], value: &[u8]) -> Option<Revision> {
        (key == keys::meta_key(META_REVISION).as_slice()).then(|| decode(value).ok()).flatten()
    }

    /// Writes metadata only (no revision change).
    pub fn put_meta(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn latest(&self, key: &[u8]) -> Result<Option<Latest>, StoreError> {
        let Some(raw) = self.tree.get(keys::latest_key(key))? else { return Ok(None) };
        let live: LatestRef = decode(&raw)?;
        self.with_value(key, live)?.map(Some).ok_or_else(|| StoreError::Corrupt("a live key has no history entry".into()))
    }

    /// The live version `live` of `key` with its value; `None` when its history entry is gone
    /// (a concurrent write replaced it and a compaction removed it since `live` was read).
    fn with_value(&self, key: &[u8], live: LatestRef) -> Result<Option<Latest>, StoreError> {
        let Some(raw) = self.tree.get(keys::history_key(key, live.mod_revision))? else { return Ok(None) };
        let version: Version = decode(&raw)?;
        Ok(version.value.map(|value| Latest {
            create_revision: live.create_revision,
            mod_revision: live.mod_revision,
            version: live.version,
            value,
        }))
    }

    /// Checks a transaction for requests the store refuses, before it is applied or proposed.
    pub fn validate(req: &TxnRequest) -> Result<(), StoreError> {
        let size = req.size();
        if size > super::MAX_TXN_BYTES {
            return Err(StoreError::InvalidArgument(format!("transaction of {size} bytes exceeds the limit of {}", super::MAX_TXN_BYTES)));
        }
        for branch in [&req.success, &req.failure] {
            let mut written = std::collections::HashSet::new();
            for op in branch {
                if let Op::Put { key, .. } | Op::Delete { key } = op {
                    if key.is_empty() {
                        return Err(StoreError::InvalidArgument("empty key".into()));
                    }
                    if !written.insert(key.as_slice()) {
                        return Err(StoreError::InvalidArgument(format!(
                            "duplicate key {:?} written twice in one transaction",
                            String::from_utf8_lossy(key)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies one transaction atomically, together with `meta` entries (e.g. raft's applied
    /// id). Deterministic: the same sequence of calls yields the same revisions on every replica.
    pub fn apply_txn(&self, req: &TxnRequest, meta: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Applied, StoreError> {
        self.apply_txns(std::slice::from_ref(req), meta)?.pop().expect("one result per transaction")
    }

    /// Applies transactions in order as one atomic sled batch (with `meta`), each at its own
    /// revision. The outer error is a storage failure (nothing applied); an inner error is a
    /// transaction refused on its own (the others still apply).
    pub fn apply_txns(&self, reqs: &[TxnRequest], meta: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let start = self.revision();
        let mut pending = Pending { engine: self, overlay: HashMap::new(), batch: sled::Batch::default(), revision: start };
        let mut results = Vec::with_capacity(reqs.len());
        for req in reqs {
            results.push(match Self::validate(req) {
                Ok(()) => Ok(pending.apply(req)?),
                Err(e) => Err(e),
            });
        }
        let Pending { mut batch, revision, .. } = pending;
        if revision != start {
            batch.insert(keys::meta_key(META_REVISION), encode(&revision));
        }
        for (k, v) in meta {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        self.revision.store(revision, Ordering::Release);
        Ok(results)
    }

    /// Reads a range now (`revision == 0`) or at a retained past revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let current = self.revision();
        if req.revision > current {
            return Err(StoreError::FutureRevision { requested: req.revision, current });
        }
        if req.revision > 0 && req.revision < self.compacted() {
            return Err(StoreError::Compacted { requested: req.revision, compacted: self.compacted() });
        }
        if req.revision == 0 || req.revision == current {
            // Optimistic read of the live keys; valid if no write landed meanwhile.
            if let Some(resp) = self.range_latest(req, current)? {
                if self.revision() == current {
                    return Ok(resp);
                }
            }
        }
        let at = if req.revision == 0 { current } else { req.revision };
        self.range_history(req, at)
    }

    /// A range response from `items` in key order: counted, limited, and turned into
    /// key-values by `kv_of` only when returned (`None` from it: the read raced a write).
    fn collect<T>(
        req: &RangeRequest,
        at: Revision,
        items: impl Iterator<Item = Result<T, StoreError>>,
        mut kv_of: impl FnMut(T) -> Result<Option<KeyValue>, StoreError>,
    ) -> Result<Option<RangeResponse>, StoreError> {
        let mut out = RangeResponse { revision: at, ..Default::default() };
        for item in items {
            let item = item?;
            out.count += 1;
            if req.count_only {
                continue;
            }
            if req.limit > 0 && out.kvs.len() as u64 >= req.limit {
                out.more = true;
                continue;
            }
            match kv_of(item)? {
                Some(kv) => out.kvs.push(kv),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// The live keys of a range; `None` when a write raced the read (see `with_value`).
    fn range_latest(&self, req: &RangeRequest, at: Revision) -> Result<Option<RangeResponse>, StoreError> {
        let start = keys::latest_key(&req.range.key);
        let end = match req.range.end_bound() {
            Some(e) => Bound::Excluded(keys::latest_key(&e)),
            None => Bound::Excluded(vec![LATEST + 1]),
        };
        let items = self.tree.range((Bound::Included(start), end)).map(|item| Ok(item?));
        Self::collect(req, at, items, |(k, v): (sled::IVec, sled::IVec)| {
            let key = &k[1..];
            Ok(self.with_value(key, decode(&v)?)?.map(|latest| latest.to_kv(key)))
        })
    }

    fn range_history(&self, req: &RangeRequest, at: Revision) -> Result<RangeResponse, StoreError> {
        let start = keys::history_prefix(&req.range.key);
        let end = match req.range.end_bound() {
            Some(e) => Bound::Excluded(keys::history_prefix(&e)),
            None => Bound::Excluded(vec![HISTORY + 1]),
        };
        // For every key, the newest version at or below `at`.
        let mut visible: Vec<KeyValue> = Vec::new();
        let mut current_key: Option<(Vec<u8>, Option<KeyValue>)> = None;
        for item in self.tree.range((Bound::Included(start), end)) {
            let (k, v) = item?;
            let (key, rev) = keys::parse_history_key(&k).ok_or_else(|| StoreError::Corrupt("bad history key".into()))?;
            if current_key.as_ref().is_some_and(|(ck, _)| *ck != key) {
                if let Some((_, Some(kv))) = current_key.take() {
                    visible.push(kv);
                }
            }
            let entry = current_key.get_or_insert_with(|| (key.clone(), None));
            if rev <= at {
                let version: Version = decode(&v)?;
                entry.1 = version.to_kv(&key, rev);
            }
        }
        if let Some((_, Some(kv))) = current_key {
            visible.push(kv);
        }
        let resp = Self::collect(req, at, visible.into_iter().map(Ok), |kv| Ok(Some(kv)))?;
        resp.ok_or_else(|| StoreError::Corrupt("history read lost a version".into()))
    }

    /// Events with revision in `[from, to]` touching `range`, rebuilt from the retained history.
    pub fn events_between(&self, from: Revision, to: Revision, range: &KeyRange) -> Result<Vec<Event>, StoreError> {
        if from <= self.compacted() {
            return Err(StoreError::Compacted { requested: from, compacted: self.compacted() });
        }
        let mut events = Vec::new();
        let start = keys::revlog_key(from, 0);
        let end = keys::revlog_key(to + 1, 0);
        for item in self.tree.range(start..end) {
            let (k, key) = item?;
            let (rev, _) = keys::parse_revlog_key(&k).ok_or_else(|| StoreError::Corrupt("bad revlog key".into()))?;
            if !range.contains(&key) {
                continue;
            }
            let raw = self.tree.get(keys::history_key(&key, rev))?.ok_or_else(|| StoreError::Corrupt("revlog without history".into()))?;
            let version: Version = decode(&raw)?;
            let prev_kv = self.version_before(&key, rev)?;
            events.push(match version.to_kv(&key, rev) {
                Some(kv) => Event { kind: EventKind::Put, kv, prev_kv },
                None => Event { kind: EventKind::Delete, kv: KeyValue { key: key.to_vec(), mod_revision: rev, ..tombstone_kv() }, prev_kv },
            });
        }
        Ok(events)
    }

    fn version_before(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
        let lo = keys::history_key(key, 0);
        let hi = keys::history_key(key, rev);
        match self.tree.range(lo..hi).next_back() {
            Some(item) => {
                let (k, v) = item?;
                let (_, prev_rev) = keys::parse_history_key(&k).ok_or_else(|| StoreError::Corrupt("bad history key".into()))?;
                Ok(decode::<Version>(&v)?.to_kv(key, prev_rev))
            }
            None => Ok(None),
        }
    }

    /// Checks that `rev` may be compacted to (above the last compaction, not in the future).
    pub fn check_compact(&self, rev: Revision) -> Result<(), StoreError> {
        if rev <= self.compacted() {
            return Err(StoreError::Compacted { requested: rev, compacted: self.compacted() });
        }
        if rev > self.revision() {
            return Err(StoreError::FutureRevision { requested: rev, current: self.revision() });
        }
        Ok(())
    }

    /// Drops every version no longer visible at or after `rev`; reads below `rev` then fail with
    /// [`StoreError::Compacted`]. Every deletion, the new compacted revision and the `meta`
    /// entries go in one atomic sled batch: a crash leaves the compaction done or not begun.
    pub fn compact(&self, rev: Revision, meta: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        self.check_compact(rev)?;
        let from = self.compacted();
        let mut batch = sled::Batch::default();
        let mut touched: Vec<Vec<u8>> = Vec::new();
        for item in self.tree.range(keys::revlog_key(from, 0)..keys::revlog_key(rev + 1, 0)) {
            let (k, key) = item?;
            touched.push(key.to_vec());
            batch.remove(k);
        }
        touched.sort();
        touched.dedup();
        for key in &touched {
            self.compact_key(key, rev, &mut batch)?;
        }
        batch.insert(keys::meta_key(META_COMPACTED), encode(&rev));
        for (k, v) in meta {
            batch.insert(k, v);
        }
        // Publish the new floor before deleting so that no reader starts below it meanwhile.
        self.compacted.store(rev, Ordering::Release);
        if let Err(e) = self.tree.apply_batch(batch) {
            self.compacted.store(from, Ordering::Release);
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes the versions of `key` hidden by a newer one at or below `rev`, and a tombstone that
    /// is itself the newest at or below `rev`.
    fn compact_key(&self, key: &[u8], rev: Revision, batch: &mut sled::Batch) -> Result<(), StoreError> {
        let versions: Vec<_> = self.tree.range(keys::history_key(key, 0)..keys::history_key(key, rev + 1)).collect::<Result<_, _>>()?;
        if let Some(((newest_key, newest), older)) = versions.split_last().map(|(l, o)| (l.clone(), o)) {
            for (k, _) in older {
                batch.remove(k.clone());
            }
            if decode::<Version>(&newest)?.value.is_none() {
                batch.remove(newest_key);
            }
        }
        Ok(())
    }

    /// Every entry of the tree, for a snapshot.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.tree.iter().map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from)).collect()
    }

    /// Replaces the whole tree with a snapshot's entries, read as they are written.
    pub fn load(&self, entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>) -> Result<(), StoreError> {
        self.tree.clear()?;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in entries {
            let (k, v) = entry?;
            batch.insert(k, v);
            pending += 1;
            if pending == LOAD_CHUNK {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        self.tree.apply_batch(batch)?;
        let reopened = Self::open(self.tree.clone())?;
        self.revision.store(reopened.revision(), Ordering::Release);
        self.compacted.store(reopened.compacted(), Ordering::Release);
        Ok(())
    }

    /// Approximate number of retained versions (for tests and metrics).
    pub fn history_len(&self) -> usize {
        self.tree.scan_prefix([HISTORY]).count()
    }
}

fn tombstone_kv() -> KeyValue {
    KeyValue { key: Vec::new(), value: Vec::new(), create_revision: 0, mod_revision: 0, version: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_records_of_earlier_releases_still_decode() {
        // Before values moved to the history entry, `l<key>` carried the value after the
        // revision fields.
        #[derive(Serialize)]
        struct WithValue {
            create_revision: Revision,
            mod_revision: Revision,
            version: i64,
            value: Vec<u8>,
        }
        let old = encode(&WithValue { create_revision: 3, mod_revision: 7, version: 2, value: b"v".to_vec() });
        let live: LatestRef = decode(&old).unwrap();
        assert_eq!((live.create_revision, live.mod_revision, live.version), (3, 7, 2));
    }

    #[test]
    fn each_value_is_stored_once() {
        let engine = MvccEngine::open(sled::Config::new().temporary(true).open().unwrap().open_tree("t").unwrap()).unwrap();
        let put =
            |v: &str| TxnRequest { success: vec![Op::Put { key: b"k".to_vec(), value: v.as_bytes().to_vec() }], ..Default::default() };
        engine.apply_txn(&put("first"), vec![]).unwrap();
        engine.apply_txn(&put("second"), vec![]).unwrap();
        let holding = |needle: &[u8]| engine.dump().unwrap().iter().filter(|(_, v)| v.windows(needle.len()).any(|w| w == needle)).count();
        assert_eq!(holding(b"second"), 1);
        let got = engine.range(&RangeRequest { range: KeyRange::single("k"), ..Default::default() }).unwrap();
        assert_eq!(got.kvs[0].value, b"second");
        assert_eq!((got.kvs[0].mod_revision, got.kvs[0].version, got.kvs[0].create_revision), (2, 2, 1));
        engine.compact(2, vec![]).unwrap();
        let got = engine.range(&RangeRequest { range: KeyRange::prefix("k"), ..Default::default() }).unwrap();
        assert_eq!(got.kvs[0].value, b"second", "compaction keeps the live version's value");
    }
}
