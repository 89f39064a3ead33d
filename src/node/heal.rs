//! One mechanism keeps chunks whole everywhere: a node makes sure it holds
//! every chunk a committed manifest names, fetching what it lacks from a peer
//! by name and checking the hash. It serves a follower that missed chunks, a
//! node restored from a snapshot, a new node, and repair after corruption.
//! Chunks no committed manifest names are collected after a grace period.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::{Method, Request};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Node;
use crate::client::{empty, read_body};
use crate::evidence::{ChunkName, ChunkStoreError};
use crate::limits;
use crate::raft::state_machine::SmEvent;
use crate::vault::query;

/// Rounds between full scans of every committed chunk.
const FULL_SCAN_EVERY_ROUNDS: u32 = 6;

pub async fn heal_loop(node: Arc<Node>, mut events: mpsc::UnboundedReceiver<SmEvent>) {
    let mut missing: BTreeSet<ChunkName> = BTreeSet::new();
    // Chunks this node had held and found gone (a finding), with whether the
    // finding recorded so far said `repaired`; and findings not yet recorded.
    let mut lost: std::collections::BTreeMap<ChunkName, bool> = Default::default();
    let mut unrecorded: Vec<(ChunkName, bool)> = Vec::new();
    let mut full_scan = true;
    let mut round = 0u32;
    loop {
        if full_scan {
            match scan(&node).await {
                Ok(m) => missing.extend(m),
                Err(e) => tracing::error!(error = %e, "scanning for missing chunks"),
            }
            full_scan = false;
        }
        // Status shows the work as soon as it is known, and counts it down
        // (a node fresh from a snapshot is missing everything until fetched).
        node.missing_chunks.store(missing.len() as u64, Ordering::Relaxed);
        let mut still = BTreeSet::new();
        for name in std::mem::take(&mut missing) {
            if node.chunks.contains(&name) {
                node.missing_chunks.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let was_held = lost.contains_key(&name) || super::held::was_held(&node.db, &name).unwrap_or(false);
            if was_held && !lost.contains_key(&name) {
                tracing::error!(chunk = %name, "a chunk this node held is gone from its disk: recording the finding");
            }
            let repaired = match fetch_from_peers(&node, &name).await {
                Ok(()) => {
                    node.missing_chunks.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!(chunk = %name, "fetched a missing chunk from a peer");
                    true
                }
                Err(e) => {
                    tracing::debug!(chunk = %name, error = %e, "chunk still missing");
                    still.insert(name);
                    false
                }
            };
            // A finding once when first seen, and once more when repaired later.
            if was_held && lost.get(&name) != Some(&true) && (repaired || !lost.contains_key(&name)) {
                lost.insert(name, repaired);
                unrecorded.push((name, repaired));
            }
            if repaired {
                lost.remove(&name);
            }
        }
        let mut failed = Vec::new();
        for (chunk, repaired) in std::mem::take(&mut unrecorded) {
            let f = super::scrub::Finding { chunk, found: "missing".into(), repaired };
            if let Err(e) = super::scrub::record(&node, node.id(), f).await {
                tracing::warn!(chunk = %chunk, error = %e, "could not record a missing-chunk finding yet; retrying");
                failed.push((chunk, repaired));
            }
        }
        unrecorded = failed;
        if let Ok(mut l) = node.lost_chunks.lock() {
            *l = lost.iter().filter(|(_, repaired)| !**repaired).map(|(n, _)| n.to_string()).collect();
        }
        missing = still;
        node.missing_chunks.store(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            tracing::warn!(count = missing.len(), "this node lacks chunks that committed manifests name; retrying");
        }
        let wait = tokio::time::sleep(Duration::from_secs(limits::HEAL_INTERVAL_SECS));
        tokio::pin!(wait);
        tokio::select! {
            _ = &mut wait => {
                round += 1;
                if round % FULL_SCAN_EVERY_ROUNDS == 0 { full_scan = true; }
            }
            ev = events.recv() => match ev {
                Some(SmEvent::Sealed(names)) => {
                    missing.extend(names.into_iter().filter(|n| !node.chunks.contains(n)));
                }
                Some(SmEvent::Installed) => full_scan = true,
                Some(SmEvent::Purged(names)) => {
                    for n in &names {
                        missing.remove(n);
                        lost.remove(n);
                        if let Err(e) = super::held::forget(&node.db, n) {
                            tracing::error!(chunk = %n, error = %e, "could not forget a purged chunk");
                        }
                        if let Err(e) = node.chunks.remove(n) {
                            tracing::error!(chunk = %n, error = %e, "could not delete a purged chunk");
                        }
                    }
                    tracing::info!(count = names.len(), "deleted the chunks of a purged item");
                }
                None => return,
            }
        }
    }
}

/// Every committed chunk this node lacks.
async fn scan(node: &Arc<Node>) -> anyhow::Result<Vec<ChunkName>> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<ChunkName>> {
        let all = query::all_chunks(&node.state)?;
        Ok(all.into_iter().filter(|n| !node.chunks.contains(n)).collect())
    })
    .await?
}

/// Fetches one chunk from the first peer that has an intact copy.
pub async fn fetch_from_peers(node: &Arc<Node>, name: &ChunkName) -> anyhow::Result<()> {
    let mut last_err = anyhow::anyhow!("no peer to fetch from");
    for addr in node.peer_addrs() {
        let url = format!("{addr}/internal/chunks/{name}");
        let req = Request::builder().method(Method::GET).uri(&url).body(empty())?;
        let resp = match node.http.send(req, Duration::from_millis(limits::CHUNK_TRANSFER_TIMEOUT_MS)).await {
            Ok(r) => r,
            Err(e) => {
                last_err = e.into();
                continue;
            }
        };
        let limit = (limits::MAX_CHUNK_SIZE_BYTES + limits::GCM_TAG_BYTES) as usize;
        let (status, bytes) = match read_body(&url, resp, limit).await {
            Ok(x) => x,
            Err(e) => {
                last_err = e.into();
                continue;
            }
        };
        if !status.is_success() {
            last_err = anyhow::anyhow!("{url}: HTTP {status}");
            continue;
        }
        // The peer is not trusted for content: the bytes must hash to the name.
        if !name.matches(&bytes) {
            tracing::warn!(peer = %addr, chunk = %name, "a peer served a chunk that does not match its name");
            last_err = anyhow::anyhow!("{url}: bytes do not match the chunk name");
            continue;
        }
        let (store, db) = (node.chunks.clone(), node.db.clone());
        let name = *name;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            store.put(&name, &bytes)?;
            super::held::mark(&db, &name)?;
            Ok(())
        })
        .await??;
        node.metrics.healed();
        return Ok(());
    }
    Err(last_err)
}

/// Path of the internal endpoint where a member says which chunks its own
/// applied state holds to be orphans.
pub const ORPHANS_PATH: &str = "/internal/orphans";
/// Most chunk names one orphan question carries.
const ORPHAN_QUESTION_MAX: usize = 4096;

/// A member's question: which of these chunks are orphans to you?
#[derive(Debug, Serialize, Deserialize)]
pub struct OrphanQuestion {
    pub chunks: Vec<ChunkName>,
}

/// The answer: the asked chunks the answering node holds to be orphans. A node
/// that has not applied everything it logged names none.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrphanAnswer {
    pub orphans: Vec<ChunkName>,
}

/// Collects chunk files that no committed manifest names, once they are older
/// than the grace period and this node has applied everything it has logged.
pub async fn orphan_loop(node: Arc<Node>) {
    let grace = Duration::from_secs(node.cfg.orphan_grace_secs);
    let every = Duration::from_secs(60).min(grace);
    loop {
        tokio::time::sleep(every).await;
        if !caught_up(&node) {
            continue;
        }
        match collect_orphans(&node, grace).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "collected orphan chunks of deposits that never committed"),
            Err(e) => tracing::error!(error = %e, "collecting orphan chunks"),
        }
    }
}

/// Has this node, under a known leader, applied everything it has logged?
fn caught_up(node: &Node) -> bool {
    let m = node.raft.metrics().borrow().clone();
    m.current_leader.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index
}

/// A member's orphan question answered from this node's own applied state,
/// with this node's grace for deposits still streaming.
pub async fn answer_orphans(node: &Arc<Node>, names: Vec<ChunkName>) -> anyhow::Result<Vec<ChunkName>> {
    let grace = Duration::from_secs(node.cfg.orphan_grace_secs);
    let n = node.clone();
    tokio::task::spawn_blocking(move || orphans_among(&n, &names, grace)).await?
}

/// The chunks among `names` that this node's own applied state names no
/// manifest for and that no active deposit is still sending; none if this
/// node is not caught up.
pub fn orphans_among(node: &Node, names: &[ChunkName], grace: Duration) -> anyhow::Result<Vec<ChunkName>> {
    if !caught_up(node) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in names.iter().take(ORPHAN_QUESTION_MAX) {
        if !node.inflight.protects(name, grace) && query::chunk_owner(&node.state, name)?.is_none() {
            out.push(*name);
        }
    }
    Ok(out)
}

/// Deletes the chunk files older than `grace` that a majority of the voters,
/// each from its own applied state, holds to be orphans. This node's own word
/// is one vote (if it votes): a state that lost an item's chunk index, from a
/// forged snapshot or a damaged disk, deletes no footage on its own.
pub async fn collect_orphans(node: &Arc<Node>, grace: Duration) -> anyhow::Result<usize> {
    let n = node.clone();
    let candidates = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<ChunkName>> {
        n.inflight.prune(grace);
        let now = SystemTime::now();
        let old: Vec<ChunkName> = n
            .chunks
            .list()?
            .into_iter()
            .filter(|(_, modified)| now.duration_since(*modified).map(|age| age >= grace).unwrap_or(false))
            .map(|(name, _)| name)
            .collect();
        orphans_among(&n, &old, grace)
    })
    .await??;
    if candidates.is_empty() {
        return Ok(0);
    }
    let members = node.members();
    let voters = members.iter().filter(|m| m.2).count();
    let mut votes: std::collections::BTreeMap<ChunkName, usize> = Default::default();
    let own = usize::from(members.iter().any(|m| m.0 == node.id() && m.2));
    for part in candidates.chunks(ORPHAN_QUESTION_MAX) {
        for name in part {
            votes.insert(*name, own);
        }
        for (peer, addr, voter) in node.routed_peers() {
            if !voter {
                continue;
            }
            let q = OrphanQuestion { chunks: part.to_vec() };
            match node.http.call::<_, OrphanAnswer>(Method::POST, &format!("{addr}{ORPHANS_PATH}"), Some(&q), Duration::from_secs(10)).await {
                Ok(a) => {
                    for name in a.orphans {
                        if let Some(v) = votes.get_mut(&name) {
                            *v += 1;
                        }
                    }
                }
                Err(e) => tracing::warn!(peer, error = %e, "orphan collection: a voter did not answer; its vote counts as keep"),
            }
        }
    }
    let agreed: Vec<ChunkName> = votes.into_iter().filter(|(_, v)| *v > voters / 2).map(|(name, _)| name).collect();
    let kept = candidates.len() - agreed.len();
    if kept > 0 {
        tracing::warn!(kept, "orphan collection: kept chunks this node holds to be orphans that no majority of the voters does");
    }
    let n = node.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut removed = 0;
        // Asked again: the answers took time, and a deposit may have committed meanwhile.
        for name in orphans_among(&n, &agreed, grace)? {
            match n.chunks.remove(&name) {
                Ok(()) => {
                    super::held::forget(&n.db, &name)?;
                    removed += 1
                }
                Err(ChunkStoreError::Missing(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    })
    .await?
}
