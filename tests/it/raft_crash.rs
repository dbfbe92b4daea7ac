//! Crash safety: a single-node server is SIGKILLed at random moments while clients write;
//! after every restart each acknowledged write is present and the revision never went back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch::store::{KeyRange, RangeRequest, Store, TxnRequest};
use rand::Rng;

use crate::support::start_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(&dir.path().join("n0"), &["--disable-controllers".to_string()]);
    server.wait_member(Duration::from_secs(20)).await;
    // key -> (value, revision) of every acknowledged write
    let acked: Arc<Mutex<HashMap<String, (String, i64)>>> = Arc::default();
    let mut highest_seen = 0;
    for round in 0..8 {
        let store = server.store();
        let mut writers = Vec::new();
        for w in 0..8 {
            let (store, acked) = (store.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{w}/{}", i % 50);
                    let value = format!("{round}-{i}");
                    match store.txn(TxnRequest::put(key.clone(), value.clone())).await {
                        Ok(r) => {
                            acked.lock().unwrap().insert(key, (value, r.revision));
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let pause = rand::thread_rng().gen_range(100..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill();
        for w in writers {
            w.await.unwrap();
        }
        server.restart();
        server.wait_member(Duration::from_secs(20)).await;
        let store = server.store();
        let rev = store.current_revision().await.unwrap();
        let acked = acked.lock().unwrap().clone();
        let max_acked = acked.values().map(|(_, r)| *r).max().unwrap_or(0);
        assert!(rev >= max_acked, "round {round}: revision went back to {rev}, acknowledged {max_acked}");
        assert!(rev >= highest_seen, "round {round}: revision {rev} below earlier {highest_seen}");
        highest_seen = rev;
        let all = store.range(RangeRequest { range: KeyRange::prefix("/crash/"), ..Default::default() }).await.unwrap();
        let present: HashMap<_, _> =
            all.kvs.into_iter().map(|kv| (String::from_utf8(kv.key).unwrap(), (kv.value, kv.mod_revision))).collect();
        for (key, (value, rev)) in &acked {
            let (got, got_rev) = present.get(key).unwrap_or_else(|| panic!("round {round}: acknowledged key {key} lost"));
            // A later write to the same key may have landed without its ack reaching us.
            assert!(*got_rev >= *rev, "round {round}: {key} went back from revision {rev} to {got_rev}");
            if got_rev == rev {
                assert_eq!(got, value.as_bytes(), "round {round}: {key} has the wrong value");
            }
        }
        eprintln!("round {round}: {} keys, revision {rev}, all acknowledged writes present", acked.len());
    }
}
