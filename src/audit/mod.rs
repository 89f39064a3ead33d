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

pub use custody_verify::{bundle, heads, jcs, merkle, note, records, strict, timestamp, trail};

pub mod tiles;

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
        assert_eq!(super::trail::ACCESS_CONTEXT, crate::evidence::ACCESS_CONTEXT);
    }

    /// The verifier writes and reads record times itself; they are the vault's, to the byte.
    #[test]
    fn the_verifiers_record_times_are_the_vaults() {
        let mut times = vec![0, 1, 10, 999, 1_000, 86_399_999, 951_782_400_000, 1_700_000_000_123, 1_700_000_000_100, crate::limits::MAX_TIME_MS];
        times.extend((0..2000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (crate::limits::MAX_TIME_MS + 1)));
        for ms in times {
            let text = crate::wire::rfc3339_ms(ms);
            assert_eq!(super::trail::rfc3339_ms(ms).unwrap(), text, "{ms}");
            assert_eq!(super::trail::parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert!(super::trail::rfc3339_ms(253_402_300_800_000).is_none() && crate::wire::try_rfc3339_ms(253_402_300_800_000).is_none());
    }
}
