//! The re-sharing job (docs/KEYS.md §4.4): on every node, for each item whose
//! holders are not the current voters, an old holder deals its own share anew
//! over the voters, each sub-share sealed to that voter's registered share key,
//! and has it committed through the leader. Its progress is the committed
//! state, so it resumes after any restart; apply switches the holders once a
//! threshold of old holders dealt.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::proposer::WriteError;
use super::{now_ms, Node};
use crate::crypto::shares::{self, KeyShare};
use crate::evidence::ItemId;
use crate::raft::NodeId;
use crate::vault::{query, Command, ItemRecord, Outcome};

pub const RESHARE_PATH: &str = "/internal/reshare";
/// Pause between passes over the items.
const EVERY_MS: u64 = 2_000;
/// Items dealt per pass, so one pass stays short.
const PER_PASS: usize = 64;

/// A contribution a follower sends the leader to commit.
#[derive(Serialize, Deserialize)]
pub struct Contribution {
    pub item: ItemId,
    pub voters: Vec<u64>,
    pub envelopes: Vec<String>,
}

/// This node's own share of `rec`'s data key: its envelope opened, or the
/// sub-shares re-sharing dealt it, combined.
pub fn own_share(node: &Node, rec: &ItemRecord) -> Result<KeyShare, String> {
    let me = node.id();
    let item = rec.manifest.item;
    let h = rec.manifest.holders.iter().find(|h| h.node == me).ok_or_else(|| format!("node {me} holds no share of item {item}"))?;
    let cluster = &node.cfg.cluster_id;
    if h.parts.is_empty() {
        let envelope = hex::decode(&h.envelope).map_err(|e| e.to_string())?;
        let aad = shares::share_aad(cluster, item.as_bytes(), me, h.x);
        let bytes = node.share_secret.open(shares::SHARE_INFO, &aad, &envelope).map_err(|e| format!("this node's share does not open: {e}"))?;
        return KeyShare::from_bytes(&bytes).map_err(|e| e.to_string());
    }
    let mut parts = Vec::with_capacity(h.parts.len());
    for p in &h.parts {
        let envelope = hex::decode(&p.envelope).map_err(|e| e.to_string())?;
        let aad = shares::reshare_aad(cluster, item.as_bytes(), me, h.x, p.from_x);
        let bytes = node.share_secret.open(shares::RESHARE_INFO, &aad, &envelope).map_err(|e| format!("a sub-share does not open: {e}"))?;
        parts.push((p.from_x, KeyShare::from_bytes(&bytes).map_err(|e| e.to_string())?));
    }
    shares::combine(&parts, parts.len() as u8, h.x).map_err(|e| e.to_string())
}

pub async fn reshare_loop(node: Arc<Node>) {
    loop {
        tokio::time::sleep(Duration::from_millis(EVERY_MS)).await;
        if !node.has_configuration().unwrap_or(false) {
            continue;
        }
        if let Err(e) = pass(&node).await {
            tracing::debug!(error = %e, "re-share pass");
        }
    }
}

async fn pass(node: &Arc<Node>) -> anyhow::Result<()> {
    let voters = query::voters(&node.state)?;
    let me = node.id();
    let mut keys = Vec::with_capacity(voters.len());
    for v in &voters {
        match query::share_key(&node.state, *v)? {
            Some(k) => keys.push(k),
            None => return Ok(()), // the leader registers it shortly
        }
    }
    let hex_keys: Vec<String> = keys.iter().map(hex::encode).collect();
    let n = u8::try_from(voters.len())
        .ok()
        .filter(|n| (1..=shares::MAX_HOLDERS).contains(n))
        .ok_or_else(|| anyhow::anyhow!("{} voters", voters.len()))?;
    let items = {
        let n = node.clone();
        tokio::task::spawn_blocking(move || query::items(&n.state)).await??
    };
    let mut dealt = 0;
    for rec in items {
        let m = &rec.manifest;
        if rec.purged.is_some() || crate::vault::reshare::held_by(m, &voters, &hex_keys) {
            continue;
        }
        let Some(mine) = m.holders.iter().find(|h| h.node == me) else { continue };
        if let Some(p) = crate::vault::reshare::pending(&node.state, &m.item)? {
            if p.voters == voters && p.share_keys == hex_keys && p.dealt.contains_key(&mine.x) {
                continue;
            }
        }
        let share = match own_share(node, &rec) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(item = %m.item, error = %e, "cannot re-share this node's share");
                continue;
            }
        };
        let sub = shares::reshare(&share, n)?;
        let mut envelopes = Vec::with_capacity(sub.len());
        for ((v, key), s) in voters.iter().zip(&keys).zip(&sub) {
            let aad = shares::reshare_aad(&node.cfg.cluster_id, m.item.as_bytes(), *v, s.x, mine.x);
            envelopes.push(hex::encode(shares::seal(key, shares::RESHARE_INFO, &aad, &s.to_bytes())?));
        }
        let c = Contribution { item: m.item, voters: voters.clone(), envelopes };
        submit(node, c).await?;
        tracing::info!(item = %m.item, voters = ?voters, "dealt this node's share to the new voters");
        dealt += 1;
        if dealt >= PER_PASS {
            break;
        }
    }
    Ok(())
}

/// Commits a contribution: on the leader directly, else through it.
pub async fn submit(node: &Arc<Node>, c: Contribution) -> anyhow::Result<()> {
    let from = node.id();
    if node.is_leader() {
        commit_for(node, from, c).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        return Ok(());
    }
    let (leader, addr) = node.leader().ok_or_else(|| anyhow::anyhow!("no leader to commit the re-share"))?;
    let addr = node.route(leader, &addr);
    let _: serde_json::Value = node.http.call(hyper::Method::POST, &format!("{addr}{RESHARE_PATH}"), Some(&c), Duration::from_secs(10)).await?;
    Ok(())
}

/// On the leader: commits member `from`'s contribution in its name (for a
/// contribution another member sent, `from` is the node its certificate names).
/// Apply checks it against that member's share of each item.
pub async fn commit_for(node: &Node, from: NodeId, c: Contribution) -> Result<Outcome, WriteError> {
    node.propose(Command::Reshare { item: c.item, from, voters: c.voters, envelopes: c.envelopes, time_ms: now_ms() }).await
}
