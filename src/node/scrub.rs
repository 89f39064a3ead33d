//! The scrubber: a node re-reads every chunk a committed manifest names,
//! checks it against its name, repairs what is corrupt or missing from a
//! healthy replica (the same fetch-by-name the healer uses), records each
//! finding in the audit log, and re-checks its stored audit tree. In bucket
//! mode the leader reads the bucket's objects instead and brings back the
//! locked version under an altered or hidden one (`node/objects.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{now_ms, Node};
use crate::evidence::{ChunkName, ChunkStoreError};
use crate::vault::{audit as tree, query, Command};

/// Path of the internal endpoints.
pub const SCRUB_PATH: &str = "/internal/scrub";
pub const FINDING_PATH: &str = "/internal/scrub-finding";
/// Pause between chunks in the background, so deposits keep the disk.
const BACKGROUND_PAUSE_MS: u64 = 20;
/// How often the background scrubber starts a pass.
const BACKGROUND_EVERY_SECS: u64 = 3600;

pub use crate::wire::ScrubReport;

/// A finding a follower sends to the leader to record.
#[derive(Serialize, Deserialize)]
pub struct Finding {
    pub chunk: ChunkName,
    pub found: String,
    pub repaired: bool,
}

/// Records a finding through Raft (on the leader directly, else via the leader).
pub async fn record(node: &Arc<Node>, reporter: u64, f: Finding) -> anyhow::Result<()> {
    if node.is_leader() {
        node.propose(Command::RecordScrub { node: reporter, chunk: f.chunk, found: f.found, repaired: f.repaired, time_ms: now_ms() }).await?;
        return Ok(());
    }
    let (leader, addr) = node.leader().ok_or_else(|| anyhow::anyhow!("no leader to record the finding"))?;
    let addr = node.route(leader, &addr);
    let _: serde_json::Value = node.http.call(hyper::Method::POST, &format!("{addr}{FINDING_PATH}"), Some(&f), Duration::from_secs(10)).await?;
    Ok(())
}

/// One pass over every committed chunk.
pub async fn scrub_once(node: &Arc<Node>, pause: Duration) -> anyhow::Result<ScrubReport> {
    let mut r = ScrubReport { node: node.id(), ..Default::default() };
    let n = node.clone();
    // In bucket mode one member reads the bucket, not every one: the leader.
    let bucket = node.bucket.clone();
    let names =
        if bucket.is_some() && !node.is_leader() { Vec::new() } else { tokio::task::spawn_blocking(move || query::all_chunks(&n.state)).await?? };
    let place = if bucket.is_some() { "the bucket's object" } else { "this node's copy" };
    for name in names {
        r.checked += 1;
        let found = match &bucket {
            Some(b) => super::objects::scrub_check(b, &name).await?,
            None => {
                let store = node.chunks.clone();
                match tokio::task::spawn_blocking(move || store.get(&name)).await? {
                    Ok(_) => None,
                    Err(ChunkStoreError::Missing(_)) => Some("missing"),
                    Err(ChunkStoreError::HashMismatch(_)) => Some("corrupt"),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some(found) = found {
            if found == "missing" {
                r.missing += 1;
            } else {
                r.corrupt += 1;
            }
            tracing::warn!(chunk = %name, found, "scrub: {place} of a chunk is {found}");
            let repaired = match &bucket {
                // The store keeps the locked version under whatever was put over it.
                Some(b) => super::objects::scrub_repair(b, &name).await,
                None => {
                    let _ = node.chunks.remove(&name);
                    super::heal::fetch_from_peers(node, &name).await.is_ok() && node.chunks.get(&name).is_ok()
                }
            };
            if repaired {
                r.repaired += 1;
                tracing::warn!(chunk = %name, "scrub: repaired from an intact copy");
            } else {
                tracing::error!(chunk = %name, "scrub: NO intact copy of this chunk is left; its item is damaged");
                r.unrepairable.push(name.to_string());
            }
            if let Err(e) = record(node, node.id(), Finding { chunk: name, found: found.into(), repaired }).await {
                tracing::error!(error = %e, "scrub: could not record the finding");
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    if let Ok(mut d) = node.damaged_chunks.lock() {
        d.clone_from(&r.unrepairable);
    }
    if !r.unrepairable.is_empty() {
        node.alerts.raise(crate::wire::Alert::ChunksUnrepairable { chunks: r.unrepairable.clone() });
    }
    let state = node.state.clone();
    let tree = tokio::task::spawn_blocking(move || {
        let size = tree::size(&state).map_err(|e| e.to_string())?;
        super::checkpoint::verify_range(&state, 0, size)
    })
    .await?;
    r.audit_tree_ok = tree.is_ok();
    if let Err(why) = tree {
        node.mark_audit_broken(&why);
    }
    node.metrics.scrub_run();
    Ok(r)
}

/// Background passes, paced so deposits keep most of the disk.
pub async fn scrub_loop(node: Arc<Node>) {
    loop {
        tokio::time::sleep(Duration::from_secs(BACKGROUND_EVERY_SECS)).await;
        match scrub_once(&node, Duration::from_millis(BACKGROUND_PAUSE_MS)).await {
            Ok(r) => {
                tracing::info!(checked = r.checked, corrupt = r.corrupt, missing = r.missing, repaired = r.repaired, "background scrub pass done")
            }
            Err(e) => tracing::error!(error = %e, "background scrub pass failed"),
        }
    }
}
