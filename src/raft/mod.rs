//! The `openraft` adapter: type configuration, the RocksDB-backed log store
//! and state-machine store, and the mTLS network between nodes. It turns
//! committed entries into calls to `vault::apply`; it knows nothing of HTTP
//! routes, chunk bytes or the CLI.

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::fmt::Display;

openraft::declare_raft_types!(
    /// Types of the vault's Raft group.
    pub TypeConfig:
        D = crate::vault::Command,
        R = crate::vault::Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // Snapshots are files on the node's disk: streamed in chunks, never held whole in memory.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

/// Raft settings tuned for a loopback or LAN cluster.
pub fn config(cluster_name: &str, snapshot_every_entries: u64) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every_entries),
        // Keep some entries behind a snapshot so a briefly lagging follower
        // catches up from the log rather than by a whole snapshot.
        max_in_snapshot_log_to_keep: snapshot_every_entries.min(1000),
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    }
    .validate()
}

pub(crate) fn sm_read_err(e: impl Display) -> StorageError {
    openraft::StorageIOError::read_state_machine(openraft::AnyError::error(e.to_string())).into()
}
pub(crate) fn sm_write_err(e: impl Display) -> StorageError {
    openraft::StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}
pub(crate) fn logs_read_err(e: impl Display) -> StorageError {
    openraft::StorageIOError::read_logs(openraft::AnyError::error(e.to_string())).into()
}
pub(crate) fn logs_write_err(e: impl Display) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}
pub(crate) fn snapshot_err(e: impl Display) -> StorageError {
    openraft::StorageIOError::write_snapshot(None, openraft::AnyError::error(e.to_string())).into()
}
