//! Access requests, approvals, and the fetch that records the access before
//! the first byte of plaintext leaves the node.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{user_of, ApiError};
use crate::approval::AccessRequest;
use crate::crypto::ChunkCipher;
use crate::evidence::{ChunkStoreError, ItemId};
use crate::node::{now_ms, Node};
use crate::tls::PeerIdentity;
use crate::vault::access::{self, RequestRecord};
use crate::vault::{query, Command, Outcome};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRequest {
    pub request: AccessRequest,
    /// Base64 Ed25519 signature of the requester over the request's signing bytes.
    pub signature: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Signature {
    pub signature: String,
}

use crate::wire::RequestState;
pub use crate::wire::RequestStatus;

fn refused(reason: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "refused", "Refused", reason)
}

async fn propose(node: &Node, cmd: Command) -> Result<Outcome, ApiError> {
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    match node.propose(cmd).await.map_err(super::v1::write_err)? {
        Outcome::Refused { reason } => Err(refused(reason)),
        other => Ok(other),
    }
}

fn status(out: Outcome) -> Result<Json<RequestStatus>, ApiError> {
    match out {
        Outcome::RequestStatus { request, granted, leaf_index } => {
            Ok(Json(RequestStatus { request, status: if granted { RequestState::Granted } else { RequestState::Pending }, leaf_index }))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn file(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Json(body): Json<FileRequest>,
) -> Result<Json<RequestStatus>, ApiError> {
    let by = user_of(&peer)?;
    body.request.validate().map_err(ApiError::bad_request)?;
    status(propose(&node, Command::FileRequest { request: body.request, by, signature: body.signature, time_ms: now_ms() }).await?)
}

pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Json<RequestRecord>, ApiError> {
    user_of(&peer)?;
    access::request(&node.state, &id).map_err(ApiError::internal)?.map(Json).ok_or_else(|| ApiError::not_found(format!("no request {id}")))
}

pub async fn approve(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(body): Json<Signature>,
) -> Result<Json<RequestStatus>, ApiError> {
    let by = user_of(&peer)?;
    status(propose(&node, Command::Approve { request: id, by, signature: body.signature, time_ms: now_ms() }).await?)
}

#[derive(Deserialize)]
pub struct FetchQuery {
    request: String,
}

/// Records the access through Raft, then streams the plaintext. No record, no bytes.
pub async fn fetch(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<FetchQuery>,
) -> Result<Response, ApiError> {
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let rec = query::item(&node.state, &item).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {item}")))?;
    let m = rec.manifest;
    // Everything that can fail before the record is checked first, so a record means bytes follow.
    let wrapped = m.wrapped_key_bytes().map_err(ApiError::internal)?;
    let key = node.kek.unwrap(&wrapped, item.as_bytes()).map_err(|e| ApiError::internal(format!("cannot unwrap the data key: {e}")))?;
    let prefix = m.nonce_prefix_bytes().map_err(ApiError::internal)?;
    let cipher = Arc::new(ChunkCipher::new(&key, item.as_bytes(), prefix, m.chunks.len() as u64).map_err(ApiError::internal)?);
    drop(key);
    let record = Command::RecordAccess { request: q.request.clone(), item, by: by.clone(), time_ms: now_ms() };
    let serve_first = crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord);
    let (leaf_index, late_record) = if serve_first {
        // The deliberate bug: claim a leaf, record only after the last byte.
        (crate::vault::audit::size(&node.state).map_err(ApiError::internal)?, Some(record))
    } else {
        match propose(&node, record).await? {
            Outcome::AccessRecorded { leaf_index } => (leaf_index, None),
            other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    };
    tracing::info!(%item, request = %q.request, %by, leaf_index, "access recorded; serving the clip");
    let chunks = m.chunks.clone();
    let n = node.clone();
    let stream = futures::stream::iter(chunks.into_iter().enumerate()).then(move |(i, c)| {
        let node = n.clone();
        let cipher = cipher.clone();
        async move {
            let mut buf = read_chunk(&node, &c.name).await?;
            tokio::task::spawn_blocking(move || cipher.open(i as u64, &mut buf).map(|_| Bytes::from(buf)))
                .await
                .map_err(std::io::Error::other)?
                .map_err(|e| std::io::Error::other(format!("chunk {i} does not open: {e}")))
        }
    });
    let late = futures::stream::iter(late_record).then(move |cmd| {
        let node = node.clone();
        async move { propose(&node, cmd).await.map(|_| Bytes::new()).map_err(|e| std::io::Error::other(format!("{e:?}"))) }
    });
    let stream = stream.chain(late);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, m.size)
        .header("x-custody-sha256", &m.sha256)
        .header("x-custody-access-leaf", leaf_index)
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

/// A chunk from this node's store, or from a peer if this node's copy is missing or corrupt.
async fn read_chunk(node: &Arc<Node>, name: &crate::evidence::ChunkName) -> Result<Vec<u8>, std::io::Error> {
    let store = node.chunks.clone();
    let n = *name;
    match tokio::task::spawn_blocking(move || store.get(&n)).await.map_err(std::io::Error::other)? {
        Ok(b) => return Ok(b),
        Err(ChunkStoreError::HashMismatch(_)) => {
            tracing::error!(chunk = %name, "a stored chunk does not match its name; fetching a healthy copy");
            let _ = node.chunks.remove(name);
        }
        Err(_) => {}
    }
    crate::node::fetch_chunk_from_peers(node, name).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    let store = node.chunks.clone();
    let n = *name;
    tokio::task::spawn_blocking(move || store.get(&n)).await.map_err(std::io::Error::other)?.map_err(|e| std::io::Error::other(e.to_string()))
}

#[derive(Deserialize)]
pub struct HoldBody {
    pub reason: String,
}

#[derive(Deserialize)]
pub struct ExtendBody {
    pub retention: String,
}

async fn retention_change(
    node: &Node,
    peer: &PeerIdentity,
    id: &str,
    make: impl FnOnce(ItemId, String) -> Command,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    let by = user_of(peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    match propose(node, make(item, by)).await? {
        Outcome::RetentionChanged { item, retain_until_ms, hold, leaf_index } => {
            Ok(Json(crate::wire::RetentionView { item, retain_until: crate::wire::rfc3339_ms(retain_until_ms), hold, leaf_index }))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn hold(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(b): Json<HoldBody>,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    retention_change(&node, &peer, &id, |item, by| Command::Hold { item, by, reason: b.reason, time_ms: now_ms() }).await
}

pub async fn release(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    retention_change(&node, &peer, &id, |item, by| Command::Release { item, by, time_ms: now_ms() }).await
}

pub async fn extend(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(b): Json<ExtendBody>,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    let retention = b.retention.parse().map_err(ApiError::bad_request)?;
    retention_change(&node, &peer, &id, |item, by| Command::Extend { item, retention, by, time_ms: now_ms() }).await
}

/// `POST /v1/items/{id}/purge?request=…`: lawful destruction after retention.
pub async fn purge(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<FetchQuery>,
) -> Result<Json<crate::wire::PurgeView>, ApiError> {
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    match propose(&node, Command::Purge { item, request: q.request, by, time_ms: now_ms() }).await? {
        Outcome::Purged { item, leaf_index, chunks } => Ok(Json(crate::wire::PurgeView { item, leaf_index, chunks_destroyed: chunks.len() as u64 })),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
