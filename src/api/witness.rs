//! The witness's HTTP side (C2SP `tlog-witness`): `POST /add-checkpoint` and
//! the monitoring `GET /<origin hash>/checkpoint`, served by `custody witness
//! serve`. The decision lives in `witness/`; this file parses HTTP, reads the
//! clock, and maps each refusal to the status the spec prescribes.
//!
//! Plain HTTP, not TLS: everything that crosses this interface is public and
//! signed (the log's checkpoint and the witness's cosignature), the spec
//! authenticates requests by the checkpoint's signatures alone, and a
//! tampering network can only make a request fail. A court that wants
//! confidentiality or access control puts its own TLS proxy in front.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::witness::{AddError, Witness, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};

const TEXT: &str = "text/plain; charset=utf-8";

/// The routes of a witness.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .fallback(|| async { (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, TEXT)], "no such resource\n") })
        .with_state(witness)
}

/// Serves the witness on `listener` until the task ends.
pub async fn serve(witness: Arc<Witness>, listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(witness)).await
}

/// The status tlog-witness gives each refusal.
fn status(e: &AddError) -> StatusCode {
    match e {
        AddError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AddError::UnknownOrigin(_) => StatusCode::NOT_FOUND,
        AddError::Unauthenticated(_) => StatusCode::FORBIDDEN,
        AddError::Conflict { .. } => StatusCode::CONFLICT,
        AddError::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AddError::Storage(_) | AddError::Cosign(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // The check and the fsyncs block: keep them off the async executor.
    let w = witness.clone();
    let result = match tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now_secs)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "add-checkpoint task failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, TEXT)], "internal error\n").into_response();
        }
    };
    match result {
        Ok(line) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], line).into_response(),
        // tlog-witness: the body is the recorded size in decimal and a newline.
        Err(AddError::Conflict { known, .. }) => {
            (StatusCode::CONFLICT, [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)], format!("{known}\n")).into_response()
        }
        Err(e) => {
            let s = status(&e);
            if s == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "add-checkpoint failed");
            } else {
                tracing::info!(status = s.as_u16(), error = %e, "add-checkpoint refused");
            }
            (s, [(header::CONTENT_TYPE, TEXT)], format!("{e}\n")).into_response()
        }
    }
}

async fn checkpoint(State(witness): State<Arc<Witness>>, Path(origin_hash): Path<String>) -> Response {
    match witness.checkpoint_by_origin_hash(&origin_hash) {
        Some(note) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], note).into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, TEXT)], "this witness has cosigned no checkpoint of that log\n").into_response(),
    }
}
