//! Access requests, approvals, retention, and the fetch's three routes. The
//! fetch itself (the access recorded first; each holder releasing its share
//! only once its own applied state shows it; the chunks going out sealed,
//! docs/KEYS.md §4.2) lives in `node/fetch.rs`: these handlers parse the
//! request, call it, and render its answer.

use std::sync::Arc;

use super::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::approval::AccessRequest;
use crate::auth::Principal;
use crate::evidence::ItemId;
use crate::node::{self, now_ms, FetchError, Node};
use crate::vault::access::{self, RequestRecord};
use crate::vault::{Command, Outcome};
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

/// Proposes, on the leader, the command `make` builds for `who` (handed their name).
async fn propose(node: &Node, who: &Principal, make: impl FnOnce(String) -> Command) -> Result<Outcome, ApiError> {
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    match node.propose_as(who, make).await.map_err(super::v1::write_err)? {
        Outcome::Refused { reason, detail } => Err(ApiError::refused(reason, detail)),
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

pub async fn file(State(node): State<Arc<Node>>, who: Principal, Json(body): Json<FileRequest>) -> Result<Json<RequestStatus>, ApiError> {
    body.request.validate().map_err(ApiError::bad_request)?;
    status(propose(&node, &who, |by| Command::FileRequest { request: body.request, by, signature: body.signature, time_ms: now_ms() }).await?)
}

pub async fn show(State(node): State<Arc<Node>>, _who: Principal, Path(id): Path<String>) -> Result<Json<RequestRecord>, ApiError> {
    access::request(node.state(), &id).map_err(ApiError::internal)?.map(Json).ok_or_else(|| ApiError::not_found(format!("no request {id}")))
}

pub async fn approve(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Signature>,
) -> Result<Json<RequestStatus>, ApiError> {
    status(propose(&node, &who, |by| Command::Approve { request: id, by, signature: body.signature, time_ms: now_ms() }).await?)
}

/// `POST /v1/items/{id}/access`: records the access (`node::record_access`)
/// and tells the fetcher how to open the item.
pub async fn access(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<AccessBody>,
) -> Result<Json<AccessView>, ApiError> {
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let ask = node::AccessAsk { request: body.request, fetch_key: body.fetch_key, signature: body.signature };
    let r = node::record_access(&node, &who, item, ask).await.map_err(fetch_err)?;
    let m = r.manifest;
    Ok(Json(AccessView {
        cluster_id: r.cluster_id,
        item,
        access_leaf: r.access_leaf,
        sha256: m.sha256,
        size: m.size,
        chunk_size: m.chunk_size,
        chunks: m.chunks.len() as u64,
        nonce_prefix: m.nonce_prefix,
        threshold: m.threshold,
        key_commitment: m.key_commitment,
        holders: m
            .holders
            .iter()
            .map(|h| HolderShare { node: h.node, x: h.x, addr: r.addrs.iter().find(|(id, _)| *id == h.node).map(|(_, a)| a.clone()) })
            .collect(),
    }))
}

/// `POST /v1/items/{id}/share`: this node's share, sealed to the fetch key,
/// once its own applied state shows the access (`node::release_share`).
pub async fn share(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ShareRequest>,
) -> Result<Json<ShareRelease>, ApiError> {
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let r = node::release_share(&node, &who, item, body.access_leaf, &body.fetch_key).await.map_err(fetch_err)?;
    Ok(Json(ShareRelease { node: r.node, x: r.x, envelope: hex::encode(r.envelope) }))
}

#[derive(Deserialize)]
pub struct SealedQuery {
    access: u64,
}

/// `GET /v1/items/{id}/sealed?access=LEAF`: streams an item's sealed chunks
/// (ciphertext only) for a recorded access (`node::sealed_chunks`).
pub async fn sealed(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<SealedQuery>,
) -> Result<Response, ApiError> {
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let s = node::sealed_chunks(&node, &who, item, q.access).await.map_err(fetch_err)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, s.length)
        .body(Body::from_stream(s.chunks))
        .map_err(ApiError::internal)
}

/// The problem a step of the fetch answers with.
fn fetch_err(e: FetchError) -> ApiError {
    match e {
        FetchError::NotLeader(l) => ApiError::not_leader(l),
        FetchError::Write(e) => super::v1::write_err(e),
        FetchError::Invalid(d) => ApiError::bad_request(d),
        FetchError::NotFound(d) => ApiError::not_found(d),
        FetchError::Refused(r, d) => ApiError::refused(r, d),
        FetchError::Internal(d) => ApiError::internal(d),
    }
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
    who: &Principal,
    id: &str,
    make: impl FnOnce(ItemId, String) -> Command,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    match propose(node, who, |by| make(item, by)).await? {
        Outcome::RetentionChanged { item, retain_until_ms, hold, leaf_index } => {
            // In bucket mode the store's locks follow before the answer (docs/STORAGE.md); if the
            // store cannot be reached, the change stands and the keeper's sweep sets them.
            if let Err(e) = crate::node::objects::sync_item(node, &item).await {
                tracing::error!(item = %item, error = %e, "the retention change committed, but the bucket's locks could not follow yet");
            }
            Ok(Json(crate::wire::RetentionView { item, retain_until: crate::wire::rfc3339_ms(retain_until_ms), hold, leaf_index }))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn hold(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(b): Json<HoldBody>,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    retention_change(&node, &who, &id, |item, by| Command::Hold { item, by, reason: b.reason, time_ms: now_ms() }).await
}

pub async fn release(State(node): State<Arc<Node>>, who: Principal, Path(id): Path<String>) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    retention_change(&node, &who, &id, |item, by| Command::Release { item, by, time_ms: now_ms() }).await
}

pub async fn extend(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(b): Json<ExtendBody>,
) -> Result<Json<crate::wire::RetentionView>, ApiError> {
    let retention = b.retention.parse().map_err(ApiError::bad_request)?;
    retention_change(&node, &who, &id, |item, by| Command::Extend { item, retention, by, time_ms: now_ms() }).await
}

#[derive(Deserialize)]
pub struct PurgeQuery {
    request: String,
}

/// `POST /v1/items/{id}/purge?request=…`: lawful destruction after retention.
pub async fn purge(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PurgeQuery>,
) -> Result<Json<crate::wire::PurgeView>, ApiError> {
    let item: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    match propose(&node, &who, |by| Command::Purge { item, request: q.request, by, time_ms: now_ms() }).await? {
        Outcome::Purged { item, leaf_index, chunks } => Ok(Json(crate::wire::PurgeView { item, leaf_index, chunks_destroyed: chunks.len() as u64 })),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
