//! The one importer of `rocksdb`. One database per node with a column family
//! per concern (see docs/STORAGE.md). It offers keyed reads, atomic batches
//! with an explicit durability choice, prefix scans and point-in-time dumps;
//! it knows nothing of Raft, items or the audit log.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    reads: Arc<StateReads>,
}

/// The state column family's values (and absences) read lately. Under load
/// every API call and every applied record looks up the same few keys (the
/// caller's person, the issuing member's session key, the item) again and
/// again; RocksDB answers each from its memtables and table files, a hit here
/// from one map.
///
/// A seqlock: a write of the state makes `generation` odd, writes, gives each
/// key it wrote that the map holds its new value ([`StateWrite::carry_over`]),
/// and makes the generation even again (`writing` keeps state writes one at a
/// time). A read is answered here only while the generation is even and the
/// one the map is of; a value read from RocksDB is kept only if no write began
/// between the reader's look at the generation and its read. So a hit is
/// always what RocksDB holds at that moment, and a write is seen by every read
/// that begins after it.
struct StateReads {
    generation: AtomicU64,
    writing: Mutex<()>,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    generation: u64,
    bytes: usize,
    entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Most bytes of keys and values the state's read cache holds: past this a
/// read is not kept, and a write that would carry more over empties it.
const STATE_READS_BYTES: usize = 1 << 20;

fn lock_kept(m: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One write of the state: the generation odd from its start to its end, even
/// though the write fails or panics.
struct StateWrite<'a> {
    reads: &'a StateReads,
    /// The generation before the write began.
    before: u64,
    _one_at_a_time: std::sync::MutexGuard<'a, ()>,
}

impl<'a> StateWrite<'a> {
    fn begin(reads: &'a StateReads) -> Self {
        let guard = reads.writing.lock().unwrap_or_else(|p| p.into_inner());
        let before = reads.generation.fetch_add(1, Ordering::AcqRel);
        StateWrite { reads, before, _one_at_a_time: guard }
    }

    /// After the write succeeded: the kept reads carried over to the generation
    /// that ends the write, each key it wrote given its new value (or its
    /// absence), so that what RocksDB holds and what is kept stay the same. A
    /// key not kept stays not kept; a range deleted empties the map.
    fn carry_over(&self, written: &[(Cf, Op)]) {
        let mut kept = lock_kept(&self.reads.kept);
        if kept.generation != self.before {
            return;
        }
        let kept = &mut *kept;
        for (_, op) in written.iter().filter(|(cf, _)| *cf == Cf::State) {
            let (key, value) = match op {
                Op::Put(k, v) => (k, Some(v)),
                Op::Delete(k) => (k, None),
                Op::DeleteRange(..) => {
                    *kept = Kept::default();
                    break;
                }
            };
            if let Some(old) = kept.entries.get_mut(key.as_slice()) {
                let (was, now) = (old.as_ref().map_or(0, Vec::len), value.map_or(0, Vec::len));
                *old = value.cloned();
                kept.bytes = (kept.bytes + now).saturating_sub(was);
            }
        }
        if kept.bytes > STATE_READS_BYTES {
            *kept = Kept::default();
        }
        // The generation the write ends in: even, two past the one before it.
        kept.generation = self.before + 2;
    }
}

impl Drop for StateWrite<'_> {
    fn drop(&mut self) {
        self.reads.generation.fetch_add(1, Ordering::AcqRel);
    }
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
        let reads = StateReads { generation: AtomicU64::new(0), writing: Mutex::new(()), kept: Mutex::new(Kept::default()) };
        Ok(Db { db: Arc::new(db), reads: Arc::new(reads) })
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(cf.name()).ok_or(StorageError::MissingCf(cf.name()))
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if cf != Cf::State {
            return Ok(self.db.get_cf(self.cf(cf)?, key)?);
        }
        let generation = self.reads.generation.load(Ordering::Acquire);
        let steady = generation % 2 == 0;
        if steady {
            let kept = lock_kept(&self.reads.kept);
            if kept.generation == generation {
                if let Some(v) = kept.entries.get(key) {
                    return Ok(v.clone());
                }
            }
        }
        let value = self.db.get_cf(self.cf(cf)?, key)?;
        if steady {
            let mut kept = lock_kept(&self.reads.kept);
            // No write began since the generation was read: the value is this generation's.
            if self.reads.generation.load(Ordering::Acquire) == generation {
                if kept.generation != generation {
                    *kept = Kept { generation, ..Kept::default() };
                }
                let size = key.len() + value.as_ref().map_or(0, Vec::len);
                if kept.bytes + size <= STATE_READS_BYTES {
                    kept.bytes += size;
                    kept.entries.insert(key.to_vec(), value.clone());
                }
            }
        }
        Ok(value)
    }

    /// Commits `batch` atomically with the durability asked for.
    pub fn write(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        let Batch { mut inner, pending } = batch;
        // A write of the state closes the read cache for its duration (StateReads).
        let writing = match pending.iter().any(|(cf, _)| *cf == Cf::State) {
            true => Some(StateWrite::begin(&self.reads)),
            false => None,
        };
        for (cf, op) in &pending {
            let h = self.cf(*cf)?;
            match op {
                Op::Put(k, v) => inner.put_cf(h, k, v),
                Op::Delete(k) => inner.delete_cf(h, k),
                Op::DeleteRange(a, b) => inner.delete_range_cf(h, a, b),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Fsync);
        self.db.write_opt(inner, &wo)?;
        if let Some(w) = &writing {
            w.carry_over(&pending);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A new database, and the directory that must outlive it.
    fn fresh() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db)
    }

    fn put(db: &Db, cf: Cf, k: &[u8], v: &[u8]) {
        let mut b = Batch::default();
        b.put(cf, k, v);
        db.write(b, Durability::Buffered).unwrap();
    }

    /// Every kind of write reaches the reads after it, a key read as missing included.
    #[test]
    fn a_state_read_sees_every_write_before_it() {
        let (_dir, db) = fresh();
        assert_eq!(db.get(Cf::State, b"a").unwrap(), None);
        assert_eq!(db.get(Cf::State, b"a").unwrap(), None);
        put(&db, Cf::State, b"a", b"1");
        assert_eq!(db.get(Cf::State, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get(Cf::State, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        put(&db, Cf::State, b"a", b"2");
        assert_eq!(db.get(Cf::State, b"a").unwrap().as_deref(), Some(&b"2"[..]));
        let mut b = Batch::default();
        b.delete(Cf::State, b"a");
        db.write(b, Durability::Fsync).unwrap();
        assert_eq!(db.get(Cf::State, b"a").unwrap(), None);
        put(&db, Cf::State, b"b", b"3");
        assert_eq!(db.get(Cf::State, b"b").unwrap().as_deref(), Some(&b"3"[..]));
        let mut b = Batch::default();
        b.delete_range(Cf::State, b"a", b"c");
        db.write(b, Durability::Buffered).unwrap();
        assert_eq!(db.get(Cf::State, b"b").unwrap(), None);
        // A write of another column family leaves the state's reads as they were.
        put(&db, Cf::Meta, b"b", b"4");
        assert_eq!(db.get(Cf::State, b"b").unwrap(), None);
        assert_eq!(db.get(Cf::Meta, b"b").unwrap().as_deref(), Some(&b"4"[..]));
    }

    /// Values kept before a write are carried over to the generation after it:
    /// the keys it wrote with their new values, the rest as they were.
    #[test]
    fn kept_reads_outlive_a_write_with_the_values_it_wrote() {
        let (_dir, db) = fresh();
        put(&db, Cf::State, b"a", b"1");
        put(&db, Cf::State, b"b", b"2");
        for k in [&b"a"[..], b"b", b"c"] {
            db.get(Cf::State, k).unwrap();
        }
        let mut batch = Batch::default();
        batch.put(Cf::State, b"a", b"10");
        batch.put(Cf::State, b"c", b"30");
        batch.delete(Cf::State, b"b");
        batch.put(Cf::State, b"d", b"40");
        db.write(batch, Durability::Buffered).unwrap();
        let kept = |k: &[u8]| lock_kept(&db.reads.kept).entries.get(k).cloned();
        assert_eq!(lock_kept(&db.reads.kept).generation, db.reads.generation.load(Ordering::Acquire));
        assert_eq!(kept(b"a"), Some(Some(b"10".to_vec())));
        assert_eq!(kept(b"b"), Some(None));
        assert_eq!(kept(b"c"), Some(Some(b"30".to_vec())));
        assert_eq!(kept(b"d"), None, "a key never read is not kept");
        for (k, v) in [(&b"a"[..], Some(&b"10"[..])), (b"b", None), (b"c", Some(b"30")), (b"d", Some(b"40"))] {
            assert_eq!(db.get(Cf::State, k).unwrap().as_deref(), v);
        }
        let mut batch = Batch::default();
        batch.delete_range(Cf::State, b"a", b"b");
        db.write(batch, Durability::Buffered).unwrap();
        assert!(lock_kept(&db.reads.kept).entries.is_empty(), "a range deleted empties the map");
        assert_eq!(db.get(Cf::State, b"a").unwrap(), None);
        assert_eq!(db.get(Cf::State, b"c").unwrap().as_deref(), Some(&b"30"[..]));
    }

    /// Readers racing a writer never see a value older than the last write
    /// that had returned when their read began.
    #[test]
    fn state_reads_racing_writes_are_never_stale() {
        let (_dir, db) = fresh();
        put(&db, Cf::State, b"k", &0u64.to_be_bytes());
        let done = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (db, done) = (db.clone(), done.clone());
                std::thread::spawn(move || loop {
                    let written = done.load(Ordering::Acquire);
                    let v = db.get(Cf::State, b"k").unwrap().unwrap();
                    let seen = u64::from_be_bytes(v.try_into().unwrap());
                    assert!(seen >= written, "read {seen} after write {written} had returned");
                    if written == 2000 {
                        break;
                    }
                })
            })
            .collect();
        for i in 1..=2000u64 {
            put(&db, Cf::State, b"k", &i.to_be_bytes());
            done.store(i, Ordering::Release);
        }
        for r in readers {
            r.join().unwrap();
        }
    }
}
