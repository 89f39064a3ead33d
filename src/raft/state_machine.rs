//! The state machine store: committed entries applied through `vault::apply`
//! into the `state` column family, and snapshots of that column family.
//!
//! A snapshot is a point-in-time RocksDB view of the `state` column family,
//! written while apply goes on to one file on the node's disk:
//! `CUSTODY-SNAPSHOT/1\n`, then records `0x01 ‖ u32 key len ‖ key ‖ u32 value
//! len ‖ value`, then `0x00 ‖ SHA-256 of every byte before`. Openraft streams
//! the file in chunks; the receiver copies it to disk and into a staging
//! database beside it, checks it whole, has its [`SnapshotGate`] check the
//! staged state (docs/KEYS.md §7.3), and only then replaces its state. A
//! corrupt snapshot is an error, never "no snapshot"; a refused one stops
//! this node's Raft rather than replace its state.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{sm_read_err, sm_write_err, snapshot_err, Entry, LogId, Membership, SnapshotMeta, StorageError, TypeConfig};
use crate::crypto::Hasher;
use crate::evidence::ChunkName;
use crate::storage::{Batch, Cf, Db, Durability};
use crate::vault::{self, Command, Outcome, StateRead, VaultError};

const LAST_APPLIED_KEY: &[u8] = b"raft/last_applied";
const MEMBERSHIP_KEY: &[u8] = b"raft/membership";
const CURRENT_SNAPSHOT_KEY: &[u8] = b"snapshot/current";
const INSTALLING_SNAPSHOT_KEY: &[u8] = b"snapshot/installing";
const SNAPSHOT_MAGIC: &[u8] = b"CUSTODY-SNAPSHOT/1\n";
/// Largest key or value a snapshot record may claim; guards allocation when reading.
const MAX_SNAPSHOT_FIELD_BYTES: u32 = 64 * 1024 * 1024;

/// Checks a received snapshot's state, staged apart from this node's own
/// (`own`, still in place), before it replaces it. `Err` refuses the snapshot
/// with the reason.
pub trait SnapshotGate: Send + Sync + 'static {
    fn check<'a>(&'a self, staged: &'a StateView, own: &'a StateView, meta: &'a SnapshotMeta) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// What the state machine tells the rest of the node after applying.
#[derive(Debug)]
pub enum SmEvent {
    /// A deposit committed: this node must hold these chunks.
    Sealed(Vec<ChunkName>),
    /// A snapshot replaced the state: check every chunk.
    Installed,
    /// Items were purged: delete these chunks now.
    Purged(Vec<ChunkName>),
}

/// Read access to committed state, for `vault` and for queries.
#[derive(Clone)]
pub struct StateView(pub Db);

impl StateRead for StateView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        self.0.get(Cf::State, key).map_err(|e| VaultError::Read(e.to_string()))
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        self.0.scan_prefix(Cf::State, prefix).map_err(|e| VaultError::Read(e.to_string()))
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta,
    file: String,
}

pub struct StateMachineStore {
    db: Db,
    snap_dir: PathBuf,
    events: mpsc::UnboundedSender<SmEvent>,
    /// Serialises every use of the snapshot files and records: a build (its
    /// state dump, rename and record), an install (from the first delete of
    /// the state to the last record) and opening the current snapshot. The
    /// builder runs in its own task beside the state machine worker, so
    /// without it a build could dump a half-installed state, or delete the
    /// file a concurrent reader or install had just recorded as current.
    files: Arc<Mutex<()>>,
    gate: Arc<dyn SnapshotGate>,
}

impl StateMachineStore {
    /// Opens the store; finishes a snapshot install a crash interrupted.
    pub fn open(db: Db, snap_dir: &Path, events: mpsc::UnboundedSender<SmEvent>, gate: Arc<dyn SnapshotGate>) -> Result<Self, StorageError> {
        fs::create_dir_all(snap_dir).map_err(snapshot_err)?;
        remove_staging(snap_dir);
        let store = StateMachineStore { db, snap_dir: snap_dir.to_path_buf(), events, files: Arc::new(Mutex::new(())), gate };
        if let Some(b) = store.db.get(Cf::Meta, INSTALLING_SNAPSHOT_KEY).map_err(sm_read_err)? {
            let rec: SnapshotRecord = serde_json::from_slice(&b).map_err(sm_read_err)?;
            tracing::warn!(snapshot = %rec.meta.snapshot_id, "finishing a snapshot install interrupted by a crash");
            load_snapshot_file(&store.db, &store.snap_dir.join(&rec.file), &rec)?;
            let _ = store.events.send(SmEvent::Installed);
        }
        Ok(store)
    }

    pub fn view(&self) -> StateView {
        StateView(self.db.clone())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(db: &Db, cf: Cf, key: &[u8]) -> Result<Option<T>, StorageError> {
    match db.get(cf, key).map_err(sm_read_err)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(sm_read_err),
    }
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(sm_write_err)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StorageError> + Send + 'static) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(sm_write_err)?
}

fn apply_entries(db: &Db, entries: Vec<Entry>) -> Result<(Vec<Outcome>, Vec<ChunkName>, Vec<ChunkName>), StorageError> {
    let view = StateView(db.clone());
    let mut tx = vault::Tx::new(&view);
    let mut outcomes = Vec::with_capacity(entries.len());
    let mut sealed = Vec::new();
    let mut purged = Vec::new();
    let mut last: Option<LogId> = None;
    let mut membership: Option<Membership> = None;
    for e in entries {
        last = Some(e.log_id);
        match e.payload {
            EntryPayload::Blank => outcomes.push(Outcome::Done),
            EntryPayload::Normal(cmd) => {
                let out = vault::apply(&mut tx, &cmd).map_err(sm_write_err)?;
                if let (Outcome::Sealed { .. }, Command::Seal { manifest, .. }) = (&out, &cmd) {
                    sealed.extend(manifest.chunks.iter().map(|c| c.name));
                }
                if let Outcome::Purged { chunks, .. } = &out {
                    purged.extend(chunks.iter().copied());
                }
                outcomes.push(out);
            }
            EntryPayload::Membership(m) => {
                let voters: Vec<u64> = m.voter_ids().collect();
                let learners: Vec<u64> = m.learner_ids().collect();
                let leaf_index = vault::record_membership(&mut tx, &voters, &learners).map_err(sm_write_err)?;
                membership = Some(StoredMembership::new(Some(e.log_id), m));
                outcomes.push(Outcome::Recorded { leaf_index });
            }
        }
    }
    let mut b = Batch::default();
    for (k, v) in tx.into_writes() {
        match v {
            Some(v) => b.put(Cf::State, k, v),
            None => b.delete(Cf::State, k),
        }
    }
    b.put(Cf::State, LAST_APPLIED_KEY, json(&last)?);
    if let Some(m) = membership {
        b.put(Cf::State, MEMBERSHIP_KEY, json(&m)?);
    }
    // Buffered: the entries are durable in the log, and the log is not purged
    // before the WAL holding these writes is fsynced (see LogStore::purge).
    db.write(b, Durability::Buffered).map_err(sm_write_err)?;
    Ok((outcomes, sealed, purged))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let last: Option<LogId> = read_json::<Option<LogId>>(&self.db, Cf::State, LAST_APPLIED_KEY)?.flatten();
        let m: Membership = read_json(&self.db, Cf::State, MEMBERSHIP_KEY)?.unwrap_or_default();
        Ok((last, m))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let (outcomes, sealed, purged) = blocking(move || apply_entries(&db, entries)).await?;
        if !sealed.is_empty() {
            let _ = self.events.send(SmEvent::Sealed(sealed));
        }
        if !purged.is_empty() {
            let _ = self.events.send(SmEvent::Purged(purged));
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), snap_dir: self.snap_dir.clone(), files: self.files.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snap_dir.join(format!("incoming-{}.tmp", random_hex()?));
        let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(snapshot_err)?;
        // Unlinked at once: the handle is all that is needed, and a crash leaves nothing behind.
        fs::remove_file(&path).map_err(snapshot_err)?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<tokio::fs::File>) -> Result<(), StorageError> {
        let mut src = snapshot.into_std().await;
        let dir = self.snap_dir.clone();
        let (tmp, staged) = blocking(move || {
            src.rewind().map_err(snapshot_err)?;
            copy_verified(&mut src, &dir)
        })
        .await?;
        let verdict = self.gate.check(&StateView(staged.db().clone()), &StateView(self.db.clone()), meta).await;
        drop(staged);
        if let Err(why) = verdict {
            let _ = fs::remove_file(&tmp);
            tracing::error!(snapshot = %meta.snapshot_id, reason = %why, "REFUSED THE LEADER'S SNAPSHOT: its state is not what the logged leaves and the voters say; this node keeps its own state and stops taking part");
            return Err(snapshot_err(format!("refused snapshot {}: {why}", meta.snapshot_id)));
        }
        let db = self.db.clone();
        let dir = self.snap_dir.clone();
        let files = self.files.clone();
        let owned_meta = meta.clone();
        blocking(move || {
            let meta = owned_meta;
            let file = format!("{}.snap", sanitize(&meta.snapshot_id));
            let path = dir.join(&file);
            let _guard = lock(&files)?;
            fs::rename(&tmp, &path).map_err(snapshot_err)?;
            File::open(&dir).and_then(|d| d.sync_all()).map_err(snapshot_err)?;
            let rec = SnapshotRecord { meta, file };
            let mut b = Batch::default();
            b.put(Cf::Meta, INSTALLING_SNAPSHOT_KEY, json(&rec)?);
            // The marker must be durable before the state is cleared, so a crash
            // mid-install finishes the install at the next start.
            db.write(b, Durability::Fsync).map_err(sm_write_err)?;
            load_snapshot_file(&db, &path, &rec)?;
            remove_other_snapshots(&dir, &rec.file);
            Ok(())
        })
        .await?;
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "installed a snapshot from the leader");
        let _ = self.events.send(SmEvent::Installed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let db = self.db.clone();
        let dir = self.snap_dir.clone();
        let files = self.files.clone();
        let current = blocking(move || {
            // The record is read and its file opened under the lock: a build
            // finishing in between would otherwise delete the file the record
            // names. An open file stays readable after it is unlinked.
            let _guard = lock(&files)?;
            let Some(rec) = read_json::<SnapshotRecord>(&db, Cf::Meta, CURRENT_SNAPSHOT_KEY)? else {
                return Ok(None);
            };
            let f = File::open(dir.join(&rec.file)).map_err(|e| {
                // The record says a snapshot exists: its file missing is corruption, not "no snapshot".
                snapshot_err(format!("snapshot file {} is unreadable: {e}", rec.file))
            })?;
            Ok(Some((rec, f)))
        })
        .await?;
        Ok(current.map(|(rec, f)| Snapshot { meta: rec.meta, snapshot: Box::new(tokio::fs::File::from_std(f)) }))
    }
}

pub struct SnapshotBuilder {
    db: Db,
    snap_dir: PathBuf,
    files: Arc<Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let dir = self.snap_dir.clone();
        let files = self.files.clone();
        let (rec, f) = blocking(move || build_snapshot_file(&db, &dir, &files)).await?;
        Ok(Snapshot { meta: rec.meta, snapshot: Box::new(tokio::fs::File::from_std(f)) })
    }
}

fn random_hex() -> Result<String, StorageError> {
    Ok(hex::encode(crate::crypto::random_bytes::<8>().map_err(snapshot_err)?))
}

/// Snapshot ids come from the leader; keep only characters safe in a file name.
fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(120).collect()
}

fn lock(files: &Mutex<()>) -> Result<std::sync::MutexGuard<'_, ()>, StorageError> {
    files.lock().map_err(|_| snapshot_err("snapshot lock poisoned"))
}

/// Writes a snapshot of the state and makes it current; returns it opened.
fn build_snapshot_file(db: &Db, dir: &Path, files: &Mutex<()>) -> Result<(SnapshotRecord, File), StorageError> {
    // Held from the dump on: an install replaces the state in several batches,
    // and a dump taken between two of them would be a state no log produced.
    let _guard = lock(files)?;
    let tmp = dir.join(format!("build-{}.tmp", random_hex()?));
    let mut w = SnapWriter::create(&tmp)?;
    let mut last: Option<LogId> = None;
    let mut membership = Membership::default();
    db.dump(Cf::State, |k, v| -> Result<(), StorageError> {
        if k == LAST_APPLIED_KEY {
            last = serde_json::from_slice(v).map_err(sm_read_err)?;
        } else if k == MEMBERSHIP_KEY {
            membership = serde_json::from_slice(v).map_err(sm_read_err)?;
        }
        w.record(k, v)
    })
    .map_err(sm_read_err)??;
    w.finish()?;
    let id = match &last {
        Some(l) => format!("{}-{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index, random_hex()?),
        None => format!("empty-{}", random_hex()?),
    };
    let file = format!("{id}.snap");
    fs::rename(&tmp, dir.join(&file)).map_err(snapshot_err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(snapshot_err)?;
    let opened = File::open(dir.join(&file)).map_err(snapshot_err)?;
    let rec = SnapshotRecord { meta: SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id: id }, file };
    let mut b = Batch::default();
    b.put(Cf::Meta, CURRENT_SNAPSHOT_KEY, json(&rec)?);
    db.write(b, Durability::Fsync).map_err(sm_write_err)?;
    remove_other_snapshots(dir, &rec.file);
    Ok((rec, opened))
}

fn remove_other_snapshots(dir: &Path, keep: &str) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != keep && name.ends_with(".snap") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

struct SnapWriter {
    out: BufWriter<File>,
    hasher: Hasher,
}

impl SnapWriter {
    fn create(path: &Path) -> Result<Self, StorageError> {
        let f = File::create(path).map_err(snapshot_err)?;
        let mut w = SnapWriter { out: BufWriter::new(f), hasher: Hasher::new() };
        w.write(SNAPSHOT_MAGIC)?;
        Ok(w)
    }
    fn write(&mut self, b: &[u8]) -> Result<(), StorageError> {
        self.hasher.update(b);
        self.out.write_all(b).map_err(snapshot_err)
    }
    fn record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StorageError> {
        let klen = u32::try_from(k.len()).map_err(snapshot_err)?;
        let vlen = u32::try_from(v.len()).map_err(snapshot_err)?;
        self.write(&[1])?;
        self.write(&klen.to_be_bytes())?;
        self.write(k)?;
        self.write(&vlen.to_be_bytes())?;
        self.write(v)
    }
    fn finish(mut self) -> Result<(), StorageError> {
        self.write(&[0])?;
        let digest = std::mem::take(&mut self.hasher).finish();
        self.out.write_all(&digest).map_err(snapshot_err)?;
        let f = self.out.into_inner().map_err(snapshot_err)?;
        // The snapshot file must be complete on disk before a record points at it.
        f.sync_all().map_err(snapshot_err)
    }
}

/// Reads a snapshot stream record by record, hashing what it reads.
struct SnapReader<R: Read> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> SnapReader<R> {
    fn new(inner: R) -> Result<Self, StorageError> {
        let mut r = SnapReader { inner, hasher: Hasher::new() };
        let mut magic = vec![0u8; SNAPSHOT_MAGIC.len()];
        r.read_exact(&mut magic)?;
        if magic != SNAPSHOT_MAGIC {
            return Err(snapshot_err("not a custody snapshot (bad magic)"));
        }
        Ok(r)
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StorageError> {
        self.inner.read_exact(buf).map_err(|e| snapshot_err(format!("snapshot truncated: {e}")))?;
        self.hasher.update(buf);
        Ok(())
    }
    fn field(&mut self) -> Result<Vec<u8>, StorageError> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_SNAPSHOT_FIELD_BYTES {
            return Err(snapshot_err("snapshot record too large"));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }
    /// The next record, or `None` after checking the trailing digest.
    fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut tag = [0u8; 1];
        self.read_exact(&mut tag)?;
        match tag[0] {
            1 => Ok(Some((self.field()?, self.field()?))),
            0 => {
                let expect = std::mem::take(&mut self.hasher).finish();
                let mut got = [0u8; 32];
                self.inner.read_exact(&mut got).map_err(|e| snapshot_err(format!("snapshot truncated: {e}")))?;
                if got != expect {
                    return Err(snapshot_err("snapshot digest mismatch: the snapshot is corrupt"));
                }
                Ok(None)
            }
            _ => Err(snapshot_err("snapshot record has a bad tag: the snapshot is corrupt")),
        }
    }
}

/// A staging database holding a received snapshot's state for its check;
/// removed when dropped.
struct Staged {
    db: Option<Db>,
    dir: PathBuf,
}

impl Staged {
    fn db(&self) -> &Db {
        self.db.as_ref().expect("a staging database is open until dropped")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // The database closes with its last handle, which is this one.
        drop(self.db.take());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const STAGING_PREFIX: &str = "staging-";

/// Removes staging databases a crash left behind.
fn remove_staging(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Copies a received snapshot to a temporary file in `dir` and into a
/// staging database, checking it is whole and intact; returns both.
fn copy_verified(src: &mut File, dir: &Path) -> Result<(PathBuf, Staged), StorageError> {
    let tmp = dir.join(format!("recv-{}.tmp", random_hex()?));
    let staging = dir.join(format!("{STAGING_PREFIX}{}", random_hex()?));
    let result = (|| {
        let staged = Staged { db: Some(Db::open(&staging).map_err(snapshot_err)?), dir: staging.clone() };
        let mut w = SnapWriter::create(&tmp)?;
        let mut r = SnapReader::new(BufReader::new(&mut *src))?;
        let mut b = Batch::default();
        while let Some((k, v)) = r.next()? {
            w.record(&k, &v)?;
            b.put(Cf::State, k, v);
            if b.len() >= crate::limits::SNAPSHOT_INSTALL_BATCH_RECORDS {
                staged.db().write(std::mem::take(&mut b), Durability::Buffered).map_err(sm_write_err)?;
            }
        }
        // Only the whole, intact file counts: its digest is checked at its end.
        staged.db().write(b, Durability::Buffered).map_err(sm_write_err)?;
        w.finish()?;
        Ok(staged)
    })();
    match result {
        Ok(staged) => Ok((tmp, staged)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Replaces the state column family with the snapshot's records.
fn load_snapshot_file(db: &Db, path: &Path, rec: &SnapshotRecord) -> Result<(), StorageError> {
    // First pass: the whole file must verify before anything is replaced.
    {
        let mut r = SnapReader::new(BufReader::new(File::open(path).map_err(snapshot_err)?))?;
        while r.next()?.is_some() {}
    }
    let mut r = SnapReader::new(BufReader::new(File::open(path).map_err(snapshot_err)?))?;
    let mut b = Batch::default();
    b.delete_range(Cf::State, Vec::new(), vec![0xffu8; 64]);
    loop {
        let next = r.next()?;
        let done = next.is_none();
        if let Some((k, v)) = next {
            b.put(Cf::State, k, v);
        }
        if done || b.len() >= crate::limits::SNAPSHOT_INSTALL_BATCH_RECORDS {
            let batch = std::mem::take(&mut b);
            if done {
                let mut last = batch;
                last.put(Cf::State, LAST_APPLIED_KEY, json(&rec.meta.last_log_id)?);
                last.put(Cf::State, MEMBERSHIP_KEY, json(&rec.meta.last_membership)?);
                last.put(Cf::Meta, CURRENT_SNAPSHOT_KEY, json(rec)?);
                last.delete(Cf::Meta, INSTALLING_SNAPSHOT_KEY);
                // The install is complete only when this last batch is durable.
                db.write(last, Durability::Fsync).map_err(sm_write_err)?;
                return Ok(());
            }
            db.write(batch, Durability::Buffered).map_err(sm_write_err)?;
        }
    }
}

/// This node's current snapshot: its meta and the file, opened (`custody
/// backup`). `None` before the first snapshot.
pub fn current_snapshot(db: &Db, snap_dir: &Path) -> Result<Option<(SnapshotMeta, File)>, StorageError> {
    // A build that finishes between reading the record and opening its file
    // deletes that file: read again then.
    for _ in 0..5 {
        let Some(rec) = read_json::<SnapshotRecord>(db, Cf::Meta, CURRENT_SNAPSHOT_KEY)? else { return Ok(None) };
        match File::open(snap_dir.join(&rec.file)) {
            Ok(f) => return Ok(Some((rec.meta, f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(snapshot_err(format!("snapshot file {}: {e}", rec.file))),
        }
    }
    Err(snapshot_err("the current snapshot kept changing while it was opened"))
}

/// Makes the snapshot file at `path` (checked whole first) `db`'s state and
/// its current snapshot, kept in `snap_dir`, as if a leader had installed it
/// (`custody restore`): a node started on `db` begins after `meta.last_log_id`.
pub fn restore_snapshot(db: &Db, snap_dir: &Path, path: &Path, meta: SnapshotMeta) -> Result<(), StorageError> {
    fs::create_dir_all(snap_dir).map_err(snapshot_err)?;
    let file = format!("{}.snap", sanitize(&meta.snapshot_id));
    let dest = snap_dir.join(&file);
    fs::copy(path, &dest).map_err(snapshot_err)?;
    File::open(&dest).and_then(|f| f.sync_all()).map_err(snapshot_err)?;
    load_snapshot_file(db, &dest, &SnapshotRecord { meta, file })
}

/// Reads the snapshot file at `path` (checked whole first) into `db`'s
/// state, for offline checks of a backup (`custody backup verify`).
pub fn load_state(db: &Db, path: &Path, meta: SnapshotMeta) -> Result<(), StorageError> {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    load_snapshot_file(db, path, &SnapshotRecord { meta, file })
}
