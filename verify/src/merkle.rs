//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.
//!
//! Hashing is domain separated: a leaf hash is `SHA-256(0x00 ‖ leaf)` and an
//! interior node hash is `SHA-256(0x01 ‖ left ‖ right)`, so no leaf can be
//! passed off as an interior node or the other way round. The root of the
//! empty tree is `SHA-256("")`.
//!
//! Storage is abstracted by [`NodeStore`]: the tree is kept as the roots of
//! its *complete* subtrees, named `(level, index)` — the subtree of `2^level`
//! leaves that starts at leaf `index · 2^level` (level 0 holds the leaf
//! hashes). A complete subtree never changes once it exists, so a store that
//! holds a tree of size `n` can also answer for every older size `m ≤ n`.
//! Every hash over a range that is not a complete subtree (the right edge of a
//! tree whose size is not a power of two) is folded from at most 64 stored
//! complete-subtree roots, so [`append_writes`], [`root`],
//! [`inclusion_proof`] and [`consistency_proof`] each read O(log n) nodes.
//!
//! This file knows nothing of RocksDB, the network or the clock.

use std::collections::HashMap;
use std::error::Error as StdError;

use crate::crypto::Hasher;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Names a complete subtree: `(level, index)`, the subtree of `2^level`
/// leaves starting at leaf `index · 2^level` (level 0 = leaf hashes).
pub type NodeKey = (u8, u64);

/// Domain-separation prefix of a leaf hash (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;
/// The highest level a subtree of a tree with at most `u64::MAX` leaves can have.
const MAX_LEVEL: u8 = 63;

/// Everything that can go wrong while building, proving or verifying.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index at or beyond the tree size was asked for.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size it was asked against.
        size: u64,
    },
    /// A consistency proof was asked for (or checked) from a larger size to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// The older (supposedly smaller) size.
        old_size: u64,
        /// The newer size.
        new_size: u64,
    },
    /// The tree already holds `u64::MAX` leaves and cannot grow.
    #[error("the tree is full")]
    TreeFull,
    /// The store lacks a complete-subtree node that a tree of the given size must have.
    #[error("node store has no node at level {level}, index {index}")]
    MissingNode {
        /// Level of the missing node (0 = leaf hash).
        level: u8,
        /// Index of the missing node within its level.
        index: u64,
    },
    /// The node store itself failed (for example an IO error underneath).
    #[error("node store failed: {0}")]
    Store(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// An inclusion proof did not lead to the expected root.
    #[error("inclusion proof does not verify")]
    InclusionProofInvalid,
    /// A consistency proof did not lead to the expected roots.
    #[error("consistency proof does not verify")]
    ConsistencyProofInvalid,
}

/// Read access to the complete-subtree nodes of a Merkle tree.
///
/// `(level, index)` names the root of the complete subtree of `2^level` leaves
/// starting at leaf `index · 2^level`; level 0 holds the leaf hashes. A store
/// used for a tree of size `n` must hold every complete subtree that lies
/// entirely inside the first `n` leaves, as returned by [`append_writes`].
pub trait NodeStore {
    /// The hash stored for `(level, index)`, or `None` when the store has none.
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MerkleError>;
}

/// `SHA-256(0x00 ‖ leaf)`: the hash of one leaf's bytes (RFC 6962 §2.1).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut ctx = Hasher::new();
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(leaf);
    finish(ctx)
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Hasher::new();
    ctx.update(&[NODE_PREFIX]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// `SHA-256("")`: the root hash of the empty tree (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    finish(Hasher::new())
}

fn finish(ctx: Hasher) -> Hash {
    ctx.finish()
}

/// The complete-subtree nodes that become complete when leaf number `size`
/// (0-based, so the tree grows from `size` to `size + 1` leaves) with hash
/// `leaf_hash` is appended. The caller persists them, together, before it
/// treats the tree as having `size + 1` leaves.
///
/// The first write is always `((0, size), leaf_hash)`; each further write is
/// the parent that the previous one completed. Reads at most one stored
/// sibling per write, O(log n) in all.
pub fn append_writes<S: NodeStore + ?Sized>(store: &S, size: u64, leaf_hash: &Hash) -> Result<Vec<(NodeKey, Hash)>, MerkleError> {
    if size == u64::MAX {
        return Err(MerkleError::TreeFull);
    }
    let mut writes = vec![((0u8, size), *leaf_hash)];
    let mut level = 0u8;
    let mut index = size;
    let mut hash = *leaf_hash;
    // While the new node is a right child, its parent is now complete too.
    while index & 1 == 1 {
        let left = get_required(store, level, index - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        writes.push(((level, index), hash));
    }
    Ok(writes)
}

/// The root hash of the tree made of the first `size` leaves
/// (`MTH(D[0:size])`, RFC 9162 §2.1.1).
pub fn root<S: NodeStore + ?Sized>(store: &S, size: u64) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(store, 0, size)
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size`
/// leaves, in RFC 9162 §2.1.3.1 order (the sibling nearest the leaf first).
pub fn inclusion_proof<S: NodeStore + ?Sized>(store: &S, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Walk from the root down to the leaf, collecting the sibling at each
    // split; the RFC lists them from the leaf upwards, so reverse at the end.
    let (mut lo, mut hi) = (0u64, size);
    let mut proof = Vec::new();
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index < lo + k {
            proof.push(range_hash(store, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(store, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof between the tree of `old_size` leaves and the tree of
/// `new_size` leaves, in RFC 9162 §2.1.4.1 order. Empty when `old_size` is 0 or
/// equals `new_size`.
pub fn consistency_proof<S: NodeStore + ?Sized>(store: &S, old_size: u64, new_size: u64) -> Result<Vec<Hash>, MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b) unrolled: each step appends one hash after the
    // recursive part, so collect top-down and reverse at the end.
    let m = old_size;
    let (mut lo, mut hi) = (0u64, new_size);
    let mut whole_old_tree = true; // the RFC's `b`
    let mut proof = Vec::new();
    loop {
        if m == hi {
            if !whole_old_tree {
                proof.push(range_hash(store, lo, hi)?);
            }
            break;
        }
        let k = largest_power_of_two_below(hi - lo);
        if m - lo <= k {
            proof.push(range_hash(store, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(store, lo, lo + k)?);
            lo += k;
            whole_old_tree = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that the leaf with hash
/// `leaf_hash` is leaf number `index` of the tree of `size` leaves whose root
/// is `root`.
pub fn verify_inclusion(leaf_hash: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(MerkleError::InclusionProofInvalid);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && r == *root {
        Ok(())
    } else {
        Err(MerkleError::InclusionProofInvalid)
    }
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of
/// `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
///
/// Equal sizes need an empty proof and equal roots; an old size of 0 needs an
/// empty proof and `old_root` equal to [`empty_root`].
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size });
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root { Ok(()) } else { Err(MerkleError::ConsistencyProofInvalid) };
    }
    if old_size == 0 {
        return if proof.is_empty() && *old_root == empty_root() { Ok(()) } else { Err(MerkleError::ConsistencyProofInvalid) };
    }
    // Step 1: a non-trivial proof is never empty.
    let Some((first, rest)) = proof.split_first() else {
        return Err(MerkleError::ConsistencyProofInvalid);
    };
    // Step 2: if `first` is a power of two the old root is the first path element.
    let (start, path): (&Hash, &[Hash]) = if old_size.is_power_of_two() { (old_root, proof) } else { (first, rest) };
    // Step 3 and 4.
    let mut f = old_size - 1;
    let mut s = new_size - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in path {
        if s == 0 {
            return Err(MerkleError::ConsistencyProofInvalid);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if fr == *old_root && sr == *new_root && s == 0 {
        Ok(())
    } else {
        Err(MerkleError::ConsistencyProofInvalid)
    }
}

/// The largest power of two strictly smaller than `n` (the RFC's `k`); `n > 1`.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn get_required<S: NodeStore + ?Sized>(store: &S, level: u8, index: u64) -> Result<Hash, MerkleError> {
    store.get(level, index)?.ok_or(MerkleError::MissingNode { level, index })
}

/// `MTH(D[start:end])` for a range that is a node of the RFC 9162 tree shape:
/// `start` is a multiple of the largest power of two not above `end - start`.
/// Such a range splits, by the bits of its length from high to low, into
/// complete subtrees that are all stored; the hash folds them right to left,
/// exactly as the RFC's recursion would.
fn range_hash<S: NodeStore + ?Sized>(store: &S, start: u64, end: u64) -> Result<Hash, MerkleError> {
    debug_assert!(start < end);
    let len = end - start;
    let mut parts: Vec<Hash> = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..=MAX_LEVEL).rev() {
        let width = 1u64 << level;
        if len & width != 0 {
            // Holds for every range the proof and root walks above ask for;
            // a failure here is a bug in this file, not bad input.
            debug_assert_eq!(offset % width, 0, "range [{start}, {end}) is not a tree node");
            parts.push(get_required(store, level, offset >> level)?);
            offset += width;
        }
    }
    let mut parts = parts.into_iter().rev();
    let Some(mut hash) = parts.next() else {
        // `len > 0` so at least one bit is set; keep the compiler honest anyway.
        return Ok(empty_root());
    };
    for left in parts {
        hash = node_hash(&left, &hash);
    }
    Ok(hash)
}

/// An in-memory [`NodeStore`] for tests and tools: a map from `(level, index)`
/// to hash, plus the current tree size.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    nodes: HashMap<NodeKey, Hash>,
    size: u64,
}

impl MemStore {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its leaf hash and returns its leaf index.
    pub fn append(&mut self, leaf_hash: &Hash) -> Result<u64, MerkleError> {
        let index = self.size;
        let writes = append_writes(&*self, index, leaf_hash)?;
        self.nodes.extend(writes);
        self.size = index + 1;
        Ok(index)
    }

    /// Replaces (or, with `None`, removes) a stored node: for tests that
    /// simulate a damaged store.
    pub fn set_node(&mut self, level: u8, index: u64, hash: Option<Hash>) {
        match hash {
            Some(h) => {
                self.nodes.insert((level, index), h);
            }
            None => {
                self.nodes.remove(&(level, index));
            }
        }
    }

    /// The root of the whole tree appended so far.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self, self.size)
    }
}

impl NodeStore for MemStore {
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MerkleError> {
        Ok(self.nodes.get(&(level, index)).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- the naive reference: RFC 9162 §2.1 written out recursively ----

    fn ref_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = largest_power_of_two_below(n as u64) as usize;
                node_hash(&ref_root(&leaves[..k]), &ref_root(&leaves[k..]))
            }
        }
    }

    fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = largest_power_of_two_below(n as u64) as usize;
        if m < k {
            let mut p = ref_path(m, &leaves[..k]);
            p.push(ref_root(&leaves[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &leaves[k..]);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    fn ref_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { Vec::new() } else { vec![ref_root(leaves)] };
        }
        let k = largest_power_of_two_below(n as u64) as usize;
        if m <= k {
            let mut p = ref_subproof(m, &leaves[..k], b);
            p.push(ref_root(&leaves[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &leaves[k..], false);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    fn ref_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if m == 0 {
            return Vec::new();
        }
        ref_subproof(m, leaves, true)
    }

    // ---- helpers ----

    fn test_leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn store_of(leaves: &[Hash]) -> MemStore {
        let mut s = MemStore::new();
        for l in leaves {
            s.append(l).expect("append");
        }
        s
    }

    /// Tiny deterministic PRNG (splitmix64) so the random tests are replayable.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn flipped(proof: &[Hash], which: usize, byte: usize) -> Vec<Hash> {
        let mut p = proof.to_vec();
        p[which][byte] ^= 0x01;
        p
    }

    #[derive(serde::Deserialize)]
    struct Vectors {
        leaf_inputs_hex: Vec<String>,
        root_by_size_hex: Vec<String>,
    }

    /// The published vectors, copied into `tests/vectors/`.
    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc6962.json");

    #[test]
    fn rfc6962_vectors_roots_by_size() {
        let text = std::fs::read_to_string(VECTORS).expect("read rfc6962.json");
        let v: Vectors = serde_json::from_str(&text).expect("parse rfc6962.json");
        assert_eq!(v.root_by_size_hex.len(), v.leaf_inputs_hex.len() + 1);
        let mut store = MemStore::new();
        let mut leaves = Vec::new();
        assert_eq!(hex::encode(root(&store, 0).unwrap()), v.root_by_size_hex[0]);
        for (i, input) in v.leaf_inputs_hex.iter().enumerate() {
            let data = hex::decode(input).expect("hex leaf");
            let lh = leaf_hash(&data);
            leaves.push(lh);
            store.append(&lh).unwrap();
            let want = &v.root_by_size_hex[i + 1];
            assert_eq!(&hex::encode(store.root().unwrap()), want, "size {}", i + 1);
            assert_eq!(&hex::encode(ref_root(&leaves)), want, "reference, size {}", i + 1);
        }
        // Historical roots stay answerable from the grown store.
        for (size, want) in v.root_by_size_hex.iter().enumerate() {
            assert_eq!(&hex::encode(root(&store, size as u64).unwrap()), want);
        }
        // Tampered proofs over the vector tree fail.
        let n = leaves.len() as u64;
        let r = store.root().unwrap();
        for i in 0..n {
            let p = inclusion_proof(&store, i, n).unwrap();
            verify_inclusion(&leaves[i as usize], i, n, &p, &r).unwrap();
            for w in 0..p.len() {
                for b in 0..32 {
                    assert!(verify_inclusion(&leaves[i as usize], i, n, &flipped(&p, w, b), &r).is_err());
                }
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(root(&MemStore::new(), 0).unwrap(), empty_root());
    }

    #[test]
    fn append_writes_are_the_newly_complete_subtrees() {
        let leaves = test_leaves(8);
        let store = store_of(&leaves[..7]);
        let w = append_writes(&store, 7, &leaves[7]).unwrap();
        let keys: Vec<(u8, u64)> = w.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![(0, 7), (1, 3), (2, 1), (3, 0)]);
        assert_eq!(w[3].1, ref_root(&leaves));
        let w = append_writes(&store, 4, &leaves[4]).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn against_reference_all_sizes_to_300() {
        const N: u64 = 300;
        let leaves = test_leaves(N);
        let store = store_of(&leaves);
        let roots: Vec<Hash> = (0..=N as usize).map(|n| ref_root(&leaves[..n])).collect();
        for n in 0..=N {
            let r = root(&store, n).unwrap();
            assert_eq!(r, roots[n as usize], "root at size {n}");
            for i in 0..n {
                let p = inclusion_proof(&store, i, n).unwrap();
                assert_eq!(p, ref_path(i as usize, &leaves[..n as usize]), "path {i} of {n}");
                verify_inclusion(&leaves[i as usize], i, n, &p, &r).unwrap();
            }
            assert!(matches!(inclusion_proof(&store, n, n), Err(MerkleError::IndexOutOfRange { .. })));
            for m in 0..=n {
                let p = consistency_proof(&store, m, n).unwrap();
                assert_eq!(p, ref_consistency(m as usize, &leaves[..n as usize]), "consistency {m}->{n}");
                verify_consistency(m, n, &roots[m as usize], &r, &p).unwrap();
            }
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        const N: u64 = 40;
        let leaves = test_leaves(N);
        let store = store_of(&leaves);
        let roots: Vec<Hash> = (0..=N).map(|n| root(&store, n).unwrap()).collect();
        for n in 1..=N {
            let r = roots[n as usize];
            for i in 0..n {
                let lh = leaves[i as usize];
                let p = inclusion_proof(&store, i, n).unwrap();
                for w in 0..p.len() {
                    for b in 0..32 {
                        assert!(verify_inclusion(&lh, i, n, &flipped(&p, w, b), &r).is_err());
                    }
                }
                // Wrong index, wrong size, truncated, extended, wrong leaf.
                if n > 1 {
                    assert!(verify_inclusion(&lh, (i + 1) % n, n, &p, &r).is_err());
                }
                // (A wrong size is not always caught by the path alone: the
                // size is bound to the root by the signed checkpoint.)
                if !p.is_empty() {
                    assert!(verify_inclusion(&lh, i, n, &p[..p.len() - 1], &r).is_err());
                }
                let mut longer = p.clone();
                longer.push(r);
                assert!(verify_inclusion(&lh, i, n, &longer, &r).is_err());
                assert!(verify_inclusion(&leaf_hash(b"other"), i, n, &p, &r).is_err());
                assert!(verify_inclusion(&lh, i, n, &p, &leaf_hash(b"not a root")).is_err());
            }
            for m in 1..n {
                let (om, on) = (roots[m as usize], r);
                let p = consistency_proof(&store, m, n).unwrap();
                for w in 0..p.len() {
                    for b in 0..32 {
                        assert!(verify_consistency(m, n, &om, &on, &flipped(&p, w, b)).is_err());
                    }
                }
                assert!(verify_consistency(m, n, &om, &on, &[]).is_err());
                // The right proof with a wrong old root or a wrong new root.
                let other = leaf_hash(b"not a root");
                assert!(verify_consistency(m, n, &other, &on, &p).is_err());
                assert!(verify_consistency(m, n, &om, &other, &p).is_err());
                assert!(verify_consistency(m, n, &on, &om, &p).is_err());
                if p.len() > 1 {
                    assert!(verify_consistency(m, n, &om, &on, &p[..p.len() - 1]).is_err());
                }
                let mut longer = p.clone();
                longer.push(on);
                assert!(verify_consistency(m, n, &om, &on, &longer).is_err());
            }
        }
    }

    #[test]
    fn proof_fails_at_any_position_with_another_shape() {
        // A proof reused for another (index, size) or (old, new) whose path
        // has a different length must fail, even though its hashes lead to
        // the given root: otherwise a too-short proof could claim a bigger
        // tree has a smaller tree's root, or a too-long one could place a
        // leaf of a bigger tree in a smaller one. (Claims whose path has the
        // same shape cannot be told apart from the hashes alone; the signed
        // checkpoint binds size and root.)
        const N: u64 = 16;
        let leaves = test_leaves(2 * N);
        let store = store_of(&leaves);
        let roots: Vec<Hash> = (0..=2 * N).map(|n| root(&store, n).unwrap()).collect();
        let incl_len = |i, n| inclusion_proof(&store, i, n).unwrap().len();
        let cons_len = |m, n| consistency_proof(&store, m, n).unwrap().len();
        for n in 1..=2 * N {
            for i in 0..n {
                let p = inclusion_proof(&store, i, n).unwrap();
                let (lh, r) = (leaves[i as usize], roots[n as usize]);
                for n2 in 1..=2 * N {
                    for i2 in 0..n2 {
                        if incl_len(i2, n2) != p.len() {
                            assert!(verify_inclusion(&lh, i2, n2, &p, &r).is_err(), "proof of {i} in {n} accepted as {i2} in {n2}");
                        }
                    }
                }
            }
        }
        for n in 2..=N {
            for m in 1..n {
                let p = consistency_proof(&store, m, n).unwrap();
                let (rm, rn) = (roots[m as usize], roots[n as usize]);
                for n2 in 2..=2 * N {
                    for m2 in 1..n2 {
                        if cons_len(m2, n2) != p.len() {
                            assert!(verify_consistency(m2, n2, &rm, &rn, &p).is_err(), "proof {m}->{n} accepted as {m2}->{n2}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn consistency_edge_cases() {
        let leaves = test_leaves(5);
        let store = store_of(&leaves);
        let r5 = store.root().unwrap();
        // Same size: empty proof and equal roots only.
        verify_consistency(5, 5, &r5, &r5, &[]).unwrap();
        assert!(verify_consistency(5, 5, &r5, &empty_root(), &[]).is_err());
        assert!(verify_consistency(5, 5, &r5, &r5, &[r5]).is_err());
        // From the empty tree: empty proof, and the old root must be the empty root.
        verify_consistency(0, 5, &empty_root(), &r5, &[]).unwrap();
        assert!(verify_consistency(0, 5, &r5, &r5, &[]).is_err());
        assert!(verify_consistency(0, 5, &empty_root(), &r5, &[r5]).is_err());
        // Backwards.
        assert!(matches!(consistency_proof(&store, 5, 4), Err(MerkleError::SizeOrder { .. })));
        assert!(matches!(verify_consistency(5, 4, &r5, &r5, &[]), Err(MerkleError::SizeOrder { .. })));
        // Index out of range in the verifier.
        assert!(matches!(verify_inclusion(&leaves[0], 5, 5, &[], &r5), Err(MerkleError::IndexOutOfRange { .. })));
    }

    #[test]
    fn missing_node_is_an_error_not_a_wrong_answer() {
        let leaves = test_leaves(6);
        let mut store = store_of(&leaves);
        store.set_node(2, 0, None);
        assert!(matches!(root(&store, 6), Err(MerkleError::MissingNode { level: 2, index: 0 })));
        assert!(matches!(inclusion_proof(&store, 5, 6), Err(MerkleError::MissingNode { level: 2, index: 0 })));
        assert!(matches!(append_writes(&store, 6, &leaves[0]).map(|w| w.len()), Ok(1)));
        store.set_node(0, 6, None);
        assert!(matches!(append_writes(&store, 7, &leaves[0]), Err(MerkleError::MissingNode { level: 0, index: 6 })));
        assert!(matches!(append_writes(&store, u64::MAX, &leaves[0]), Err(MerkleError::TreeFull)));
    }

    #[test]
    fn interior_node_presented_as_leaf_fails_inclusion() {
        let leaves = test_leaves(4);
        let store = store_of(&leaves);
        let r = store.root().unwrap();
        let n01 = node_hash(&leaves[0], &leaves[1]);
        let n23 = node_hash(&leaves[2], &leaves[3]);
        assert_eq!(node_hash(&n01, &n23), r);
        // Second-preimage attempts: leaf bytes that spell out interior node (0, 1),
        // with and without the node prefix, claimed at the node's position.
        let mut prefixed = vec![NODE_PREFIX];
        prefixed.extend_from_slice(&leaves[0]);
        prefixed.extend_from_slice(&leaves[1]);
        let bare = prefixed[1..].to_vec();
        for data in [&bare, &prefixed] {
            let forged = leaf_hash(data);
            assert_ne!(forged, n01);
            // As leaf 0 of a 2-leaf view of the tree, with [n23] as the path.
            assert!(verify_inclusion(&forged, 0, 2, &[n23], &r).is_err());
            // And at every index of the real tree, with that leaf's real path.
            for i in 0..4 {
                let p = inclusion_proof(&store, i, 4).unwrap();
                assert!(verify_inclusion(&forged, i, 4, &p, &r).is_err());
            }
        }
        // The interior node's own hash, claimed as leaf 0 of the 4-leaf tree
        // with the rest of its path: the path is too short for the size.
        assert!(verify_inclusion(&n01, 0, 4, &[n23], &r).is_err());
        assert!(verify_inclusion(&n23, 2, 4, &[n01], &r).is_err());
        assert!(verify_inclusion(&n23, 3, 4, &[n01], &r).is_err());
        // Leaf hash and node hash of the same bytes differ.
        assert_ne!(leaf_hash(&bare), node_hash(&leaves[0], &leaves[1]));
    }

    #[test]
    fn duplicated_last_leaf_changes_the_root() {
        // CVE-2012-2459 style: [a, b, c] and [a, b, c, c] must not share a root.
        let leaves = test_leaves(301);
        for n in 1..=300usize {
            let mut dup = leaves[..n].to_vec();
            dup.push(leaves[n - 1]);
            let a = root(&store_of(&leaves[..n]), n as u64).unwrap();
            let b = root(&store_of(&dup), n as u64 + 1).unwrap();
            assert_ne!(a, b, "size {n}");
            assert_eq!(b, ref_root(&dup));
        }
    }

    /// Counts node reads, to show proofs and roots are O(log n).
    struct Counting<'a>(&'a MemStore, std::cell::Cell<u64>);
    impl NodeStore for Counting<'_> {
        fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MerkleError> {
            self.1.set(self.1.get() + 1);
            self.0.get(level, index)
        }
    }

    #[test]
    fn random_sizes_around_100k() {
        let mut rng = Rng(0x6375_7374_6f64_7921);
        const N: u64 = 100_003;
        let leaves = test_leaves(N);
        let store = store_of(&leaves);
        let sizes = [65_535u64, 65_536, 65_537, 99_999, 100_000, 100_003];
        let roots: Vec<Hash> = sizes.iter().map(|&n| ref_root(&leaves[..n as usize])).collect();
        for (&n, r) in sizes.iter().zip(&roots) {
            assert_eq!(root(&store, n).unwrap(), *r, "root at {n}");
            for _ in 0..200 {
                let i = rng.below(n);
                let p = inclusion_proof(&store, i, n).unwrap();
                verify_inclusion(&leaves[i as usize], i, n, &p, r).unwrap();
            }
            // A few proofs compared with the reference directly.
            for i in [0, n / 3, n - 1] {
                assert_eq!(inclusion_proof(&store, i, n).unwrap(), ref_path(i as usize, &leaves[..n as usize]));
            }
        }
        for (a, (&m, rm)) in sizes.iter().zip(&roots).enumerate() {
            for (&n, rn) in sizes[a..].iter().zip(&roots[a..]) {
                let p = consistency_proof(&store, m, n).unwrap();
                assert_eq!(p, ref_consistency(m as usize, &leaves[..n as usize]), "{m}->{n}");
                verify_consistency(m, n, rm, rn, &p).unwrap();
            }
        }
        // Random (m, n) pairs, checked by verification against roots from the store.
        for _ in 0..300 {
            let n = 1 + rng.below(N);
            let m = rng.below(n + 1);
            let p = consistency_proof(&store, m, n).unwrap();
            let (rm, rn) = (root(&store, m).unwrap(), root(&store, n).unwrap());
            verify_consistency(m, n, &rm, &rn, &p).unwrap();
        }
        // O(log n) reads: never more than a few times the tree height.
        let counting = Counting(&store, std::cell::Cell::new(0));
        for _ in 0..200 {
            let n = 1 + rng.below(N);
            let i = rng.below(n);
            let m = 1 + rng.below(n);
            counting.1.set(0);
            inclusion_proof(&counting, i, n).unwrap();
            assert!(counting.1.get() <= 2 * 17 + 2, "inclusion reads {}", counting.1.get());
            counting.1.set(0);
            consistency_proof(&counting, m, n).unwrap();
            assert!(counting.1.get() <= 2 * 17 + 2, "consistency reads {}", counting.1.get());
            counting.1.set(0);
            root(&counting, n).unwrap();
            assert!(counting.1.get() <= 17, "root reads {}", counting.1.get());
        }
    }

    /// A frontier (compact range) root: an independent incremental algorithm
    /// used as the oracle at sizes where the recursive reference is slow.
    fn frontier_push(frontier: &mut Vec<(u8, Hash)>, h: Hash) {
        let mut cur = (0u8, h);
        while let Some(&(lvl, left)) = frontier.last() {
            if lvl != cur.0 {
                break;
            }
            frontier.pop();
            cur = (lvl + 1, node_hash(&left, &cur.1));
        }
        frontier.push(cur);
    }

    fn frontier_root(frontier: &[(u8, Hash)]) -> Hash {
        let mut it = frontier.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            h = node_hash(left, &h);
        }
        h
    }

    #[test]
    fn property_check_at_two_million_leaves() {
        const N: u64 = 2_097_152 + 12_345; // just past 2^21
        let mut rng = Rng(42);
        let mut store = MemStore::new();
        let mut frontier = Vec::new();
        let mut checkpoints: Vec<(u64, Hash)> = Vec::new();
        let mut next_cp = 1u64;
        for i in 0..N {
            let lh = leaf_hash(&i.to_be_bytes());
            store.append(&lh).unwrap();
            frontier_push(&mut frontier, lh);
            if i + 1 == next_cp || i + 1 == N {
                checkpoints.push((i + 1, frontier_root(&frontier)));
                next_cp = next_cp * 3 / 2 + 1 + rng.below(1000);
            }
        }
        for &(n, r) in &checkpoints {
            assert_eq!(root(&store, n).unwrap(), r, "root at {n}");
        }
        for _ in 0..2_000 {
            let a = rng.below(checkpoints.len() as u64) as usize;
            let b = rng.below(checkpoints.len() as u64) as usize;
            let ((m, rm), (n, rn)) = (checkpoints[a.min(b)], checkpoints[a.max(b)]);
            let p = consistency_proof(&store, m, n).unwrap();
            verify_consistency(m, n, &rm, &rn, &p).unwrap();
            let i = rng.below(n);
            let p = inclusion_proof(&store, i, n).unwrap();
            verify_inclusion(&leaf_hash(&i.to_be_bytes()), i, n, &p, &rn).unwrap();
            if i + 1 < n {
                assert!(verify_inclusion(&leaf_hash(&(i + 1).to_be_bytes()), i, n, &p, &rn).is_err());
            }
        }
    }
}
