//! `/v1/backup/…` (administrators): what `custody backup` reads from a
//! running cluster (`node/backup.rs`, docs/STORAGE.md "Backup and restore").

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::ApiError;
use crate::auth::Principal;
use crate::evidence::ChunkName;
use crate::node::Node;

use crate::wire::SNAPSHOT_META_HEADER;

/// `GET /v1/backup/snapshot` (admin): a snapshot of the replicated state,
/// built now, streamed in the snapshot file format (docs/STORAGE.md); its
/// meta (last log id, membership, id) in [`SNAPSHOT_META_HEADER`].
pub async fn snapshot(State(node): State<Arc<Node>>, who: Principal) -> Result<Response, ApiError> {
    super::v1::require_admin(&node, &who)?;
    let (meta, file) = node.snapshot_now().await.map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let length = file.metadata().map_err(ApiError::internal)?.len();
    let meta = BASE64.encode(serde_json::to_vec(&meta).map_err(ApiError::internal)?);
    tracing::info!(admin = %who, bytes = length, "a backup reads the state snapshot");
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .header(SNAPSHOT_META_HEADER, meta)
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

/// `GET /v1/backup/chunks/{name}` (admin): one sealed chunk, ciphertext.
pub async fn chunk(State(node): State<Arc<Node>>, who: Principal, Path(name): Path<String>) -> Result<Response, ApiError> {
    super::v1::require_admin(&node, &who)?;
    let name: ChunkName = name.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let bytes = node.sealed_chunk(name).await.map_err(|e| ApiError::not_found(format!("this node does not hold that chunk: {e:#}")))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .map_err(ApiError::internal)
}
