//! Sessions: a user signs a login challenge with their registered key and
//! gets a short-lived token bound to their client certificate; every other
//! `/v1` resource answers 401 without a valid one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Json};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ApiError, CertSha256};
use crate::auth::{login_message, LOGIN_SKEW_SECS, TOKEN_TTL_SECS};
use crate::node::{now_ms, Node};
use crate::tls::PeerIdentity;
use crate::vault::registry;

#[derive(Serialize, Deserialize)]
pub struct Login {
    pub user: String,
    pub time_ms: u64,
    /// Base64 Ed25519 signature over `auth::login_message`.
    pub signature: String,
}

#[derive(Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    pub user: String,
    pub expires_in: u64,
}

fn unauthenticated(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", detail)
}

/// A node that has not applied the cluster's configuration yet (new, or back with an empty
/// disk) has an empty registry: it must not judge anyone by it. It sends the client elsewhere.
fn require_caught_up(node: &Node) -> Result<(), ApiError> {
    match node.has_configuration() {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::not_caught_up()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub async fn login(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Extension(cert): Extension<CertSha256>,
    Json(l): Json<Login>,
) -> Result<Json<Session>, ApiError> {
    let user = super::user_of(&peer)?;
    require_caught_up(&node)?;
    if l.user != user {
        return Err(unauthenticated("the login names another user than the client certificate"));
    }
    let now = now_ms();
    if now.abs_diff(l.time_ms) > LOGIN_SKEW_SECS * 1000 {
        return Err(unauthenticated("the login's time is too far from the node's clock"));
    }
    let person = registry::person(&node.state, &user)
        .map_err(ApiError::internal)?
        .filter(|p| !p.revoked)
        .ok_or_else(|| unauthenticated(format!("{user} is not a registered, unrevoked person")))?;
    let key = registry::public_key_bytes(&person.public_key).map_err(ApiError::internal)?;
    let sig = BASE64.decode(&l.signature).map_err(|_| unauthenticated("the signature is not base64"))?;
    if !crate::crypto::verify_ed25519(&key, &login_message(&user, &cert.0, l.time_ms), &sig) {
        return Err(unauthenticated("the login signature does not verify with the registered key"));
    }
    // Tokens this node signs are good only once its key is registered: until then, elsewhere.
    if crate::vault::query::session_key(&node.state, node.id()).map_err(ApiError::internal)? != Some(node.session_public) {
        return Err(ApiError::not_caught_up());
    }
    let token = node.sessions.issue(&user, &cert.0, now / 1000).map_err(ApiError::internal)?;
    Ok(Json(Session { token, user, expires_in: TOKEN_TTL_SECS }))
}

/// Middleware: a valid session token for this user, over this certificate, of an unrevoked person.
pub async fn require_session(State(node): State<Arc<Node>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let user = match req.extensions().get::<PeerIdentity>() {
        Some(PeerIdentity::User(u)) => u.clone(),
        Some(PeerIdentity::Node(_)) => return Err(ApiError::forbidden("node certificates cannot call the client API")),
        None => return Err(unauthenticated("no client certificate")),
    };
    let cert = req.extensions().get::<CertSha256>().copied().ok_or_else(|| unauthenticated("no client certificate"))?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthenticated("a session token is required: log in first"))?;
    let issuer_key = |id: u64| if node.is_member(id) { crate::vault::query::session_key(&node.state, id).ok().flatten() } else { None };
    // A node that knows no members yet cannot judge who issued a token: elsewhere.
    require_caught_up(&node)?;
    node.sessions.verify(token, &user, &cert.0, issuer_key).map_err(|e| unauthenticated(e.to_string()))?;
    match registry::person(&node.state, &user).map_err(ApiError::internal)? {
        Some(p) if !p.revoked => {}
        _ => return Err(unauthenticated(format!("{user} is not a registered, unrevoked person"))),
    }
    Ok(next.run(req).await)
}
