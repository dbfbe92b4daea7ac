//! [`RaftStore`]: one raft node holding a replica of the store. Writes go through the raft log
//! (forwarded to the leader when this node is a follower); reads are linearizable through a
//! read index obtained from the leader; watches are served from the local replica.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::network::Network;
use super::proposer::Batcher;
use super::state_machine::StateMachine;
use super::{Command, CommandOutput, NodeId, Raft};
use crate::rpc::{HttpClient, RpcError};
use crate::store::mvcc::MvccEngine;
use crate::store::*;

/// How long a write or read waits for a leader before failing as unavailable.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// Timeout of one forwarded call.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Batches a node's proposer keeps in flight: one, so that batches grow under load.
const PROPOSER_IN_FLIGHT: usize = 1;
/// Raft entries the leader's combiner keeps in flight: replication of one overlaps with
/// applying the previous one.
const COMBINER_IN_FLIGHT: usize = 2;

/// Bytes of a snapshot per InstallSnapshot request.
const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;

/// Tunables of a raft node.
#[derive(Clone)]
pub struct RaftSettings {
    /// The URL peers reach this node at, e.g. `https://10.0.0.5:6443`.
    pub advertise_url: String,
    /// Client for peer calls: trusts the cluster CA and presents this server's peer certificate.
    pub peer_client: HttpClient,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Minimum election timeout; the maximum is twice this. Must exceed a few heartbeats.
    pub election_timeout: Duration,
    /// Build a snapshot (and allow purging the log) after this many entries.
    pub snapshot_logs: u64,
    pub store: StoreConfig,
}

impl RaftSettings {
    pub fn new(advertise_url: impl Into<String>, peer_client: HttpClient) -> Self {
        Self {
            advertise_url: advertise_url.into(),
            peer_client,
            heartbeat: Duration::from_millis(150),
            election_timeout: Duration::from_millis(600),
            snapshot_logs: 10_000,
            store: StoreConfig::default(),
        }
    }

    fn raft_config(&self) -> Result<Config, StoreError> {
        let ms = |d: Duration| d.as_millis() as u64;
        Config {
            cluster_name: "orch".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout),
            election_timeout_max: ms(self.election_timeout) * 2,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: (self.snapshot_logs / 10).max(1),
            max_payload_entries: 1000,
            // Below the RPC body limit (`crate::rpc::MAX_BODY_BYTES`) with room to spare.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::InvalidArgument(format!("raft timing: {e}")))
    }
}

/// Answer of a node asked to do something only the leader can do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LeaderReply<T> {
    Done(T),
    /// Not the leader; the leader's URL when known.
    NotLeader(Option<String>),
}

pub struct RaftStore {
    id: NodeId,
    /// Gathers this node's client transactions into commands (see `proposer`).
    proposer: OnceLock<Batcher<StoreError>>,
    /// On the leader, merges concurrent commands into one raft entry (see `proposer`).
    combiner: OnceLock<Batcher<LeaderReply<StoreError>>>,
    url: String,
    raft: Raft,
    engine: Arc<MvccEngine>,
    hub: Arc<WatchHub>,
    http: HttpClient,
    /// The replica's directory (the snapshot file lives there).
    dir: PathBuf,
}

fn raft_down(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("raft: {e}"))
}

impl RaftStore {
    /// Opens the replica in `dir` (creating it, with a fresh node id, on first use) and starts
    /// raft. The node is not part of any cluster until [`Self::bootstrap`] or [`Self::join`],
    /// unless it already was one before a restart.
    pub async fn open(dir: &Path, settings: RaftSettings) -> Result<Arc<Self>, StoreError> {
        crate::pki::private_dir(dir).map_err(|e| StoreError::Storage(format!("{}: {e}", dir.display())))?;
        let db = DurableDb::open(&dir.join("db"), &settings.store)?;
        let id = node_id(&db)?;
        let engine = Arc::new(MvccEngine::open(db.db().open_tree("kv")?)?);
        let hub = WatchHub::new(engine.revision(), settings.store.watch_history);
        let sm = StateMachine::open(db.clone(), engine.clone(), hub.clone(), dir)?;
        let log = LogStore::open(db)?;
        let config = Arc::new(settings.raft_config()?);
        let raft = Raft::new(id, config, Network::new(settings.peer_client.clone()), log, sm).await.map_err(raft_down)?;
        tracing::info!(node_id = id, url = %settings.advertise_url, revision = engine.revision(), "raft store open");
        let store = Arc::new(Self {
            id,
            proposer: OnceLock::new(),
            combiner: OnceLock::new(),
            url: settings.advertise_url,
            raft,
            engine,
            hub,
            http: settings.peer_client,
            dir: dir.to_path_buf(),
        });
        let weak = Arc::downgrade(&store);
        let proposer = Batcher::start(PROPOSER_IN_FLIGHT, move |txns| {
            let weak = weak.clone();
            async move {
                let store = weak.upgrade().ok_or(StoreError::Closed)?;
                match store.write(Command::Txns(txns)).await? {
                    CommandOutput::Txns(results) => Ok(results),
                    other => Err(StoreError::Corrupt(format!("state machine answered transactions with {other:?}"))),
                }
            }
        });
        let weak = Arc::downgrade(&store);
        let combiner = Batcher::start(COMBINER_IN_FLIGHT, move |txns| {
            let weak = weak.clone();
            async move {
                let Some(store) = weak.upgrade() else {
                    return Err(LeaderReply::NotLeader(None));
                };
                match store.propose(Command::Txns(txns)).await {
                    LeaderReply::Done(Ok(CommandOutput::Txns(results))) => Ok(results),
                    LeaderReply::Done(Ok(other)) => Err(LeaderReply::Done(StoreError::Corrupt(format!("unexpected {other:?}")))),
                    LeaderReply::Done(Err(e)) => Err(LeaderReply::Done(e)),
                    LeaderReply::NotLeader(url) => Err(LeaderReply::NotLeader(url)),
                }
            }
        });
        let _ = store.proposer.set(proposer);
        let _ = store.combiner.set(combiner);
        Ok(store)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The current raft snapshot's file.
    pub(super) fn snapshot_path(&self) -> PathBuf {
        self.dir.join(super::state_machine::SNAPSHOT_FILE)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Whether this node has cluster state (it was bootstrapped or joined before).
    pub async fn is_member(&self) -> Result<bool, StoreError> {
        self.raft.is_initialized().await.map_err(raft_down)
    }

    /// Makes a fresh node a one-voter cluster; a no-op for a node that already has state.
    pub async fn bootstrap(&self) -> Result<(), StoreError> {
        if self.is_member().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(&self.url))]);
        self.raft.initialize(members).await.map_err(raft_down)?;
        tracing::info!(node_id = self.id, "initialised a new single-voter cluster");
        Ok(())
    }

    /// Joins the cluster a member of which is at `seed`: asks its leader to add this node as a
    /// learner, let it catch up, and promote it to voter. Retries until `deadline` passes.
    pub async fn join(&self, seed: &str, deadline: Duration) -> Result<(), StoreError> {
        let until = Instant::now() + deadline;
        let mut target = seed.trim_end_matches('/').to_string();
        loop {
            let url = format!("{target}/raft/join");
            let reply: Result<LeaderReply<Result<(), StoreError>>, RpcError> =
                self.http.call(&url, &(self.id, self.url.clone()), deadline).await;
            match reply {
                Ok(LeaderReply::Done(Ok(()))) => {
                    tracing::info!(node_id = self.id, via = %target, "joined the cluster as a voter");
                    return Ok(());
                }
                // E.g. another membership change in progress: retry.
                Ok(LeaderReply::Done(Err(e))) => {
                    tracing::warn!(error = %e, "leader refused the join for now, retrying")
                }
                Ok(LeaderReply::NotLeader(Some(leader))) => target = leader,
                Ok(LeaderReply::NotLeader(None)) => {
                    tracing::info!(via = %target, "no leader yet, retrying join")
                }
                Err(e) => tracing::warn!(error = %e, "join attempt failed, retrying"),
            }
            if Instant::now() > until {
                return Err(StoreError::Unavailable(format!("could not join the cluster through {seed} in {deadline:?}")));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn leader_url(&self) -> Option<(NodeId, Option<String>)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let url = m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone());
        Some((leader, url))
    }

    /// Leader side of a join: add `id` as a learner (waiting for it to catch up), then promote.
    pub(crate) async fn add_member(&self, id: NodeId, url: String) -> LeaderReply<Result<(), StoreError>> {
        let voters: BTreeSet<NodeId> = self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if voters.contains(&id) {
            return LeaderReply::Done(Ok(()));
        }
        if let Err(e) = self.raft.add_learner(id, BasicNode::new(&url), true).await {
            return self.not_leader_or(e.forward_to_leader().is_some(), raft_down(e));
        }
        match self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await {
            Ok(_) => {
                tracing::info!(node_id = id, %url, "promoted new member to voter");
                LeaderReply::Done(Ok(()))
            }
            Err(e) => self.not_leader_or(e.forward_to_leader().is_some(), raft_down(e)),
        }
    }

    /// Leader side of a removal: drop `id` from the voters and the cluster.
    pub(crate) async fn remove_member(&self, id: NodeId) -> LeaderReply<Result<(), StoreError>> {
        match self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await {
            Ok(_) => {
                tracing::info!(node_id = id, "removed member");
                LeaderReply::Done(Ok(()))
            }
            Err(e) => self.not_leader_or(e.forward_to_leader().is_some(), raft_down(e)),
        }
    }

    fn not_leader_or<T>(&self, not_leader: bool, err: StoreError) -> LeaderReply<Result<T, StoreError>> {
        if not_leader {
            LeaderReply::NotLeader(self.leader_url().and_then(|(_, url)| url))
        } else {
            LeaderReply::Done(Err(err))
        }
    }

    /// Removes the member `id` from the cluster, through the leader.
    pub async fn remove(&self, id: NodeId) -> Result<(), StoreError> {
        self.via_leader("/raft/leave", &id, |s| Box::pin(async move { s.remove_member(id).await })).await?
    }

    /// Proposes a command on this node if it leads (no forwarding). Transactions are merged with
    /// others arriving at the same time into one raft entry.
    pub(crate) async fn write_local(&self, cmd: Command) -> LeaderReply<Result<CommandOutput, StoreError>> {
        let Command::Txns(txns) = cmd else {
            return self.propose(cmd).await;
        };
        let combiner = self.combiner.get().expect("combiner is set at open");
        match combiner.submit(txns, LeaderReply::NotLeader(None)).await {
            Ok(results) => LeaderReply::Done(Ok(CommandOutput::Txns(results))),
            Err(LeaderReply::Done(e)) => LeaderReply::Done(Err(e)),
            Err(LeaderReply::NotLeader(url)) => LeaderReply::NotLeader(url),
        }
    }

    /// Appends one command to the raft log as one entry and waits until it is applied.
    async fn propose(&self, cmd: Command) -> LeaderReply<Result<CommandOutput, StoreError>> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => LeaderReply::Done(resp.data),
            Err(e) => self.not_leader_or(e.forward_to_leader().is_some(), raft_down(e)),
        }
    }

    /// The leader's read index: once a replica has applied it, its reads are linearizable.
    pub(crate) async fn read_index_local(&self) -> LeaderReply<Result<u64, StoreError>> {
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => LeaderReply::Done(Ok(read.map_or(0, |l| l.index))),
            Err(e) => self.not_leader_or(e.forward_to_leader().is_some(), raft_down(e)),
        }
    }

    /// Runs `local` here when this node leads, else calls `path` on the leader; waits for a
    /// leader to be known. Only calls that were certainly not executed are retried.
    async fn via_leader<Req, T>(
        &self,
        path: &str,
        req: &Req,
        local: impl Fn(&Self) -> futures::future::BoxFuture<'_, LeaderReply<T>>,
    ) -> Result<T, StoreError>
    where
        Req: Serialize,
        T: serde::de::DeserializeOwned,
    {
        let until = Instant::now() + LEADER_WAIT;
        loop {
            let attempt = match self.leader_url() {
                Some((leader, _)) if leader == self.id => Some(local(self).await),
                Some((_, Some(url))) => match self.http.call(&format!("{url}{path}"), req, FORWARD_TIMEOUT).await {
                    Ok(reply) => Some(reply),
                    Err(RpcError::Unreachable { .. }) => None,
                    Err(e) => return Err(StoreError::Unavailable(format!("forwarding to the leader: {e}"))),
                },
                _ => None,
            };
            if let Some(LeaderReply::Done(v)) = attempt {
                return Ok(v);
            }
            if Instant::now() > until {
                return Err(StoreError::Unavailable(format!("no raft leader reachable within {LEADER_WAIT:?}")));
            }
            let mut metrics = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
        }
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandOutput, StoreError> {
        self.via_leader("/raft/write", &cmd, |s| {
            let cmd = cmd.clone();
            Box::pin(async move { s.write_local(cmd).await })
        })
        .await?
    }

    /// Waits until this replica has applied everything committed before the call began.
    async fn read_barrier(&self) -> Result<(), StoreError> {
        let index = self.via_leader("/raft/read-index", &(), |s| Box::pin(s.read_index_local())).await??;
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| StoreError::Unavailable(format!("replica did not catch up with the leader: {e}")))?;
        Ok(())
    }

    /// Stops raft; the replica's data stays on disk.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// This node's raft id: random on first start, then kept in the database.
fn node_id(db: &DurableDb) -> Result<NodeId, StoreError> {
    let tree = db.db().open_tree("node")?;
    if let Some(raw) = tree.get("id")? {
        let bytes: [u8; 8] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt("node id".into()))?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let id = rand::random::<u64>() >> 1 | 1;
    tree.insert("id", &id.to_be_bytes())?;
    db.flush()?;
    Ok(id)
}

#[async_trait]
impl Store for RaftStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.read_barrier().await?;
        if req.range.range_end.is_empty() {
            // One key: a couple of B-tree lookups, cheaper than a hop to the blocking pool.
            return self.engine.range(&req);
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.range(&req)).await.map_err(|_| StoreError::Closed)?
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        MvccEngine::validate(&req)?;
        let proposer = self.proposer.get().expect("proposer is set at open");
        let mut results = proposer.submit(vec![req], StoreError::Closed).await?;
        results.pop().unwrap_or(Err(StoreError::Closed))
    }

    async fn watch(&self, mut req: WatchRequest) -> Result<WatchStream, StoreError> {
        if req.start_revision <= 0 {
            // "From now" means after the linearizable current revision, also on a follower.
            self.read_barrier().await?;
            req.start_revision = self.engine.revision() + 1;
        }
        self.hub.watch(self.engine.clone(), req)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(Command::Compact(revision)).await.map(|_| ())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.read_barrier().await?;
        Ok(self.engine.revision())
    }
}
