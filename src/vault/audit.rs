//! The audit log inside replicated state: every change the vault makes
//! appends a leaf (canonical JSON, RFC 8785) to one RFC 6962 Merkle tree, in
//! the same batch as the change itself. Tree nodes are stored by (level,
//! index), so appends and proofs read O(log n) keys.

use super::{StateRead, Tx, VaultError};
use crate::audit::records::{Body, Record};
use crate::audit::{self, Hash, MerkleError, NodeStore};

pub use crate::audit::records::RECORD_VERSION;

pub mod keys {
    pub const SIZE: &[u8] = b"a/size";
    pub const CHECKPOINT: &[u8] = b"a/checkpoint";
    /// The RFC 3161 token (DER) on the text of the checkpoint at
    /// [`CHECKPOINT`], when it has one; written and deleted with it.
    pub const CHECKPOINT_TIMESTAMP: &[u8] = b"a/checkpoint-timestamp";
    pub const NODE_KEY_PREFIX: &[u8] = b"a/nodekey/";
    pub const SESSION_KEY_PREFIX: &[u8] = b"a/sessionkey/";
    pub const SHARE_KEY_PREFIX: &[u8] = b"a/sharekey/";

    pub fn leaf(index: u64) -> Vec<u8> {
        [b"a/leaf/".as_slice(), &index.to_be_bytes()].concat()
    }
    pub fn node(level: u8, index: u64) -> Vec<u8> {
        [b"a/node/".as_slice(), &[level], &index.to_be_bytes()].concat()
    }
    pub fn node_key(node: u64) -> Vec<u8> {
        [NODE_KEY_PREFIX, &node.to_be_bytes()].concat()
    }
    pub fn session_key(node: u64) -> Vec<u8> {
        [SESSION_KEY_PREFIX, &node.to_be_bytes()].concat()
    }
    pub fn share_key(node: u64) -> Vec<u8> {
        [SHARE_KEY_PREFIX, &node.to_be_bytes()].concat()
    }
}

fn store_err(e: VaultError) -> MerkleError {
    MerkleError::Store(Box::new(e))
}

fn to_hash(key: &[u8], v: Vec<u8>) -> Result<Hash, MerkleError> {
    v.try_into().map_err(|_| store_err(VaultError::Corrupt { key: hex::encode(key), detail: "tree node is not 32 bytes".into() }))
}

/// Tree nodes as committed state (for queries and proofs).
pub struct StateNodes<'a>(pub &'a dyn StateRead);

impl NodeStore for StateNodes<'_> {
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MerkleError> {
        let k = keys::node(level, index);
        self.0.get(&k).map_err(store_err)?.map(|v| to_hash(&k, v)).transpose()
    }
}

struct TxNodes<'a, 'b>(&'a Tx<'b>);

impl NodeStore for TxNodes<'_, '_> {
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MerkleError> {
        let k = keys::node(level, index);
        self.0.get(&k).map_err(store_err)?.map(|v| to_hash(&k, v)).transpose()
    }
}

fn read_u64(v: Option<Vec<u8>>, key: &[u8]) -> Result<u64, VaultError> {
    match v {
        None => Ok(0),
        Some(b) => Ok(u64::from_be_bytes(
            b.as_slice()
                .try_into()
                .map_err(|_| VaultError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: "not 8 bytes".into() })?,
        )),
    }
}

/// Number of leaves in the committed tree.
pub fn size(s: &dyn StateRead) -> Result<u64, VaultError> {
    read_u64(s.get(keys::SIZE)?, keys::SIZE)
}

/// The leaf bytes at `index`.
pub fn leaf(s: &dyn StateRead, index: u64) -> Result<Option<Vec<u8>>, VaultError> {
    s.get(&keys::leaf(index))
}

fn merkle_err(e: MerkleError) -> VaultError {
    VaultError::Corrupt { key: "a/node".into(), detail: e.to_string() }
}

/// Root of the first `size` leaves of the committed tree.
pub fn root(s: &dyn StateRead, size: u64) -> Result<Hash, VaultError> {
    audit::root(&StateNodes(s), size).map_err(merkle_err)
}

pub fn inclusion_proof(s: &dyn StateRead, index: u64, size: u64) -> Result<Vec<Hash>, VaultError> {
    audit::inclusion_proof(&StateNodes(s), index, size).map_err(merkle_err)
}

pub fn consistency_proof(s: &dyn StateRead, old: u64, new: u64) -> Result<Vec<Hash>, VaultError> {
    audit::consistency_proof(&StateNodes(s), old, new).map_err(merkle_err)
}

/// RFC 3339 UTC with milliseconds, as every record's `time`.
pub fn rfc3339(ms: u64) -> String {
    crate::wire::rfc3339_ms(ms)
}

/// A record of the current version stamped `time_ms`.
pub fn record(time_ms: u64, body: Body) -> Record {
    Record::new(rfc3339(time_ms), body)
}

/// Appends a record to the tree in `tx`; returns its leaf index.
pub fn append(tx: &mut Tx<'_>, record: &Record) -> Result<u64, VaultError> {
    let bytes = record.to_leaf().map_err(|e| VaultError::Unrecordable(e.to_string()))?;
    let index = read_u64(tx.get(keys::SIZE)?, keys::SIZE)?;
    let writes = audit::append_writes(&TxNodes(tx), index, &audit::leaf_hash(&bytes)).map_err(merkle_err)?;
    for ((level, i), h) in writes {
        tx.put(keys::node(level, i), h.to_vec());
    }
    tx.put(keys::leaf(index), bytes);
    tx.put(keys::SIZE.to_vec(), (index + 1).to_be_bytes().to_vec());
    Ok(index)
}
