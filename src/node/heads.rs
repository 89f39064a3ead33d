//! Item-head statements (docs/AUDIT_FORMATS.md, "Item-head statement"): the
//! nodes' signed word on how many records about an item a checkpoint's leaves
//! hold, which makes a proof bundle's trail provably whole.
//!
//! Each node signs only what its own applied state says: its own tree must
//! have the checkpoint's root at its size (the checks `cosign` makes), and
//! its own index of the item's records is what it counts. The node building a
//! bundle asks every voter at once and keeps the signatures that verify over
//! the very text it computed; a voter that counts otherwise signs another
//! text, and its line does not count.

use std::time::Duration;

use hyper::Method;
use serde::{Deserialize, Serialize};

use super::checkpoint::CosignError;
use super::Node;
use crate::audit::heads::ItemHead;
use crate::audit::{Checkpoint, Hash, VerifierKey};
use crate::evidence::ItemId;
use crate::vault::{audit as tree, query};

pub const ITEM_HEAD_PATH: &str = "/internal/item-head";

#[derive(Serialize, Deserialize)]
pub struct ItemHeadRequest {
    pub item: ItemId,
    pub size: u64,
    /// Hex of the checkpoint's root.
    pub root: String,
}

#[derive(Serialize, Deserialize)]
pub struct ItemHeadResponse {
    /// This node's signature line over the statement it computed.
    pub line: String,
    /// The statement's text, so the asker sees what this node counted.
    pub text: String,
}

impl Node {
    /// The item-head statement for `item` at `size` from this node's own
    /// state, and this node's signature line over it.
    pub async fn sign_item_head(&self, item: &ItemId, size: u64, root: Hash) -> Result<(String, String), CosignError> {
        // The same checks as for a checkpoint: an intact tree, with this root at this size.
        self.vouch(size, root).await?;
        let log: Vec<u64> = crate::vault::access::item_log(&self.state, item)
            .map_err(|e| CosignError::Other(e.to_string()))?
            .into_iter()
            .filter(|i| *i < size)
            .collect();
        let Some(head) = log.iter().copied().max() else {
            return Err(CosignError::Other(format!("the first {size} leaves hold no record about item {item}")));
        };
        let config =
            query::config(&self.state).map_err(|e| CosignError::Other(e.to_string()))?.ok_or_else(|| CosignError::Other("not configured".into()))?;
        let text = ItemHead { origin: config.origin(), item: item.to_string(), size, root, records: log.len() as u64, head }.to_text();
        let line = self.signer.sign(&text).map_err(|e| CosignError::Other(e.to_string()))?.to_line();
        Ok((text, line))
    }

    /// A majority of the voters' signatures on this node's item-head statement
    /// for `item` at checkpoint `cp`, as a signed note.
    pub async fn item_head_note(&self, item: &ItemId, cp: &Checkpoint) -> anyhow::Result<String> {
        let (text, own) = self.sign_item_head(item, cp.size, cp.root).await?;
        let voters = query::voters(&self.state)?;
        let keys: std::collections::BTreeMap<u64, VerifierKey> =
            query::node_keys(&self.state)?.into_iter().filter_map(|(id, k)| VerifierKey::parse(&k).ok().map(|k| (id, k))).collect();
        let members = self.members();
        let asks = voters.iter().filter(|v| **v != self.id()).map(|v| {
            let addr = members.iter().find(|m| m.0 == *v).map(|m| self.route(m.0, &m.1));
            let req = ItemHeadRequest { item: *item, size: cp.size, root: hex::encode(cp.root) };
            let (v, key, text) = (*v, keys.get(v).cloned(), text.clone());
            async move {
                let addr = addr.ok_or_else(|| format!("voter {v} has no address"))?;
                let key = key.ok_or_else(|| format!("voter {v} has no registered key"))?;
                let r: ItemHeadResponse = self
                    .http
                    .call(Method::POST, &format!("{addr}{ITEM_HEAD_PATH}"), Some(&req), Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("voter {v}: {e}"))?;
                if r.text != text {
                    return Err(format!("voter {v} states otherwise: {:?}", r.text));
                }
                crate::audit::verify_note(&format!("{text}\n{}", r.line), std::slice::from_ref(&key)).map_err(|e| format!("voter {v}: {e}"))?;
                Ok(r.line)
            }
        });
        let mut lines = vec![own];
        for r in futures::future::join_all(asks).await {
            match r {
                Ok(line) => lines.push(line),
                Err(e) => tracing::warn!(%item, error = %e, "item-head statement: a voter's signature is missing"),
            }
        }
        let needed = voters.len() / 2 + 1;
        anyhow::ensure!(lines.len() >= needed, "only {} of the {} voters signed the item's head; {needed} needed", lines.len(), voters.len());
        Ok(format!("{text}\n{}", lines.concat()))
    }

    /// For the API: this node's own signature, for a member that asks.
    pub async fn answer_item_head(&self, req: &ItemHeadRequest) -> Result<ItemHeadResponse, CosignError> {
        let root: Hash =
            hex::decode(&req.root).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| CosignError::Other("root must be 64 hex digits".into()))?;
        let have = tree::size(&self.state).map_err(|e| CosignError::Other(e.to_string()))?;
        if have < req.size {
            return Err(CosignError::NotYet { have, want: req.size });
        }
        let (text, line) = self.sign_item_head(&req.item, req.size, root).await?;
        Ok(ItemHeadResponse { line, text })
    }
}
