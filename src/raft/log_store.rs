//! The Raft log and vote in RocksDB (`raft_log` and `raft_meta` column families).
//!
//! Durability: every append is fsynced before openraft is told it is
//! persisted, and every vote before `save_vote` returns; purging first makes
//! the state machine's buffered writes durable, so nothing purged can be
//! needed again.
//!
//! An append is written at once (readable, in RocksDB's write-ahead log) and
//! made durable by the log's syncer thread, which fsyncs the WAL for every
//! append queued while the previous fsync ran and then tells openraft, in
//! order (group commit). Raft's core goes on meanwhile: a leader sends its
//! entries to the followers while its own fsync runs, and a follower applies
//! what the leader says is committed while it fsyncs the next entries. The
//! WAL is one ordered file that RocksDB recovers up to its first gap, so
//! after a crash nothing applied is ever ahead of the log that carries it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, Vote};

use super::{logs_read_err, logs_write_err, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::{Batch, Cf, Db, Durability};

const VOTE_KEY: &[u8] = b"vote";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log store. Cheap to clone; clones share the database and the syncer.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    /// Appends written and waiting for an fsync, in order ([`sync_appends`]).
    /// The syncer thread ends when the last clone is dropped.
    unsynced: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        let (unsynced, waiting) = std::sync::mpsc::channel();
        let syncing = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_appends(&syncing, &waiting))
            .expect("starting the Raft log's syncer thread");
        LogStore { db, unsynced }
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.db.get(Cf::Meta, key).map_err(logs_read_err)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(logs_read_err),
        }
    }

    /// Runs blocking RocksDB work off the async executor.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(Db) -> Result<T, StorageError> + Send + 'static) -> Result<T, StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(db)).await.map_err(logs_write_err)?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let rows = self.db.range(Cf::Log, &index_key(start), &index_key(end), usize::MAX).map_err(logs_read_err)?;
        rows.iter().map(|(_, v)| serde_json::from_slice::<Entry>(v).map_err(logs_read_err)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_json(LAST_PURGED_KEY)?;
        let last = match self.db.edge(Cf::Log, true).map_err(logs_read_err)? {
            Some((_, v)) => Some(serde_json::from_slice::<Entry>(&v).map_err(logs_read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(logs_write_err)?;
        self.blocking(move |db| {
            let mut b = Batch::default();
            b.put(Cf::Meta, VOTE_KEY, bytes);
            // A vote must be on disk before we answer with it: a node that forgot
            // its vote after a crash could vote twice in one term.
            db.write(b, Durability::Fsync).map_err(|e| openraft::StorageIOError::write_vote(openraft::AnyError::error(e.to_string())).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_json(VOTE_KEY)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut b = Batch::default();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(logs_write_err)?;
            b.put(Cf::Log, index_key(e.log_id.index), bytes);
        }
        // Readable when this returns (openraft reads them to replicate), durable later.
        if let Err(e) = self.blocking(move |db| db.write(b, Durability::Buffered).map_err(logs_write_err)).await {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(e);
        }
        // Entries must be durable before openraft counts them toward a commit quorum.
        if crate::mutation::on(crate::mutation::Mutation::UnsyncedLog) {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        if let Err(std::sync::mpsc::SendError(callback)) = self.unsynced.send(callback) {
            // The syncer is gone (it never is while a clone lives): fsync here.
            let synced = self.blocking(|db| db.sync_wal().map_err(logs_write_err)).await;
            callback.log_io_completed(io_result(&synced));
            return synced;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let mut b = Batch::default();
            b.delete_range(Cf::Log, index_key(log_id.index), index_key(u64::MAX));
            // Truncated entries must not come back after a crash: they conflict with the leader.
            db.write(b, Durability::Fsync).map_err(logs_write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(logs_write_err)?;
        self.blocking(move |db| {
            // The state machine writes with a buffered WAL; make them durable
            // before the entries that could rebuild them are gone.
            db.sync_wal().map_err(logs_write_err)?;
            let mut b = Batch::default();
            b.put(Cf::Meta, LAST_PURGED_KEY, bytes);
            b.delete_range(Cf::Log, index_key(0), index_key(log_id.index.saturating_add(1)));
            db.write(b, Durability::Fsync).map_err(logs_write_err)
        })
        .await
    }
}

/// The syncer thread: one fsync of the write-ahead log for every append queued
/// while the previous one ran, then each append's callback, in the order they
/// were written. An append is queued only after its write returned, so the
/// fsync that follows covers it.
fn sync_appends(db: &Db, waiting: &std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let synced = db.sync_wal();
        for callback in batch {
            callback.log_io_completed(io_result(&synced));
        }
    }
}

/// What openraft's log-IO callback is told of a write or an fsync.
fn io_result<E: std::fmt::Display>(r: &Result<(), E>) -> Result<(), std::io::Error> {
    r.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Sets up a restored node's log (`custody restore`, docs/STORAGE.md "Backup
/// and restore"): no entries, everything up to `last` purged (the restored
/// snapshot holds it), and a vote in the snapshot's term that is not a vote for
/// anyone, so the first election starts above every term in the state.
pub fn restore_from(db: &Db, last: Option<LogId>) -> Result<(), StorageError> {
    let mut b = Batch::default();
    if let Some(last) = last {
        b.put(Cf::Meta, LAST_PURGED_KEY, serde_json::to_vec(&last).map_err(logs_write_err)?);
        let vote = Vote::new(last.leader_id.term, last.leader_id.node_id);
        b.put(Cf::Meta, VOTE_KEY, serde_json::to_vec(&vote).map_err(logs_write_err)?);
    }
    db.write(b, Durability::Fsync).map_err(logs_write_err)
}
