//! Re-sharing inside apply (docs/KEYS.md §4.4): when the voters change, each
//! old holder deals its share of an item's data key anew over the new voters,
//! one sub-share sealed to each (Desmedt–Jajodia). Once a threshold of old
//! holders dealt, the new voters become the holders, each combining the
//! sub-shares dealt to it; the old holders' envelopes are gone. Nobody, the
//! new holders included, sees more than their own share.

use serde::{Deserialize, Serialize};

use super::{access, audit, query, refuse, stamp, Outcome, Refusal, StateRead, Tx, VaultError};
use crate::audit::records::{self, Body};
use crate::evidence::{Holder, ItemId, SubShare};

pub mod keys {
    /// A re-share of an item still gathering contributions.
    pub fn pending(item: &crate::evidence::ItemId) -> Vec<u8> {
        format!("rs/{item}").into_bytes()
    }
}

/// Contributions so far to re-sharing an item over `voters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub voters: Vec<u64>,
    /// Hex share keys of `voters`, as registered when the re-share began.
    pub share_keys: Vec<String>,
    /// Old holder x → its sub-share envelopes, one per voter.
    pub dealt: std::collections::BTreeMap<u8, Vec<String>>,
}

pub fn pending(s: &dyn StateRead, item: &ItemId) -> Result<Option<Pending>, VaultError> {
    let k = keys::pending(item);
    s.get(&k)?
        .map(|v| serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), detail: e.to_string() }))
        .transpose()
}

/// Do `voters`, with these registered share keys, hold `m`'s key already? Not when
/// the voters changed, nor when a holder's key was replaced (its file was lost).
pub fn held_by(m: &crate::evidence::Manifest, voters: &[u64], share_keys: &[String]) -> bool {
    m.holders.len() == voters.len() && m.holders.iter().zip(voters.iter().zip(share_keys)).all(|(h, (v, k))| h.node == *v && h.share_key == *k)
}

/// Old holder `from` deals its share of `item` over `voters`.
pub(super) fn contribute(
    tx: &mut Tx<'_>,
    item: &ItemId,
    from: u64,
    voters: &[u64],
    envelopes: &[String],
    time_ms: u64,
) -> Result<Outcome, VaultError> {
    let Some(mut rec) = query::item(tx, item)? else { return refuse(Refusal::UnknownItem, format!("no item {item}")) };
    if rec.purged.is_some() {
        return refuse(Refusal::Purged, "the item was purged: there is nothing to re-share");
    }
    let current = query::voters(tx)?;
    if current != voters {
        return refuse(Refusal::MembershipChanged, format!("the voters are {current:?}, not {voters:?}"));
    }
    let m = &rec.manifest;
    let mut share_keys = Vec::with_capacity(voters.len());
    for v in voters {
        match query::share_key(tx, *v)? {
            Some(k) => share_keys.push(hex::encode(k)),
            None => return refuse(Refusal::MembershipChanged, format!("voter {v} has not registered its share key yet")),
        }
    }
    if held_by(m, voters, &share_keys) {
        return refuse(Refusal::AlreadyDone, "the voters already hold this item's key");
    }
    let Some(dealer) = m.holders.iter().find(|h| h.node == from && (!h.envelope.is_empty() || !h.parts.is_empty())) else {
        return refuse(Refusal::NotPermitted, format!("node {from} holds no share of item {item}"));
    };
    let from_x = dealer.x;
    let mut p = match pending(tx, item)? {
        Some(p) if p.voters == voters && p.share_keys == share_keys => p,
        _ => Pending { voters: voters.to_vec(), share_keys, dealt: Default::default() },
    };
    if p.dealt.contains_key(&from_x) {
        return Ok(Outcome::Done);
    }
    p.dealt.insert(from_x, envelopes.to_vec());
    if p.dealt.len() < m.threshold as usize {
        tx.put_json(keys::pending(item), &p);
        return Ok(Outcome::Done);
    }
    // A threshold of old holders dealt: the voters hold the key now.
    let dealers: Vec<(u8, Vec<String>)> = p.dealt.into_iter().take(m.threshold as usize).collect();
    let holders: Vec<Holder> = voters
        .iter()
        .zip(&p.share_keys)
        .enumerate()
        .map(|(j, (&node, key))| Holder {
            node,
            x: j as u8 + 1,
            share_key: key.clone(),
            envelope: String::new(),
            parts: dealers.iter().map(|(fx, envs)| SubShare { from_x: *fx, envelope: envs[j].clone() }).collect(),
        })
        .collect();
    let time = stamp(tx, time_ms)?;
    let n = holders.len() as u8;
    rec.manifest.threshold = crate::crypto::shares::threshold(n);
    let listed = holders.iter().map(Holder::listed).collect();
    rec.manifest.holders = holders;
    let record = Body::Reshare(records::Reshare {
        item: item.to_string(),
        dealers: dealers.iter().map(|(x, _)| *x).collect(),
        holders: listed,
        threshold: rec.manifest.threshold,
    });
    let leaf_index = access::append_for_item(tx, item, &audit::record(time, record))?;
    tx.put_json(super::keys::item(item), &rec);
    tx.delete(keys::pending(item));
    Ok(Outcome::Recorded { leaf_index })
}
