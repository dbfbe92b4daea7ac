//! Batching of transactions into raft entries, in two stages built from one [`Batcher`]:
//!
//! - the *proposer* on every node gathers the transactions of concurrent clients and writes
//!   them as one command (forwarded to the leader on a follower);
//! - the *combiner* on the leader merges the commands arriving at once (its own proposer's and
//!   those forwarded by followers) into one raft entry.
//!
//! Each stage keeps a small number of batches in flight; what arrives meanwhile queues and rides
//! the next batch, so under load every raft round (and fsync) carries many transactions, while a lone
//! client still goes through at once. A batch succeeds or fails as a whole.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::{StoreError, TxnRequest, TxnResponse};

/// Most transactions in one batch.
const MAX_BATCH: usize = 512;
/// Most bytes of transactions ([`TxnRequest::size`]) in one batch, unless a single group is
/// larger (a group is itself such a batch or one transaction of at most
/// [`crate::store::MAX_TXN_BYTES`]): a raft entry stays below the RPC body limit
/// ([`crate::rpc::MAX_BODY_BYTES`]) whatever the mix of object sizes.
const MAX_BATCH_BYTES: u64 = 8 << 20;

pub(crate) type TxnResults = Vec<Result<TxnResponse, StoreError>>;
type Reply<E> = oneshot::Sender<Result<TxnResults, E>>;

/// A queue of transaction groups executed in merged batches by `run`.
pub(crate) struct Batcher<E> {
    tx: mpsc::Sender<(Vec<TxnRequest>, Reply<E>)>,
}

impl<E: Clone + Send + 'static> Batcher<E> {
    /// Starts the batching task; `execute` runs one merged batch and must return one result per
    /// transaction. The task ends when the batcher is dropped.
    pub(crate) fn start<F, Fut>(in_flight: usize, execute: F) -> Self
    where
        F: Fn(Vec<TxnRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<TxnResults, E>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(rx, in_flight, Arc::new(execute)));
        Self { tx }
    }

    /// Queues `txns` and waits for their results; `closed` when the batcher is gone.
    pub(crate) async fn submit(&self, txns: Vec<TxnRequest>, closed: E) -> Result<TxnResults, E> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send((txns, reply)).await.is_err() {
            return Err(closed);
        }
        rx.await.unwrap_or(Err(closed))
    }
}

async fn run<E, F, Fut>(mut rx: mpsc::Receiver<(Vec<TxnRequest>, Reply<E>)>, in_flight: usize, execute: Arc<F>)
where
    E: Clone + Send + 'static,
    F: Fn(Vec<TxnRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TxnResults, E>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut queued = Vec::new();
    loop {
        let permit = slots.clone().acquire_owned().await.expect("semaphore is never closed");
        // What a byte-capped batch left behind goes first, with whatever has arrived since.
        if queued.is_empty() && rx.recv_many(&mut queued, MAX_BATCH).await == 0 {
            break;
        }
        while queued.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => queued.push(item),
                Err(_) => break,
            }
        }
        let take = super::prefix_within(queued.iter().map(|(txns, _)| txns.iter().map(TxnRequest::size).sum()), MAX_BATCH_BYTES);
        let mut merged = Vec::new();
        let mut groups = Vec::with_capacity(take);
        for (txns, reply) in queued.drain(..take) {
            groups.push((txns.len(), reply));
            merged.extend(txns);
        }
        let total = merged.len();
        let batch = execute(merged);
        tokio::spawn(async move {
            let outcome = batch.await;
            drop(permit);
            match outcome {
                Ok(results) if results.len() == total => {
                    let mut results = results.into_iter();
                    for (n, reply) in groups {
                        let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                    }
                }
                Ok(results) => {
                    let e = StoreError::Corrupt(format!("{} results for a batch of {total} transactions", results.len()));
                    for (n, reply) in groups {
                        let _ = reply.send(Ok(vec![Err(e.clone()); n]));
                    }
                }
                Err(e) => groups.into_iter().for_each(|(_, reply)| drop(reply.send(Err(e.clone())))),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_byte_capped_batch_leaves_the_rest_for_the_next() {
        let sizes = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::start(1, move |txns: Vec<TxnRequest>| {
            seen.lock().push(txns.len());
            async move { Ok::<_, StoreError>(txns.iter().map(|_| Ok(TxnResponse::default())).collect()) }
        });
        let batcher = Arc::new(batcher);
        let writes: Vec<_> = (0..6)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(vec![TxnRequest::put(format!("/k{i}"), vec![0u8; 3 << 20])], StoreError::Closed).await })
            })
            .collect();
        for w in writes {
            assert_eq!(w.await.unwrap().unwrap().len(), 1);
        }
        let sizes = sizes.lock().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 6);
        assert!(sizes.iter().all(|n| *n <= 3), "no batch holds more than three 3 MiB writes: {sizes:?}");
    }
}
