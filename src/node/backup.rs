//! What a backup reads from a running node (docs/STORAGE.md, "Backup and
//! restore"): a snapshot of the replicated state taken now, at one applied
//! log index (a consistent point in time), and sealed chunks by name. Both
//! are ciphertext or public records: a backup holds no plaintext, and no key
//! that opens one (the shares of data keys are sealed to the nodes' own share
//! keys, which stay beside each node's config), and restoring one
//! (`custody restore`) writes a node's data directory, never its keys.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::Node;
use crate::evidence::ChunkName;
use crate::raft::SnapshotMeta;

/// How long a backup waits for the snapshot it asked for.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(120);

impl Node {
    /// Builds a snapshot that covers everything this node had applied when
    /// called, and answers it (its meta and the file, open).
    pub async fn snapshot_now(&self) -> anyhow::Result<(SnapshotMeta, std::fs::File)> {
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        self.raft.trigger().snapshot().await.map_err(|e| anyhow!("asking for a snapshot: {e}"))?;
        let deadline = Instant::now() + SNAPSHOT_PATIENCE;
        loop {
            let snap = self.raft.metrics().borrow().snapshot.map(|l| l.index);
            if snap >= applied {
                break;
            }
            if Instant::now() > deadline {
                bail!("no snapshot up to index {applied:?} within {} s", SNAPSHOT_PATIENCE.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (db, dir) = (self.db.clone(), self.cfg.data_dir.join("snapshots"));
        let (meta, file) = tokio::task::spawn_blocking(move || crate::raft::state_machine::current_snapshot(&db, &dir))
            .await??
            .ok_or_else(|| anyhow!("the snapshot was built but is not recorded"))?;
        if meta.last_log_id.map(|l| l.index) < applied {
            bail!("the current snapshot is older than asked for");
        }
        Ok((meta, file))
    }

    /// A sealed chunk by name, checked against it: from this node's disk, or in bucket mode
    /// from the bucket.
    pub async fn sealed_chunk(&self, name: ChunkName) -> anyhow::Result<bytes::Bytes> {
        if let Some(bucket) = &self.bucket {
            return Ok(bucket.get(&name).await?);
        }
        Ok(self.stored_chunk(name).await?)
    }
}

/// A backup's state, loaded into a scratch database to be read and checked
/// (`custody backup`, `backup verify`); the database goes with it.
pub struct BackupState {
    view: crate::raft::state_machine::StateView,
    _dir: tempfile::TempDir,
}

impl BackupState {
    /// Loads the snapshot file `snap` (its own digest checked) into a scratch
    /// database in a new directory under `scratch`.
    pub fn load(scratch: &std::path::Path, snap: &std::path::Path, meta: SnapshotMeta) -> anyhow::Result<BackupState> {
        let dir = tempfile::Builder::new().prefix(".scratch-").tempdir_in(scratch)?;
        let db = crate::storage::Db::open(&dir.path().join("db"))?;
        crate::raft::state_machine::load_state(&db, snap, meta).map_err(|e| anyhow!("{}: {e}", snap.display()))?;
        Ok(BackupState { view: crate::raft::state_machine::StateView(db), _dir: dir })
    }

    pub fn view(&self) -> &crate::raft::state_machine::StateView {
        &self.view
    }

    /// The audit tree checks out against its leaves, and every leaf against
    /// the state it gave (what a node checks before it takes a snapshot).
    pub fn check(&self) -> Result<u64, String> {
        let size = crate::vault::audit::size(&self.view).map_err(|e| e.to_string())?;
        super::checkpoint::verify_range(&self.view, 0, size)?;
        crate::vault::snapshot::check_against_leaves(&self.view).map_err(|e| e.to_string())?;
        Ok(size)
    }
}

/// What `restore_into` wrote.
pub struct Restored {
    pub last_log_index: Option<u64>,
    pub chunks: u64,
    pub bytes: u64,
}

/// Writes node `cfg`'s data directory from a backup (`custody restore`):
/// the state from the snapshot file `snap` as its current snapshot, a log
/// that starts after it, its identity, and the chunks `chunks` gives (name,
/// sealed bytes; each is checked against its name before it is kept). The
/// directory must hold no database yet. The node's keys are not touched:
/// they stay beside its config, and no backup holds them.
pub fn restore_into(
    cfg: &crate::config::NodeConfig,
    snap: &std::path::Path,
    meta: SnapshotMeta,
    chunks: impl Iterator<Item = anyhow::Result<(ChunkName, Vec<u8>)>>,
) -> anyhow::Result<Restored> {
    use crate::storage::{Batch, Cf, Db, Durability};
    let db_path = cfg.data_dir.join("db");
    if db_path.exists() {
        bail!("{} holds a database already: restore writes a new node's data directory only", db_path.display());
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let db = Db::open(&db_path)?;
    let last = meta.last_log_id;
    crate::raft::state_machine::restore_snapshot(&db, &cfg.data_dir.join("snapshots"), snap, meta).map_err(|e| anyhow!("{}: {e}", snap.display()))?;
    crate::raft::log_store::restore_from(&db, last)?;
    let store = crate::evidence::ChunkStore::open(&cfg.data_dir.join("chunks"))?;
    let (mut n, mut total) = (0, 0);
    for c in chunks {
        let (name, bytes) = c?;
        if name != ChunkName::from_digest(crate::crypto::sha256(&bytes)) {
            bail!("chunk {name} of the backup does not hash to its name: the backup is damaged");
        }
        store.put(&name, &bytes)?;
        super::held::mark(&db, &name)?;
        n += 1;
        total += bytes.len() as u64;
    }
    let mut b = Batch::default();
    b.put(Cf::Meta, super::IDENTITY_KEY, format!("{}/{}", cfg.cluster_id, cfg.id).into_bytes());
    db.write(b, Durability::Fsync)?;
    for marker in [super::NEW_DISK_MARKER, super::BOOTSTRAP_MARKER] {
        match std::fs::remove_file(cfg.data_dir.join(marker)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(Restored { last_log_index: last.map(|l| l.index), chunks: n, bytes: total })
}
