//! Request, response and event types of the revisioned key-value store (etcd's data model).

use serde::{Deserialize, Serialize};

/// A revision: the store's global logical clock. 0 means "no revision" / "now".
pub type Revision = i64;

/// One key with its value and etcd-style revision bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the create).
    pub version: i64,
}

/// A key range: one key when `range_end` is empty, else `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRange {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// Exactly one key.
    pub fn single(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into(), range_end: Vec::new() }
    }

    /// Every key starting with `prefix` (the empty prefix covers the whole keyspace).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        Self { key, range_end }
    }

    /// Whether `k` lies inside this range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return k == self.key.as_slice();
        }
        k >= self.key.as_slice() && (self.range_end == [0] || k < self.range_end.as_slice())
    }

    /// The exclusive upper bound, or `None` for "to the end of the keyspace".
    pub(crate) fn end_bound(&self) -> Option<Vec<u8>> {
        if self.range_end.is_empty() {
            let mut end = self.key.clone();
            end.push(0);
            Some(end)
        } else if self.range_end == [0] {
            None
        } else {
            Some(self.range_end.clone())
        }
    }
}

/// The smallest key greater than every key with this prefix; `[0]` means "no upper bound"
/// (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Read a range of keys, now or at a past revision that is still retained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// At most this many keys (0 = no limit).
    pub limit: u64,
    /// Read as of this revision (0 = the current revision).
    pub revision: Revision,
    /// Return only the count, no key-values.
    pub count_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// How many keys matched in total.
    pub count: u64,
    /// The revision the read was served at.
    pub revision: Revision,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's mod_revision (0 when absent).
    ModRevision(Revision),
    /// The key's create_revision (0 when absent).
    CreateRevision(Revision),
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's value (an absent key never matches).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// One guard of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into(), op: CompareOp::Equal, target: CompareTarget::CreateRevision(0) }
    }

    /// The key exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into(), op: CompareOp::Greater, target: CompareTarget::CreateRevision(0) }
    }

    /// The key was last written at exactly `rev`.
    pub fn mod_revision(key: impl Into<Vec<u8>>, rev: Revision) -> Self {
        Self { key: key.into(), op: CompareOp::Equal, target: CompareTarget::ModRevision(rev) }
    }
}

/// One operation inside a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Read a key as of the transaction (after earlier ops of the same branch).
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// If every compare holds, run `success`, else `failure`; atomically, at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl TxnRequest {
    /// An unconditional put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self { success: vec![Op::Put { key: key.into(), value: value.into() }], ..Default::default() }
    }

    /// An unconditional delete.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self { success: vec![Op::Delete { key: key.into() }], ..Default::default() }
    }

    /// Its size: the bytes of its keys and values plus 32 per compare and operation (more than
    /// bincode spends on each), computed without encoding it.
    pub fn size(&self) -> u64 {
        let compares = self.compare.iter().map(|c| {
            let value = if let CompareTarget::Value(v) = &c.target { v.len() } else { 0 };
            32 + c.key.len() + value
        });
        let ops = self.success.iter().chain(&self.failure).map(|op| match op {
            Op::Put { key, value } => 32 + key.len() + value.len(),
            Op::Delete { key } | Op::Get { key } => 32 + key.len(),
        });
        compares.chain(ops).map(|n| n as u64).sum()
    }
}

/// The result of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResponse {
    Put { prev_kv: Option<KeyValue> },
    Delete { prev_kv: Option<KeyValue> },
    Get { kv: Option<KeyValue> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it wrote nothing).
    pub revision: Revision,
    pub responses: Vec<OpResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The key-value after the change; for a delete, the key with `mod_revision` = the delete's
    /// revision and an empty value.
    pub kv: KeyValue,
    /// The key-value before the change, if the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Watch a range from a revision on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// First revision to deliver (0 = changes after the current revision only).
    pub start_revision: Revision,
}
