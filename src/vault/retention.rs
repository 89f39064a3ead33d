//! Retention (art. 14(7)): it only ever grows. A legal hold keeps an item
//! past its retention until released; an extension moves `retain_until`
//! later, never earlier.

use serde::{Deserialize, Serialize};

use super::registry::{self, Role};
use super::{access, audit, keys, query, refuse, stamp, ClusterConfig, ItemRecord, Outcome, Refusal, Tx, VaultError};
use crate::audit::records::{self, Body};
use crate::evidence::{ItemId, Retention};

/// How an item was lawfully destroyed after its retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub at_ms: u64,
    pub by: String,
    pub request: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: String,
    pub by: String,
    pub since_ms: u64,
}

fn may(tx: &Tx<'_>, by: &str, roles: &[Role]) -> Result<bool, VaultError> {
    Ok(registry::person(tx, by)?.is_some_and(|p| roles.iter().any(|r| p.has(*r))))
}

fn save(tx: &mut Tx<'_>, rec: &ItemRecord) {
    tx.put(keys::item(&rec.manifest.item), serde_json::to_vec(rec).expect("item records serialise"));
}

fn updated(rec: &ItemRecord, leaf_index: u64) -> Outcome {
    Outcome::RetentionChanged { item: rec.manifest.item, retain_until_ms: rec.retain_until_ms, hold: rec.hold.is_some(), leaf_index }
}

/// Places a legal hold (officers, approvers and administrators may).
pub(super) fn hold(tx: &mut Tx<'_>, item: &ItemId, by: &str, reason: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    if let Err(e) = crate::evidence::check_text("reason", reason, true) {
        return refuse(Refusal::Invalid, e);
    }
    if !may(tx, by, &[Role::Officer, Role::Approver, Role::EmergencyApprover, Role::Admin])? {
        return refuse(Refusal::NotPermitted, format!("{by} may not place a legal hold"));
    }
    let Some(mut rec) = query::item(tx, item)? else { return refuse(Refusal::UnknownItem, format!("no item {item}")) };
    if rec.hold.is_some() {
        return refuse(Refusal::AlreadyDone, "the item is already on hold");
    }
    let time = stamp(tx, time_ms)?;
    rec.hold = Some(Hold { reason: reason.to_string(), by: by.to_string(), since_ms: time });
    let record = Body::Hold(records::Hold::Hold { item: item.to_string(), reason: reason.to_string(), by: by.to_string() });
    let leaf = access::append_for_item(tx, item, &audit::record(time, record))?;
    save(tx, &rec);
    Ok(updated(&rec, leaf))
}

/// Releases a legal hold (approvers and administrators only).
pub(super) fn release(tx: &mut Tx<'_>, item: &ItemId, by: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    if !may(tx, by, &[Role::Approver, Role::Admin])? {
        return refuse(Refusal::NotPermitted, format!("{by} may not release a legal hold"));
    }
    let Some(mut rec) = query::item(tx, item)? else { return refuse(Refusal::UnknownItem, format!("no item {item}")) };
    if rec.hold.is_none() {
        return refuse(Refusal::AlreadyDone, "the item is not on hold");
    }
    let time = stamp(tx, time_ms)?;
    rec.hold = None;
    let record = Body::Hold(records::Hold::Release { item: item.to_string(), by: by.to_string() });
    let leaf = access::append_for_item(tx, item, &audit::record(time, record))?;
    save(tx, &rec);
    Ok(updated(&rec, leaf))
}

/// Moves an item to a longer retention class. Shortening is refused.
pub(super) fn extend(tx: &mut Tx<'_>, item: &ItemId, to: Retention, by: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    if !may(tx, by, &[Role::Officer, Role::Approver, Role::EmergencyApprover, Role::Admin])? {
        return refuse(Refusal::NotPermitted, format!("{by} may not extend retention"));
    }
    let Some(config) = tx.get_json::<ClusterConfig>(keys::CONFIG)? else {
        return refuse(Refusal::NotConfigured, "the cluster is not configured yet");
    };
    let Some(mut rec) = query::item(tx, item)? else { return refuse(Refusal::UnknownItem, format!("no item {item}")) };
    let until = rec.deposited_at_ms.saturating_add(config.retention.period_secs(to).saturating_mul(1000));
    if until <= rec.retain_until_ms {
        return refuse(
            Refusal::RetentionShrinks,
            format!("retention only grows: {to} would end at or before the current {}", audit::rfc3339(rec.retain_until_ms)),
        );
    }
    let time = stamp(tx, time_ms)?;
    let from = rec.manifest.meta.retention;
    rec.manifest.meta.retention = to;
    rec.retain_until_ms = until;
    let r = Body::Retention(records::RetentionChange {
        item: item.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        retain_until: audit::rfc3339(until),
        by: by.to_string(),
    });
    let leaf = access::append_for_item(tx, item, &audit::record(time, r))?;
    save(tx, &rec);
    Ok(updated(&rec, leaf))
}

/// Lawful destruction (crypto-shredding): with a granted `purge` request, after
/// retention, with no hold. The wrapped data key is destroyed and the chunks
/// are no longer named by any manifest (every node deletes them); metadata and
/// the audit trail stay, with a `purge` record.
pub(super) fn purge(tx: &mut Tx<'_>, item: &ItemId, request: &str, by: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    let Some(req) = access::request(tx, request)? else { return refuse(Refusal::UnknownRequest, format!("no request {request}")) };
    if req.grant.is_none() || req.request.action != crate::approval::Action::Purge {
        return refuse(Refusal::WrongGrant, "purging needs a granted `purge` request");
    }
    if let Some((kind, why)) = access::grant_ended(tx, &req, time_ms)? {
        return refuse(kind, why);
    }
    if req.request.item != *item {
        return refuse(Refusal::WrongGrant, "the grant is for another item");
    }
    if !req.request.participants.iter().any(|p| p == by) {
        return refuse(Refusal::NotPermitted, format!("{by} is not a participant of this grant"));
    }
    let Some(mut rec) = query::item(tx, item)? else { return refuse(Refusal::UnknownItem, format!("no item {item}")) };
    if rec.purged.is_some() {
        return refuse(Refusal::AlreadyDone, "the item was already purged");
    }
    if rec.hold.is_some() {
        return refuse(Refusal::OnHold, "the item is on legal hold: nothing may be destroyed");
    }
    let time = stamp(tx, time_ms)?;
    if time < rec.retain_until_ms {
        return refuse(
            Refusal::InsideRetention,
            format!("the item is inside its retention period until {} (art. 14(7), 15(3))", audit::rfc3339(rec.retain_until_ms)),
        );
    }
    let chunks: Vec<crate::evidence::ChunkName> = rec.manifest.chunks.iter().map(|c| c.name).collect();
    for c in &chunks {
        tx.delete(keys::chunk(c));
    }
    // Every holder's share goes from the state: once a majority of nodes applied
    // this, fewer than the threshold of shares exist anywhere live.
    for h in &mut rec.manifest.holders {
        h.envelope = String::new();
        h.parts.clear();
    }
    tx.delete(super::reshare::keys::pending(item));
    rec.purged = Some(Purged { at_ms: time, by: by.to_string(), request: request.to_string() });
    let r = Body::Purge(records::Purge {
        item: item.to_string(),
        request: request.to_string(),
        by: by.to_string(),
        officers: req.request.participants.clone(),
        chunks: chunks.len() as u64,
        shares_destroyed: rec.manifest.holders.len() as u64,
    });
    let leaf_index = access::append_for_item(tx, item, &audit::record(time, r))?;
    save(tx, &rec);
    Ok(Outcome::Purged { item: *item, leaf_index, chunks })
}
