//! Access requests, approvals, and the fetch: the access is recorded first;
//! each holder releases its share only once its own applied state shows it;
//! the chunks go out sealed (docs/KEYS.md §4.2).

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
use crate::evidence::{ChunkStoreError, ItemId};
use crate::node::{now_ms, Node};
use crate::tls::PeerIdentity;
use crate::vault::access::{self, RequestRecord};
use crate::vault::{query, Command, Outcome};
use crate::wire::{AccessBody, AccessView, HolderShare, ShareRelease, ShareRequest};

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

/// Records the access through Raft (the fetcher's signed statement names the
/// key the shares go to) and tells the fetcher how to open the item. No record,
/// no share: the holders check it in their own applied state.
pub async fn access(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(body): Json<AccessBody>,
) -> Result<Json<AccessView>, ApiError> {
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let rec = query::item(&node.state, &item).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {item}")))?;
    let m = rec.manifest;
    let record = Command::RecordAccess {
        request: body.request.clone(),
        item,
        by: by.clone(),
        fetch_key: body.fetch_key,
        signature: body.signature,
        time_ms: now_ms(),
    };
    let access_leaf = if crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord) {
        // The deliberate bug: claim a leaf, record only after the last sealed byte.
        let leaf = crate::vault::audit::size(&node.state).map_err(ApiError::internal)?;
        node.late_records.lock().map_err(ApiError::internal)?.push((item, by.clone(), record));
        leaf
    } else {
        match propose(&node, record).await? {
            Outcome::AccessRecorded { leaf_index } => leaf_index,
            other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    };
    tracing::info!(%item, request = %body.request, %by, access_leaf, "access recorded; holders may release their shares");
    Ok(Json(AccessView {
        cluster_id: node.cfg.cluster_id.clone(),
        item,
        access_leaf,
        sha256: m.sha256,
        size: m.size,
        chunk_size: m.chunk_size,
        chunks: m.chunks.len() as u64,
        nonce_prefix: m.nonce_prefix,
        threshold: m.threshold,
        key_commitment: m.key_commitment,
        holders: {
            let members = node.members();
            m.holders
                .iter()
                .map(|h| HolderShare { node: h.node, x: h.x, addr: members.iter().find(|(id, _, _)| *id == h.node).map(|(_, a, _)| a.clone()) })
                .collect()
        },
    }))
}

/// How long a node waits for an access it is told of to reach its own applied state.
const APPLY_WAIT_MS: u64 = 10_000;

/// The access at `leaf`, once this node has applied it: by `user`, to `item`.
async fn applied_access(node: &Node, leaf: u64, item: &ItemId, user: &str) -> Result<access::AccessRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(APPLY_WAIT_MS);
    loop {
        if let Some(a) = access::access_at(&node.state, leaf).map_err(ApiError::internal)? {
            if a.item != *item || a.by != user {
                return Err(refused(format!("the access at leaf {leaf} is not {user}'s access to item {item}")));
            }
            if now_ms() > a.at_ms.saturating_add(crate::limits::ACCESS_RELEASE_SECS * 1000) {
                return Err(refused(format!(
                    "the access at leaf {leaf} was recorded more than {} s ago: record a new one",
                    crate::limits::ACCESS_RELEASE_SECS
                )));
            }
            return Ok(a);
        }
        let applied = crate::vault::audit::size(&node.state).map_err(ApiError::internal)?;
        if applied > leaf || tokio::time::Instant::now() >= deadline {
            return Err(refused(format!("this node's applied log records no access at leaf {leaf}: nothing is released")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Releases this node's share of an item's data key, sealed to the fetch key,
/// after checking in this node's own applied state that the access committed.
pub async fn share(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(body): Json<ShareRequest>,
) -> Result<Json<ShareRelease>, ApiError> {
    use crate::crypto::shares;
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let unchecked = crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord);
    if !unchecked {
        let a = applied_access(&node, body.access_leaf, &item, &by).await?;
        if a.fetch_key != body.fetch_key {
            return Err(refused(format!("the access at leaf {} names another fetch key", body.access_leaf)));
        }
    }
    let rec = query::item(&node.state, &item).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {item}")))?;
    if rec.purged.is_some() {
        return Err(refused("the item was purged: its shares are destroyed".into()));
    }
    let me = node.id();
    let h =
        rec.manifest.holders.iter().find(|h| h.node == me).ok_or_else(|| ApiError::not_found(format!("node {me} holds no share of item {item}")))?;
    let aad = shares::share_aad(&node.cfg.cluster_id, item.as_bytes(), me, h.x);
    let share = crate::node::reshare::own_share(&node, &rec).map_err(ApiError::internal)?.to_bytes();
    let fetch_key = crate::evidence::parse_hex::<32>(&body.fetch_key, "fetch key").map_err(|e| ApiError::bad_request(e.to_string()))?;
    let release_aad = [aad.as_slice(), &body.access_leaf.to_be_bytes()].concat();
    let sealed = shares::seal(&fetch_key, shares::RELEASE_INFO, &release_aad, &share).map_err(ApiError::internal)?;
    tracing::info!(%item, %by, access_leaf = body.access_leaf, "released this node's share");
    Ok(Json(ShareRelease { node: me, x: h.x, envelope: hex::encode(sealed) }))
}

#[derive(Deserialize)]
pub struct SealedQuery {
    access: u64,
}

/// Streams an item's sealed chunks (ciphertext only) for a recorded access.
pub async fn sealed(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<SealedQuery>,
) -> Result<Response, ApiError> {
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let late: Vec<Command> = if crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord) {
        let mut pending = node.late_records.lock().map_err(ApiError::internal)?;
        let (mine, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(i, u, _)| *i == item && *u == by);
        *pending = rest;
        mine.into_iter().map(|(_, _, c)| c).collect()
    } else {
        applied_access(&node, q.access, &item, &by).await?;
        Vec::new()
    };
    let rec = query::item(&node.state, &item).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {item}")))?;
    if rec.purged.is_some() {
        return Err(refused("the item was purged".into()));
    }
    let m = rec.manifest;
    let length: u64 = m.chunks.iter().map(|c| c.size).sum();
    let n = node.clone();
    let stream = futures::stream::iter(m.chunks).then(move |c| {
        let node = n.clone();
        async move { read_chunk(&node, &c.name).await.map(Bytes::from) }
    });
    let late = futures::stream::iter(late).then(move |cmd| {
        let node = node.clone();
        async move { propose(&node, cmd).await.map(|_| Bytes::new()).map_err(|e| std::io::Error::other(format!("{e:?}"))) }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(stream.chain(late)))
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

#[derive(Deserialize)]
pub struct PurgeQuery {
    request: String,
}

/// `POST /v1/items/{id}/purge?request=…`: lawful destruction after retention.
pub async fn purge(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<PurgeQuery>,
) -> Result<Json<crate::wire::PurgeView>, ApiError> {
    let by = user_of(&peer)?;
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    match propose(&node, Command::Purge { item, request: q.request, by, time_ms: now_ms() }).await? {
        Outcome::Purged { item, leaf_index, chunks } => Ok(Json(crate::wire::PurgeView { item, leaf_index, chunks_destroyed: chunks.len() as u64 })),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
