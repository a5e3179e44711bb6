//! Opening a server's data directory and starting its Raft node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::network::RaftNetworkFactory;
use openraft::SnapshotPolicy;
use sqlx::SqlitePool;

use crate::auth_cache::AuthCache;
use crate::db;
use crate::error::StateError;
use crate::log_store::LogStore;
use crate::proposer::Proposer;
use crate::reader::StateReader;
use crate::snapshot::SnapshotDir;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft, TypeConfig};

/// Raft timing and compaction settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSettings {
    /// Leader heartbeat, milliseconds. Set near the round-trip time between servers.
    pub heartbeat_ms: u64,
    /// Shortest election timeout, milliseconds (at least 3 heartbeats).
    pub election_min_ms: u64,
    /// Longest election timeout, milliseconds.
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the snapshot, so slightly lagging followers catch up
    /// without one.
    pub keep_entries_behind_snapshot: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            // Loopback and one-datacentre defaults. A follower refuses votes for one
            // election_max after the last heartbeat (openraft's leader lease); the leader
            // watch then starts an election one heartbeat later, so a lost leader is replaced
            // about 0.7 s after its last heartbeat. openraft gives each AppendEntries one
            // heartbeat to answer, so the heartbeat must cover a loaded fsync. Raise all three
            // across regions (heartbeat near the RTT, elections at least 5 RTTs).
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_after_entries: 10_000,
            keep_entries_behind_snapshot: 1_000,
        }
    }
}

impl RaftSettings {
    fn to_config(&self) -> Result<openraft::Config, StateError> {
        let config = openraft::Config {
            cluster_name: "meridian".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: (self.election_max_ms * 4).max(2_000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_behind_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| StateError::Config(e.to_string()))
    }
}

/// A running Raft node with its stores.
#[derive(Clone)]
pub struct Node {
    /// The Raft handle.
    pub raft: Raft,
    /// Queries over the applied state.
    pub reader: StateReader,
    /// Batches client writes into log entries.
    pub proposer: Proposer,
    /// The proposer's batching task, the leader watch and the log's checkpoints.
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    pools: Vec<SqlitePool>,
}

/// The files a node keeps in its data directory.
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
}

impl DataDir {
    /// The Raft log and vote.
    pub fn log_db(&self) -> PathBuf {
        self.path.join("log.db")
    }
    /// The applied state.
    pub fn state_db(&self) -> PathBuf {
        self.path.join("state.db")
    }
    /// Snapshot files.
    pub fn snapshots(&self) -> PathBuf {
        self.path.join("snapshots")
    }
}

/// Opens the stores in `data_dir` (creating them on first start) for node `id`, starts Raft,
/// and answers whether the node was already part of a cluster. `network` carries the Raft
/// RPCs to the other servers; this crate holds no transport of its own.
pub async fn open<N: RaftNetworkFactory<TypeConfig>>(
    data_dir: &Path,
    id: NodeId,
    settings: &RaftSettings,
    network: N,
) -> Result<Node, StateError> {
    let dir = DataDir {
        path: data_dir.to_path_buf(),
    };
    std::fs::create_dir_all(&dir.path).map_err(|error| StateError::DataDir {
        path: dir.path.clone(),
        error,
    })?;
    // Replication reads recent entries from memory; of three connections, the appends hold one
    // for good, the checkpoints take another now and then, and reads share what is left.
    let log_pool = db::open_log(&dir.log_db(), 3).await?;
    let log = LogStore::new(log_pool.clone());
    match log.node_id().await? {
        Some(found) if found != id => {
            return Err(StateError::NodeIdMismatch {
                path: dir.path,
                found,
                given: id,
            })
        }
        Some(_) => {}
        None => log.set_node_id(id).await?,
    }
    let writer = db::open_state(&dir.state_db(), 1).await?;
    let readers = db::open_state(&dir.state_db(), 4).await?;
    let snapshots = SnapshotDir::open(dir.snapshots())?;
    let auth = Arc::new(AuthCache::default());
    let changes = Arc::new(crate::changes::ChangeLog::default());
    let mut sm = StateMachine::with_changes(
        writer.clone(),
        readers.clone(),
        snapshots,
        auth.clone(),
        changes.clone(),
    );
    sm.recover().await?;
    let committed = sm.committed();
    let config = Arc::new(settings.to_config()?);
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(|e| StateError::Raft(e.to_string()))?;
    let (proposer, proposer_task) = Proposer::start(raft.clone(), committed);
    let watch_task = tokio::spawn(crate::leader_watch::run(raft.clone(), id, settings.clone()));
    let checkpoint_log = tokio::spawn(db::checkpoint(log_pool.clone(), "log.db"));
    let checkpoint_state = tokio::spawn(db::checkpoint(readers.clone(), "state.db"));
    Ok(Node {
        raft,
        reader: StateReader::with_changes(readers.clone(), auth, changes),
        proposer,
        tasks: Arc::new(std::sync::Mutex::new(vec![
            proposer_task,
            watch_task,
            checkpoint_log,
            checkpoint_state,
        ])),
        pools: vec![log_pool, writer, readers],
    })
}

impl Node {
    /// Stops Raft and closes the databases.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        for p in &self.pools {
            p.close().await;
        }
    }
}
