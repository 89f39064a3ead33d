//! The vault's state machine: commands and how they change replicated state.
//!
//! Pure: no clock (the leader stamps time into each command), no randomness,
//! no network, no RocksDB handle. It reads state through [`StateRead`] and
//! returns the writes to make; the Raft adapter commits them atomically with
//! the applied log position. Every rule that guards a change is checked here,
//! inside apply, against replicated state — never only by the node that
//! proposed it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::evidence::{ChunkName, ItemId, Manifest, RetentionPolicy};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("state read failed: {0}")]
    Read(String),
    #[error("stored state is corrupt at key {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

/// Read access to replicated state (implemented over RocksDB by the adapter,
/// over a map in tests).
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError>;
}

/// Cluster-wide settings fixed when the cluster is formed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub cluster_id: String,
    pub retention: RetentionPolicy,
}

/// A command replicated through Raft. Time is stamped by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Fixes the cluster's settings; only the first one takes effect.
    Configure { config: ClusterConfig, time_ms: u64 },
    /// Commits a deposit: the leader proposes it only after a majority of voters
    /// durably hold every chunk the manifest names.
    Seal { manifest: Manifest, time_ms: u64 },
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to report (membership and blank entries, repeated configure).
    Done,
    Configured,
    Sealed { item: ItemId, retain_until_ms: u64, seq: u64 },
    /// The command broke a rule; nothing changed.
    Refused { reason: String },
}

/// The state of one item as committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub manifest: Manifest,
    pub deposited_at_ms: u64,
    pub retain_until_ms: u64,
    /// Position of the item among all deposits (0-based).
    pub seq: u64,
}

/// Key layout of the state-machine column family (see docs/STORAGE.md).
pub mod keys {
    pub const CONFIG: &[u8] = b"v/config";
    pub const ITEM_COUNT: &[u8] = b"v/item_count";
    pub const ITEM_PREFIX: &[u8] = b"item/";
    pub const CHUNK_PREFIX: &[u8] = b"chunk/";

    pub fn item(id: &crate::evidence::ItemId) -> Vec<u8> {
        [ITEM_PREFIX, id.to_string().as_bytes()].concat()
    }
    pub fn chunk(name: &crate::evidence::ChunkName) -> Vec<u8> {
        [CHUNK_PREFIX, name.to_string().as_bytes()].concat()
    }
}

/// A transaction over state: reads see the writes made earlier in the same
/// batch of entries; the writes are committed together by the adapter.
pub struct Tx<'a> {
    base: &'a dyn StateRead,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Tx<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Tx { base, pending: BTreeMap::new() }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, VaultError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| VaultError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                detail: e.to_string(),
            }),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    fn put_json<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        // Serialising our own plain data types to JSON cannot fail.
        let bytes = serde_json::to_vec(value).expect("vault records serialise");
        self.put(key, bytes);
    }

    /// The writes to commit: `None` deletes the key.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.pending
    }
}

/// Applies one command. A refused command changes nothing.
pub fn apply(tx: &mut Tx<'_>, cmd: &Command) -> Result<Outcome, VaultError> {
    match cmd {
        Command::Configure { config, .. } => {
            if tx.get(keys::CONFIG)?.is_some() {
                return Ok(Outcome::Done);
            }
            tx.put_json(keys::CONFIG.to_vec(), config);
            Ok(Outcome::Configured)
        }
        Command::Seal { manifest, time_ms } => seal(tx, manifest, *time_ms),
    }
}

fn refuse(reason: impl Into<String>) -> Result<Outcome, VaultError> {
    Ok(Outcome::Refused { reason: reason.into() })
}

fn seal(tx: &mut Tx<'_>, manifest: &Manifest, time_ms: u64) -> Result<Outcome, VaultError> {
    let Some(config) = tx.get_json::<ClusterConfig>(keys::CONFIG)? else {
        return refuse("the cluster is not configured yet");
    };
    if let Err(e) = manifest.validate() {
        return refuse(format!("invalid manifest: {e}"));
    }
    let item_key = keys::item(&manifest.item);
    if tx.get(&item_key)?.is_some() {
        return refuse(format!("item {} already exists", manifest.item));
    }
    for c in &manifest.chunks {
        if tx.get(&keys::chunk(&c.name))?.is_some() {
            return refuse(format!("chunk {} already belongs to an item", c.name));
        }
    }
    let period_ms = config.retention.period_secs(manifest.meta.retention).saturating_mul(1000);
    let retain_until_ms = time_ms.saturating_add(period_ms);
    let seq = item_count(tx)?;
    let record = ItemRecord { manifest: manifest.clone(), deposited_at_ms: time_ms, retain_until_ms, seq };
    tx.put_json(item_key, &record);
    for c in &manifest.chunks {
        tx.put(keys::chunk(&c.name), manifest.item.to_string().into_bytes());
    }
    tx.put(keys::ITEM_COUNT.to_vec(), (seq + 1).to_be_bytes().to_vec());
    Ok(Outcome::Sealed { item: manifest.item, retain_until_ms, seq })
}

fn item_count(tx: &Tx<'_>) -> Result<u64, VaultError> {
    match tx.get(keys::ITEM_COUNT)? {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 8] = b.as_slice().try_into().map_err(|_| VaultError::Corrupt {
                key: "v/item_count".into(),
                detail: "not 8 bytes".into(),
            })?;
            Ok(u64::from_be_bytes(arr))
        }
    }
}

/// Read-side queries over committed state.
pub mod query {
    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, VaultError> {
        serde_json::from_slice(v).map_err(|e| VaultError::Corrupt {
            key: String::from_utf8_lossy(k).into_owned(),
            detail: e.to_string(),
        })
    }

    pub fn config(s: &dyn StateRead) -> Result<Option<ClusterConfig>, VaultError> {
        s.get(keys::CONFIG)?.map(|v| decode(keys::CONFIG, &v)).transpose()
    }

    pub fn item(s: &dyn StateRead, id: &ItemId) -> Result<Option<ItemRecord>, VaultError> {
        let k = keys::item(id);
        s.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    pub fn items(s: &dyn StateRead) -> Result<Vec<ItemRecord>, VaultError> {
        let mut out: Vec<ItemRecord> =
            s.scan_prefix(keys::ITEM_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_, _>>()?;
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Does a committed manifest name this chunk?
    pub fn chunk_owner(s: &dyn StateRead, name: &ChunkName) -> Result<Option<String>, VaultError> {
        Ok(s.get(&keys::chunk(name))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every chunk named by a committed manifest.
    pub fn all_chunks(s: &dyn StateRead) -> Result<Vec<ChunkName>, VaultError> {
        s.scan_prefix(keys::CHUNK_PREFIX)?
            .iter()
            .map(|(k, _)| {
                std::str::from_utf8(&k[keys::CHUNK_PREFIX.len()..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| VaultError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), detail: "bad chunk key".into() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
