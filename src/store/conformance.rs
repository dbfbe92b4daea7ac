//! The one conformance suite every [`Store`] implementation must pass: it checks each clause of
//! the contract on [`Store`]. It uses keys under a prefix of its own and only relative revisions,
//! so it can run against a store that already holds data.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::*;

/// How long the suite waits for an expected watch event.
const WAIT: Duration = Duration::from_secs(10);

fn k(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}/{name}").into_bytes()
}

async fn get(store: &dyn Store, key: &[u8]) -> Option<KeyValue> {
    let resp = store.range(RangeRequest { range: KeyRange::single(key), ..Default::default() }).await.expect("range");
    resp.kvs.into_iter().next()
}

async fn put(store: &dyn Store, key: &[u8], value: &[u8]) -> TxnResponse {
    store.txn(TxnRequest::put(key, value)).await.expect("put")
}

async fn next_events(w: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {n} watch events, got {}", out.len()))
            .expect("watch stream ended")
            .expect("watch error");
        out.extend(batch);
    }
    out
}

/// Runs the whole suite. `prefix` isolates its keys; compaction runs last because it moves the
/// store's compaction floor.
pub async fn run(store: Arc<dyn Store>, prefix: &str) {
    let s = store.as_ref();
    revisions_and_bookkeeping(s, &format!("{prefix}/rev")).await;
    transactions(s, &format!("{prefix}/txn")).await;
    ranges(s, &format!("{prefix}/range")).await;
    watches(s, &format!("{prefix}/watch")).await;
    concurrent_compare_and_swap(&[store.clone()], &format!("{prefix}/cas"), 16, 10).await;
    compaction(s, &format!("{prefix}/compact")).await;
}

/// Clauses 1, 2 and 4: revision counting and per-key bookkeeping.
pub async fn revisions_and_bookkeeping(s: &dyn Store, p: &str) {
    let key = k(p, "a");
    let r1 = put(s, &key, b"v1").await.revision;
    assert!(r1 > 0);
    assert_eq!(s.current_revision().await.unwrap(), r1, "current revision after a put");
    let kv = get(s, &key).await.expect("key after put");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (r1, r1, 1, &b"v1"[..]));

    let r2 = put(s, &key, b"v2").await.revision;
    assert_eq!(r2, r1 + 1, "each writing transaction adds exactly one revision");
    let kv = get(s, &key).await.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r1, r2, 2));

    let del = s.txn(TxnRequest::delete(key.clone())).await.unwrap();
    assert_eq!(del.revision, r2 + 1);
    assert!(matches!(&del.responses[0], OpResponse::Delete { prev_kv: Some(p) } if p.value == b"v2"));
    assert!(get(s, &key).await.is_none());

    let noop = s.txn(TxnRequest::delete(key.clone())).await.unwrap();
    assert_eq!(noop.revision, r2 + 1, "deleting an absent key writes nothing");

    let r4 = put(s, &key, b"v3").await.revision;
    assert_eq!(r4, r2 + 2);
    let kv = get(s, &key).await.unwrap();
    assert_eq!((kv.create_revision, kv.version), (r4, 1), "re-created key starts a new life");
}

/// Clause 3: compares, branches, multi-op atomicity and refusals.
pub async fn transactions(s: &dyn Store, p: &str) {
    let a = k(p, "a");
    let b = k(p, "b");
    let created = s
        .txn(TxnRequest {
            compare: vec![Compare::absent(a.clone())],
            success: vec![Op::Put { key: a.clone(), value: b"1".to_vec() }, Op::Put { key: b.clone(), value: b"2".to_vec() }],
            failure: vec![Op::Get { key: a.clone() }],
        })
        .await
        .unwrap();
    assert!(created.succeeded);
    let (ka, kb) = (get(s, &a).await.unwrap(), get(s, &b).await.unwrap());
    assert_eq!(ka.mod_revision, created.revision);
    assert_eq!(kb.mod_revision, created.revision, "one transaction, one revision");

    let again = s
        .txn(TxnRequest {
            compare: vec![Compare::absent(a.clone())],
            success: vec![Op::Put { key: a.clone(), value: b"x".to_vec() }],
            failure: vec![Op::Get { key: a.clone() }],
        })
        .await
        .unwrap();
    assert!(!again.succeeded);
    assert_eq!(again.revision, created.revision, "a failed compare writes nothing");
    assert!(matches!(&again.responses[0], OpResponse::Get { kv: Some(kv) } if kv.value == b"1"));

    let stale = s
        .txn(TxnRequest {
            compare: vec![Compare::mod_revision(a.clone(), created.revision - 1)],
            success: vec![Op::Put { key: a.clone(), value: b"stale".to_vec() }],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(!stale.succeeded, "compare on a stale mod_revision must fail");

    let fresh = s
        .txn(TxnRequest {
            compare: vec![Compare::mod_revision(a.clone(), created.revision), Compare::exists(b.clone())],
            success: vec![Op::Put { key: a.clone(), value: b"3".to_vec() }, Op::Get { key: a.clone() }, Op::Delete { key: b.clone() }],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(fresh.succeeded);
    assert!(matches!(&fresh.responses[1], OpResponse::Get { kv: Some(kv) } if kv.value == b"3"), "a get sees earlier ops");
    assert!(get(s, &b).await.is_none());

    let value_cmp = Compare { key: a.clone(), op: CompareOp::Equal, target: CompareTarget::Value(b"3".to_vec()) };
    let version_cmp = Compare { key: a.clone(), op: CompareOp::Greater, target: CompareTarget::Version(1) };
    let r = s.txn(TxnRequest { compare: vec![value_cmp, version_cmp], ..Default::default() }).await.unwrap();
    assert!(r.succeeded);

    let dup = s
        .txn(TxnRequest {
            success: vec![Op::Put { key: a.clone(), value: b"x".to_vec() }, Op::Delete { key: a.clone() }],
            ..Default::default()
        })
        .await;
    assert!(matches!(dup, Err(StoreError::InvalidArgument(_))), "duplicate keys are refused: {dup:?}");
    assert_eq!(get(s, &a).await.unwrap().value, b"3", "a refused transaction changes nothing");
}

/// Clause 5: prefix ranges, limits, counts and reads at past revisions.
pub async fn ranges(s: &dyn Store, p: &str) {
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(put(s, &k(p, &format!("k{i:02}")), format!("v{i}").as_bytes()).await.revision);
    }
    put(s, &k(&format!("{p}x"), "outside"), b"-").await;
    let all = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), ..Default::default() }).await.unwrap();
    assert_eq!(all.kvs.len(), 10, "prefix range must not leak keys outside the prefix");
    assert_eq!(all.count, 10);
    assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key), "ascending key order");

    let limited = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), limit: 3, ..Default::default() }).await.unwrap();
    assert_eq!(limited.kvs.len(), 3);
    assert!(limited.more);
    assert_eq!(limited.count, 10);

    let mut tail = KeyRange::prefix(k(p, ""));
    tail.key = k(p, "k05");
    let rest = s.range(RangeRequest { range: tail, ..Default::default() }).await.unwrap();
    assert_eq!(rest.kvs.len(), 5, "continuing a range from a key");

    let counted = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), count_only: true, ..Default::default() }).await.unwrap();
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, 10);

    put(s, &k(p, "k00"), b"changed").await;
    s.txn(TxnRequest::delete(k(p, "k01"))).await.unwrap();
    let past = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), revision: revs[9], ..Default::default() }).await.unwrap();
    assert_eq!(past.kvs.len(), 10, "a past revision still sees deleted keys");
    assert_eq!(past.kvs[0].value, b"v0", "a past revision sees old values");
    assert_eq!(past.revision, revs[9]);
    let early = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), revision: revs[2], ..Default::default() }).await.unwrap();
    assert_eq!(early.kvs.len(), 3);

    let current = s.current_revision().await.unwrap();
    let future = s.range(RangeRequest { range: KeyRange::single(k(p, "k00")), revision: current + 1000, ..Default::default() }).await;
    assert!(matches!(future, Err(StoreError::FutureRevision { .. })), "{future:?}");
}

/// Clause 6: history replay, live events, filtering, previous values, ordering.
pub async fn watches(s: &dyn Store, p: &str) {
    let a = k(p, "a");
    let first = put(s, &a, b"1").await.revision;
    put(s, &a, b"2").await;
    s.txn(TxnRequest::delete(a.clone())).await.unwrap();

    let mut replay = s.watch(WatchRequest { range: KeyRange::prefix(k(p, "")), start_revision: first }).await.unwrap();
    let mut live = s.watch(WatchRequest { range: KeyRange::prefix(k(p, "")), start_revision: 0 }).await.unwrap();
    let events = next_events(&mut replay, 3).await;
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Put, EventKind::Put, EventKind::Delete]);
    assert_eq!(events[0].kv.value, b"1");
    assert!(events[0].prev_kv.is_none());
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"2");
    assert_eq!(events[2].kv.mod_revision, first + 2);

    put(s, &k(&format!("{p}-other"), "x"), b"not mine").await;
    let mut last = 0;
    for i in 0..50 {
        last = put(s, &k(p, &format!("b{}", i % 5)), format!("{i}").as_bytes()).await.revision;
    }
    for w in [&mut replay, &mut live] {
        let events = next_events(w, 50).await;
        assert_eq!(events.len(), 50, "exactly the events in range, once each");
        assert!(events.windows(2).all(|e| e[0].kv.mod_revision < e[1].kv.mod_revision), "revision order");
        assert_eq!(events.last().unwrap().kv.mod_revision, last);
        assert!(events.iter().all(|e| e.kv.key.starts_with(p.as_bytes())));
    }

    // Many concurrent watchers each get every event.
    let mut watchers = Vec::new();
    for _ in 0..20 {
        watchers.push(s.watch(WatchRequest { range: KeyRange::prefix(k(p, "")), start_revision: 0 }).await.unwrap());
    }
    for i in 0..10 {
        put(s, &k(p, "c"), format!("{i}").as_bytes()).await;
    }
    for w in &mut watchers {
        let events = next_events(w, 10).await;
        let values: Vec<_> = events.iter().map(|e| String::from_utf8_lossy(&e.kv.value).into_owned()).collect();
        assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}

/// `clients` tasks, spread over `stores` (e.g. one per replica), each add `per_client` to one
/// counter by compare-and-swap; no update is lost.
pub async fn concurrent_compare_and_swap(stores: &[Arc<dyn Store>], p: &str, clients: usize, per_client: usize) {
    let key = k(p, "counter");
    put(stores[0].as_ref(), &key, b"0").await;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let store = stores[i % stores.len()].clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            let mut retries = 0u64;
            while done < per_client {
                let kv = get(store.as_ref(), &key).await.unwrap();
                let n: u64 = String::from_utf8_lossy(&kv.value).parse().unwrap();
                let r = store
                    .txn(TxnRequest {
                        compare: vec![Compare::mod_revision(key.clone(), kv.mod_revision)],
                        success: vec![Op::Put { key: key.clone(), value: (n + 1).to_string().into_bytes() }],
                        failure: vec![],
                    })
                    .await;
                match r {
                    Ok(r) if r.succeeded => done += 1,
                    Ok(_) | Err(StoreError::Unavailable(_)) => retries += 1,
                    Err(e) => panic!("compare-and-swap failed: {e}"),
                }
            }
            retries
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kv = get(stores[0].as_ref(), &key).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&kv.value), (clients * per_client).to_string(), "lost compare-and-swap updates");
}

/// Clause 7: compaction bounds history and turns old reads and watches into `Compacted`.
pub async fn compaction(s: &dyn Store, p: &str) {
    let a = k(p, "a");
    let gone = k(p, "gone");
    let r1 = put(s, &a, b"1").await.revision;
    put(s, &gone, b"x").await;
    s.txn(TxnRequest::delete(gone.clone())).await.unwrap();
    let r2 = put(s, &a, b"2").await.revision;
    let r3 = put(s, &a, b"3").await.revision;
    s.compact(r2).await.unwrap();

    let old = s.range(RangeRequest { range: KeyRange::single(a.clone()), revision: r1, ..Default::default() }).await;
    assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
    let at = s.range(RangeRequest { range: KeyRange::prefix(k(p, "")), revision: r2, ..Default::default() }).await.unwrap();
    assert_eq!(at.kvs.len(), 1, "the compacted revision itself stays readable; deleted keys are gone");
    assert_eq!(at.kvs[0].value, b"2");
    assert_eq!(get(s, &a).await.unwrap().mod_revision, r3);

    let w = s.watch(WatchRequest { range: KeyRange::prefix(k(p, "")), start_revision: r2 }).await;
    assert!(matches!(w, Err(StoreError::Compacted { .. })), "watch at the compacted revision must fail");
    let mut w = s.watch(WatchRequest { range: KeyRange::prefix(k(p, "")), start_revision: r2 + 1 }).await.unwrap();
    let events = next_events(&mut w, 1).await;
    assert_eq!(events[0].kv.mod_revision, r3);
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, b"2", "previous value survives compaction");

    assert!(matches!(s.compact(r2).await, Err(StoreError::Compacted { .. })));
    let current = s.current_revision().await.unwrap();
    assert!(matches!(s.compact(current + 100).await, Err(StoreError::FutureRevision { .. })));
}
