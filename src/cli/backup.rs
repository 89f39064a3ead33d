//! `custody backup`, `backup verify` and `restore` (docs/STORAGE.md, "Backup
//! and restore"): a consistent, point-in-time copy of a running cluster's
//! replicated state (a snapshot at one log index, with the checkpoint it
//! published) and every sealed chunk its items name, checked offline against
//! pinned keys, and written back into new nodes' data directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::StreamExt;
use hyper::{Method, Request};
use serde::{Deserialize, Serialize};

use super::ops::Session;
use super::Failure;
use crate::audit::bundle::Check;
use crate::client::HttpError;
use crate::evidence::ChunkName;
use crate::node::backup::BackupState;
use crate::raft::SnapshotMeta;
use crate::vault::query;

/// The `format` of `backup.json`.
pub const BACKUP_FORMAT: &str = "custody-backup";
/// The version of the layout this code writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// The file that describes a backup; written last, so a backup without it is unfinished.
pub const MANIFEST_FILE: &str = "backup.json";
const SNAPSHOT_FILE: &str = "state.snap";
/// Chunks fetched at once.
const PARALLEL_CHUNKS: usize = 4;

/// `backup.json` (docs/STORAGE.md, "Backup and restore").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: String,
    pub version: u32,
    pub cluster_id: String,
    /// The log's origin (the first line of its checkpoints).
    pub origin: String,
    /// When the backup finished (RFC 3339 UTC).
    pub taken_at: String,
    pub snapshot: SnapshotFile,
    /// The checkpoint the snapshot's state had published (signed-note text), if any.
    pub checkpoint: Option<String>,
    /// Every sealed chunk the snapshot's items name, under `chunks/<first two hex>/<name>`.
    pub chunks: ChunkCount,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Always `state.snap`.
    pub file: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    pub bytes: u64,
    /// The Raft log index the state is at.
    pub last_log_index: Option<u64>,
    /// openraft's snapshot meta (last log id, membership, id), as the node gave it.
    pub meta: SnapshotMeta,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkCount {
    pub count: u64,
    pub bytes: u64,
}

/// `backup --json`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct BackupWritten {
    pub dir: PathBuf,
    pub cluster_id: String,
    /// The Raft log index the backup's state is at: every item acknowledged before it is in.
    pub last_log_index: Option<u64>,
    /// The size of the audit log in the backup.
    pub tree_size: u64,
    pub items: u64,
    /// Chunks in the backup, and how many of them this run fetched (the rest were there, checked).
    pub chunks: u64,
    pub chunks_fetched: u64,
    /// Bytes of chunks and state in the backup.
    pub bytes: u64,
    pub seconds: f64,
}

/// `backup verify --json`: the verdict and every check it rests on.
#[derive(Serialize, schemars::JsonSchema)]
pub struct BackupReport {
    /// Every check holds.
    pub valid: bool,
    pub checks: Vec<Check>,
}

/// `restore --json`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RestoreWritten {
    pub node: u64,
    pub data_dir: PathBuf,
    /// The Raft log index the node starts after.
    pub last_log_index: Option<u64>,
    pub chunks: u64,
    /// Bytes of chunks written.
    pub bytes: u64,
    pub seconds: f64,
}

fn hex_sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut h = crate::crypto::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((hex::encode(h.finish()), n))
}

fn chunk_path(dir: &Path, name: &ChunkName) -> PathBuf {
    let s = name.to_string();
    dir.join("chunks").join(&s[..2]).join(s)
}

/// The chunks the state's items name (purged items have none left).
fn chunk_names(state: &BackupState) -> anyhow::Result<(u64, Vec<ChunkName>)> {
    let items = query::items(state.view())?;
    let mut names = Vec::new();
    for i in &items {
        if i.purged.is_none() {
            names.extend(i.manifest.chunks.iter().map(|c| c.name));
        }
    }
    names.sort();
    names.dedup();
    Ok((items.len() as u64, names))
}

async fn get(url: String) -> Result<Request<crate::client::Body>, HttpError> {
    Request::builder().method(Method::GET).uri(&url).body(crate::client::empty()).map_err(|e| HttpError::BadAnswer { url, detail: e.to_string() })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    let tmp = path.with_extension("part");
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)
}

/// `custody backup --out DIR`.
pub async fn backup(s: &Session, dir: &Path, json: bool) -> Result<(), Failure> {
    let show = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out = take(s, dir, show).await?;
    super::emit(json, &serde_json::to_value(&out)?, || {
        format!(
            "backup of cluster {} at log index {} in {}: {} items, {} chunks ({} fetched now), {:.1} MiB in {:.1} s",
            out.cluster_id,
            out.last_log_index.map(|i| i.to_string()).unwrap_or("-".into()),
            out.dir.display(),
            out.items,
            out.chunks,
            out.chunks_fetched,
            out.bytes as f64 / (1 << 20) as f64,
            out.seconds
        )
    });
    Ok(())
}

/// Takes a backup into `dir` (see [`backup`]); `show` prints progress on stderr.
pub async fn take(s: &Session, dir: &Path, show: bool) -> Result<BackupWritten, Failure> {
    let started = Instant::now();
    fs::create_dir_all(dir).map_err(|e| Failure::new(2, format!("{}: {e}", dir.display())))?;
    // A finished backup is not written over: its manifest names a point in time.
    let manifest_path = dir.join(MANIFEST_FILE);
    if manifest_path.exists() {
        return Err(Failure::new(2, format!("{} holds a finished backup; give an empty or unfinished directory", dir.display())));
    }
    // 1. The state, at one log index, streamed to disk.
    let snap_path = dir.join(SNAPSHOT_FILE);
    let part = dir.join(format!("{SNAPSHOT_FILE}.part"));
    let part2 = part.clone();
    let meta: SnapshotMeta = s
        .send_with("/v1/backup/snapshot", Duration::from_secs(3600), get, move |url, resp| {
            let part = part2.clone();
            async move {
                let bad = |detail: String| HttpError::BadAnswer { url: url.clone(), detail };
                let meta = resp
                    .headers()
                    .get(crate::wire::SNAPSHOT_META_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| BASE64.decode(v).ok())
                    .and_then(|b| serde_json::from_slice::<SnapshotMeta>(&b).ok())
                    .ok_or_else(|| bad("the answer carries no snapshot meta".into()))?;
                let mut f = tokio::fs::File::create(&part).await.map_err(|e| bad(e.to_string()))?;
                let mut body = http_body_util::BodyExt::into_data_stream(resp.into_body());
                while let Some(piece) = body.next().await {
                    let piece = piece.map_err(|e| bad(e.to_string()))?;
                    tokio::io::AsyncWriteExt::write_all(&mut f, &piece).await.map_err(|e| bad(e.to_string()))?;
                }
                f.sync_all().await.map_err(|e| bad(e.to_string()))?;
                Ok(meta)
            }
        })
        .await?;
    fs::rename(&part, &snap_path)?;
    let (sha, snap_bytes) = hex_sha256_file(&snap_path)?;
    let dir2 = dir.to_path_buf();
    let (snap2, meta2) = (snap_path.clone(), meta.clone());
    let state = tokio::task::spawn_blocking(move || BackupState::load(&dir2, &snap2, meta2)).await.map_err(|e| Failure::new(2, e.to_string()))??;
    let config = query::config(state.view())?.ok_or_else(|| Failure::new(2, "the snapshot holds no cluster configuration"))?;
    let checkpoint = query::checkpoint(state.view())?;
    let tree_size = crate::vault::audit::size(state.view())?;
    let (items, names) = chunk_names(&state)?;
    drop(state);

    // 2. Every chunk its items name; ones already here (checked) are kept: a run resumes.
    let total = names.len() as u64;
    let mut fetched = 0u64;
    let mut bytes = 0u64;
    let mut done = 0u64;
    let mut last_shown = Instant::now();
    let jobs = futures::stream::iter(names.into_iter().map(|name| {
        let path = chunk_path(dir, &name);
        async move {
            if let Ok(b) = tokio::fs::read(&path).await {
                if ChunkName::from_digest(crate::crypto::sha256(&b)) == name {
                    return Ok::<_, Failure>((b.len() as u64, false));
                }
            }
            let url_path = format!("/v1/backup/chunks/{name}");
            let b: Vec<u8> = s
                .send_with(&url_path, Duration::from_secs(600), get, |url, resp| async move {
                    let body =
                        http_body_util::BodyExt::collect(resp.into_body()).await.map_err(|e| HttpError::BadAnswer { url, detail: e.to_string() })?;
                    Ok(body.to_bytes().to_vec())
                })
                .await?;
            if ChunkName::from_digest(crate::crypto::sha256(&b)) != name {
                return Err(Failure::new(2, format!("chunk {name} came back with other bytes")));
            }
            let n = b.len() as u64;
            tokio::task::spawn_blocking(move || write_atomic(&path, &b)).await.map_err(|e| Failure::new(2, e.to_string()))??;
            Ok((n, true))
        }
    }))
    .buffer_unordered(PARALLEL_CHUNKS);
    futures::pin_mut!(jobs);
    while let Some(r) = jobs.next().await {
        let (n, new) = r?;
        bytes += n;
        done += 1;
        fetched += u64::from(new);
        if show && (last_shown.elapsed() > Duration::from_millis(500) || done == total) {
            last_shown = Instant::now();
            eprint!("\rbackup: {done}/{total} chunks, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
        }
    }
    if show {
        eprintln!();
    }

    // 3. The manifest, last: a backup without it is unfinished (and resumes).
    let m = BackupManifest {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        cluster_id: config.cluster_id.clone(),
        origin: config.origin(),
        taken_at: crate::wire::rfc3339_ms(crate::node::now_ms()),
        snapshot: SnapshotFile {
            file: SNAPSHOT_FILE.into(),
            sha256: sha,
            bytes: snap_bytes,
            last_log_index: meta.last_log_id.map(|l| l.index),
            meta,
        },
        checkpoint,
        chunks: ChunkCount { count: total, bytes },
    };
    write_atomic(&manifest_path, &serde_json::to_vec_pretty(&m)?)?;
    Ok(BackupWritten {
        dir: dir.to_path_buf(),
        cluster_id: m.cluster_id.clone(),
        last_log_index: m.snapshot.last_log_index,
        tree_size,
        items,
        chunks: total,
        chunks_fetched: fetched,
        bytes: bytes + snap_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn read_manifest(dir: &Path) -> Result<BackupManifest, Failure> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|e| Failure::new(2, format!("{}: {e} (not a finished backup)", path.display())))?;
    let m: BackupManifest = crate::audit::strict::from_slice(&bytes).map_err(|e| Failure::new(2, format!("{}: {e}", path.display())))?;
    if m.format != BACKUP_FORMAT || m.version != BACKUP_VERSION {
        return Err(Failure::new(2, format!("{}: not a {BACKUP_FORMAT} version {BACKUP_VERSION}", path.display())));
    }
    Ok(m)
}

fn check(name: &str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check { name: name.into(), ok: true, detail },
        Err(detail) => Check { name: name.into(), ok: false, detail },
    }
}

/// The checks of `backup verify`, offline: the snapshot file whole and as
/// recorded, its audit tree against its leaves and its state against them,
/// its checkpoint signed by a majority of the pinned keys with the tree's
/// root, and every chunk its items name present and hashing to its name.
fn verify_checks(dir: &Path, m: &BackupManifest, keys: &[crate::audit::bundle::TrustedKey]) -> Vec<Check> {
    let mut checks = Vec::new();
    let snap = dir.join(&m.snapshot.file);
    let digest = hex_sha256_file(&snap).map_err(|e| format!("{}: {e}", snap.display())).and_then(|(sha, n)| {
        if sha == m.snapshot.sha256 && n == m.snapshot.bytes {
            Ok(format!("{} is the {n} bytes recorded", m.snapshot.file))
        } else {
            Err(format!("{} is not the file recorded (SHA-256 {sha}, {n} bytes)", m.snapshot.file))
        }
    });
    let whole = digest.is_ok();
    checks.push(check("snapshot file", digest));
    if !whole {
        return checks;
    }
    let state = match BackupState::load(dir, &snap, m.snapshot.meta.clone()) {
        Ok(s) => s,
        Err(e) => {
            checks.push(check("snapshot state", Err(format!("{e:#}"))));
            return checks;
        }
    };
    checks.push(check(
        "snapshot state",
        state.check().map(|size| format!("the audit tree of {size} leaves checks out against its leaves, and the state against them")),
    ));
    let config = query::config(state.view()).ok().flatten();
    checks.push(check(
        "cluster",
        match &config {
            Some(c) if c.cluster_id == m.cluster_id && c.origin() == m.origin => Ok(format!("cluster {} (origin {})", c.cluster_id, m.origin)),
            Some(c) => Err(format!("the state is cluster {} ({}), the manifest says {} ({})", c.cluster_id, c.origin(), m.cluster_id, m.origin)),
            None => Err("the state holds no cluster configuration".into()),
        },
    ));
    let cp = (|| -> Result<String, String> {
        let note = m.checkpoint.as_deref().ok_or("the backup holds no checkpoint")?;
        if query::checkpoint(state.view()).map_err(|e| e.to_string())?.as_deref() != Some(note) {
            return Err("the manifest's checkpoint is not the one the state published".into());
        }
        let (cp, signers, valid) = crate::audit::bundle::verify_checkpoint(note, keys)?;
        let root = crate::vault::audit::root(state.view(), cp.size).map_err(|e| e.to_string())?;
        if root != cp.root {
            return Err(format!("the checkpoint's root at size {} is not the backup's tree's", cp.size));
        }
        Ok(format!(
            "size {} signed by {} of the {valid} pinned keys ({}), and the backup's tree has its root",
            cp.size,
            signers.len(),
            signers.join(", ")
        ))
    })();
    checks.push(check("checkpoint", cp));
    let chunks = (|| -> Result<String, String> {
        let (items, names) = chunk_names(&state).map_err(|e| e.to_string())?;
        let mut bytes = 0u64;
        for name in &names {
            let path = chunk_path(dir, name);
            let b = fs::read(&path).map_err(|e| format!("chunk {name}: {e}"))?;
            if ChunkName::from_digest(crate::crypto::sha256(&b)) != *name {
                return Err(format!("chunk {name} does not hash to its name"));
            }
            bytes += b.len() as u64;
        }
        if names.len() as u64 != m.chunks.count {
            return Err(format!("the items name {} chunks, the manifest {}", names.len(), m.chunks.count));
        }
        Ok(format!("all {} chunks of the {items} items are here and hash to their names ({bytes} bytes)", names.len()))
    })();
    checks.push(check("chunks", chunks));
    checks
}

/// `custody backup verify DIR --keys FILE`.
pub fn verify(dir: &Path, keys: &Path, json: bool) -> Result<(), Failure> {
    let keys = custody_keys(keys)?;
    let m = read_manifest(dir)?;
    let checks = verify_checks(dir, &m, &keys);
    let valid = checks.iter().all(|c| c.ok);
    let r = BackupReport { valid, checks };
    super::emit(json, &serde_json::to_value(&r)?, || {
        let mut out = String::new();
        for c in &r.checks {
            out.push_str(&format!("{} {}: {}\n", if c.ok { "✔" } else { "✘" }, c.name, c.detail));
        }
        out.push_str(if r.valid { "VALID: the backup is whole" } else { "INVALID: see the failed checks above" });
        out
    });
    if valid {
        Ok(())
    } else {
        Err(Failure::verdict("the backup does not verify"))
    }
}

fn custody_keys(path: &Path) -> Result<Vec<crate::audit::bundle::TrustedKey>, Failure> {
    custody_verify::run::read_keys(path).map_err(|e| Failure::new(2, e.to_string()))
}

/// `custody restore DIR --config node.toml`: this node's data directory from
/// the backup, after the backup's own checks (all of them but the
/// checkpoint's keys, which `backup verify` takes).
pub fn restore(dir: &Path, config: &Path, json: bool) -> Result<(), Failure> {
    let out = restore_node(dir, config)?;
    super::emit(json, &serde_json::to_value(&out)?, || {
        format!(
            "node {}: {} restored at log index {} with {} chunks; start it with `custody node --config {}`",
            out.node,
            out.data_dir.display(),
            out.last_log_index.map(|i| i.to_string()).unwrap_or("-".into()),
            out.chunks,
            config.display()
        )
    });
    Ok(())
}

/// Writes the data directory of the node `config` describes from the backup in `dir`.
pub fn restore_node(dir: &Path, config: &Path) -> Result<RestoreWritten, Failure> {
    let started = Instant::now();
    let cfg = crate::config::NodeConfig::load(config)?;
    let m = read_manifest(dir)?;
    if m.cluster_id != cfg.cluster_id {
        return Err(Failure::new(2, format!("the backup is of cluster {}, this node's config is for {}", m.cluster_id, cfg.cluster_id)));
    }
    if !m.snapshot.meta.last_membership.membership().nodes().any(|(id, _)| *id == cfg.id) {
        return Err(Failure::new(2, format!("node {} is not a member in the backup's state", cfg.id)));
    }
    let snap = dir.join(&m.snapshot.file);
    let (sha, _) = hex_sha256_file(&snap)?;
    if sha != m.snapshot.sha256 {
        return Err(Failure::new(1, format!("{} is not the file the backup recorded: the backup is damaged", snap.display())));
    }
    let state = BackupState::load(dir, &snap, m.snapshot.meta.clone())?;
    state.check().map_err(|e| Failure::new(1, format!("the backup's state does not check out: {e}")))?;
    let (_, names) = chunk_names(&state)?;
    drop(state);
    let chunks = names.into_iter().map(|name| {
        let path = chunk_path(dir, &name);
        fs::read(&path).map(|b| (name, b)).map_err(|e| anyhow::anyhow!("chunk {name}: {e}: the backup is incomplete"))
    });
    let r = crate::node::backup::restore_into(&cfg, &snap, m.snapshot.meta.clone(), chunks).map_err(|e| {
        let text = format!("{e:#}");
        Failure::new(if text.contains("damaged") || text.contains("incomplete") { 1 } else { 2 }, text)
    })?;
    Ok(RestoreWritten {
        node: cfg.id,
        data_dir: cfg.data_dir.clone(),
        last_log_index: r.last_log_index,
        chunks: r.chunks,
        bytes: r.bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
