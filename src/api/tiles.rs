//! The audit log's standard read-only view, C2SP `tlog-tiles`
//! (docs/AUDIT_FORMATS.md, "tlog-tiles view"): `/tlog/checkpoint`, hash tiles
//! `/tlog/tile/<L>/<N>[.p/<W>]` and entry bundles `/tlog/tile/entries/<N>[.p/<W>]`,
//! so that mirrors and monitors need not speak our API. Everything served is
//! covered by the latest published (majority-cosigned) checkpoint; a tile is
//! read from the stored tree nodes of its level, never hashed here.
//!
//! Who may read: no session (a mirror has no login), but the caller's
//! certificate must be a node's or a registered, unrevoked person's, the same
//! people who may read the log through `/v1` with a session ([`session::require_reader`]).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{session, ApiError};
use crate::audit::tiles::{frame_entry, Tile};
use crate::audit::{Checkpoint, NodeStore, Note};
use crate::node::Node;
use crate::vault::audit::{self as tree, StateNodes};
use crate::vault::query;

/// The checkpoint changes every few seconds: no cache may keep it.
pub const CHECKPOINT_CACHE_CONTROL: &str = "no-cache";
/// A tile or bundle at a path never changes (a partial one's width is in its path).
pub const TILE_CACHE_CONTROL: &str = "max-age=31536000, immutable";

/// Admits a node's certificate or a registered, unrevoked person's; no session.
pub async fn require_reader(State(node): State<Arc<Node>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let caller = req.extensions().get::<session::Caller>().cloned().ok_or_else(|| ApiError::forbidden("no client certificate"))?;
    session::require_reader(&node, &caller)?;
    Ok(next.run(req).await)
}

fn latest(node: &Node) -> Result<(String, Checkpoint), ApiError> {
    let note =
        query::checkpoint(node.state()).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found("no checkpoint has been published yet"))?;
    let cp = Note::parse(&note).and_then(|n| Checkpoint::parse(&n.text)).map_err(ApiError::internal)?;
    Ok((note, cp))
}

fn octets(body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static(TILE_CACHE_CONTROL)),
        ],
        body,
    )
        .into_response()
}

/// `GET /tlog/checkpoint`: the latest published checkpoint note, with every
/// cosignature it carries (the nodes' and the witnesses').
pub async fn checkpoint(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let (note, _) = latest(&node)?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static(CHECKPOINT_CACHE_CONTROL)),
        ],
        note,
    )
        .into_response())
}

/// `GET /tlog/tile/{path}`: a hash tile or an entry bundle the latest checkpoint covers; 404 otherwise.
pub async fn tile(State(node): State<Arc<Node>>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let tile = Tile::parse(&path).ok_or_else(|| ApiError::not_found(format!("tile/{path} is not a tlog-tiles path")))?;
    let (_, cp) = latest(&node)?;
    if !tile.exists_in(cp.size) {
        return Err(ApiError::not_found(format!("tile/{path} is not covered by the latest checkpoint (size {})", cp.size)));
    }
    let state = node.state();
    let mut body = Vec::new();
    match tile {
        Tile::Hashes { .. } => {
            let level = u8::try_from(tile.tree_level()).map_err(ApiError::internal)?;
            let nodes = StateNodes(state);
            body.reserve(32 * tile.width() as usize);
            for i in tile.node_range() {
                let h =
                    nodes.get(level, i).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal(format!("tree node {level}/{i} missing")))?;
                body.extend_from_slice(&h);
            }
        }
        Tile::Entries { .. } => {
            for i in tile.node_range() {
                let leaf = tree::leaf(state, i).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal(format!("leaf {i} missing")))?;
                frame_entry(&mut body, &leaf)
                    .ok_or_else(|| ApiError::internal(format!("leaf {i} is {} bytes, more than an entry bundle can frame (65535)", leaf.len())))?;
            }
        }
    }
    Ok(octets(body))
}
