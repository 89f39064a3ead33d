//! The JSON shapes exchanged between the CLI and the nodes' `/v1` API, and
//! the objects the CLI prints with `--json`. Shared by `api/` (which serves
//! them) and `client/` and `cli/` (which read and print them). This is the home
//! of `schemars`: [`schemas`] gives the JSON Schema (2020-12, OpenAPI 3.1's
//! dialect) of every shape, which `/v1/openapi.json` publishes.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::evidence::{ChunkRef, ItemId, Retention};

/// `GET /v1/backup/snapshot`: the header that carries the snapshot's meta
/// (openraft's `SnapshotMeta`), base64 of its JSON.
pub const SNAPSHOT_META_HEADER: &str = "x-custody-snapshot-meta";

/// An RFC 9457 problem document: every error the API returns.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
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

impl Problem {
    /// Is this the vault's "no" (exit status 1: a rule refused the command,
    /// or what it names does not exist or exists already), rather than a
    /// failure to ask (2)?
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, 403 | 404 | 409)
    }
}

/// The acknowledgement of a committed deposit.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DepositReceipt {
    pub item: ItemId,
    pub sha256: String,
    pub size: u64,
    /// Index of the deposit record in the audit log.
    pub leaf_index: u64,
    #[schemars(extend("format" = "date-time"))]
    pub deposited_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub retain_until: String,
}

/// An item's metadata as shown by `items` and `show`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
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
    #[schemars(extend("format" = "date-time"))]
    pub deposited_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub retain_until: String,
    pub leaf_index: u64,
    pub chunk_size: u64,
    pub chunks: Vec<ChunkRef>,
    /// The reason of a legal hold, while one is in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// The answer to `hold`, `release` and `extend`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RetentionView {
    pub item: ItemId,
    #[schemars(extend("format" = "date-time"))]
    pub retain_until: String,
    pub hold: bool,
    pub leaf_index: u64,
}

/// The answer to `purge`: every holder's share of the item's data key and its chunks are destroyed, its records stay.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PurgeView {
    pub item: ItemId,
    /// The leaf recording the purge.
    pub leaf_index: u64,
    pub chunks_destroyed: u64,
}

/// One entry of an item's custody trail: one audit leaf, as typed JSON.
/// `kind` and `time` are the leaf record's own; every other field of the
/// record (docs/AUDIT_FORMATS.md) appears beside them under its own name,
/// with its own type (`v`, the record version, included).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TrailEntry {
    /// Index of the leaf in the audit log.
    pub leaf_index: u64,
    /// The record's kind (docs/AUDIT_FORMATS.md).
    #[schemars(extend("enum" = ["deposit", "request", "approval", "grant", "access", "hold", "retention", "purge", "scrub", "reshare"]))]
    pub kind: String,
    /// RFC 3339 UTC, stamped by the leader.
    #[schemars(extend("format" = "date-time"))]
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

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ItemList {
    pub items: Vec<ItemView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ItemDetail {
    pub item: ItemView,
    pub trail: Vec<TrailEntry>,
}

/// Where a node keeps chunks (docs/STORAGE.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChunkBackend {
    /// On its own disk (`<data_dir>/chunks`), every voter a copy.
    #[default]
    Local,
    /// In an S3 bucket with Object Lock, one copy the store replicates.
    S3,
}

/// A node's own view of itself (`/internal/health`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NodeHealth {
    pub id: u64,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Chunks committed manifests name that this node does not hold yet (always 0 with
    /// `chunk_backend` `s3`: the members hold no chunks).
    pub missing_chunks: u64,
    /// Where this node keeps chunks (`[chunks] backend`, docs/STORAGE.md).
    #[serde(default)]
    pub chunk_backend: ChunkBackend,
    /// This node's checkpoint verifier key (signed-note format).
    pub checkpoint_key: String,
    /// Base64 of this node's Ed25519 session-token public key (docs/KEYS.md §3).
    pub session_key: String,
    /// Hex of this node's X25519 share public key (docs/KEYS.md §4).
    pub share_key: String,
    /// Leaves in this node's applied audit tree.
    pub audit_size: u64,
    /// What an operator must look at; empty when the node is well.
    pub warnings: Vec<HealthWarning>,
}

/// One thing wrong with a node, typed: `kind` says what, the other fields
/// carry its values (never prose with values inside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthWarning {
    /// Committed chunks this node does not hold yet (it is fetching them).
    ChunksNotHeld { count: u64 },
    /// Chunks this node held once and found gone from its disk, not yet
    /// repaired: each is a recorded `scrub` finding (`found: missing`).
    ChunksLost { chunks: Vec<String> },
    /// Chunks the scrubber found damaged with no healthy replica anywhere.
    ChunksDamaged { chunks: Vec<String> },
    /// Raft stopped on this node; `error` is its message.
    RaftStopped { error: String },
    /// The node's audit tree failed its self-check: it signs no checkpoints.
    AuditTreeInvalid { error: String },
    /// A certificate this node uses ends within `CERT_EXPIRY_WARNING_DAYS`
    /// (limits.rs) or has ended: renew it before `expires_at`.
    CertificateExpiring { certificate: CertificateRole, expires_at: String, days_left: i64 },
}

/// Which of a node's certificates a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateRole {
    /// Its own TLS certificate (`cert` in node.toml).
    Node,
    /// The cluster CA's certificate (`ca` in node.toml).
    Ca,
}

impl std::fmt::Display for HealthWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthWarning::ChunksNotHeld { count } => write!(f, "{count} committed chunks not yet held by this node"),
            HealthWarning::ChunksLost { chunks } => {
                write!(
                    f,
                    "{} chunks this node held are gone from its disk (recorded findings, not yet repaired): {}",
                    chunks.len(),
                    chunks.join(", ")
                )
            }
            HealthWarning::ChunksDamaged { chunks } => {
                write!(f, "{} chunks damaged beyond repair (no healthy replica): {}", chunks.len(), chunks.join(", "))
            }
            HealthWarning::RaftStopped { error } => write!(f, "raft stopped: {error}"),
            HealthWarning::AuditTreeInvalid { error } => write!(f, "audit tree check failed, not signing checkpoints: {error}"),
            HealthWarning::CertificateExpiring { certificate, expires_at, days_left } => {
                let which = match certificate {
                    CertificateRole::Node => "this node's TLS certificate",
                    CertificateRole::Ca => "the cluster CA certificate",
                };
                write!(f, "{which} expires at {expires_at} ({days_left} days left): renew it")
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    pub last_applied: Option<u64>,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<NodeHealth>,
    /// Set when the member answers only as a sealed node (docs/KEYS.md §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealStatus>,
}

/// A node's seal (docs/KEYS.md §8): `GET /v1/seal`, and the answer of
/// `POST /v1/seal/unseal` and `custody operator unseal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SealStatus {
    pub node: u64,
    pub cluster_id: String,
    /// Whether the node's secrets are still sealed.
    pub sealed: bool,
    /// How many custodians' shares open it (k); 0 when the node is not sealed at rest.
    pub threshold: u8,
    /// How many shares were dealt (n); 0 when the node is not sealed at rest.
    pub shares: u8,
    /// Distinct valid shares given since the node started or was reset.
    pub progress: u8,
    /// The node opened itself from a dev shares file (`up`, `demo`).
    pub dev_auto_unseal: bool,
    /// The node was unsealed by its PKCS#11 token, not by custodians.
    #[serde(default)]
    pub pkcs11: bool,
}

/// `operator wrap --json`: a node's root key wrapped by its PKCS#11 token.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TokenWrapped {
    pub node: u64,
    /// The sealed file, now holding the wrapped root key (`pkcs11`).
    pub sealed_file: std::path::PathBuf,
    /// The token's label.
    pub token: String,
    /// The label of the token's AES-256 key that wraps it.
    pub key_label: String,
}

/// `operator rekey --json`: a node's seal with new custodian shares.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Rekeyed {
    pub node: u64,
    /// The sealed file, written anew (the old shares no longer open it).
    pub sealed_file: std::path::PathBuf,
    pub threshold: u8,
    pub shares: u8,
    /// Custodian K's new share, `custodian-K.share` in the output directory (mode 0600).
    pub share_files: Vec<std::path::PathBuf>,
}

/// `POST /v1/seal/unseal`: one custodian's share, or a reset.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// The share's line of text (`custody-unseal-v1:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// Forget the shares given so far.
    #[serde(default)]
    pub reset: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub answered_by: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberView>,
    /// Set when the cluster runs with shortened dev retention periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_retention_secs: Option<u64>,
    /// Set when the cluster's nodes may unseal themselves from a dev shares file.
    #[serde(default)]
    pub dev_auto_unseal: bool,
    /// The witnesses configured on the answering node, as it knows them.
    /// Only the leader pushes checkpoints, so ask the leader for current figures.
    #[serde(default)]
    pub witnesses: Vec<WitnessStatus>,
    /// The time-stamping authority configured on the answering node, as it
    /// knows it (absent when none is). Only the leader asks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa: Option<TsaStatus>,
    /// The alert webhook configured on the answering node, as it knows it (absent when none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsStatus>,
}

/// A suspicious event (art. 14(3)): logged, and sent to the webhook of
/// `[alerts]` in node.toml, once per event. Typed: `kind` says what, the other
/// fields carry its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// This node's stored audit tree does not match its leaves or the published checkpoint (tampering, or a damaged disk): it no longer signs.
    AuditTreeInvalid { error: String },
    /// Chunks the scrubber found damaged or gone with no healthy replica anywhere.
    ChunksUnrepairable { chunks: Vec<String> },
    /// On the leader: a member has not answered since `since` (RFC 3339 UTC), longer than `unreachable_after_secs`.
    MemberUnreachable { node: u64, since: String },
    /// This node refused to release its share of an item's key; `reason` is the refusal's kind (docs/JSON.md, "Problem types").
    KeyReleaseRefused { item: String, access: u64, by: String, reason: String },
    /// A witness refused a checkpoint as not extending what it cosigned, or answered a cosignature that does not verify.
    WitnessDisagrees { witness: String, error: String },
}

/// One alert as the webhook receives it (`POST`, `application/json`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AlertDelivery {
    pub cluster_id: String,
    /// The node that raised it.
    pub node: u64,
    /// The event's id (32 hex digits): the same event is sent once; a receiver may also deduplicate on it.
    pub id: String,
    /// When the node raised it (RFC 3339 UTC).
    pub at: String,
    pub alert: Alert,
}

/// The alert webhook in `cluster status`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AlertsStatus {
    pub webhook: String,
    /// Alerts this node delivered since it started.
    pub delivered: u64,
    /// Alerts waiting (being retried, or queued behind one that is).
    pub pending: u64,
    /// Alerts given up (after a day of retries, or pushed out of a full queue).
    pub dropped: u64,
    /// Why the last attempt failed, if it did (cleared by the next success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

/// The configured time-stamping authority in `cluster status`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TsaStatus {
    /// Where the TSA answers RFC 3161 requests.
    pub url: String,
    /// The size of the last checkpoint this node got a good token for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stamped_size: Option<u64>,
    /// When that token came back (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stamped_at: Option<String>,
    /// How long that request took, in milliseconds, from sending to a checked reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round_trip_ms: Option<f64>,
    /// The size of that token in bytes (DER), as bundles carry it (in base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_bytes: Option<u64>,
    /// Why the last request failed, if it did (cleared by the next success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it failed (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

/// One configured witness in `cluster status`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct WitnessStatus {
    /// Where the witness serves `add-checkpoint`.
    pub url: String,
    /// The name in the witness's verifier key.
    pub key_name: String,
    /// The witness's verifier key, as configured.
    pub key: String,
    /// The size of the last checkpoint this node saw the witness cosign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cosigned_size: Option<u64>,
    /// When that cosignature came back (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cosigned_at: Option<String>,
    /// How long that push took, in milliseconds: the request with its
    /// consistency proof, the witness's checks and fsync, and the check of
    /// its cosignature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round_trip_ms: Option<f64>,
    /// Why the last push failed, if it did (cleared by the next success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it failed (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

/// `POST /v1/cluster/members`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Base64 of the root hash, as in the note.
    pub root: String,
    pub signers: Vec<String>,
    pub note: String,
    /// An RFC 3161 token on the note's text (base64 DER), when the cluster's
    /// TSA gave one (docs/AUDIT_FORMATS.md, "Trusted time").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// `GET /v1/cluster/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct KeysView {
    /// The current voters' and members' checkpoint verifier keys.
    pub keys: Vec<String>,
    /// Every checkpoint key ever bound, with the sizes it may sign for
    /// (what a court keeps: `cluster keys` prints one line per range).
    pub ranges: Vec<crate::vault::nodes::KeyRange>,
}

/// `GET /v1/audit/consistency`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsistencyView {
    pub old_size: u64,
    pub new_size: u64,
    /// Base64 hashes in RFC 9162 order.
    pub proof: Vec<String>,
}

/// The answer to filing or signing an access request.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RequestStatus {
    /// The request's id (32 hex digits).
    pub request: String,
    pub status: RequestState,
    /// The leaf recording this step.
    pub leaf_index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Signatures are still missing.
    Pending,
    /// Every participant and an approver signed: the grant is recorded.
    Granted,
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestState::Pending => "pending",
            RequestState::Granted => "granted",
        })
    }
}

/// One node's scrub pass (`POST /internal/scrub`, and in [`ScrubSummary`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ScrubReport {
    pub node: u64,
    /// Chunk copies read and hashed.
    pub checked: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub repaired: u64,
    /// Chunks no healthy replica could restore: their items are damaged.
    pub unrepairable: Vec<String>,
    pub audit_tree_ok: bool,
}

/// `POST /v1/scrub` and `custody scrub --json`: every member's pass, summed.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ScrubSummary {
    pub checked: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub repaired: u64,
    pub unrepairable: Vec<String>,
    /// The members that answered.
    pub nodes: Vec<ScrubReport>,
    /// The members that did not.
    pub errors: Vec<NodeError>,
}

/// A member that could not do what was asked.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NodeError {
    pub node: u64,
    pub error: String,
}

// ---- What the CLI alone prints with --json --------------------------------

/// Any failed command with `--json`: one object on stdout (the message also goes to stderr).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorOutput {
    pub error: String,
    /// The command's exit status: 1 a negative verdict (refused, invalid), 2 usage or operational error.
    pub exit_code: u8,
    /// The problem type the vault answered with (`urn:custody:…`, docs/JSON.md
    /// "Problem types"), when the failure is its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `custody fetch --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct FetchOutput {
    pub item: ItemId,
    /// SHA-256 of the bytes written, checked against the deposit's.
    pub sha256: String,
    pub size: u64,
    /// The leaf recording this access (written before any byte was served).
    pub access_leaf: u64,
    /// Where the clip was written (absent when it was checked and discarded, as `bench` does).
    pub out: Option<PathBuf>,
}

/// `GET /v1/holders`: who holds a share of a new deposit's data key (docs/KEYS.md §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HoldersView {
    pub cluster_id: String,
    /// Plaintext bytes per chunk the cluster takes.
    pub chunk_size: u64,
    /// Shares needed to rebuild a data key: a majority of the holders.
    pub threshold: u8,
    /// The voters, by increasing id; a deposit's share x = position + 1.
    pub holders: Vec<HolderKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HolderKey {
    pub node: u64,
    /// Hex of the node's registered X25519 share public key.
    pub share_key: String,
}

/// `POST /v1/items/{id}/access`: the fetcher's signed access statement.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AccessBody {
    pub request: String,
    /// Hex of the X25519 key the holders are to seal their shares to.
    pub fetch_key: String,
    /// Base64 Ed25519 signature over the access statement (`evidence::AccessStatement`).
    pub signature: String,
}

/// The answer to an access: recorded, and what the fetcher needs to open the item.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AccessView {
    pub cluster_id: String,
    pub item: ItemId,
    /// The leaf recording this access; the holders check it before releasing.
    pub access_leaf: u64,
    pub sha256: String,
    pub size: u64,
    pub chunk_size: u64,
    pub chunks: u64,
    pub nonce_prefix: String,
    pub threshold: u8,
    pub key_commitment: String,
    /// The item's holders: node and share x.
    pub holders: Vec<HolderShare>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct HolderShare {
    pub node: u64,
    pub x: u8,
    /// Where the holder is reached (its advertised address), when it is a member.
    pub addr: Option<String>,
}

/// `POST /v1/items/{id}/share`: release this node's share for a recorded access.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ShareRequest {
    /// The leaf recording the access.
    pub access_leaf: u64,
    /// The fetch key the access recorded (checked against the record).
    pub fetch_key: String,
}

/// One holder's share, sealed to the fetch key (HPKE, `custody/share-release/v1`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ShareRelease {
    pub node: u64,
    pub x: u8,
    /// Hex of the HPKE envelope.
    pub envelope: String,
}

/// `custody proof --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ProofWritten {
    pub item: ItemId,
    pub bundle: PathBuf,
}

/// `custody monitor --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct MonitorOutput {
    /// The tree size kept before this run (absent on the first run).
    pub old_size: Option<u64>,
    /// The newest checkpoint's tree size.
    pub size: u64,
    /// Base64 root of the newest checkpoint.
    pub root: String,
    /// The new tree extends the kept one (always true on the first run).
    pub consistent: bool,
    /// What was found, for people.
    pub detail: String,
}

/// `custody witness init --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct WitnessInitOutput {
    /// The witness's name (its key name in every cosignature line).
    pub name: String,
    /// Its cosignature verifier key, `<name>+<key id hex>+<base64(0x04 ‖ public key)>`, for those who check its cosignatures.
    pub verifier_key: String,
    /// The private key file written (mode 0600).
    pub key_file: PathBuf,
    /// The state directory made: `logs` to fill in, `state.json`.
    pub state_dir: PathBuf,
}

/// `custody keygen --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct KeygenOutput {
    /// Base64 of the 32-byte Ed25519 public key, for `registry add-person --public-key`.
    pub public_key: String,
    pub file: PathBuf,
}

/// `custody login --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TokenOutput {
    pub token: String,
    /// Seconds the token stays valid.
    pub expires_in: u64,
}

/// `custody cluster new-node --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NewNodeOutput {
    pub config: PathBuf,
}

/// `custody demo --json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DemoOutput {
    pub steps: Vec<DemoStep>,
    /// Every step held.
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DemoStep {
    pub name: String,
    pub ok: bool,
    /// What the step produced, for people.
    pub detail: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

// ---- Schemas -----------------------------------------------------------------

/// Each CLI command that takes `--json`, and the schema (in [`schemas`]) of
/// the one object it prints on success; on failure every command prints an
/// [`ErrorOutput`]. `bench --json` prints its measurement report (README, "Performance"), not typed here.
pub const CLI_JSON: &[(&str, &str)] = &[
    ("demo", "DemoOutput"),
    ("cluster init", "Initialised"),
    ("cluster new-node", "NewNodeOutput"),
    ("cluster status", "ClusterStatus"),
    ("cluster add-node", "ClusterStatus"),
    ("cluster remove-node", "ClusterStatus"),
    ("cluster keys", "KeysView"),
    ("certs init", "CertsWritten"),
    ("certs issue", "IssuedUser"),
    ("certs revoke", "CrlWritten"),
    ("certs rotate", "RotatedCert"),
    ("operator unseal", "SealStatus"),
    ("operator rekey", "Rekeyed"),
    ("operator wrap", "TokenWrapped"),
    ("certs export-p12", "P12Written"),
    ("cluster bind", "ChangeStatus"),
    ("backup", "BackupWritten"),
    ("backup verify", "BackupReport"),
    ("restore", "RestoreWritten"),
    ("deposit", "DepositReceipt"),
    ("items", "ItemList"),
    ("show", "ItemDetail"),
    ("checkpoint", "CheckpointView"),
    ("login", "TokenOutput"),
    ("scrub", "ScrubSummary"),
    ("keygen", "KeygenOutput"),
    ("witness init", "WitnessInitOutput"),
    ("request", "RequestStatus"),
    ("approve", "RequestStatus"),
    ("fetch", "FetchOutput"),
    ("hold", "RetentionView"),
    ("release", "RetentionView"),
    ("extend", "RetentionView"),
    ("purge", "PurgeView"),
    ("registry list", "RegistryView"),
    ("registry officer add", "ChangeStatus"),
    ("registry system add", "ChangeStatus"),
    ("registry revoke", "ChangeStatus"),
    ("registry roles", "ChangeStatus"),
    ("registry key", "ChangeStatus"),
    ("registry approve", "ChangeStatus"),
    ("proof", "ProofWritten"),
    ("verify", "VerifyReport"),
    ("monitor", "MonitorOutput"),
];

impl JsonSchema for ItemId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ItemId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "16 random bytes, 32 lowercase hex digits" })
    }
}

impl JsonSchema for crate::evidence::ChunkName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChunkName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 of the sealed chunk, 64 lowercase hex digits" })
    }
}

/// The JSON Schema of every shape the API serves and the CLI prints, keyed by
/// type name, with `$ref`s into `#/components/schemas/` (for OpenAPI 3.1).
pub fn schemas() -> serde_json::Map<String, serde_json::Value> {
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .for_serialize()
        .into_generator();
    macro_rules! all {
        ($($t:ty),* $(,)?) => { $( g.subschema_for::<$t>(); )* };
    }
    all!(
        Problem,
        DepositReceipt,
        ItemList,
        ItemDetail,
        RetentionView,
        PurgeView,
        ClusterStatus,
        AddMember,
        CheckpointView,
        KeysView,
        ConsistencyView,
        RequestStatus,
        ScrubSummary,
        crate::api::session::Login,
        crate::api::session::Session,
        crate::vault::nodes::NodeBinding,
        crate::api::access::FileRequest,
        crate::api::access::Signature,
        crate::vault::access::RequestRecord,
        crate::api::registry::RegistryView,
        crate::api::registry::FileChange,
        crate::api::registry::ChangeStatus,
        crate::vault::registry::PendingChange,
        crate::vault::registry::Person,
        crate::vault::registry::SourceSystem,
        crate::audit::bundle::VerifyReport,
        crate::cli::init::Initialised,
        crate::cli::init::CertsWritten,
        crate::cli::init::IssuedUser,
        crate::cli::init::CrlWritten,
        crate::cli::init::RotatedCert,
        crate::cli::init::P12Written,
        SealStatus,
        UnsealRequest,
        Rekeyed,
        TokenWrapped,
        crate::cli::backup::BackupWritten,
        crate::cli::backup::BackupReport,
        crate::cli::backup::RestoreWritten,
        ErrorOutput,
        FetchOutput,
        HoldersView,
        AccessBody,
        AccessView,
        ShareRequest,
        ShareRelease,
        ProofWritten,
        AlertDelivery,
        MonitorOutput,
        KeygenOutput,
        WitnessInitOutput,
        TokenOutput,
        NewNodeOutput,
        DemoOutput,
    );
    g.take_definitions(true)
}
