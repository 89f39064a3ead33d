//! Access requests, approvals, grants and access records inside apply. Every
//! signature is checked here against the registry as replicated, so no node
//! can form a grant the rules do not allow.

use serde::{Deserialize, Serialize};

use super::registry::{self, Role};
use super::{audit, query, refuse, stamp, Outcome, Refusal, StateRead, Tx, VaultError};
use crate::approval::{self, AccessRequest, Action, Signatures, Standing};
use crate::audit::records::{self, Body, Record};
use crate::evidence::ItemId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Grant {
    pub approver: String,
    pub at_ms: u64,
    pub leaf_index: u64,
}

/// A request as committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestRecord {
    pub id: String,
    pub request: AccessRequest,
    /// Signer → (signed as, base64 signature).
    pub signatures: Signatures,
    pub filed_at_ms: u64,
    pub leaf_index: u64,
    pub grant: Option<Grant>,
    /// Accesses recorded under the grant so far (at most `request.max_fetches`).
    #[serde(default)]
    pub fetches: u32,
}

pub mod keys {
    pub const REQUEST_PREFIX: &[u8] = b"q/";
    pub fn request(id: &str) -> Vec<u8> {
        [REQUEST_PREFIX, id.as_bytes()].concat()
    }
    /// One key per audit record about an item, for its trail.
    pub fn item_log_prefix(item: &crate::evidence::ItemId) -> Vec<u8> {
        format!("il/{item}/").into_bytes()
    }
    pub fn item_log(item: &crate::evidence::ItemId, leaf: u64) -> Vec<u8> {
        [item_log_prefix(item), leaf.to_be_bytes().to_vec()].concat()
    }
    /// The access recorded at an audit leaf, for the holders' release check.
    pub const ACCESS_PREFIX: &[u8] = b"ac/";
    pub fn access(leaf: u64) -> Vec<u8> {
        [ACCESS_PREFIX, &leaf.to_be_bytes()].concat()
    }
}

/// An access as the holders check it before releasing their shares (docs/KEYS.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub item: ItemId,
    pub request: String,
    pub by: String,
    /// Hex of the X25519 key the fetcher signed for.
    pub fetch_key: String,
    pub at_ms: u64,
}

/// The access recorded at `leaf`, if that leaf is one.
pub fn access_at(s: &dyn StateRead, leaf: u64) -> Result<Option<AccessRecord>, VaultError> {
    let k = keys::access(leaf);
    s.get(&k)?.map(|v| serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt { key: hex::encode(&k), detail: e.to_string() })).transpose()
}

/// An access to record, as the fetcher signed it.
pub struct Access<'a> {
    pub request: &'a str,
    pub item: &'a ItemId,
    pub by: &'a str,
    pub fetch_key: &'a str,
    pub signature: &'a str,
}

pub fn request(s: &dyn StateRead, id: &str) -> Result<Option<RequestRecord>, VaultError> {
    let k = keys::request(id);
    s.get(&k)?
        .map(|v| serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), detail: e.to_string() }))
        .transpose()
}

/// Every request ever filed, in id order (the console's queue filters them).
pub fn requests(s: &dyn StateRead) -> Result<Vec<RequestRecord>, VaultError> {
    s.scan_prefix(keys::REQUEST_PREFIX)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), detail: e.to_string() })
        })
        .collect()
}

/// Leaf indices of every record about `item`, in order.
pub fn item_log(s: &dyn StateRead, item: &ItemId) -> Result<Vec<u64>, VaultError> {
    let prefix = keys::item_log_prefix(item);
    Ok(s.scan_prefix(&prefix)?.iter().filter_map(|(k, _)| k[prefix.len()..].try_into().ok().map(u64::from_be_bytes)).collect())
}

/// Appends a record about `item` and indexes it in the item's trail.
pub(super) fn append_for_item(tx: &mut Tx<'_>, item: &ItemId, record: &Record) -> Result<u64, VaultError> {
    let leaf = audit::append(tx, record)?;
    tx.put(keys::item_log(item, leaf), Vec::new());
    Ok(leaf)
}

fn put(tx: &mut Tx<'_>, rec: &RequestRecord) {
    tx.put(keys::request(&rec.id), serde_json::to_vec(rec).expect("request records serialise"));
}

/// A registered person as a signer; an entry that cannot be read is an error, never "absent".
fn signer_of(s: &dyn StateRead, name: &str) -> Result<Option<approval::Signer>, VaultError> {
    let Some(p) = registry::person(s, name)? else { return Ok(None) };
    let public_key = registry::public_key_bytes(&p.public_key)
        .map_err(|detail| VaultError::Corrupt { key: String::from_utf8_lossy(&registry::keys::person(name)).into_owned(), detail })?;
    Ok(Some(approval::Signer {
        name: p.name.clone(),
        public_key,
        officer: p.roles.contains(&Role::Officer),
        approver: p.roles.contains(&Role::Approver),
        emergency_approver: p.roles.contains(&Role::EmergencyApprover),
        revoked: p.revoked,
    }))
}

pub(super) fn file(tx: &mut Tx<'_>, req: &AccessRequest, by: &str, signature: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    if let Err(e) = req.validate() {
        return refuse(Refusal::Invalid, e);
    }
    if req.participants.first().map(String::as_str) != Some(by) {
        return refuse(Refusal::NotPermitted, "the requester files the request and is its first participant");
    }
    if query::item_purged(tx, &req.item)?.is_none() {
        return refuse(Refusal::UnknownItem, format!("no item {}", req.item));
    }
    if time_ms >= req.expires_at_ms {
        return refuse(Refusal::Expired, "the request has already expired");
    }
    if req.expires_at_ms - time_ms > crate::limits::MAX_GRANT_SECS * 1000 {
        return refuse(Refusal::Invalid, format!("a request is valid for at most {} seconds after it is filed", crate::limits::MAX_GRANT_SECS));
    }
    let id = match req.id() {
        Ok(id) => id,
        Err(e) => return refuse(Refusal::Invalid, e),
    };
    if request(tx, &id)?.is_some() {
        return refuse(Refusal::Duplicate, format!("request {id} was already filed"));
    }
    for p in &req.participants {
        match signer_of(tx, p)? {
            Some(s) if s.officer && !s.revoked => {}
            _ => return refuse(Refusal::NotRegistered, format!("{p} is not a registered, unrevoked officer: every participant must be one")),
        }
    }
    let Some(me) = signer_of(tx, by)? else { return refuse(Refusal::NotRegistered, format!("{by} is not registered")) };
    if !approval::signature_valid(req, &me.public_key, signature) {
        return refuse(Refusal::BadSignature, "the requester's signature does not verify with their registered key");
    }
    let time = stamp(tx, time_ms)?;
    let record = Body::Request(records::Request {
        item: req.item.to_string(),
        request: id.clone(),
        action: req.action.to_string(),
        officers: req.participants.clone(),
        purpose: req.purpose.clone(),
        approval_doc: req.approval_doc.clone(),
        emergency: req.emergency,
        expires_at: audit::rfc3339(req.expires_at_ms),
        by: by.to_string(),
        signature: signature.to_string(),
        max_fetches: req.max_fetches,
    });
    let leaf_index = append_for_item(tx, &req.item, &audit::record(time, record))?;
    let mut signatures = Signatures::new();
    signatures.insert(by.to_string(), signature.to_string());
    put(tx, &RequestRecord { id: id.clone(), request: req.clone(), signatures, filed_at_ms: time, leaf_index, grant: None, fetches: 0 });
    Ok(Outcome::RequestStatus { request: id, granted: false, leaf_index })
}

pub(super) fn approve(tx: &mut Tx<'_>, id: &str, by: &str, signature: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    let Some(mut rec) = request(tx, id)? else { return refuse(Refusal::UnknownRequest, format!("no request {id}")) };
    if rec.grant.is_some() {
        return refuse(Refusal::AlreadyDone, "the request is already granted");
    }
    if time_ms >= rec.request.expires_at_ms {
        return refuse(Refusal::Expired, "the request has expired");
    }
    let Some(me) = signer_of(tx, by)? else { return refuse(Refusal::NotRegistered, format!("{by} is not registered")) };
    let participant = rec.request.participants.iter().any(|p| p == by);
    let eligible = !me.revoked
        && if participant {
            me.officer
        } else if rec.request.emergency {
            me.emergency_approver
        } else {
            me.approver
        };
    if !eligible {
        let role = if rec.request.emergency { "an emergency-approver" } else { "an approver" };
        return refuse(
            Refusal::NotPermitted,
            format!("{by} may not sign this request: not a participating officer, nor {role} who is not a participant"),
        );
    }
    if !approval::signature_valid(&rec.request, &me.public_key, signature) {
        return refuse(Refusal::BadSignature, "the signature does not verify with the signer's registered key over this request");
    }
    if rec.signatures.contains_key(by) {
        return refuse(Refusal::AlreadyDone, format!("{by} has already signed"));
    }
    let time = stamp(tx, time_ms)?;
    rec.signatures.insert(by.to_string(), signature.to_string());
    let item = rec.request.item;
    let record = Body::Approval(records::Approval {
        item: item.to_string(),
        request: id.to_string(),
        signer: by.to_string(),
        signed_as: if participant { records::SignedAs::Participant } else { records::SignedAs::Approver },
        signature: signature.to_string(),
    });
    let mut leaf_index = append_for_item(tx, &item, &audit::record(time, record))?;
    // Everyone the rules may look up, read first: a corrupt entry is an error, not "unregistered".
    let mut signers = std::collections::BTreeMap::new();
    for n in rec.request.participants.iter().chain(rec.signatures.keys()) {
        signers.insert(n.clone(), signer_of(tx, n)?);
    }
    let standing = approval::evaluate(&rec.request, &rec.signatures, &|n| signers.get(n).cloned().flatten());
    let granted = match standing {
        Ok(Standing::Granted(proof)) => {
            let r = &rec.request;
            let record = Body::Grant(records::Grant {
                item: item.to_string(),
                request: id.to_string(),
                officers: r.participants.clone(),
                approver: proof.approver().to_string(),
                action: r.action.to_string(),
                expires_at: audit::rfc3339(r.expires_at_ms),
                purpose: r.purpose.clone(),
                approval_doc: r.approval_doc.clone(),
                emergency: r.emergency,
                max_fetches: r.max_fetches,
            });
            leaf_index = append_for_item(tx, &item, &audit::record(time, record))?;
            rec.grant = Some(Grant { approver: proof.approver().to_string(), at_ms: time, leaf_index });
            true
        }
        Ok(Standing::Pending(_)) => false,
        Err(e) => return refuse(Refusal::NotRegistered, e),
    };
    put(tx, &rec);
    Ok(Outcome::RequestStatus { request: id.to_string(), granted, leaf_index })
}

/// Why a granted request no longer allows anything, if it does not: expired,
/// used up, or one of its signers revoked since (which ends it).
pub(super) fn grant_ended(tx: &dyn StateRead, rec: &RequestRecord, time_ms: u64) -> Result<Option<(Refusal, String)>, VaultError> {
    if rec.grant.is_none() {
        return Ok(Some((Refusal::NotGranted, "the request has not been granted".into())));
    }
    if time_ms >= rec.request.expires_at_ms {
        return Ok(Some((Refusal::Expired, "the grant has expired".into())));
    }
    if rec.fetches >= rec.request.max_fetches {
        return Ok(Some((Refusal::GrantSpent, format!("the grant allowed {} fetch(es), all used", rec.request.max_fetches))));
    }
    for signer in rec.signatures.keys() {
        if signer_of(tx, signer)?.is_none_or(|s| s.revoked) {
            return Ok(Some((Refusal::NotGranted, format!("{signer}, who signed the grant, has been revoked: the grant has ended"))));
        }
    }
    Ok(None)
}

/// The access record (art. 14(4)), committed before any byte is served.
pub(super) fn record_access(tx: &mut Tx<'_>, a: &Access<'_>, time_ms: u64) -> Result<Outcome, VaultError> {
    let (id, item, by) = (a.request, a.item, a.by);
    let Some(mut rec) = request(tx, id)? else { return refuse(Refusal::UnknownRequest, format!("no request {id}")) };
    if let Some((kind, why)) = grant_ended(tx, &rec, time_ms)? {
        return refuse(kind, why);
    }
    if rec.request.item != *item {
        return refuse(Refusal::WrongGrant, "the grant is for another item");
    }
    if !rec.request.participants.iter().any(|p| p == by) {
        return refuse(Refusal::NotPermitted, format!("{by} is not a participant of this grant"));
    }
    if rec.request.action == Action::Purge {
        return refuse(Refusal::WrongGrant, "a purge grant does not allow reading the clip");
    }
    if query::item_purged(tx, item)? == Some(true) {
        return refuse(Refusal::Purged, "the item was purged after its retention: there is nothing to read");
    }
    let key = match signer_of(tx, by)? {
        Some(s) if !s.revoked => s.public_key,
        _ => return refuse(Refusal::NotRegistered, format!("{by} is not an unrevoked registered person")),
    };
    // The fetcher's own signature names the key the holders release to: a
    // leader cannot record an access for someone else with a key it holds.
    let statement =
        crate::evidence::AccessStatement { item: *item, request: id.to_string(), fetcher: by.to_string(), fetch_key: a.fetch_key.to_string() };
    let Ok(signed) = statement.signing_bytes() else { return refuse(Refusal::Invalid, "the fetch key is not the hex of a 32-byte X25519 key") };
    let signature_ok = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, a.signature)
        .is_ok_and(|sig| crate::crypto::verify_ed25519(&key, &signed, &sig));
    if !signature_ok {
        return refuse(Refusal::BadSignature, format!("the access statement is not signed by {by}'s registered key"));
    }
    let time = stamp(tx, time_ms)?;
    rec.fetches += 1;
    let r = &rec.request;
    let record = Body::Access(records::Access {
        item: item.to_string(),
        request: id.to_string(),
        officers: r.participants.clone(),
        purpose: r.purpose.clone(),
        approval_doc: r.approval_doc.clone(),
        action: r.action.to_string(),
        by: by.to_string(),
        emergency: r.emergency,
        fetch: rec.fetches,
        max_fetches: r.max_fetches,
        fetch_key: a.fetch_key.to_string(),
        signature: a.signature.to_string(),
    });
    let leaf_index = append_for_item(tx, item, &audit::record(time, record))?;
    put(tx, &rec);
    let access = AccessRecord { item: *item, request: id.to_string(), by: by.to_string(), fetch_key: a.fetch_key.to_string(), at_ms: time };
    tx.put_json(keys::access(leaf_index), &access);
    Ok(Outcome::AccessRecorded { leaf_index })
}
