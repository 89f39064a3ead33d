//! Registry endpoints: administrators file changes signed with their own key
//! (a second administrator approves every change to people, docs/KEYS.md §5);
//! everyone authenticated may read the registry and its pending changes.

use std::sync::Arc;

use super::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::auth::Principal;
use crate::node::{now_ms, Node};
use crate::vault::registry::{self, PendingChange, Person, Proposal, SourceSystem};
use crate::vault::{Command, Outcome};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegistryView {
    pub people: Vec<Person>,
    pub systems: Vec<SourceSystem>,
    /// Changes filed by one administrator and waiting for a second.
    pub pending: Vec<PendingChange>,
}

/// `POST /v1/registry/changes`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileChange {
    pub proposal: Proposal,
    /// Base64 Ed25519 signature of the filing administrator over the proposal's signing bytes.
    pub signature: String,
}

/// Where a registry change stands.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChangeStatus {
    /// The change's id (32 hex digits).
    pub change: String,
    pub status: ChangeState,
    /// The person's name or the system's id the change is about.
    pub subject: String,
    /// The leaf recording this step.
    pub leaf_index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeState {
    /// Filed and signed by one administrator; a second must approve it.
    Pending,
    /// In the registry.
    Applied,
}

impl std::fmt::Display for ChangeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangeState::Pending => "pending",
            ChangeState::Applied => "applied",
        })
    }
}

pub async fn list(State(node): State<Arc<Node>>, _who: Principal) -> Result<Json<RegistryView>, ApiError> {
    Ok(Json(RegistryView {
        people: registry::people(node.state()).map_err(ApiError::internal)?,
        systems: registry::systems(node.state()).map_err(ApiError::internal)?,
        pending: registry::pending_changes(node.state()).map_err(ApiError::internal)?,
    }))
}

/// Proposes, on the leader, the registry command `make` builds for `who` (handed their name).
async fn propose(node: &Node, who: &Principal, subject: String, make: impl FnOnce(String) -> Command) -> Result<Json<ChangeStatus>, ApiError> {
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    node.ensure_configured().await.map_err(ApiError::internal)?;
    match node.propose_as(who, make).await.map_err(super::v1::write_err)? {
        Outcome::RegistryStatus { change, applied, leaf_index } => {
            tracing::info!(%change, %subject, applied, leaf_index, "registry change");
            let status = if applied { ChangeState::Applied } else { ChangeState::Pending };
            Ok(Json(ChangeStatus { change, status, subject, leaf_index }))
        }
        Outcome::Refused { reason, detail } => Err(ApiError::refused(reason, detail)),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Files a change as the calling user, who must have signed it; apply decides.
pub async fn file(State(node): State<Arc<Node>>, who: Principal, Json(body): Json<FileChange>) -> Result<Json<ChangeStatus>, ApiError> {
    body.proposal.validate().map_err(ApiError::bad_request)?;
    let subject = body.proposal.change.subject().to_string();
    propose(&node, &who, subject, |by| Command::ProposeRegistry { proposal: body.proposal, by, signature: body.signature, time_ms: now_ms() }).await
}

pub async fn show(State(node): State<Arc<Node>>, _who: Principal, Path(id): Path<String>) -> Result<Json<PendingChange>, ApiError> {
    registry::pending(node.state(), &id).map_err(ApiError::internal)?.map(Json).ok_or_else(|| ApiError::not_found(format!("no pending change {id}")))
}

pub async fn approve(
    State(node): State<Arc<Node>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<super::access::Signature>,
) -> Result<Json<ChangeStatus>, ApiError> {
    let subject =
        registry::pending(node.state(), &id).map_err(ApiError::internal)?.map(|p| p.proposal.change.subject().to_string()).unwrap_or_default();
    propose(&node, &who, subject, |by| Command::ApproveRegistry { change: id, by, signature: body.signature, time_ms: now_ms() }).await
}
