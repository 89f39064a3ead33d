//! Node-to-node endpoints. Only a member node (by its certificate) may call
//! them, and a Raft RPC must come from the node it names as its sender.

use std::sync::Arc;

use super::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};

use super::session::Caller;
use super::ApiError;
use crate::evidence::{AlignedBuf, ChunkName, ChunkStoreError, Put};
use crate::limits;
use crate::node::Node;
use crate::raft::{NodeId, TypeConfig};
use crate::wire::NodeHealth;

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
    node.check_entry_times(&req).map_err(|why| ApiError::new(StatusCode::CONFLICT, "clock-skew", "Entry refused for its time", why))?;
    Ok(Json(node.raft().append_entries(req).await))
}

pub async fn vote(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Result<RaftResult<VoteResponse<NodeId>>, ApiError> {
    let from = member_peer(&node, &peer)?;
    same_sender(from, req.vote.leader_id.node_id)?;
    Ok(Json(node.raft().vote(req).await))
}

pub async fn snapshot(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, ApiError> {
    let from = member_peer(&node, &peer)?;
    same_sender(from, req.vote.leader_id.node_id)?;
    Ok(Json(node.raft().install_snapshot(req).await))
}

pub async fn health(State(node): State<Arc<Node>>, Extension(peer): Extension<Caller>) -> Result<Json<NodeHealth>, ApiError> {
    member_peer(&node, &peer)?;
    Ok(Json(node.health()))
}

fn parse_name(s: &str) -> Result<ChunkName, ApiError> {
    s.parse().map_err(|e| ApiError::bad_request(format!("{e}")))
}

pub async fn put_chunk(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    member_peer(&node, &peer)?;
    let name = parse_name(&name)?;
    let stated = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let body = aligned_body(body, stated, MAX_CHUNK_BODY_BYTES).await?;
    // A chunk of a deposit still streaming: kept from the orphan collector while the deposit is active.
    let deposit = headers.get(crate::node::DEPOSIT_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<crate::evidence::ItemId>().ok());
    match node.receive_chunk(name, deposit, body).await {
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

/// A whole request body of at most `limit` bytes, gathered into an [`AlignedBuf`]
/// of the `stated` length (the request's `Content-Length`; the body itself no
/// longer knows it behind `edge::body_idle_timeout`), or else of a default chunk.
async fn aligned_body(body: axum::body::Body, stated: Option<usize>, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_long = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", format!("a chunk is at most {limit} bytes"));
    if stated.is_some_and(|n| n > limit) {
        return Err(too_long());
    }
    let default = (limits::CHUNK_SIZE_BYTES + limits::GCM_TAG_BYTES) as usize;
    let mut buf = AlignedBuf::with_capacity(stated.unwrap_or(default).min(limit));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the chunk: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(too_long());
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.into_bytes())
}

pub async fn get_chunk(State(node): State<Arc<Node>>, Extension(peer): Extension<Caller>, Path(name): Path<String>) -> Result<Bytes, ApiError> {
    member_peer(&node, &peer)?;
    let name = parse_name(&name)?;
    match node.stored_chunk(name).await {
        Ok(b) => Ok(b),
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

/// A member building a proof bundle asks for this node's item-head statement
/// (docs/AUDIT_FORMATS.md): signed only from this node's own state.
pub async fn item_head(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<Caller>,
    Json(req): Json<crate::node::heads::ItemHeadRequest>,
) -> Result<Json<crate::node::heads::ItemHeadResponse>, ApiError> {
    member_peer(&node, &peer)?;
    match node.answer_item_head(&req).await {
        Ok(r) => Ok(Json(r)),
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
        crate::vault::Outcome::Refused { reason, detail } => Err(ApiError::refused(reason, detail)),
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
    let orphans = crate::node::heal::answer_orphans(&node, q.chunks).await.map_err(ApiError::internal)?;
    Ok(Json(crate::node::heal::OrphanAnswer { orphans }))
}
