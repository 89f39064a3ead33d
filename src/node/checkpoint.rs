//! Majority-cosigned checkpoints. Each node signs a checkpoint only for a
//! tree size and root it computed itself from its own applied state, and only
//! while its stored tree checks out against its leaves and the published
//! checkpoints; the leader gathers a majority of voters' signatures and
//! publishes the note through Raft.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::{now_ms, Node};
use crate::audit::{self, Checkpoint, Note, Signer};
use crate::config::NodeConfig;
use crate::raft::state_machine::StateView;
use crate::vault::nodes::{NodeBinding, NodeKeys};
use crate::vault::{audit as tree, query, Command};

/// Path of the internal cosigning endpoint.
pub const COSIGN_PATH: &str = "/internal/cosign";

/// The problem type of a cosign refusal because this node's own tree has
/// another root at that size.
pub const ROOT_MISMATCH: &str = "root-mismatch";

#[derive(Serialize, Deserialize)]
pub struct CosignRequest {
    pub size: u64,
    /// Hex of the root the leader computed.
    pub root: String,
}

#[derive(Serialize, Deserialize)]
pub struct CosignResponse {
    /// This node's signature line for the checkpoint text.
    pub line: String,
}

/// Why a node will not sign.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("this node has applied only {have} records, not yet {want}")]
    NotYet { have: u64, want: u64 },
    #[error("the root for size {size} on this node differs from the one asked to sign")]
    RootMismatch { size: u64 },
    #[error("this node's stored audit tree does not check out ({0}); it refuses to sign")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
}

/// This node's checkpoint signer, loaded from its key file.
pub fn load_signer(cfg: &NodeConfig, seed: &[u8; 32]) -> anyhow::Result<Signer> {
    Ok(Signer::from_seed(&signer_name(&cfg.cluster_id, cfg.id), seed)?)
}

/// The signed-note key name of node `id`.
pub fn signer_name(cluster_id: &str, id: u64) -> String {
    crate::vault::nodes::checkpoint_key_name(cluster_id, id)
}

/// Checks the stored tree for leaves `[from, to)`: every leaf hashes to its
/// level-0 node, every subtree those leaves complete hashes from its children,
/// and the published checkpoint (if inside `to`) matches the stored root.
pub fn verify_range(state: &StateView, from: u64, to: u64) -> Result<(), String> {
    let nodes = tree::StateNodes(state);
    let get = |level: u8, i: u64| -> Result<audit::Hash, String> {
        audit::NodeStore::get(&nodes, level, i).map_err(|e| e.to_string())?.ok_or_else(|| format!("tree node ({level},{i}) is missing"))
    };
    for i in from..to {
        let leaf = tree::leaf(state, i).map_err(|e| e.to_string())?.ok_or_else(|| format!("leaf {i} is missing"))?;
        if audit::leaf_hash(&leaf) != get(0, i)? {
            return Err(format!("leaf {i} does not match its stored hash"));
        }
    }
    let mut level = 1u8;
    while level < 64 && (to >> level) > 0 {
        for j in (from >> level)..(to >> level) {
            if audit::node_hash(&get(level - 1, 2 * j)?, &get(level - 1, 2 * j + 1)?) != get(level, j)? {
                return Err(format!("tree node ({level},{j}) does not match its children"));
            }
        }
        level += 1;
    }
    if let Some(note) = query::checkpoint(state).map_err(|e| e.to_string())? {
        let cp = Note::parse(&note).and_then(|n| Checkpoint::parse(&n.text)).map_err(|e| format!("published checkpoint unreadable: {e}"))?;
        if cp.size <= to && tree::root(state, cp.size).map_err(|e| e.to_string())? != cp.root {
            return Err(format!("the stored tree no longer matches the published checkpoint of size {}", cp.size));
        }
    }
    Ok(())
}

impl Node {
    /// Signs the checkpoint of `size` with `root` if this node's own tree agrees.
    pub async fn cosign(&self, size: u64, root: audit::Hash) -> Result<String, CosignError> {
        self.vouch(size, root).await?;
        let text = self.checkpoint_text(size, root).map_err(|e| CosignError::Other(e.to_string()))?;
        let sig = self.signer.sign(&text).map_err(|e| CosignError::Other(e.to_string()))?;
        Ok(sig.to_line())
    }

    /// What this node must see before it signs anything about the tree of
    /// `size`: its stored tree checks out up to there and has `root` at that size.
    pub(crate) async fn vouch(&self, size: u64, root: audit::Hash) -> Result<(), CosignError> {
        if let Some(why) = self.audit_broken.lock().map_err(|_| CosignError::Other("lock poisoned".into()))?.clone() {
            return Err(CosignError::Corrupt(why));
        }
        if self.seal.dev_auto_unseal && !query::config(&self.state).map_err(|e| CosignError::Other(e.to_string()))?.is_some_and(|c| c.dev_auto_unseal)
        {
            return Err(CosignError::Other(
                "this node unsealed itself from a dev shares file, and this cluster's checkpoints do not say so: it signs none".into(),
            ));
        }
        let have = tree::size(&self.state).map_err(|e| CosignError::Other(e.to_string()))?;
        if have < size {
            return Err(CosignError::NotYet { have, want: size });
        }
        {
            // Check what was appended since the last check before vouching for it.
            let mut verified = self.audit_verified.lock().await;
            if *verified < size {
                let state = self.state.clone();
                let from = *verified;
                let res =
                    tokio::task::spawn_blocking(move || verify_range(&state, from, size)).await.map_err(|e| CosignError::Other(e.to_string()))?;
                if let Err(why) = res {
                    self.mark_audit_broken(&why);
                    return Err(CosignError::Corrupt(why));
                }
                *verified = size;
            }
        }
        let mine = tree::root(&self.state, size).map_err(|e| CosignError::Other(e.to_string()))?;
        if mine != root {
            tracing::error!(size, "asked to sign for a tree whose root differs from this node's: refusing");
            return Err(CosignError::RootMismatch { size });
        }
        Ok(())
    }

    pub(crate) fn mark_audit_broken(&self, why: &str) {
        tracing::error!(reason = %why, "AUDIT TREE CHECK FAILED: this node's stored history does not match; it will not sign checkpoints");
        if let Ok(mut b) = self.audit_broken.lock() {
            *b = Some(why.to_string());
        }
        self.alerts.raise(crate::wire::Alert::AuditTreeInvalid { error: why.to_string() });
    }

    pub(crate) fn checkpoint_text(&self, size: u64, root: audit::Hash) -> anyhow::Result<String> {
        let config = query::config(&self.state)?.ok_or_else(|| anyhow!("cluster not configured"))?;
        Ok(Checkpoint { origin: config.origin(), size, root, extensions: Vec::new() }.to_text()?)
    }
}

/// At start: check the whole stored tree once, in the background.
pub async fn verify_at_start(node: Arc<Node>) {
    let mut verified = node.audit_verified.lock().await;
    let state = node.state.clone();
    let res = tokio::task::spawn_blocking(move || {
        let size = tree::size(&state).map_err(|e| e.to_string())?;
        verify_range(&state, 0, size).map(|_| size)
    })
    .await;
    match res {
        Ok(Ok(size)) => {
            *verified = size;
            tracing::info!(size, "audit tree verified against its leaves and the published checkpoint");
        }
        Ok(Err(why)) => node.mark_audit_broken(&why),
        Err(e) => node.mark_audit_broken(&e.to_string()),
    }
}

/// On the leader: gather cosignatures, publish checkpoints. (Node keys are
/// registered only by administrators' signed bindings, docs/KEYS.md §7.)
pub async fn checkpoint_loop(node: Arc<Node>) {
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if !node.is_leader() {
            continue;
        }
        if let Err(e) = round(&node).await {
            tracing::debug!(error = %e, "checkpoint round");
        }
    }
}

/// This node's own binding (docs/KEYS.md §7): its public keys, signed with its
/// checkpoint key and its node certificate's key.
pub fn own_binding(
    cfg: &NodeConfig,
    signer: &Signer,
    session_public: &[u8; 32],
    share_public: &[u8; 32],
    tls_pkcs8: &[u8],
) -> anyhow::Result<NodeBinding> {
    use base64::Engine;
    let cert = crate::tls::load_certs(&cfg.cert)?.into_iter().next().ok_or_else(|| anyhow!("{} holds no certificate", cfg.cert.display()))?;
    let keys = NodeKeys {
        cluster_id: cfg.cluster_id.clone(),
        node: cfg.id,
        checkpoint_key: signer.verifier_key().to_string(),
        session_key: base64::engine::general_purpose::STANDARD.encode(session_public),
        share_key: hex::encode(share_public),
        certificate: base64::engine::general_purpose::STANDARD.encode(cert.as_ref()),
    };
    let b = NodeBinding::sign(keys, signer, tls_pkcs8).map_err(|e| anyhow!("signing this node's key binding: {e}"))?;
    b.check(&cfg.cluster_id).map_err(|e| anyhow!("this node's own key binding does not check out: {e}"))?;
    Ok(b)
}

async fn round(node: &Arc<Node>) -> anyhow::Result<()> {
    node.ensure_configured().await?;
    let voters = query::voters(&node.state)?;
    let members = node.members();
    let size = tree::size(&node.state)?;
    let published = match query::checkpoint(&node.state)? {
        Some(n) => Checkpoint::parse(&Note::parse(&n)?.text)?.size,
        None => 0,
    };
    if size == 0 || size <= published {
        return Ok(());
    }
    let root = tree::root(&node.state, size)?;
    let text = node.checkpoint_text(size, root)?;
    let asks = voters.iter().map(|v| {
        let node = node.clone();
        let addr = members.iter().find(|m| m.0 == *v).map(|m| node.route(m.0, &m.1));
        let v = *v;
        async move {
            if v == node.id() {
                return node.cosign(size, root).await.map_err(|e| anyhow!(e));
            }
            let addr = addr.ok_or_else(|| anyhow!("voter {v} has no address"))?;
            let req = CosignRequest { size, root: hex::encode(root) };
            let r: CosignResponse = node.http.call(Method::POST, &format!("{addr}{COSIGN_PATH}"), Some(&req), Duration::from_secs(5)).await?;
            Ok(r.line)
        }
    });
    let results = futures::future::join_all(asks).await;
    let lines: Vec<String> = results.into_iter().filter_map(|r| r.map_err(|e| tracing::debug!(error = %e, "cosign")).ok()).collect();
    if lines.len() < voters.len() / 2 + 1 {
        tracing::warn!(size, signed = lines.len(), voters = voters.len(), "not enough cosignatures for a checkpoint yet");
        return Ok(());
    }
    let mut note = format!("{text}\n{}", lines.concat());
    // Witnesses see the majority-cosigned note and answer within a short
    // deadline each; what verifies under their configured keys is appended.
    // Their lines are unknown keys to the majority check in apply and to
    // `custody verify` without `--witness-keys`.
    if !node.witnesses.is_empty() {
        let state = node.state.clone();
        let proof = move |old: u64| tree::consistency_proof(&state, old, size).map_err(|e| e.to_string());
        let (extra, disagreements) = node.witnesses.push_all(&note, size, proof).await;
        for a in disagreements {
            node.alerts.raise(a);
        }
        if note.len() + extra.len() <= crate::limits::MAX_NOTE_BYTES {
            note.push_str(&extra);
        } else {
            tracing::warn!(size, "witness cosignatures would make the checkpoint note too long; published without them");
        }
    }
    // Trusted time (RFC 3161): a token on the checkpoint text, when a TSA is
    // configured and answers in time with a token for exactly this text.
    let timestamp = match &node.tsa {
        Some(tsa) => tsa.stamp(&text, size).await.map(|t| BASE64.encode(t)),
        None => None,
    };
    node.raft.client_write(Command::PublishCheckpoint { note, time_ms: now_ms(), timestamp }).await?;
    Ok(())
}
