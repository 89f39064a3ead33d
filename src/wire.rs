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

/// One entry of an item's custody trail: one audit leaf, as typed JSON.
/// `kind` and `time` are the leaf record's own; every other field of the
/// record (docs/AUDIT_FORMATS.md) appears beside them under its own name,
/// with its own type (`v`, the record version, included).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrailEntry {
    /// Index of the leaf in the audit log.
    pub leaf_index: u64,
    /// The record's kind: `deposit`, `request`, `approval`, `grant`, `access`, `hold`, `retention`, `purge`, `scrub`, ...
    pub kind: String,
    /// RFC 3339 UTC, stamped by the leader.
    pub time: String,
    /// The record's other fields, unchanged.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl TrailEntry {
    /// The entry for one leaf's canonical JSON record.
    pub fn from_record(leaf_index: u64, record: serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(mut fields) = record else { return Err(format!("leaf {leaf_index} is not a JSON object")) };
        let mut take = |f: &str| match fields.remove(f) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(format!("leaf {leaf_index} has no string `{f}`")),
        };
        let kind = take("kind")?;
        let time = take("time")?;
        fields.remove("leaf_index");
        Ok(TrailEntry { leaf_index, kind, time, fields })
    }

    /// Who acted, for people to read: the depositor, the signer or `by`.
    pub fn who(&self) -> &str {
        ["depositor", "by", "signer"].iter().find_map(|f| self.fields.get(*f).and_then(|v| v.as_str())).unwrap_or("")
    }

    /// A line of prose for people (the `--json` output carries the fields instead).
    pub fn summary(&self) -> String {
        let s = |f: &str| self.fields.get(f).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
        match self.kind.as_str() {
            "deposit" => format!("{} bytes, sha256 {}", s("size"), s("sha256")),
            "request" | "grant" | "access" => {
                format!("request {} to {} (officers {}), purpose: {}", s("request"), s("action"), s("officers"), s("purpose"))
            }
            "approval" => format!("request {} signed as {}", s("request"), s("as")),
            "hold" => format!("{} {}", s("action"), s("reason")),
            "retention" => format!("{} → {}, until {}", s("from"), s("to"), s("retain_until")),
            "purge" => format!("request {}: data key and {} chunks destroyed", s("request"), s("chunks")),
            "scrub" => format!("node {} found chunk {} {}; repaired: {}", s("node"), s("chunk"), s("found"), s("repaired")),
            _ => String::new(),
        }
    }
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

/// Renders unix milliseconds as RFC 3339 UTC, or `None` for a time RFC 3339
/// cannot write (after the year 9999). Every conversion is checked: no input panics.
pub fn try_rfc3339_ms(ms: u64) -> Option<String> {
    let nanos = i128::from(ms).checked_mul(1_000_000)?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// Renders unix milliseconds as RFC 3339 UTC. Apply refuses every time beyond
/// [`crate::limits::MAX_TIME_MS`], so records never reach the fallback: a
/// time RFC 3339 cannot write renders as the last instant it can.
pub fn rfc3339_ms(ms: u64) -> String {
    try_rfc3339_ms(ms).unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_string())
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
