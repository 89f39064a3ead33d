//! What operators' tools read without a session (any certificate of the
//! cluster's CA, the same mutual TLS as everything else): `/metrics`
//! (Prometheus text), `/healthz` and `/readyz` with etcd's meaning.

use std::sync::Arc;

use super::Json;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;

use super::ApiError;
use crate::node::Node;

/// `GET /metrics`: Prometheus text exposition (README, "Monitoring").
pub async fn metrics(State(node): State<Arc<Node>>) -> Result<impl IntoResponse, ApiError> {
    let text = node.metrics_text().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}

/// The answer of `/healthz` and `/readyz` when all is well.
#[derive(Serialize)]
pub struct Healthy {
    pub ok: bool,
}

/// `GET /healthz` (liveness, etcd's `/livez`): the process answers and its
/// Raft core runs. Restart the node when this fails.
pub async fn healthz(State(node): State<Arc<Node>>) -> Result<Json<Healthy>, ApiError> {
    match node.not_live() {
        None => Ok(Json(Healthy { ok: true })),
        Some(why) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-live", "Not live", why)),
    }
}

/// `GET /readyz` (readiness, etcd's `/readyz`): live, has applied the
/// cluster's configuration, knows a leader, and its audit tree checks out.
/// Send clients elsewhere while this fails.
pub async fn readyz(State(node): State<Arc<Node>>) -> Result<Json<Healthy>, ApiError> {
    let reasons = node.not_ready();
    if reasons.is_empty() {
        Ok(Json(Healthy { ok: true }))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", reasons.join("; ")))
    }
}

/// `GET /verify`: the court's offline page (`custody verify --page`), the
/// same file byte for byte. Any certificate of the cluster's CA, no session:
/// the page holds no data of the vault, only the checks.
pub async fn verify_page() -> impl IntoResponse {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let page = PAGE.get_or_init(custody_verify::page::html).as_str();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page's own policy, also as a header: it may fetch nothing.
            (header::CONTENT_SECURITY_POLICY, custody_verify::page::CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page,
    )
}
