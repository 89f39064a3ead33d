//! The one importer of `rocksdb`. One database per node with a column family
//! per concern (see docs/STORAGE.md). It offers keyed reads, atomic batches
//! with an explicit durability choice, prefix scans and point-in-time dumps;
//! it knows nothing of Raft, items or the audit log.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// Column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    /// Raft log entries, keyed by big-endian index.
    Log,
    /// Raft metadata: vote, purge point, node identity, snapshot bookkeeping.
    Meta,
    /// The replicated state machine (items, chunk index, audit tree, ...).
    State,
}

impl Cf {
    fn name(self) -> &'static str {
        match self {
            Cf::Log => "raft_log",
            Cf::Meta => "raft_meta",
            Cf::State => "state",
        }
    }
    const ALL: [Cf; 3] = [Cf::Log, Cf::Meta, Cf::State];
}

/// How durable a write must be before `write` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is fsynced: the write survives power loss.
    Fsync,
    /// In the write-ahead log (survives a process crash), not yet fsynced.
    Buffered,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("column family {0} is missing")]
    MissingCf(&'static str),
}

/// An atomic set of writes across column families.
#[derive(Default)]
pub struct Batch {
    inner: WriteBatch,
    pending: Vec<(Cf, Op)>,
}

enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pending.push((cf, Op::Put(key.into(), value.into())));
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.pending.push((cf, Op::Delete(key.into())));
    }
    /// Deletes keys in `[from, to)`.
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.pending.push((cf, Op::DeleteRange(from.into(), to.into())));
    }
    pub fn len(&self) -> usize {
        self.pending.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A node's database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    db: Arc<DB>,
}

/// What RocksDB may hold in memory, for all column families together (a node's
/// peak RSS is a figure of `custody bench`): the memtables, flushed to table
/// files once they reach this between them...
const MEMTABLES_BYTES: usize = 16 << 20;
/// ... of which one column family's memtable ...
const MEMTABLE_BYTES: usize = 8 << 20;
/// ... and the blocks of table files read lately.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Apply looks up keys that often do not exist yet (a new request's id, an
/// item's next trail entry): once the memtable is flushed, bloom filters answer
/// those without reading a block of every table file.
fn cf_options(cache: &rocksdb::Cache) -> Options {
    let mut o = Options::default();
    let mut t = rocksdb::BlockBasedOptions::default();
    t.set_bloom_filter(10.0, false);
    t.set_block_cache(cache);
    // Indexes and filters stay outside the cache, loaded with each table file: counted
    // against this small cache they were evicted by every scan, and an audit proof at
    // 10,000,000 leaves took 4.2 ms instead of 0.18 (`custody bench`).
    o.set_block_based_table_factory(&t);
    // The same for the memtable, where most of apply's lookups end under load: a miss
    // skips the skip list's search.
    o.set_memtable_prefix_bloom_ratio(0.1);
    o.set_memtable_whole_key_filtering(true);
    o.set_write_buffer_size(MEMTABLE_BYTES);
    o
}

impl Db {
    /// Opens (creating) the node's database with all its column families.
    pub fn open(path: &Path) -> Result<Db, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Encrypted chunks live outside RocksDB; what is inside is small metadata.
        opts.set_max_background_jobs(2);
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let memtables = rocksdb::WriteBufferManager::new_write_buffer_manager(MEMTABLES_BYTES, false);
        opts.set_write_buffer_manager(&memtables);
        // After a crash the write-ahead log is replayed up to its first gap and no further
        // (RocksDB's default, stated here because the Raft log relies on it: a state write
        // never survives without the log entry written before it; docs/STORAGE.md).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(&cache)));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Db { db: Arc::new(db) })
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(cf.name()).ok_or(StorageError::MissingCf(cf.name()))
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Commits `batch` atomically with the durability asked for.
    pub fn write(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        let Batch { mut inner, pending } = batch;
        for (cf, op) in pending {
            let h = self.cf(cf)?;
            match op {
                Op::Put(k, v) => inner.put_cf(h, k, v),
                Op::Delete(k) => inner.delete_cf(h, k),
                Op::DeleteRange(a, b) => inner.delete_range_cf(h, a, b),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Fsync);
        self.db.write_opt(inner, &wo)?;
        Ok(())
    }

    /// Fsyncs the write-ahead log: everything written before is durable after.
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// `(key, value)` pairs with `from <= key < to`, in order, at most `limit`.
    pub fn range(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for kv in self.db.iterator_cf(self.cf(cf)?, IteratorMode::From(from, Direction::Forward)) {
            let (k, v) = kv?;
            if &*k >= to || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Every pair whose key starts with `prefix`.
    pub fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for kv in self.db.iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = kv?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// The first or last pair of a column family.
    pub fn edge(&self, cf: Cf, last: bool) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mode = if last { IteratorMode::End } else { IteratorMode::Start };
        match self.db.iterator_cf(self.cf(cf)?, mode).next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.into_vec(), v.into_vec())))
            }
        }
    }

    /// Visits every pair of `cf` as of one point in time (a RocksDB snapshot),
    /// while writes go on: this is how state-machine snapshots are built
    /// without stopping apply. Stops at the first error `visit` returns.
    /// The outer error is the database's, the inner one the visitor's.
    pub fn dump<E>(&self, cf: Cf, mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>) -> Result<Result<(), E>, StorageError> {
        let snap = self.db.snapshot();
        let h = self.cf(cf)?;
        for kv in snap.iterator_cf(h, IteratorMode::Start) {
            let (k, v) = kv?;
            if let Err(e) = visit(&k, &v) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}
