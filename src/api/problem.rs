//! Errors as `application/problem+json` with a stable `type`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::wire::Problem;

#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Problem);

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        ApiError(
            status,
            Problem { kind: format!("urn:custody:{kind}"), title: title.into(), status: status.as_u16(), detail: detail.into(), leader: None },
        )
    }
    /// The vault's rules refused the command (`vault::Refusal`): type
    /// `urn:custody:<name>`; 404 for what does not exist, 409 for what exists
    /// or is done already, 403 for every other rule (docs/JSON.md, "Problem types").
    pub fn refused(reason: crate::vault::Refusal, detail: impl Into<String>) -> Self {
        use crate::vault::Refusal as R;
        let status = match reason {
            R::UnknownItem | R::UnknownRequest | R::UnknownChange => StatusCode::NOT_FOUND,
            R::Duplicate | R::AlreadyDone => StatusCode::CONFLICT,
            _ => StatusCode::FORBIDDEN,
        };
        Self::new(status, reason.name(), reason.title(), detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail.to_string())
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
    }
    /// This node has not applied the cluster's configuration yet (new, or back with an empty
    /// disk): the client should ask another node. Nothing was done.
    pub fn not_caught_up() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-caught-up",
            "Not caught up",
            "this node has not caught up with the cluster yet: ask another node",
        )
    }
    /// The client must go to the leader.
    pub fn not_leader(leader: Option<String>) -> Self {
        let mut e =
            Self::new(StatusCode::MISDIRECTED_REQUEST, "not-leader", "Not the leader", "this node is not the leader; send the request to the leader");
        e.1.leader = leader;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.1).unwrap_or_default();
        (self.0, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}
