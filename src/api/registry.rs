//! Registry endpoints: administrators add people and source systems and
//! revoke people; everyone authenticated may read it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{user_of, ApiError};
use crate::node::{now_ms, Node};
use crate::tls::PeerIdentity;
use crate::vault::registry::{self, Person, RegistryChange, SourceSystem};
use crate::vault::{Command, Outcome};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegistryView {
    pub people: Vec<Person>,
    pub systems: Vec<SourceSystem>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recorded {
    /// The person's name or the system's id.
    pub name: String,
    pub leaf_index: u64,
}

pub async fn list(State(node): State<Arc<Node>>, Extension(peer): Extension<PeerIdentity>) -> Result<Json<RegistryView>, ApiError> {
    user_of(&peer)?;
    Ok(Json(RegistryView {
        people: registry::people(&node.state).map_err(ApiError::internal)?,
        systems: registry::systems(&node.state).map_err(ApiError::internal)?,
    }))
}

/// Proposes a registry change as the calling user; apply decides whether they may.
async fn propose(node: &Node, peer: &PeerIdentity, name: String, change: RegistryChange) -> Result<Json<Recorded>, ApiError> {
    let by = user_of(peer)?;
    if !node.is_leader() {
        return Err(ApiError::not_leader(node.leader().map(|(_, a)| a)));
    }
    node.ensure_configured().await.map_err(ApiError::internal)?;
    match node.propose(Command::Registry { by: by.clone(), change, time_ms: now_ms() }).await.map_err(super::v1::write_err)? {
        Outcome::Recorded { leaf_index } => {
            tracing::info!(%by, %name, leaf_index, "registry changed");
            Ok(Json(Recorded { name, leaf_index }))
        }
        Outcome::Done => Ok(Json(Recorded { name, leaf_index: u64::MAX })),
        Outcome::Refused { reason } => Err(ApiError::new(StatusCode::FORBIDDEN, "refused", "Refused", reason)),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn add_person(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Json(person): Json<Person>,
) -> Result<Json<Recorded>, ApiError> {
    person.validate().map_err(ApiError::bad_request)?;
    propose(&node, &peer, person.name.clone(), RegistryChange::AddPerson { person }).await
}

pub async fn revoke_person(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Path(name): Path<String>,
) -> Result<Json<Recorded>, ApiError> {
    registry::check_name("name", &name).map_err(ApiError::bad_request)?;
    propose(&node, &peer, name.clone(), RegistryChange::RevokePerson { name }).await
}

pub async fn add_system(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerIdentity>,
    Json(system): Json<SourceSystem>,
) -> Result<Json<Recorded>, ApiError> {
    system.validate().map_err(ApiError::bad_request)?;
    propose(&node, &peer, system.id.clone(), RegistryChange::AddSystem { system }).await
}
