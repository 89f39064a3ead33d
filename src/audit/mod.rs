//! The audit log's pure core: the RFC 6962/9162 Merkle tree with its
//! inclusion and consistency proofs ([`merkle`]), C2SP signed notes and
//! `tlog-checkpoint` checkpoints with majority cosigning ([`note`]), and the
//! RFC 8785 canonical JSON that leaf records are hashed as ([`jcs`]), and the
//! leaf records themselves, one type per kind ([`records`]).
//!
//! This module owns the bytes a court relies on: leaf and node hashing,
//! proof order, checkpoint and signature-line text. It is pure computation:
//! it must not know about RocksDB (tree nodes are read through [`NodeStore`],
//! which `storage/` implements), the network, or the clock (times in records
//! are stamped by the leader elsewhere and arrive here as data).

pub mod bundle;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod records;

pub use jcs::{canonicalize, to_canonical_bytes, to_canonical_string, JcsError};
pub use merkle::{
    append_writes, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion, Hash, MemStore,
    MerkleError, NodeKey, NodeStore,
};
pub use note::{
    key_id, sign_note, verify_checkpoint_quorum, verify_note, Checkpoint, Note, NoteError, NoteSignature, Signer, VerifiedNote, VerifierKey,
};
