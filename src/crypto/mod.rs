//! The one importer of `ring`: hashing, randomness, signatures and chunk
//! sealing; and, in `shares`, of `blahaj` and `hpke` (threshold key custody).
//! Knows nothing of items, Raft, disks or the network; callers hand it bytes
//! and context, it hands back bytes.

pub mod shares;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

/// A SHA-256 digest.
pub use custody_verify::crypto::Digest;

/// Context strings: every sealed or hashed structure names what it is, so a
/// value made for one purpose never verifies as another (domain separation).
const CHUNK_AD_CONTEXT: &[u8] = b"custody/chunk/v1\0";

/// Secret bytes wiped from memory when dropped (`zeroize`'s one home is here).
pub type Secret<T> = zeroize::Zeroizing<T>;

/// Context of a node's sealed secrets (docs/KEYS.md §8).
const SEALED_SECRETS_CONTEXT: &[u8] = b"custody/sealed-secrets/v1\0";

/// Seals a node's secrets under its root key: AES-256-GCM with a random
/// 96-bit nonce, associated data `custody/sealed-secrets/v1\0 ‖ aad`.
/// Answers the nonce and the ciphertext with its tag.
pub fn seal_at_rest(root: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<([u8; 12], Vec<u8>), CryptoError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, root).map_err(|_| CryptoError::Seal)?);
    let nonce = random_bytes::<12>()?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from([SEALED_SECRETS_CONTEXT, aad].concat()), &mut buf)
        .map_err(|_| CryptoError::Seal)?;
    Ok((nonce, buf))
}

/// Opens what [`seal_at_rest`] sealed; the plaintext is wiped when dropped.
pub fn open_at_rest(root: &[u8; 32], nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Result<Secret<Vec<u8>>, CryptoError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, root).map_err(|_| CryptoError::Open)?);
    let mut buf = Secret::new(ciphertext.to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from([SEALED_SECRETS_CONTEXT, aad].concat()), &mut buf)
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Length of the random per-item nonce prefix; the chunk index fills the rest.
pub const NONCE_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random source failed")]
    Random,
    #[error("authenticated decryption failed: the bytes, the key or their context do not match")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("key material is malformed: {0}")]
    BadKey(String),
}

// SHA-256, Ed25519 signing and verification live in the verifier's crate
// (its own home for `ring`, docs/KEYS.md §1): a court builds it without the
// vault, and the vault uses the very same code.
pub use custody_verify::crypto::{sha256, verify_ed25519, Hasher, SeedRejected, SigningKey};

impl From<SeedRejected> for CryptoError {
    fn from(e: SeedRejected) -> Self {
        CryptoError::BadKey(e.to_string())
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// The kinds of certificate key a node may sign its binding with (docs/KEYS.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKeyKind {
    /// ECDSA over P-256 with SHA-256, signature ASN.1 DER (what `cluster init` issues).
    EcdsaP256,
    Ed25519,
}

/// Signs `message` with a PKCS#8 private key of either [`CertKeyKind`]
/// (the node's TLS key), returning the kind and the signature.
pub fn sign_with_pkcs8(pkcs8: &[u8], message: &[u8]) -> Result<(CertKeyKind, Vec<u8>), CryptoError> {
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = SystemRandom::new();
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng) {
        let sig = k.sign(&rng, message).map_err(|_| CryptoError::Random)?;
        return Ok((CertKeyKind::EcdsaP256, sig.as_ref().to_vec()));
    }
    if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
        return Ok((CertKeyKind::Ed25519, k.sign(message).as_ref().to_vec()));
    }
    Err(CryptoError::BadKey("the TLS key is neither an ECDSA P-256 nor an Ed25519 PKCS#8 key".into()))
}

/// Verifies a signature made by [`sign_with_pkcs8`] under a certificate's raw
/// public key (the SEC1 point for P-256, 32 bytes for Ed25519).
pub fn verify_with_cert_key(kind: CertKeyKind, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let alg: &dyn ring::signature::VerificationAlgorithm = match kind {
        CertKeyKind::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        CertKeyKind::Ed25519 => &ring::signature::ED25519,
    };
    ring::signature::UnparsedPublicKey::new(alg, public_key).verify(message, signature).is_ok()
}

/// [`verify_ed25519`], remembering signatures that verified.
///
/// Apply checks an access request's signatures again at every approval (the
/// quorum rule re-verifies them all), on every node. Verification is a pure
/// function of its inputs, so a node may remember which (key, message,
/// signature) triples verified, keyed by a SHA-256 over all three; the answer
/// is the same on every node with or without the memory, and apply stays
/// deterministic. Failures are not remembered.
pub fn verify_ed25519_remembered(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    const KEPT: usize = 100_000;
    static VERIFIED: OnceLock<Mutex<HashSet<Digest>>> = OnceLock::new();
    let mut h = Hasher::new();
    h.update(public_key);
    h.update(&(signature.len() as u64).to_be_bytes());
    h.update(signature);
    h.update(message);
    let key = h.finish();
    let set = VERIFIED.get_or_init(Default::default);
    if set.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return true;
    }
    let ok = verify_ed25519(public_key, message, signature);
    if ok {
        let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= KEPT {
            set.clear();
        }
        set.insert(key);
    }
    ok
}

/// A per-item data key. The depositing client draws it and splits it over the
/// holders; the fetching client rebuilds it from their shares (docs/KEYS.md §4).
/// No node ever holds one.
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(DataKey(random_bytes::<32>()?))
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(bytes)
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for DataKey {
    /// Overwrites the key bytes when the key goes away (best effort: the
    /// fence keeps the compiler from dropping the stores as dead).
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Seals and opens the chunks of one item. The nonce is the item's random
/// prefix followed by the chunk index; the associated data binds the item id,
/// the chunk index and the chunk count, so chunks cannot be swapped between
/// items, reordered, or a clip truncated, without decryption failing.
pub struct ChunkCipher {
    key: LessSafeKey,
    item: Vec<u8>,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
    chunk_count: u64,
}

impl ChunkCipher {
    pub fn new(key: &DataKey, item: &[u8], nonce_prefix: [u8; NONCE_PREFIX_BYTES], chunk_count: u64) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| CryptoError::BadKey("data key rejected".into()))?;
        Ok(ChunkCipher { key: LessSafeKey::new(unbound), item: item.to_vec(), nonce_prefix, chunk_count })
    }

    fn nonce(&self, index: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[..NONCE_PREFIX_BYTES].copy_from_slice(&self.nonce_prefix);
        n[NONCE_PREFIX_BYTES..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn ad(&self, index: u64) -> Vec<u8> {
        let mut ad = CHUNK_AD_CONTEXT.to_vec();
        ad.extend_from_slice(&self.item);
        ad.extend_from_slice(&index.to_be_bytes());
        ad.extend_from_slice(&self.chunk_count.to_be_bytes());
        ad
    }

    /// Seals chunk `index` in place (the tag is appended).
    pub fn seal(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if index >= self.chunk_count {
            return Err(CryptoError::Seal);
        }
        self.key.seal_in_place_append_tag(self.nonce(index), Aad::from(self.ad(index)), buf).map_err(|_| CryptoError::Seal)
    }

    /// Opens chunk `index` in place; on success `buf` holds the plaintext.
    pub fn open(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if index >= self.chunk_count {
            return Err(CryptoError::Open);
        }
        let len = self.key.open_in_place(self.nonce(index), Aad::from(self.ad(index)), buf).map_err(|_| CryptoError::Open)?.len();
        buf.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(item: &[u8], count: u64) -> (ChunkCipher, DataKey) {
        let key = DataKey::generate().unwrap();
        let c = ChunkCipher::new(&key, item, [1, 2, 3, 4], count).unwrap();
        (c, key)
    }

    #[test]
    fn a_remembered_signature_covers_only_its_own_key_message_and_bytes() {
        let k = SigningKey::from_seed(&[3; 32]).unwrap();
        let other = SigningKey::from_seed(&[4; 32]).unwrap();
        let sig = k.sign(b"request one");
        assert!(verify_ed25519_remembered(&k.public_key(), b"request one", &sig));
        assert!(verify_ed25519_remembered(&k.public_key(), b"request one", &sig), "remembered");
        assert!(!verify_ed25519_remembered(&k.public_key(), b"request two", &sig));
        assert!(!verify_ed25519_remembered(&other.public_key(), b"request one", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify_ed25519_remembered(&k.public_key(), b"request one", &bad));
        assert!(!verify_ed25519_remembered(&k.public_key(), b"request one", &sig[..63]));
    }

    #[test]
    fn chunk_round_trip() {
        let (c, _) = cipher(b"item-a", 3);
        let mut buf = b"hello".to_vec();
        c.seal(1, &mut buf).unwrap();
        assert_ne!(&buf[..5], b"hello");
        c.open(1, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
    }

    #[test]
    fn chunk_bound_to_index_item_and_count() {
        let key = DataKey::generate().unwrap();
        let c = ChunkCipher::new(&key, b"item-a", [0; 4], 3).unwrap();
        let mut sealed = b"frame".to_vec();
        c.seal(0, &mut sealed).unwrap();
        // reordered
        assert!(c.open(1, &mut sealed.clone()).is_err());
        // moved to another item under the same key
        let other_item = ChunkCipher::new(&key, b"item-b", [0; 4], 3).unwrap();
        assert!(other_item.open(0, &mut sealed.clone()).is_err());
        // truncated clip: same chunk claimed to belong to a 2-chunk clip
        let truncated = ChunkCipher::new(&key, b"item-a", [0; 4], 2).unwrap();
        assert!(truncated.open(0, &mut sealed.clone()).is_err());
        // a flipped bit
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(c.open(0, &mut flipped).is_err());
        c.open(0, &mut sealed).unwrap();
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(hex::encode(sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), sha256(b"abc"));
    }
}
