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
//!
//! The entries appended last are also kept decoded in memory ([`Recent`]):
//! openraft reads every entry back, on the leader once for each follower it
//! replicates to and on every node once to apply it, and decoding them from
//! JSON again was the largest cost of the leader's log (issue 18).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

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
    recent: Arc<Mutex<Recent>>,
}

/// At most this many entries are kept decoded ([`Recent`])...
const RECENT_ENTRIES: usize = 256;
/// ...and at most this many bytes of them, counted as their JSON in the log.
const RECENT_BYTES: usize = 1 << 20;

/// The entries appended last, decoded, with their encoded sizes: a run of
/// consecutive indexes, each entry equal to what the log holds (or is being
/// written) at its index. An appended entry joins as its write begins, and
/// leaves again if the write fails; a truncation or a purge removes its
/// entries here before it removes them from RocksDB; an entry written again
/// replaces it and those after it; an append after a gap empties it. A read is
/// answered from it only when it holds every index the read asks for; others
/// read RocksDB.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, e: Entry, size: usize) {
        let index = e.log_id.index;
        match self.entries.back().map(|(last, _)| last.log_id.index) {
            // Written again (openraft truncates first): what it replaces goes.
            Some(last) if index <= last => self.retain(|i| i < index),
            // Not the next one: RocksDB holds the gap, this does not.
            Some(last) if index - last > 1 => self.retain(|_| false),
            _ => {}
        }
        self.bytes += size;
        self.entries.push_back((e, size));
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            let Some((_, size)) = self.entries.pop_front() else { break };
            self.bytes -= size;
        }
    }

    /// Keeps only the entries `keep` accepts (by index): a prefix or a suffix.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|(e, _)| keep(e.log_id.index));
        self.bytes = self.entries.iter().map(|(_, size)| size).sum();
    }

    /// The entries from `start` to before `end`, when it holds all of them.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let (first, last) = (self.entries.front()?.0.log_id.index, self.entries.back()?.0.log_id.index);
        if start < first || end > last.checked_add(1)? {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end.saturating_sub(start)).ok()?;
        Some(self.entries.iter().skip(skip).take(take).map(|(e, _)| e.clone()).collect())
    }
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        let (unsynced, waiting) = std::sync::mpsc::channel();
        let syncing = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_appends(&syncing, &waiting))
            .expect("starting the Raft log's syncer thread");
        LogStore { db, unsynced, recent: Arc::default() }
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(kept) = self.recent().get(start, end) {
            return Ok(kept);
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
        let mut encoded = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(logs_write_err)?;
            let size = bytes.len();
            b.put(Cf::Log, index_key(e.log_id.index), bytes);
            encoded.push((e, size));
        }
        let first = encoded.first().map_or(u64::MAX, |(e, _)| e.log_id.index);
        {
            let mut recent = self.recent();
            for (e, size) in encoded {
                recent.push(e, size);
            }
        }
        // Readable when this returns (openraft reads them to replicate), durable later.
        if let Err(e) = self.blocking(move |db| db.write(b, Durability::Buffered).map_err(logs_write_err)).await {
            self.recent().retain(|i| i < first);
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
        self.recent().retain(|i| i < log_id.index);
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
        self.recent().retain(|i| i > log_id.index);
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::blank_ent;

    fn ids(v: &[Entry]) -> Vec<(u64, u64)> {
        v.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
    }

    fn kept(r: &Recent) -> Vec<(u64, u64)> {
        ids(&r.entries.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>())
    }

    fn pushed(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Recent {
        let mut r = Recent::default();
        for i in indexes {
            r.push(blank_ent::<TypeConfig>(term, 1, i), 10);
        }
        r
    }

    /// Only reads of kept indexes are answered; others go to RocksDB.
    #[test]
    fn kept_entries_answer_only_reads_of_kept_indexes() {
        let r = pushed(1, 5..=9);
        assert_eq!(r.get(4, 8).map(|v| ids(&v)), None, "index 4 is not kept: RocksDB answers");
        assert_eq!(r.get(5, 8).map(|v| ids(&v)), Some(vec![(1, 5), (1, 6), (1, 7)]));
        assert_eq!(r.get(8, 10).map(|v| ids(&v)), Some(vec![(1, 8), (1, 9)]));
        assert_eq!(r.get(8, 11).map(|v| ids(&v)), None, "index 10 is not kept");
        assert_eq!(r.get(8, u64::MAX).map(|v| ids(&v)), None);
        assert_eq!(Recent::default().get(0, 5).map(|v| ids(&v)), None, "nothing kept: RocksDB answers");
    }

    /// An entry written again replaces it and what followed; a gap starts over.
    #[test]
    fn an_append_at_a_kept_index_replaces_the_rest_and_a_gap_empties_them() {
        let mut r = pushed(1, 1..=5);
        r.push(blank_ent::<TypeConfig>(2, 1, 3), 10);
        assert_eq!(kept(&r), vec![(1, 1), (1, 2), (2, 3)]);
        assert_eq!(r.bytes, 30);
        r.push(blank_ent::<TypeConfig>(2, 1, 7), 10);
        assert_eq!(kept(&r), vec![(2, 7)]);
        assert_eq!(r.get(3, 8).map(|v| ids(&v)), None, "index 3 is RocksDB's again");
    }

    #[test]
    fn truncation_and_purge_remove_their_entries() {
        let mut r = pushed(1, 1..=6);
        r.retain(|i| i < 5);
        assert_eq!(kept(&r), vec![(1, 1), (1, 2), (1, 3), (1, 4)]);
        assert_eq!(r.get(3, 6).map(|v| ids(&v)), None, "index 5 was truncated: RocksDB answers");
        r.retain(|i| i > 2);
        assert_eq!(kept(&r), vec![(1, 3), (1, 4)]);
        assert_eq!(r.bytes, 20);
    }

    #[test]
    fn the_oldest_entries_go_past_the_caps() {
        let r = pushed(1, 1..=(RECENT_ENTRIES as u64 + 5));
        assert_eq!(r.entries.len(), RECENT_ENTRIES);
        assert_eq!(r.entries.front().map(|(e, _)| e.log_id.index), Some(6));
        let mut r = Recent::default();
        for i in 1..=5 {
            r.push(blank_ent::<TypeConfig>(1, 1, i), RECENT_BYTES / 2);
        }
        assert_eq!(kept(&r), vec![(1, 4), (1, 5)]);
        assert_eq!(r.bytes, RECENT_BYTES);
    }
}
