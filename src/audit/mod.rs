//! The audit log's pure core, which lives in the court's verifier crate
//! (`verify/`, `custody-verify`) so that what the vault writes and what a
//! court checks are the same code: the RFC 6962/9162 Merkle tree with its
//! inclusion and consistency proofs ([`merkle`]), C2SP signed notes and
//! `tlog-checkpoint` checkpoints with majority cosigning ([`note`]), the
//! RFC 8785 canonical JSON that leaf records are hashed as ([`jcs`]), the
//! leaf records themselves, one type per kind ([`records`]), and the proof
//! bundle and its checks ([`bundle`]).
//!
//! That crate owns the bytes a court relies on: leaf and node hashing,
//! proof order, checkpoint and signature-line text. It is pure computation:
//! it does not know about RocksDB (tree nodes are read through [`NodeStore`],
//! which `storage/` implements), the network, or the clock (times in records
//! are stamped by the leader elsewhere and arrive here as data).

pub use custody_verify::{bundle, heads, jcs, merkle, note, records};

pub use jcs::{canonicalize, to_canonical_bytes, to_canonical_string, JcsError};
pub use merkle::{
    append_writes, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion, Hash, MemStore,
    MerkleError, NodeKey, NodeStore,
};
pub use note::{
    key_id, sign_note, verify_checkpoint_quorum, verify_note, Checkpoint, Note, NoteError, NoteSignature, Signer, VerifiedNote, VerifierKey,
};

#[cfg(test)]
mod tests {
    /// The verifier keeps its own copies of the signing contexts (it builds alone); they are the vault's.
    #[test]
    fn the_verifiers_contexts_are_the_vaults() {
        assert_eq!(super::bundle::DEPOSIT_CONTEXT, crate::evidence::DEPOSIT_CONTEXT);
        assert_eq!(super::bundle::REQUEST_CONTEXT, crate::approval::SIGNING_CONTEXT);
    }
}
