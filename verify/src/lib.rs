//! `custody-verify`: everything a court needs to check a custody proof bundle
//! offline, and nothing else — no RocksDB, no network stack, no consensus.
//! It builds alone (`cargo build -p custody-verify`), and the vault uses this
//! very crate for `custody verify`, for the leaves it writes and for the
//! checkpoints it signs, so the writer and the court's reader cannot drift.
//!
//! - [`merkle`]: the RFC 6962/9162 tree, inclusion and consistency proofs;
//! - [`note`]: C2SP signed notes and `tlog-checkpoint` checkpoints, with the
//!   majority rule over the node keys a court pins;
//! - [`jcs`]: RFC 8785 canonical JSON, the form every leaf is hashed in;
//! - [`records`]: the leaf records, one type per kind, one encoding;
//! - [`bundle`]: the proof bundle and its checks;
//! - [`heads`]: the item-head statement that makes a bundle's trail complete;
//! - [`trail`]: the trail's own consistency (signatures, grants, accesses);
//! - [`strict`]: strict JSON reading (no member named twice);
//! - [`cosignature`]: C2SP `tlog-cosignature` witness cosignatures;
//! - [`timestamp`]: RFC 3161 timestamp tokens on checkpoints;
//! - [`crypto`]: SHA-256 and Ed25519 (the crate's one importer of `ring`);
//! - [`run`]: the command both binaries run (files in, a report out);
//! - [`page`]: the same checks as one offline HTML page for a browser.
//!
//! Pure computation but for [`run`], which reads the files it is given.

pub mod bundle;
pub mod cosignature;
pub mod crypto;
pub mod heads;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod page;
pub mod records;
pub mod run;
pub mod strict;
pub mod timestamp;
pub mod trail;
#[cfg(test)]
mod verify_tests;

pub use jcs::{canonicalize, to_canonical_bytes, to_canonical_string, JcsError};
pub use merkle::{
    append_writes, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion, Hash, MemStore,
    MerkleError, NodeKey, NodeStore,
};
pub use note::{
    key_id, sign_note, verify_checkpoint_quorum, verify_note, Checkpoint, Note, NoteError, NoteSignature, Signer, VerifiedNote, VerifierKey,
};
