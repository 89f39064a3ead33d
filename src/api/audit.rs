//! Audit-log endpoints: the latest cosigned checkpoint, the nodes' verifier
//! keys, consistency proofs, and an item's proof bundle.

use std::sync::Arc;
use std::time::Duration;

use super::Json;
use axum::extract::{Path, Query, State};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;

use super::ApiError;
use crate::audit::bundle::{Bundle, LeafProof, BUNDLE_FORMAT, BUNDLE_VERSION};
use crate::audit::{Checkpoint, Note};
use crate::auth::Principal;
use crate::evidence::ItemId;
use crate::node::Node;
use crate::vault::{audit as tree, query};
use crate::wire::{CheckpointView, ConsistencyView, KeysView};

/// How long a proof request waits for a checkpoint that covers the item.
const PROOF_WAIT_SECS: u64 = 10;

fn latest(node: &Node) -> Result<Option<(String, Checkpoint)>, ApiError> {
    let Some(note) = query::checkpoint(node.state()).map_err(ApiError::internal)? else {
        return Ok(None);
    };
    let cp = Note::parse(&note).and_then(|n| Checkpoint::parse(&n.text)).map_err(ApiError::internal)?;
    Ok(Some((note, cp)))
}

/// The RFC 3161 token (base64 DER) on `note`, if the stored one is for it:
/// the token is read apart from the note, so a checkpoint published in
/// between is caught by the imprint and the token left out.
fn timestamp_of(node: &Node, note: &str) -> Result<Option<String>, ApiError> {
    let Some(der) = query::checkpoint_timestamp(node.state()).map_err(ApiError::internal)? else { return Ok(None) };
    let text = Note::parse(note).map_err(ApiError::internal)?.text;
    Ok(crate::audit::timestamp::token_imprint(&der, &crate::audit::timestamp::imprint(&text)).is_ok().then(|| BASE64.encode(der)))
}

pub async fn checkpoint(State(node): State<Arc<Node>>, _who: Principal) -> Result<Json<CheckpointView>, ApiError> {
    let (note, cp) = latest(&node)?.ok_or_else(|| ApiError::unavailable("no checkpoint has been published yet"))?;
    let parsed = Note::parse(&note).map_err(ApiError::internal)?;
    Ok(Json(CheckpointView {
        origin: cp.origin,
        size: cp.size,
        root: BASE64.encode(cp.root),
        signers: parsed.signatures.iter().map(|s| s.name.clone()).collect(),
        timestamp: timestamp_of(&node, &note)?,
        note,
    }))
}

pub async fn cluster_keys(State(node): State<Arc<Node>>, _who: Principal) -> Result<Json<KeysView>, ApiError> {
    let keys = query::node_keys(node.state()).map_err(ApiError::internal)?.into_iter().map(|(_, k)| k).collect();
    let ranges = crate::vault::nodes::key_ranges(node.state()).map_err(ApiError::internal)?;
    Ok(Json(KeysView { keys, ranges }))
}

#[derive(Deserialize)]
pub struct ConsistencyQuery {
    old: u64,
    new: u64,
}

pub async fn consistency(
    State(node): State<Arc<Node>>,
    _who: Principal,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let size = tree::size(node.state()).map_err(ApiError::internal)?;
    if q.old > q.new || q.new > size {
        return Err(ApiError::bad_request(format!("need old <= new <= {size}")));
    }
    let proof = tree::consistency_proof(node.state(), q.old, q.new).map_err(ApiError::internal)?;
    Ok(Json(ConsistencyView { old_size: q.old, new_size: q.new, proof: proof.iter().map(|h| BASE64.encode(h)).collect() }))
}

pub async fn proof_bundle(State(node): State<Arc<Node>>, _who: Principal, Path(id): Path<String>) -> Result<Json<Bundle>, ApiError> {
    let id: ItemId = id.parse().map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let rec = query::item(node.state(), &id).map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found(format!("no item {id}")))?;
    // Wait briefly for a checkpoint that covers the deposit (they follow records within seconds).
    let mut waited = 0;
    // Every record about the item: its deposit, requests, approvals, grants, accesses.
    let log = crate::vault::access::item_log(node.state(), &id).map_err(ApiError::internal)?;
    let newest = log.iter().copied().max().unwrap_or(rec.leaf_index);
    let (note, cp) = loop {
        match latest(&node)? {
            Some((note, cp)) if cp.size > newest => break (note, cp),
            Some((note, cp)) if cp.size > rec.leaf_index && waited >= PROOF_WAIT_SECS * 4 => break (note, cp),
            _ if waited >= PROOF_WAIT_SECS * 4 => {
                return Err(ApiError::unavailable("no published checkpoint covers this item yet; try again shortly"))
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                waited += 1;
            }
        }
    };
    let leaf = tree::leaf(node.state(), rec.leaf_index).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("deposit leaf missing"))?;
    let inclusion = tree::inclusion_proof(node.state(), rec.leaf_index, cp.size).map_err(ApiError::internal)?;
    let mut trail = Vec::new();
    let mut requests = Vec::new();
    for index in log.into_iter().filter(|i| *i != rec.leaf_index && *i < cp.size) {
        let leaf = tree::leaf(node.state(), index).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("trail leaf missing"))?;
        if let Ok(crate::audit::records::Record { body: crate::audit::records::Body::Request(r), .. }) =
            crate::audit::records::Record::from_leaf(&leaf)
        {
            requests.push(r.request);
        }
        let proof = tree::inclusion_proof(node.state(), index, cp.size).map_err(ApiError::internal)?;
        trail.push(LeafProof { index, leaf: BASE64.encode(&leaf), inclusion: proof.iter().map(|h| BASE64.encode(h)).collect() });
    }
    if crate::mutation::on(crate::mutation::Mutation::BundleOmitsLastAccess) {
        let is_access = |t: &LeafProof| {
            BASE64.decode(&t.leaf).ok().and_then(|l| crate::audit::records::Record::from_leaf(&l).ok()).is_some_and(|r| r.kind() == "access")
        };
        if let Some(last) = trail.iter().rposition(is_access) {
            trail.remove(last);
        }
    }
    // Each signature on each request, with the signer's registered key and the signed bytes,
    // so a court checks them without the vault.
    let mut approvals = Vec::new();
    for rid in requests {
        let Some(r) = crate::vault::access::request(node.state(), &rid).map_err(ApiError::internal)? else { continue };
        let signed = BASE64.encode(r.request.signing_bytes().map_err(ApiError::internal)?);
        for (signer, signature) in &r.signatures {
            let key = crate::vault::registry::person(node.state(), signer).map_err(ApiError::internal)?.map(|p| p.public_key).unwrap_or_default();
            approvals.push(serde_json::json!({ "request": rid, "signer": signer, "public_key": key, "signature": signature, "signed": signed }));
        }
    }
    // The registry records that gave each signer their key and roles, so a court traces
    // every signature to the genesis's administrators (docs/AUDIT_FORMATS.md).
    let mut signers: std::collections::BTreeSet<String> = approvals.iter().filter_map(|a| a["signer"].as_str().map(str::to_string)).collect();
    signers.insert(rec.manifest.depositor.clone());
    let mut registry = Vec::new();
    for name in &signers {
        for index in crate::vault::registry::person_leaves(node.state(), name).map_err(ApiError::internal)?.into_iter().filter(|i| *i < cp.size) {
            let leaf = tree::leaf(node.state(), index).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("registry leaf missing"))?;
            let proof = tree::inclusion_proof(node.state(), index, cp.size).map_err(ApiError::internal)?;
            registry.push(LeafProof { index, leaf: BASE64.encode(&leaf), inclusion: proof.iter().map(|h| BASE64.encode(h)).collect() });
        }
    }
    registry.sort_by_key(|r| r.index);
    // The nodes' signed count of the item's records in this tree: none may be left out.
    let head = node.item_head_note(&id, &cp).await.map_err(|e| ApiError::unavailable(format!("the item-head statement: {e}")))?;
    let timestamp = timestamp_of(&node, &note)?;
    let view = super::v1::view(&rec);
    let item = serde_json::json!({
        "item": view.item, "sha256": view.sha256, "size": view.size, "case": view.case, "system": view.system,
        "depositor": view.depositor, "retention": view.retention, "deposited_at": view.deposited_at,
        "retain_until": view.retain_until, "note": view.note,
    });
    Ok(Json(Bundle {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        checkpoint: note,
        item,
        deposit: LeafProof { index: rec.leaf_index, leaf: BASE64.encode(&leaf), inclusion: Vec::new() },
        inclusion: inclusion.iter().map(|h| BASE64.encode(h)).collect(),
        trail,
        approvals,
        registry,
        head,
        timestamp,
    }))
}
