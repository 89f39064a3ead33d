//! The scrubber: a node re-reads every chunk a committed manifest names,
//! checks it against its name, repairs what is corrupt or missing from a
//! healthy replica (the same fetch-by-name the healer uses), records each
//! finding in the audit log, and re-checks its stored audit tree.

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
    let names = if node.bucket.is_some() {
        // One reader of the bucket, not one per member: the leader.
        if node.is_leader() {
            super::objects::scrub(node, pause, &mut r).await?;
        }
        Vec::new()
    } else {
        tokio::task::spawn_blocking(move || query::all_chunks(&n.state)).await??
    };
    for name in names {
        r.checked += 1;
        let store = node.chunks.clone();
        let found = match tokio::task::spawn_blocking(move || store.get(&name)).await? {
            Ok(_) => None,
            Err(ChunkStoreError::Missing(_)) => Some("missing"),
            Err(ChunkStoreError::HashMismatch(_)) => Some("corrupt"),
            Err(e) => return Err(e.into()),
        };
        if let Some(found) = found {
            if found == "missing" {
                r.missing += 1;
            } else {
                r.corrupt += 1;
            }
            tracing::warn!(chunk = %name, found, "scrub: this node's copy of a chunk is {found}");
            let _ = node.chunks.remove(&name);
            let repaired = super::heal::fetch_from_peers(node, &name).await.is_ok() && node.chunks.get(&name).is_ok();
            if repaired {
                r.repaired += 1;
                tracing::warn!(chunk = %name, "scrub: repaired from a healthy replica");
            } else {
                tracing::error!(chunk = %name, "scrub: NO healthy replica holds this chunk; its item is damaged");
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
