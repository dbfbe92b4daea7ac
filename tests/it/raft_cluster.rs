//! A three-process raft cluster on 127.0.0.1: writes through any node, leader failover without
//! losing acknowledged writes, restart and catch-up (also by snapshot), concurrent
//! compare-and-swap, and member removal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orch::store::{conformance, KeyRange, RangeRequest, Store, TxnRequest};

use crate::support::{start_cluster, wait_for, ServerProc};

pub(crate) async fn get(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    let r = store.range(RangeRequest { range: KeyRange::single(key), ..Default::default() }).await.ok()?;
    r.kvs.into_iter().next().map(|kv| kv.value)
}

pub(crate) async fn leader_index(nodes: &[ServerProc]) -> usize {
    let leader = nodes[0].wait_member(Duration::from_secs(10)).await;
    for (i, n) in nodes.iter().enumerate() {
        if n.node_id().await == leader {
            return i;
        }
    }
    panic!("leader {leader} is not one of the nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_restart_and_no_lost_writes() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &["--disable-controllers".to_string()]).await;

    // Writes through every node, read back from every node.
    for (i, n) in nodes.iter().enumerate() {
        n.store().txn(TxnRequest::put(format!("/any/{i}"), format!("v{i}"))).await.unwrap();
    }
    for n in &nodes {
        for i in 0..3 {
            assert_eq!(get(&n.store(), &format!("/any/{i}")).await, Some(format!("v{i}").into_bytes()));
        }
    }

    // A writer keeps going through a node that survives while the leader is killed.
    let li = leader_index(&nodes).await;
    let old_leader = nodes[li].node_id().await;
    let survivor = nodes[(li + 1) % 3].store();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, store) = (acked.clone(), stop.clone(), survivor.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/fail/{i:05}");
                if store.txn(TxnRequest::put(key.clone(), "x")).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    nodes[li].kill();
    let others: Vec<&ServerProc> = nodes.iter().enumerate().filter(|(i, _)| *i != li).map(|(_, n)| n).collect();
    wait_for(Duration::from_secs(10), "a new leader after killing the old one", || async {
        let st = others[0].status().await?;
        st["leader"].as_u64().filter(|l| *l != old_leader)
    })
    .await;
    let failover = killed_at.elapsed();
    eprintln!("new leader elected {failover:?} after the leader was killed");
    assert!(failover < Duration::from_millis(3500), "failover took {failover:?}, expected about 3 s at most");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "the writer made progress ({} writes)", acked.len());
    let all = survivor.range(RangeRequest { range: KeyRange::prefix("/fail/"), ..Default::default() }).await.unwrap();
    let present: std::collections::HashSet<_> = all.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect();
    for key in &acked {
        assert!(present.contains(key), "acknowledged write {key} was lost in the failover");
    }

    // The killed node restarts from its data dir and catches up.
    nodes[li].restart();
    nodes[li].wait_member(Duration::from_secs(20)).await;
    let rev = survivor.current_revision().await.unwrap();
    let back = nodes[li].store();
    assert_eq!(back.current_revision().await.unwrap(), rev, "restarted node serves the latest revision");
    let got = back.range(RangeRequest { range: KeyRange::prefix("/fail/"), ..Default::default() }).await.unwrap();
    assert_eq!(got.kvs.len(), all.kvs.len(), "restarted node has every write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_behind_node_catches_up_by_snapshot() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = vec!["--raft-snapshot-entries=100".to_string(), "--disable-controllers".to_string()];
    let mut nodes = start_cluster(dir.path(), 3, &flags).await;
    let li = leader_index(&nodes).await;
    let lagger = (li + 1) % 3;
    nodes[lagger].kill();
    let store = nodes[li].store();
    for i in 0..600 {
        store.txn(TxnRequest::put(format!("/lag/{i:04}"), vec![b'x'; 256])).await.unwrap();
    }
    nodes[lagger].restart();
    nodes[lagger].wait_member(Duration::from_secs(20)).await;
    let back = nodes[lagger].store();
    let got = back.range(RangeRequest { range: KeyRange::prefix("/lag/"), count_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(got.count, 600);
    assert!(
        nodes[lagger].log().contains("installing raft snapshot"),
        "the lagging node should have caught up by snapshot:\n{}",
        nodes[lagger].log()
    );
    // Watches on the restored replica resume from its history.
    let mut w = back.watch(orch::store::WatchRequest { range: KeyRange::prefix("/lag/"), start_revision: 0 }).await.unwrap();
    store.txn(TxnRequest::put("/lag/new", "1")).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut w)).await.expect("watch event on restored node");
    assert_eq!(ev.unwrap().unwrap()[0].kv.key, b"/lag/new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_clients_on_every_node_lose_no_update_and_members_can_leave() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, &["--disable-controllers".to_string()]).await;
    let stores: Vec<Arc<dyn Store>> = nodes.iter().map(|n| Arc::new(n.store()) as Arc<dyn Store>).collect();
    conformance::concurrent_compare_and_swap(&stores, "/cas32", 32, 5).await;

    // Remove one member; the remaining two keep serving writes.
    let li = leader_index(&nodes).await;
    let leaving = (li + 1) % 3;
    let id = nodes[leaving].node_id().await;
    let leader_status = nodes[li].status().await.unwrap();
    assert_eq!(leader_status["members"].as_array().unwrap().len(), 3);
    remove_member(&nodes[(li + 2) % 3], id).await;
    wait_for(Duration::from_secs(10), "membership of two", || async {
        let st = nodes[li].status().await?;
        (st["members"].as_array()?.len() == 2).then_some(())
    })
    .await;
    stores[li].txn(TxnRequest::put("/after-leave", "ok")).await.unwrap();
    assert_eq!(get(stores[(li + 2) % 3].as_ref(), "/after-leave").await, Some(b"ok".to_vec()));
}

/// Asks `via` to remove member `id` (forwarded to the leader as needed).
async fn remove_member(via: &ServerProc, id: u64) {
    let http = via.admin_client().expect("admin client");
    let reply: Result<Result<(), orch::store::StoreError>, orch::rpc::RpcError> =
        http.call(&format!("{}/raft/remove", via.url()), &id, Duration::from_secs(20)).await;
    reply.expect("remove call").expect("member removed");
}
