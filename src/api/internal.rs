//! Node-to-node endpoints. Only a member node (by its certificate) may call
//! them, and a Raft RPC must come from the node it names as its sender.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};

use super::session::Caller;
use super::ApiError;
use crate::evidence::{ChunkName, ChunkStoreError, Put};
use crate::limits;
use crate::node::Node;
use crate::raft::{NodeId, TypeConfig};
use crate::wire::{HealthWarning, NodeHealth};

/// Largest Raft RPC body accepted (a batch of entries or a snapshot piece).
pub const MAX_RAFT_RPC_BYTES: usize = 64 * 1024 * 1024;
/// Largest chunk body accepted.
pub const MAX_CHUNK_BODY_BYTES: usize = (limits::MAX_CHUNK_SIZE_BYTES + limits::GCM_TAG_BYTES) as usize;

/// The calling node, if it is one this node accepts traffic from.
fn member_peer(node: &Node, peer: &Caller) -> Result<NodeId, ApiError> {
    match peer.node() {
        Some(id) if node.accepts_peer(id) => Ok(id),
        Some(id) => Err(ApiError::forbidden(format!("node {id} is not a member of this cluster"))),
        None => Err(ApiError::forbidden("internal endpoints are for member nodes only")),
    }
}

/// A Raft RPC must come from the node it claims as leader or candidate.
fn same_sender(peer: NodeId, claimed: NodeId) -> Result<(), ApiError> {
    if peer != claimed {
        return Err(ApiError::forbidden(format!("node {peer} sent an RPC on behalf of node {claimed}")));
    }
    Ok(())
}

type RaftResult<T, E = openraft::error::Infallible> = Json<Result<T, RaftError<NodeId, E>>>;

pub async fn append(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Result<RaftResult<AppendEntriesResponse<NodeId>>, ApiError> {
    let from = member_peer(&node, &peer)?;
    same_sender(from, req.vote.leader_id.node_id)?;
    let committed = req.leader_commit.map(|l| l.index);
    node.clock
        .check(&req.vote, &req.entries, committed, crate::node::now_ms())
        .map_err(|why| ApiError::new(StatusCode::CONFLICT, "clock-skew", "Entry refused for its time", why))?;
    Ok(Json(node.raft.append_entries(req).await))
}

pub async fn vote(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Result<RaftResult<VoteResponse<NodeId>>, ApiError> {
    let from = member_peer(&node, &peer)?;
    same_sender(from, req.vote.leader_id.node_id)?;
    Ok(Json(node.raft.vote(req).await))
}

pub async fn snapshot(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, ApiError> {
    let from = member_peer(&node, &peer)?;
    same_sender(from, req.vote.leader_id.node_id)?;
    Ok(Json(node.raft.install_snapshot(req).await))
}

pub async fn health(State(node): State<Arc<Node>>, Extension(peer): Extension<Caller>) -> Result<Json<NodeHealth>, ApiError> {
    member_peer(&node, &peer)?;
    Ok(Json(own_health(&node)))
}

/// This node's view of itself.
pub fn own_health(node: &Node) -> NodeHealth {
    let m = node.raft.metrics().borrow().clone();
    let missing = crate::node::missing_chunks(node);
    let mut warnings = Vec::new();
    if missing > 0 {
        warnings.push(HealthWarning::ChunksNotHeld { count: missing });
    }
    if let Ok(l) = node.lost_chunks.lock() {
        if !l.is_empty() {
            warnings.push(HealthWarning::ChunksLost { chunks: l.clone() });
        }
    }
    if let Err(e) = &m.running_state {
        warnings.push(HealthWarning::RaftStopped { error: e.to_string() });
    }
    if let Ok(d) = node.damaged_chunks.lock() {
        if !d.is_empty() {
            warnings.push(HealthWarning::ChunksDamaged { chunks: d.clone() });
        }
    }
    if let Ok(Some(why)) = node.audit_broken.lock().map(|b| b.clone()) {
        warnings.push(HealthWarning::AuditTreeInvalid { error: why });
    }
    NodeHealth {
        id: node.id(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
        missing_chunks: missing,
        checkpoint_key: node.signer.verifier_key().to_string(),
        session_key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, node.session_public),
        share_key: hex::encode(node.share_secret.public_key()),
        audit_size: crate::vault::audit::size(&node.state).unwrap_or(0),
        warnings,
    }
}

fn parse_name(s: &str) -> Result<ChunkName, ApiError> {
    s.parse().map_err(|e| ApiError::bad_request(format!("{e}")))
}

pub async fn put_chunk(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    member_peer(&node, &peer)?;
    let name = parse_name(&name)?;
    // A chunk of a deposit still streaming: keep it from the orphan collector while the deposit is active.
    if let Some(item) = headers.get(crate::node::DEPOSIT_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<crate::evidence::ItemId>().ok())
    {
        node.inflight.touch(item, name);
    }
    let (store, db) = (node.chunks.clone(), node.db.clone());
    let res = tokio::task::spawn_blocking(move || {
        let put = store.put(&name, &body)?;
        crate::node::held::mark(&db, &name).map_err(|e| crate::evidence::ChunkStoreError::Io(std::io::Error::other(e.to_string())))?;
        Ok(put)
    })
    .await
    .map_err(ApiError::internal)?;
    match res {
        Ok(Put::Written) => Ok(StatusCode::CREATED),
        Ok(Put::AlreadyPresent) => Ok(StatusCode::OK),
        Err(ChunkStoreError::HashMismatch(n)) => Err(ApiError::bad_request(format!("the body does not hash to chunk name {n}"))),
        Err(ChunkStoreError::Full) => {
            tracing::error!("chunk store disk is full: refusing chunks");
            Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk-full", "Disk full", "this node's chunk store is full"))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub async fn get_chunk(State(node): State<Arc<Node>>, Extension(peer): Extension<Caller>, Path(name): Path<String>) -> Result<Bytes, ApiError> {
    member_peer(&node, &peer)?;
    let name = parse_name(&name)?;
    let store = node.chunks.clone();
    match tokio::task::spawn_blocking(move || store.get(&name)).await.map_err(ApiError::internal)? {
        Ok(b) => Ok(Bytes::from(b)),
        Err(ChunkStoreError::Missing(n)) => Err(ApiError::not_found(format!("chunk {n} is not on this node"))),
        Err(ChunkStoreError::HashMismatch(n)) => {
            tracing::error!(chunk = %n, "a stored chunk does not match its name: not serving it");
            Err(ApiError::new(StatusCode::CONFLICT, "corrupt-chunk", "Corrupt chunk", format!("this node's copy of {n} is corrupt")))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub async fn cosign(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<crate::node::checkpoint::CosignRequest>,
) -> Result<Json<crate::node::checkpoint::CosignResponse>, ApiError> {
    // Any member may ask: the leader gathering a checkpoint, or a follower
    // checking a snapshot (docs/KEYS.md §7.3). A signature vouches only for
    // this node's own tree.
    member_peer(&node, &peer)?;
    let root: crate::audit::Hash =
        hex::decode(&req.root).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| ApiError::bad_request("root must be 64 hex digits"))?;
    match node.cosign(req.size, root).await {
        Ok(line) => Ok(Json(crate::node::checkpoint::CosignResponse { line })),
        Err(e @ crate::node::checkpoint::CosignError::Corrupt(_)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit-corrupt", "Refusing to sign", e.to_string()))
        }
        Err(e @ crate::node::checkpoint::CosignError::RootMismatch { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, crate::node::checkpoint::ROOT_MISMATCH, "Another root", e.to_string()))
        }
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "cannot-cosign", "Cannot cosign", e.to_string())),
    }
}

pub async fn scrub(State(node): State<Arc<Node>>, Extension(peer): Extension<Caller>) -> Result<Json<crate::node::scrub::ScrubReport>, ApiError> {
    member_peer(&node, &peer)?;
    crate::node::scrub::scrub_once(&node, std::time::Duration::ZERO).await.map(Json).map_err(ApiError::internal)
}

/// A follower's scrub finding, recorded by the leader under the sender's node id.
/// A member's re-share contribution, committed by the leader in that member's name.
pub async fn reshare(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(c): Json<crate::node::reshare::Contribution>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let from = member_peer(&node, &peer)?;
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    match crate::node::reshare::commit_for(&node, from, c).await.map_err(super::v1::write_err)? {
        crate::vault::Outcome::Refused { reason } => Err(ApiError::new(StatusCode::FORBIDDEN, "refused", "Refused", reason)),
        _ => Ok(Json(serde_json::json!({ "recorded": true }))),
    }
}

pub async fn scrub_finding(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(f): Json<crate::node::scrub::Finding>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let from = member_peer(&node, &peer)?;
    crate::node::scrub::record(&node, from, f).await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}

/// Which of the asked chunks this node's own applied state holds to be orphans
/// (a member's orphan collector counts the answer as one vote).
pub async fn orphans(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(q): Json<crate::node::heal::OrphanQuestion>,
) -> Result<Json<crate::node::heal::OrphanAnswer>, ApiError> {
    member_peer(&node, &peer)?;
    let grace = std::time::Duration::from_secs(node.cfg.orphan_grace_secs);
    let n = node.clone();
    let orphans = tokio::task::spawn_blocking(move || crate::node::heal::orphans_among(&n, &q.chunks, grace))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(crate::node::heal::OrphanAnswer { orphans }))
}
