//! What the store holds, raft carries: a 3 MiB object (the API's largest) written through a
//! follower reaches every member, and a member that missed a multi-MiB store catches up by a
//! snapshot sent in chunks.

use std::time::Duration;

use orch::store::{KeyRange, RangeRequest, Store, TxnRequest};

use crate::raft_cluster::{get, leader_index};
use crate::support::start_cluster;

/// `len` bytes of a pattern that differs per `seed`, so a value cannot pass for another.
fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_and_multi_mib_snapshots_replicate() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // At the default heartbeat (150 ms): openraft 0.9 times an AppendEntries out after one
    // heartbeat interval, so a 3 MiB entry must reach a follower within it.
    let flags: Vec<String> = ["--raft-snapshot-entries=20", "--disable-controllers"].map(String::from).to_vec();
    let mut nodes = start_cluster(dir.path(), 3, &flags).await;
    let li = leader_index(&nodes).await;
    let (follower, lagger) = ((li + 1) % 3, (li + 2) % 3);

    let big = value(3 << 20, 0);
    if let Err(e) = nodes[follower].store().txn(TxnRequest::put("/big/0", big.clone())).await {
        panic!("a 3 MiB write through a follower: {e}\nfollower:\n{}\nleader:\n{}", nodes[follower].log(), nodes[li].log());
    }
    for (i, n) in nodes.iter().enumerate() {
        assert!(get(&n.store(), "/big/0").await == Some(big.clone()), "member {i} serves the 3 MiB object");
    }

    // One member misses ~11 MiB of writes and enough entries for the log to be compacted
    // behind a snapshot; it can only catch up by that snapshot (several chunks).
    nodes[lagger].kill();
    let leader = nodes[li].store();
    for i in 1..=8u8 {
        leader.txn(TxnRequest::put(format!("/big/{i}"), value(1 << 20, i))).await.unwrap();
    }
    for i in 0..40 {
        leader.txn(TxnRequest::put(format!("/small/{i}"), "x")).await.unwrap();
    }
    nodes[lagger].restart();
    nodes[lagger].wait_member(Duration::from_secs(30)).await;
    let back = nodes[lagger].store();
    let want = leader.range(RangeRequest { range: KeyRange::prefix("/"), ..Default::default() }).await.unwrap();
    let got = back.range(RangeRequest { range: KeyRange::prefix("/"), ..Default::default() }).await.unwrap();
    assert_eq!(got.revision, want.revision, "the restarted member serves the latest revision");
    let ours = got.kvs.iter().filter(|kv| kv.key.starts_with(b"/big/") || kv.key.starts_with(b"/small/")).count();
    assert_eq!(ours, 49, "9 large and 40 small values");
    assert!(got.kvs == want.kvs, "the restarted member holds the same keys, values and revisions");
    assert!(
        nodes[lagger].log().contains("installing raft snapshot"),
        "the member should have caught up by snapshot:\n{}",
        nodes[lagger].log()
    );
}
