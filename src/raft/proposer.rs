//! The proposer: batches concurrent transactions into one raft entry. Proposals queue while
//! earlier batches are in flight, so under load each raft round (and fsync) carries many
//! transactions, while a lone client still gets a batch of one at once.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::node::RaftStore;
use super::{Command, CommandOutput};
use crate::store::{StoreError, TxnRequest, TxnResponse};

/// Most transactions in one raft entry.
const MAX_BATCH: usize = 256;
/// Batches proposed but not yet answered, at most.
const MAX_IN_FLIGHT: usize = 2;

pub(crate) type Reply = oneshot::Sender<Result<TxnResponse, StoreError>>;

/// Runs until every sender is dropped (the store is gone).
pub(crate) async fn run(store: Weak<RaftStore>, mut rx: mpsc::Receiver<(TxnRequest, Reply)>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore is never closed");
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let Some(store) = store.upgrade() else { return };
        let (txns, replies): (Vec<TxnRequest>, Vec<Reply>) = batch.drain(..).unzip();
        tokio::spawn(async move {
            let result = store.write(Command::Txns(txns)).await;
            drop(permit);
            match result {
                Ok(CommandOutput::Txns(results)) if results.len() == replies.len() => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r);
                    }
                }
                Ok(other) => {
                    let e = StoreError::Corrupt(format!("state machine answered a batch with {other:?}"));
                    replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
                }
                Err(e) => replies.into_iter().for_each(|r| drop(r.send(Err(e.clone())))),
            }
        });
    }
}
