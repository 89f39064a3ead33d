//! Why apply refused a command: a stable machine name for each kind of
//! refusal, which the API turns into the problem type `urn:custody:<name>`
//! (docs/JSON.md, "Problem types"), beside a sentence for people.

use serde::{Deserialize, Serialize};

/// The kinds of refusal. The names are a contract: scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The cluster has not applied its configuration yet.
    NotConfigured,
    /// The command is malformed or out of bounds: a manifest, a request, a
    /// checkpoint note, a key, a period, a text.
    Invalid,
    /// A person or source system the command names is not registered, is
    /// revoked, or does not hold the role the command needs of them.
    NotRegistered,
    /// The person is registered but may not do this.
    NotPermitted,
    /// A signature does not verify with the signer's registered key.
    BadSignature,
    /// No such item.
    UnknownItem,
    /// No such access request.
    UnknownRequest,
    /// No such pending registry change.
    UnknownChange,
    /// It was filed or exists already (an item, a chunk, a request, a change, a person's key).
    Duplicate,
    /// It is done already (signed, granted, on hold, not on hold, purged, re-shared).
    AlreadyDone,
    /// The request or proposal has expired.
    Expired,
    /// No standing grant covers this: not granted yet, or a signer of it revoked since.
    NotGranted,
    /// The grant allowed so many fetches, and all are used.
    GrantSpent,
    /// The grant is for another item or another action.
    WrongGrant,
    /// No access is recorded that this share release or read could be for
    /// (none at that leaf on this node, another user's, or too old).
    NoAccess,
    /// The item was purged after its retention.
    Purged,
    /// The item is inside its retention period (art. 14(7), 15(3)).
    InsideRetention,
    /// The item is on legal hold.
    OnHold,
    /// Retention only grows.
    RetentionShrinks,
    /// The voters changed: the data key's holders are not the voters (deposit again).
    MembershipChanged,
    /// The checkpoint is not this cluster's tree.
    CheckpointMismatch,
    /// The checkpoint is signed by fewer voters than a majority.
    TooFewSignatures,
    /// The last two administrators cannot be removed or lose the role.
    LastAdministrators,
    /// The record the command would append cannot be written.
    Unrecordable,
}

impl Refusal {
    /// Every kind, for the documentation check.
    pub const ALL: [Refusal; 24] = [
        Refusal::NotConfigured,
        Refusal::Invalid,
        Refusal::NotRegistered,
        Refusal::NotPermitted,
        Refusal::BadSignature,
        Refusal::UnknownItem,
        Refusal::UnknownRequest,
        Refusal::UnknownChange,
        Refusal::Duplicate,
        Refusal::AlreadyDone,
        Refusal::Expired,
        Refusal::NotGranted,
        Refusal::GrantSpent,
        Refusal::WrongGrant,
        Refusal::NoAccess,
        Refusal::Purged,
        Refusal::InsideRetention,
        Refusal::OnHold,
        Refusal::RetentionShrinks,
        Refusal::MembershipChanged,
        Refusal::CheckpointMismatch,
        Refusal::TooFewSignatures,
        Refusal::LastAdministrators,
        Refusal::Unrecordable,
    ];

    /// The stable machine name (the problem type's last part).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "not-configured",
            Refusal::Invalid => "invalid",
            Refusal::NotRegistered => "not-registered",
            Refusal::NotPermitted => "not-permitted",
            Refusal::BadSignature => "bad-signature",
            Refusal::UnknownItem => "unknown-item",
            Refusal::UnknownRequest => "unknown-request",
            Refusal::UnknownChange => "unknown-change",
            Refusal::Duplicate => "duplicate",
            Refusal::AlreadyDone => "already-done",
            Refusal::Expired => "expired",
            Refusal::NotGranted => "not-granted",
            Refusal::GrantSpent => "grant-spent",
            Refusal::WrongGrant => "wrong-grant",
            Refusal::NoAccess => "no-access",
            Refusal::Purged => "purged",
            Refusal::InsideRetention => "inside-retention",
            Refusal::OnHold => "on-hold",
            Refusal::RetentionShrinks => "retention-shrinks",
            Refusal::MembershipChanged => "membership-changed",
            Refusal::CheckpointMismatch => "checkpoint-mismatch",
            Refusal::TooFewSignatures => "too-few-signatures",
            Refusal::LastAdministrators => "last-administrators",
            Refusal::Unrecordable => "unrecordable",
        }
    }

    /// A short title for people.
    pub fn title(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "Not configured",
            Refusal::Invalid => "Invalid",
            Refusal::NotRegistered => "Not registered",
            Refusal::NotPermitted => "Not permitted",
            Refusal::BadSignature => "Bad signature",
            Refusal::UnknownItem => "Unknown item",
            Refusal::UnknownRequest => "Unknown request",
            Refusal::UnknownChange => "Unknown change",
            Refusal::Duplicate => "Duplicate",
            Refusal::AlreadyDone => "Already done",
            Refusal::Expired => "Expired",
            Refusal::NotGranted => "Not granted",
            Refusal::GrantSpent => "Grant spent",
            Refusal::WrongGrant => "Wrong grant",
            Refusal::NoAccess => "No recorded access",
            Refusal::Purged => "Purged",
            Refusal::InsideRetention => "Inside retention",
            Refusal::OnHold => "On legal hold",
            Refusal::RetentionShrinks => "Retention only grows",
            Refusal::MembershipChanged => "Membership changed",
            Refusal::CheckpointMismatch => "Checkpoint mismatch",
            Refusal::TooFewSignatures => "Too few signatures",
            Refusal::LastAdministrators => "Last administrators",
            Refusal::Unrecordable => "Unrecordable",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_serde_name_and_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/JSON.md")).unwrap();
        for r in Refusal::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::Value::String(r.name().into()));
            assert!(doc.contains(&format!("`urn:custody:{}`", r.name())), "docs/JSON.md does not list urn:custody:{}", r.name());
        }
    }
}
