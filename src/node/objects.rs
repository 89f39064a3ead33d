//! Chunks in an S3 bucket with Object Lock (`[chunks] backend = "s3"`, docs/STORAGE.md
//! §"Object store"): what the deposit, fetch, healer, scrubber and purge do in that mode.
//!
//! - **Deposit**: the leader PUTs each chunk once (the store checks its SHA-256, the chunk's
//!   name), then, with the manifest read and checked, locks every chunk in compliance mode until
//!   the item's retention ends, and only then proposes the seal. The commit is the
//!   acknowledgement, as with local chunks.
//! - **Fetch**: the serving node reads the objects and checks each against its name.
//! - **Keeper** (the healer's job here): the leader checks that every committed chunk's object
//!   exists, is locked at least until its item's retention ends and carries a legal hold exactly
//!   while its item does, and sets what is missing. It copies nothing. Purged items' objects are
//!   deleted, every version.
//! - **Scrub**: reads every object back and checks its hash; an object altered or deleted behind
//!   the vault's back is a finding recorded in the audit log, and the intact, locked version under
//!   it is brought back when the store still has it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::Node;
use crate::evidence::{Bucket, BucketError, ChunkName, ItemId};
use crate::limits;
use crate::raft::state_machine::SmEvent;
use crate::vault::{query, ItemRecord};

/// Requests to the store in flight at once for one item's chunks.
const CONCURRENCY: usize = 4;
/// Tries at deleting a purged item's objects before leaving them to the sweep.
const PURGE_ATTEMPTS: u32 = 5;

/// The deposit's writer in bucket mode: PUTs every chunk it is handed, a few at a time.
pub async fn store_in_bucket(bucket: Arc<Bucket>, rx: mpsc::Receiver<(ChunkName, Bytes)>) -> Result<(), String> {
    let mut puts = super::deposit::tokio_stream_from(rx)
        .map(|(name, bytes)| {
            let bucket = bucket.clone();
            async move { bucket.put(&name, bytes).await.map_err(|e| e.to_string()) }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = puts.next().await {
        r?;
    }
    Ok(())
}

/// Locks every chunk in compliance mode until `until_ms`, a few at a time; the first refusal ends it.
pub async fn lock_all(bucket: &Bucket, names: &[ChunkName], until_ms: u64) -> Result<(), BucketError> {
    let mut locks =
        futures::stream::iter(names.iter().copied()).map(|n| async move { bucket.lock(&n, until_ms).await }).buffer_unordered(CONCURRENCY);
    while let Some(r) = locks.next().await {
        r?;
    }
    Ok(())
}

/// Reads a chunk for a fetch. An object altered or hidden behind the vault's back is brought
/// back from the intact version under it when the store still has it, and the finding is
/// recorded as the scrubber records its own (else the repair would leave no trace).
pub async fn read_chunk(node: &Arc<Node>, name: &ChunkName) -> Result<Bytes, std::io::Error> {
    let bucket = node.bucket.clone().ok_or_else(|| std::io::Error::other("no bucket configured"))?;
    let found = match bucket.get(name).await {
        Ok(b) => return Ok(b),
        Err(BucketError::Missing(_)) => "missing",
        Err(BucketError::HashMismatch(_)) => "corrupt",
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    tracing::error!(chunk = %name, found, "the bucket's object is not the chunk deposited; looking for the intact version");
    let repaired = scrub_repair(&bucket, name).await;
    let (n, chunk) = (node.clone(), *name);
    tokio::spawn(async move {
        if let Err(e) = super::scrub::record(&n, n.id(), super::scrub::Finding { chunk, found: found.into(), repaired }).await {
            tracing::error!(error = %e, "could not record a fetch's finding");
        }
    });
    if !repaired {
        return Err(std::io::Error::other(format!("no intact version of chunk {name} is left in the bucket")));
    }
    bucket.get(name).await.map_err(|e| std::io::Error::other(e.to_string()))
}

/// What checking one item's objects found.
#[derive(Default, Debug)]
pub struct Kept {
    /// Chunks whose object was gone: (chunk, brought back from an older version).
    pub missing: Vec<(ChunkName, bool)>,
    /// Locks or legal holds set or extended.
    pub fixed: u64,
}

/// Makes the objects of one committed item match it: present (with `restore`, an object gone is
/// brought back from the version under it), locked in compliance mode at least until its
/// retention ends, on legal hold exactly while it is. A purged item's objects are deleted.
pub async fn keep_item(bucket: &Bucket, rec: &ItemRecord, restore: bool) -> Result<Kept, BucketError> {
    let mut k = Kept::default();
    let names: Vec<ChunkName> = rec.manifest.chunks.iter().map(|c| c.name).collect();
    if rec.purged.is_some() {
        for n in &names {
            if let Err(e) = bucket.delete_all(n).await {
                // A legal hold the release did not get to lift keeps the object: lift it, once.
                if e.code() != Some("AccessDenied") {
                    return Err(e);
                }
                bucket.legal_hold(n, false).await?;
                bucket.delete_all(n).await?;
            }
        }
        return Ok(k);
    }
    let hold = rec.hold.is_some();
    // S3 refuses a retention date in the past: past its retention an item's objects stay
    // unlocked until the purge (THREAT_MODEL.md).
    let inside_retention = rec.retain_until_ms > super::now_ms();
    for n in &names {
        let lock = match bucket.lock_of(n).await? {
            Some(l) => l,
            // Left to the sweep, which records what it finds.
            None if !restore => continue,
            None => {
                let back = bucket.restore(n).await?;
                k.missing.push((*n, back));
                match (back, bucket.lock_of(n).await?) {
                    (true, Some(l)) => l,
                    _ => continue,
                }
            }
        };
        if inside_retention && (lock.mode.as_deref() != Some("COMPLIANCE") || lock.retain_until_ms.is_none_or(|u| u < rec.retain_until_ms)) {
            bucket.lock(n, rec.retain_until_ms.max(lock.retain_until_ms.unwrap_or(0))).await?;
            k.fixed += 1;
        }
        if lock.legal_hold != hold {
            bucket.legal_hold(n, hold).await?;
            k.fixed += 1;
        }
    }
    Ok(k)
}

/// Brings one item's locks up to date right after a change to its retention or hold committed.
pub async fn sync_item(node: &Node, item: &crate::evidence::ItemId) -> anyhow::Result<()> {
    let Some(bucket) = node.bucket.clone() else { return Ok(()) };
    let Some(rec) = query::item(&node.state, item)? else { return Ok(()) };
    keep_item(&bucket, &rec, false).await?;
    Ok(())
}

/// One sweep over every item: returns the objects found missing.
/// `purged_done` holds the purged items whose objects are known gone (this process's memory: a
/// restarted leader checks each once more).
async fn sweep(node: &Arc<Node>, bucket: &Bucket, purged_done: &mut HashSet<ItemId>) -> anyhow::Result<Vec<(ChunkName, bool)>> {
    let n = node.clone();
    let items = tokio::task::spawn_blocking(move || query::items(&n.state)).await??;
    let mut missing = Vec::new();
    for rec in items {
        if !node.is_leader() {
            break;
        }
        if rec.purged.is_some() && purged_done.contains(&rec.manifest.item) {
            continue;
        }
        match keep_item(bucket, &rec, true).await {
            Ok(k) => {
                if rec.purged.is_some() {
                    purged_done.insert(rec.manifest.item);
                }
                if k.fixed > 0 {
                    tracing::warn!(item = %rec.manifest.item, fixed = k.fixed, "set locks or legal holds the bucket lacked");
                }
                missing.extend(k.missing);
            }
            Err(e) => tracing::warn!(item = %rec.manifest.item, error = %e, "could not check the item's objects"),
        }
    }
    Ok(missing)
}

/// The keeper: the healer's loop in bucket mode. Every node deletes a purged item's objects
/// when it applies the purge (whichever gets there first; the rest find nothing); the leader
/// sweeps every item now and then, and records each object it found gone.
pub async fn keep_loop(node: Arc<Node>, mut events: mpsc::UnboundedReceiver<SmEvent>) {
    let Some(bucket) = node.bucket.clone() else { return };
    let sweep_every = Duration::from_secs(bucket.config().sweep_every_secs);
    // The first sweep one period after start (a new leader sweeps as soon as a period has passed).
    let mut last_sweep = Some(std::time::Instant::now());
    let mut purged_done = HashSet::new();
    // Objects found gone and recorded: a finding once, not once a sweep.
    let mut reported: HashSet<ChunkName> = HashSet::new();
    loop {
        let wait = tokio::time::sleep(Duration::from_secs(limits::HEAL_INTERVAL_SECS));
        tokio::pin!(wait);
        tokio::select! {
            _ = &mut wait => {
                if node.is_leader() && last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                    last_sweep = Some(std::time::Instant::now());
                    match sweep(&node, &bucket, &mut purged_done).await {
                        Ok(missing) => {
                            for (chunk, repaired) in missing {
                                let first = reported.insert(chunk);
                                if repaired {
                                    reported.remove(&chunk);
                                }
                                if !first && !repaired {
                                    continue;
                                }
                                tracing::error!(chunk = %chunk, repaired, "a chunk's object was gone from the bucket");
                                let f = super::scrub::Finding { chunk, found: "missing".into(), repaired };
                                if let Err(e) = super::scrub::record(&node, node.id(), f).await {
                                    tracing::warn!(error = %e, "could not record a missing-object finding");
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "sweeping the bucket"),
                    }
                }
            }
            ev = events.recv() => match ev {
                Some(SmEvent::Purged(names)) => {
                    tokio::spawn(delete_objects(bucket.clone(), names));
                }
                Some(_) => {}
                None => return,
            }
        }
    }
}

/// Deletes chunks' objects, every version: a purged item's, or a failed deposit's. The store's
/// lock ends on the second after the retention (S3 dates have no milliseconds), so a refusal is
/// tried again a few times; after that the leader's sweep retries a purged item's (a failed
/// deposit's locked objects stay until their locks end).
pub async fn delete_objects(bucket: Arc<Bucket>, names: Vec<ChunkName>) {
    let mut left = names;
    let mut deleted = 0;
    for attempt in 0..PURGE_ATTEMPTS {
        let mut still = Vec::new();
        for n in left {
            match bucket.delete_all(&n).await {
                Ok(v) => deleted += v,
                Err(e) => {
                    if attempt + 1 == PURGE_ATTEMPTS {
                        tracing::error!(chunk = %n, error = %e, "could not delete a chunk's object");
                    }
                    still.push(n);
                }
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(versions = deleted, left = left.len(), "deleted chunks' objects");
}

/// The scrubber's look at one chunk in bucket mode: `None` when its object is intact, else
/// `missing` or `corrupt`.
pub async fn scrub_check(bucket: &Bucket, name: &ChunkName) -> Result<Option<&'static str>, BucketError> {
    match bucket.get(name).await {
        Ok(_) => Ok(None),
        Err(BucketError::Missing(_)) => Ok(Some("missing")),
        Err(BucketError::HashMismatch(_)) => Ok(Some("corrupt")),
        Err(e) => Err(e),
    }
}

/// The scrubber's repair in bucket mode: the intact, locked version brought back.
pub async fn scrub_repair(bucket: &Bucket, name: &ChunkName) -> bool {
    matches!(bucket.restore(name).await, Ok(true)) && bucket.get(name).await.is_ok()
}
