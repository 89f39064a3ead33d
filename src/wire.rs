//! The JSON shapes exchanged between the CLI and the nodes' `/v1` API.
//! Shared by `api/` (which serves them) and `client/` (which reads them).

use serde::{Deserialize, Serialize};

use crate::evidence::{ChunkRef, ItemId, Retention};

/// An RFC 9457 problem document: every error the API returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `urn:custody:not-leader`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For `not-leader`: the leader's address, where the client should go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// The acknowledgement of a committed deposit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepositReceipt {
    pub item: ItemId,
    pub sha256: String,
    pub size: u64,
    /// Index of the deposit record in the audit log.
    pub leaf_index: u64,
    pub deposited_at: String,
    pub retain_until: String,
}

/// An item's metadata as shown by `items` and `show`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemView {
    pub item: ItemId,
    pub sha256: String,
    pub size: u64,
    pub case: String,
    pub system: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub depositor: String,
    pub retention: Retention,
    pub deposited_at: String,
    pub retain_until: String,
    pub leaf_index: u64,
    pub chunk_size: u64,
    pub chunks: Vec<ChunkRef>,
    /// The reason of a legal hold, while one is in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// The answer to `hold`, `release` and `extend`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetentionView {
    pub item: ItemId,
    pub retain_until: String,
    pub hold: bool,
    pub leaf_index: u64,
}

/// One entry of an item's custody trail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrailEntry {
    pub kind: String,
    pub time: String,
    pub who: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemList {
    pub items: Vec<ItemView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemDetail {
    pub item: ItemView,
    pub trail: Vec<TrailEntry>,
}

/// A node's own view of itself (`/internal/health`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeHealth {
    pub id: u64,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Chunks committed manifests name that this node does not hold yet.
    pub missing_chunks: u64,
    /// This node's checkpoint verifier key (signed-note format).
    pub checkpoint_key: String,
    /// Leaves in this node's applied audit tree.
    pub audit_size: u64,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    pub last_applied: Option<u64>,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<NodeHealth>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub answered_by: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberView>,
    /// Set when the cluster runs with shortened dev retention periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_retention_secs: Option<u64>,
}

/// `POST /v1/cluster/members`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddMember {
    pub id: u64,
    pub addr: String,
    /// Stop after the learner has caught up, without making it a voter.
    #[serde(default)]
    pub learner_only: bool,
}

/// Renders unix milliseconds as RFC 3339 UTC.
pub fn rfc3339_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms.min(i64::MAX as u64) as i64);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| format!("@{ms}ms"))
}

/// `GET /v1/checkpoint`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Base64 of the root hash, as in the note.
    pub root: String,
    pub signers: Vec<String>,
    pub note: String,
}

/// `GET /v1/cluster/keys`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeysView {
    pub keys: Vec<String>,
}

/// `GET /v1/audit/consistency`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsistencyView {
    pub old_size: u64,
    pub new_size: u64,
    /// Base64 hashes in RFC 9162 order.
    pub proof: Vec<String>,
}
