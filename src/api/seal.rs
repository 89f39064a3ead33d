//! A node's seal (docs/KEYS.md §8): `GET /v1/seal` on every node (any
//! certificate of the cluster's CA, no session), and, while a node is
//! sealed, the whole of what it serves: its seal, `POST /v1/seal/unseal`,
//! `/healthz`, `/readyz` (not ready) and `/metrics` (`custody_sealed 1`).
//! Everything else answers 503 `sealed`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use super::{ApiError, Json};
use crate::node::seal::{SealError, Unsealer};
use crate::node::Node;
use crate::wire::{SealStatus, UnsealRequest};

/// `GET /v1/seal` on a node that is not sealed (any more).
pub async fn status(State(node): State<Arc<Node>>) -> Json<SealStatus> {
    Json(node.seal_status())
}

/// What a sealed node serves: `/v1/seal` is `node::SEAL_PATH`, `/v1/seal/unseal` `node::UNSEAL_PATH`.
pub fn router(unsealer: Arc<Unsealer>) -> Router {
    Router::new()
        .route("/v1/seal", get(sealed_status))
        .route("/v1/seal/unseal", post(unseal))
        .route("/healthz", get(|| async { Json(super::ops::Healthy { ok: true }) }))
        .route("/readyz", get(|| async { sealed() }))
        .route("/metrics", get(metrics))
        .fallback(|| async { sealed() })
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::MAX_JSON_BODY_BYTES))
        .layer(axum::middleware::from_fn(super::edge::body_idle_timeout))
        // One request per connection: once the node is unsealed its real
        // server answers, and no client keeps talking to this one.
        .layer(axum::middleware::map_response(|mut r: axum::response::Response| async move {
            r.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            r
        }))
        .with_state(unsealer)
}

fn sealed() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sealed",
        "Sealed",
        "this node is sealed: its custodians unseal it with `custody operator unseal --node N`",
    )
}

async fn sealed_status(State(u): State<Arc<Unsealer>>) -> Json<SealStatus> {
    Json(u.status())
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], crate::metrics::Metrics::new().render_sealed())
}

async fn unseal(State(u): State<Arc<Unsealer>>, Json(req): Json<UnsealRequest>) -> Result<Json<SealStatus>, ApiError> {
    match (req.share, req.reset) {
        (None, true) => Ok(Json(u.reset())),
        (Some(share), false) => u.submit(&share).map(Json).map_err(|e| match e {
            SealError::Malformed(_) => ApiError::bad_request(e.to_string()),
            SealError::WrongCluster { .. } | SealError::WrongNode { .. } | SealError::NotDealt { .. } => {
                tracing::warn!(error = %e, "refused an unseal share");
                ApiError::new(StatusCode::FORBIDDEN, "wrong-share", "Not a share of this node", e.to_string())
            }
            SealError::Open | SealError::File(_) => {
                tracing::error!(error = %e, "the shares given do not open this node's sealed file");
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unseal-failed", "Unseal failed", format!("{e}; the shares given were forgotten"))
            }
        }),
        _ => Err(ApiError::bad_request("give either `share` or `reset: true`")),
    }
}
