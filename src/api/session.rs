//! Sessions: a user signs a login challenge with their registered key and
//! gets a short-lived token bound to their client certificate; every other
//! `/v1` resource answers 401 without a valid one. This module is where a
//! request's [`Principal`] is made, and the one place a user's name is read
//! off a client certificate (the [`Caller`]'s): the login and the session
//! check. Handlers act for the `Principal` the session check hands them.

use std::sync::Arc;

use super::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::auth::{login_message, Principal, LOGIN_SKEW_SECS, TOKEN_TTL_SECS};
use crate::node::{now_ms, Node};
use crate::raft::NodeId;
use crate::tls::{AuthenticatedPeer, PeerIdentity};
use crate::vault::registry;

/// Who is at the other end of the connection a request came over, as its
/// handshake proved. `serve` puts one on every request. A handler may learn a
/// node peer's id from it, or that the peer is a person; a person's name only
/// this module reads ([`Caller::user`] is private), to log them in and to check
/// their session. Anywhere else a person is known only as a [`Principal`].
#[derive(Clone, Debug)]
pub struct Caller(AuthenticatedPeer);

impl Caller {
    pub(super) fn new(peer: AuthenticatedPeer) -> Caller {
        Caller(peer)
    }

    /// The node at the other end, if its certificate is a node's.
    pub fn node(&self) -> Option<NodeId> {
        match self.0.identity() {
            PeerIdentity::Node(id) => Some(*id),
            PeerIdentity::User(_) => None,
        }
    }

    /// A person's certificate: `/v1` is for people; nodes may not use it.
    pub fn require_user(&self) -> Result<(), ApiError> {
        self.user().map(|_| ())
    }

    /// The name on a person's certificate and the certificate's SHA-256, for
    /// the login and the session check only.
    fn user(&self) -> Result<(&str, &[u8; 32]), ApiError> {
        match self.0.identity() {
            PeerIdentity::User(u) => Ok((u, self.0.cert_sha256())),
            PeerIdentity::Node(_) => Err(ApiError::forbidden("node certificates cannot call the client API")),
        }
    }
}

/// Who may read the audit log without a session (`/tlog`, api/tiles.rs): a
/// node's certificate, or the certificate of a registered, unrevoked person
/// (anyone who may log in and read the log through `/v1`). A certificate the
/// CA issued to a name the registry does not hold, or holds revoked, is refused.
pub fn require_reader(node: &Node, caller: &Caller) -> Result<(), ApiError> {
    if caller.node().is_some() {
        return Ok(());
    }
    let (user, _) = caller.user()?;
    match registry::person(node.state(), user).map_err(ApiError::internal)? {
        Some(p) if !p.revoked => Ok(()),
        _ => Err(ApiError::forbidden(format!("{user} is not a registered, unrevoked person"))),
    }
}

/// A handler takes its [`Principal`] as an argument; the session check put it
/// on the request. A route the check does not guard has none, and answers 401
/// rather than act for no one.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| unauthenticated("a session token is required: log in first"))
    }
}

/// `POST /v1/login`: a person proves they hold their registered signing key.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Login {
    /// The user the client certificate names.
    pub user: String,
    /// The client's clock, unix milliseconds (within the allowed skew).
    pub time_ms: u64,
    /// Base64 Ed25519 signature over `auth::login_message`.
    pub signature: String,
}

/// `POST /v1/login`'s answer: a session token bound to the client certificate.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Session {
    /// The bearer token for every other `/v1` call (docs/KEYS.md §3).
    pub token: String,
    pub user: String,
    /// Seconds until it expires.
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

pub async fn login(State(node): State<Arc<Node>>, Extension(caller): Extension<Caller>, Json(l): Json<Login>) -> Result<Json<Session>, ApiError> {
    let (user, cert) = caller.user()?;
    require_caught_up(&node)?;
    if l.user != user {
        return Err(unauthenticated("the login names another user than the client certificate"));
    }
    let now = now_ms();
    if now.abs_diff(l.time_ms) > LOGIN_SKEW_SECS * 1000 {
        return Err(unauthenticated("the login's time is too far from the node's clock"));
    }
    let person = registry::person(node.state(), user)
        .map_err(ApiError::internal)?
        .filter(|p| !p.revoked)
        .ok_or_else(|| unauthenticated(format!("{user} is not a registered, unrevoked person")))?;
    let key = registry::public_key_bytes(&person.public_key).map_err(ApiError::internal)?;
    let sig = BASE64.decode(&l.signature).map_err(|_| unauthenticated("the signature is not base64"))?;
    if !crate::crypto::verify_ed25519(&key, &login_message(user, cert, l.time_ms), &sig) {
        return Err(unauthenticated("the login signature does not verify with the registered key"));
    }
    // Tokens this node signs are good only once its key is registered: until then, elsewhere.
    if !node.session_key_registered().map_err(ApiError::internal)? {
        return Err(ApiError::not_caught_up());
    }
    let token = node.issue_session(user, cert, now / 1000).map_err(ApiError::internal)?;
    Ok(Json(Session { token, user: user.to_string(), expires_in: TOKEN_TTL_SECS }))
}

/// Middleware: a valid session token for this user, over this certificate, of
/// an unrevoked person. The one maker of a request's [`Principal`], which it
/// puts on the request for the handler.
pub async fn require_session(State(node): State<Arc<Node>>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let caller = req.extensions().get::<Caller>().cloned().ok_or_else(|| unauthenticated("no client certificate"))?;
    // A node's certificate is refused before any token is looked for (403, not 401).
    caller.require_user()?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthenticated("a session token is required: log in first"))?;
    let principal = principal(&node, &caller, token)?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The [`Principal`] a session token makes for the caller: the token, bound to
/// this certificate, verified; the person registered and unrevoked. The one
/// check behind both the bearer token of `/v1` and the console's cookie.
pub fn principal(node: &Node, caller: &Caller, token: &str) -> Result<Principal, ApiError> {
    let (user, cert) = caller.user()?;
    // A node that knows no members yet cannot judge who issued a token: elsewhere.
    require_caught_up(node)?;
    let verified = node.verify_session(token, user, cert).map_err(|e| unauthenticated(e.to_string()))?;
    match registry::person(node.state(), user).map_err(ApiError::internal)? {
        Some(p) if !p.revoked => Ok(Principal::of(verified)),
        _ => Err(unauthenticated(format!("{user} is not a registered, unrevoked person"))),
    }
}

/// What the console's login page signs for (`GET /console/whoami`): the name
/// on the caller's certificate and its thumbprint, as `auth::login_message`
/// binds them. A browser cannot read its own client certificate.
pub fn whoami(caller: &Caller) -> Result<(String, String), ApiError> {
    let (user, cert) = caller.user()?;
    Ok((user.to_string(), crate::auth::thumbprint(cert)))
}
