//! The audit log's leaf records as Rust types (docs/AUDIT_FORMATS.md, "Leaf
//! records"): one type per kind, one canonical encoding. Apply builds a
//! [`Record`] and appends [`Record::to_leaf`]; the proof bundle's verifier,
//! the snapshot check and the trail read leaves back with
//! [`Record::from_leaf`]. Nothing builds or reads a leaf by field name
//! elsewhere, so writer and readers cannot drift apart.
//!
//! The encoding is serde's, through `serde_json::Value`, printed as RFC 8785
//! canonical JSON ([`super::jcs`]): field order in these structs does not
//! matter, an `Option` skipped when `None` is absent from the leaf, one not
//! skipped is `null`. [`Record::from_leaf`] accepts a leaf only if encoding
//! what it decoded gives back exactly its bytes: a leaf with a field no type
//! here names, a missing field, or bytes that are not canonical is refused
//! rather than read as something it does not say.
//!
//! This module lives in `audit/` because the leaf format is what a court
//! relies on, and the verifier must build from `audit/` alone: it imports
//! nothing from `evidence/`, `approval/` or `vault/`. Values whose vocabulary
//! those modules own (item ids, actions, retention classes, roles) are carried
//! here as the strings the log holds; a signed document the log embeds whole
//! (a registry proposal, a node binding) is carried as the JSON it is, and its
//! owner (`vault::registry`, `vault::nodes`) decodes it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jcs::{to_canonical_bytes, JcsError};

/// Version of the leaf record format (field `v`).
pub const RECORD_VERSION: u64 = 2;

/// One leaf: `v`, `time` and, tagged by `kind`, what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub v: u64,
    /// RFC 3339 UTC with milliseconds, stamped by the leader.
    pub time: String,
    #[serde(flatten)]
    pub body: Body,
}

/// What a record says, by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Cluster(Cluster),
    Membership(Membership),
    Registry(Registry),
    Deposit(Deposit),
    Request(Request),
    Approval(Approval),
    Grant(Grant),
    Access(Access),
    Hold(Hold),
    Retention(RetentionChange),
    Scrub(Scrub),
    Reshare(Reshare),
    Purge(Purge),
}

/// Why a leaf is not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a leaf record: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("no canonical form: {0}")]
    Encode(#[from] JcsError),
    #[error("not the canonical encoding of the record it decodes to (a field unknown to format v{RECORD_VERSION}, or bytes not in RFC 8785 form)")]
    NotCanonical,
}

impl Record {
    /// A record of the current format version.
    pub fn new(time: String, body: Body) -> Self {
        Record { v: RECORD_VERSION, time, body }
    }

    /// The leaf bytes: the record as RFC 8785 canonical JSON.
    pub fn to_leaf(&self) -> Result<Vec<u8>, JcsError> {
        to_canonical_bytes(&serde_json::to_value(self)?)
    }

    /// Reads a leaf. Refused unless the leaf is exactly the canonical
    /// encoding of the record it decodes to.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, RecordError> {
        // A leaf that names a member twice is never its record's canonical
        // encoding (that is written from a map), so the comparison refuses
        // it; the strict reader only names the reason, off the hot path.
        let r: Record = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => return Err(crate::strict::value_from_slice(bytes).err().unwrap_or(e).into()),
        };
        if r.to_leaf()? != bytes {
            return Err(match crate::strict::value_from_slice(bytes) {
                Err(e) => RecordError::Decode(e),
                Ok(_) => RecordError::NotCanonical,
            });
        }
        Ok(r)
    }

    /// The record's `kind`, as the leaf spells it.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Body::Cluster(_) => "cluster",
            Body::Membership(_) => "membership",
            Body::Registry(_) => "registry",
            Body::Deposit(_) => "deposit",
            Body::Request(_) => "request",
            Body::Approval(_) => "approval",
            Body::Grant(_) => "grant",
            Body::Access(_) => "access",
            Body::Hold(_) => "hold",
            Body::Retention(_) => "retention",
            Body::Scrub(_) => "scrub",
            Body::Reshare(_) => "reshare",
            Body::Purge(_) => "purge",
        }
    }

    /// The item the record is about, if it is about one.
    pub fn item(&self) -> Option<&str> {
        match &self.body {
            Body::Deposit(d) => Some(&d.statement.item),
            Body::Request(r) => Some(&r.item),
            Body::Approval(a) => Some(&a.item),
            Body::Grant(g) => Some(&g.item),
            Body::Access(a) => Some(&a.item),
            Body::Hold(Hold::Hold { item, .. } | Hold::Release { item, .. }) => Some(item),
            Body::Retention(r) => Some(&r.item),
            Body::Scrub(s) => s.item.as_deref(),
            Body::Reshare(r) => Some(&r.item),
            Body::Purge(p) => Some(&p.item),
            Body::Cluster(_) | Body::Membership(_) | Body::Registry(_) => None,
        }
    }

    /// The request the record is about, if it is about one.
    pub fn request(&self) -> Option<&str> {
        match &self.body {
            Body::Request(r) => Some(&r.request),
            Body::Approval(a) => Some(&a.request),
            Body::Grant(g) => Some(&g.request),
            Body::Access(a) => Some(&a.request),
            Body::Purge(p) => Some(&p.request),
            _ => None,
        }
    }
}

/// `cluster`: the settings a cluster was formed with (the first leaf).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub cluster_id: String,
    pub origin: String,
    pub standard_retention_secs: u64,
    pub important_retention_secs: u64,
    /// True when retention was shortened for tests.
    pub dev: bool,
}

/// `membership`: the voters and learners after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: Vec<MemberId>,
    pub learners: Vec<MemberId>,
}

/// A node id in a membership record: an integer, or (for an id of 2^53 or
/// more, which the API refuses to add) its decimal string, so that the
/// record can still be written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemberId {
    Id(u64),
    Text(String),
}

impl MemberId {
    pub fn of(id: u64) -> Self {
        if id <= super::jcs::MAX_SAFE_INTEGER {
            MemberId::Id(id)
        } else {
            MemberId::Text(id.to_string())
        }
    }
}

/// `registry`: a change to the registry, by `subject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "subject", rename_all = "snake_case")]
pub enum Registry {
    /// A change to people filed by one administrator, not yet applied.
    Proposal(Filed),
    Person(Applied<PersonAction>),
    System(Applied<SystemAction>),
    Node(Applied<NodeAction>),
}

/// `registry` / `proposal`: a filed change waiting for a second administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filed {
    /// The change's id.
    pub change: String,
    pub by: String,
    /// `by`'s base64 Ed25519 signature over the proposal's signing bytes.
    pub signature: String,
    /// The proposal as signed (`vault::registry::Proposal`).
    pub proposal: Value,
}

/// An applied registry change: what changed, who filed it, and (for every
/// change but the initial registry's) what the administrators signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied<A> {
    /// The administrator who filed it, or `cluster init` for the initial registry.
    pub by: String,
    #[serde(flatten)]
    pub action: A,
    /// The change's id (absent from the initial registry's records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The proposal as signed (`vault::registry::Proposal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Vec<AdminSignature>>,
}

impl Applied<()> {
    /// The same filing and signatures, for `action`.
    pub fn with<A>(&self, action: A) -> Applied<A> {
        Applied { by: self.by.clone(), action, change: self.change.clone(), proposal: self.proposal.clone(), signatures: self.signatures.clone() }
    }
}

/// One administrator's signature on a registry change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSignature {
    pub by: String,
    pub signature: String,
}

/// `registry` / `person`, by `action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PersonAction {
    Add {
        name: String,
        badge: String,
        unit: String,
        /// Role names (`officer`, `approver`, …) in the registry's order.
        roles: Vec<String>,
        /// Base64 of the 32-byte Ed25519 public key.
        public_key: String,
    },
    Revoke {
        name: String,
    },
    SetRoles {
        name: String,
        roles: Vec<String>,
    },
    ChangeKey {
        name: String,
        public_key: String,
    },
}

impl PersonAction {
    /// The person the change is about.
    pub fn name(&self) -> &str {
        match self {
            PersonAction::Add { name, .. }
            | PersonAction::Revoke { name }
            | PersonAction::SetRoles { name, .. }
            | PersonAction::ChangeKey { name, .. } => name,
        }
    }
}

/// `registry` / `system`: a source video system filed (art. 12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum SystemAction {
    Add { id: String, filing: String, operator: String, location: String },
}

/// `registry` / `node`: a node's keys bound (docs/KEYS.md §7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum NodeAction {
    Bind {
        node: u64,
        checkpoint_key: String,
        session_key: String,
        share_key: String,
        /// Hex SHA-256 of the node certificate's DER.
        certificate_sha256: String,
        /// The whole binding (`vault::nodes::NodeBinding`), in the genesis's
        /// records; a signed record carries it inside its `proposal`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binding: Option<Value>,
    },
}

/// `deposit`: the deposit statement the depositor signed, then what apply adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    #[serde(flatten)]
    pub statement: DepositStatement,
    pub retain_until: String,
    /// The depositor's base64 Ed25519 signature over the statement.
    pub signature: String,
}

/// What a depositor signs (`"custody/deposit/v1\n"` ‖ its canonical JSON):
/// the `deposit` record without `v`, `kind`, `time`, `retain_until` and
/// `signature`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositStatement {
    /// The item id, 32 hex.
    pub item: String,
    /// Hex SHA-256 of the plaintext clip.
    pub sha256: String,
    pub size: u64,
    pub chunk_size: u64,
    /// The number of chunks.
    pub chunks: u64,
    pub chunks_sha256: String,
    pub nonce_prefix: String,
    pub holders: Vec<ListedHolder>,
    pub threshold: u8,
    pub key_commitment: String,
    pub case: String,
    pub system: String,
    /// `standard` or `important`.
    pub retention: String,
    pub depositor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DepositStatement {
    /// The canonical JSON the depositor signs (after the context line).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, JcsError> {
        to_canonical_bytes(&serde_json::to_value(self)?)
    }
}

/// A holder of an item's key as records list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedHolder {
    pub node: u64,
    pub x: u8,
    /// Hex of the holder's registered X25519 share key.
    pub share_key: String,
}

/// `request`: an access request filed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub item: String,
    pub request: String,
    pub action: String,
    /// The participants, requester first.
    pub officers: Vec<String>,
    pub purpose: String,
    pub approval_doc: String,
    pub emergency: bool,
    pub expires_at: String,
    /// The requester.
    pub by: String,
    pub signature: String,
    pub max_fetches: u32,
}

/// `approval`: a signature on a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub item: String,
    pub request: String,
    pub signer: String,
    #[serde(rename = "as")]
    pub signed_as: SignedAs,
    pub signature: String,
}

/// What a signer of a request signed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedAs {
    Participant,
    Approver,
}

/// `grant`: every participant and an eligible approver signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub item: String,
    pub request: String,
    pub officers: Vec<String>,
    pub approver: String,
    pub action: String,
    pub expires_at: String,
    pub purpose: String,
    pub approval_doc: String,
    pub emergency: bool,
    pub max_fetches: u32,
}

/// `access`: an access under a grant, committed before any share is released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub item: String,
    pub request: String,
    pub officers: Vec<String>,
    pub purpose: String,
    pub approval_doc: String,
    pub action: String,
    /// The participant who fetched.
    pub by: String,
    pub emergency: bool,
    /// Which of the grant's fetches this is, from 1.
    pub fetch: u32,
    pub max_fetches: u32,
    /// Hex of the X25519 key the holders seal their shares to.
    pub fetch_key: String,
    /// `by`'s base64 Ed25519 signature over the access statement.
    pub signature: String,
}

/// `hold`, by `action`: a legal hold placed or released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Hold {
    Hold { item: String, reason: String, by: String },
    Release { item: String, by: String },
}

/// `retention`: an item moved to a longer retention class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionChange {
    pub item: String,
    pub from: String,
    pub to: String,
    pub retain_until: String,
    pub by: String,
}

/// `scrub`: what a node's scrubber found on its own disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scrub {
    pub node: u64,
    pub chunk: String,
    /// The chunk's item; `null` (not absent) when no manifest names the chunk.
    pub item: Option<String>,
    pub found: Finding,
    pub repaired: bool,
}

/// What a scrubber found wrong with a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Corrupt,
    Missing,
}

/// `reshare`: the current voters hold an item's key from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshare {
    pub item: String,
    /// The old holders' x-coordinates whose sub-shares the new holders combine.
    pub dealers: Vec<u8>,
    pub holders: Vec<ListedHolder>,
    pub threshold: u8,
}

/// `purge`: an item lawfully destroyed after its retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    pub item: String,
    pub request: String,
    pub by: String,
    pub officers: Vec<String>,
    /// The number of chunks destroyed.
    pub chunks: u64,
    /// The number of holders whose share envelopes were emptied.
    pub shares_destroyed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_reads_back_only_if_it_is_exactly_a_records_encoding() {
        let r = Record::new(
            "2027-01-15T08:00:00.000Z".into(),
            Body::Scrub(Scrub { node: 2, chunk: "ab".repeat(32), item: None, found: Finding::Missing, repaired: false }),
        );
        let leaf = r.to_leaf().unwrap();
        assert_eq!(
            String::from_utf8(leaf.clone()).unwrap(),
            format!(
                r#"{{"chunk":"{}","found":"missing","item":null,"kind":"scrub","node":2,"repaired":false,"time":"2027-01-15T08:00:00.000Z","v":2}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(Record::from_leaf(&leaf).unwrap(), r);
        let text = String::from_utf8(leaf).unwrap();
        for bad in [
            text.replace(r#""repaired":false"#, r#""repaired":false,"zz":1"#),
            text.replace(r#""item":null,"#, ""),
            text.replace(r#""kind":"scrub""#, r#""kind":"scrubbed""#),
            text.replace(r#""node":2"#, r#""node": 2"#),
            text.replace(r#","v":2"#, r#","v":2.5"#),
            text.replace(r#""found":"missing""#, r#""found":"corrupt","found":"missing""#),
            text.replace(r#""item":null"#, r#""item":null,"item":null"#),
        ] {
            assert!(Record::from_leaf(bad.as_bytes()).is_err(), "{bad}");
        }
        let twice = text.replace(r#""found":"missing""#, r#""found":"corrupt","found":"missing""#);
        assert!(Record::from_leaf(twice.as_bytes()).unwrap_err().to_string().contains("duplicate key `found`"));
    }
}
