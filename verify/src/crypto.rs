//! This crate's one importer of `ring`: SHA-256 and Ed25519, all a verifier
//! needs (and the signing half the vault uses for notes, from the same code),
//! and the two signatures a time-stamping authority may use (ECDSA P-256 and
//! RSA PKCS#1 v1.5, both with SHA-256).

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// `ring` refused an Ed25519 seed.
#[derive(Debug, thiserror::Error)]
#[error("Ed25519 seed rejected")]
pub struct SeedRejected;

/// Incremental SHA-256.
pub struct Hasher(ring::digest::Context);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data)
    }
    pub fn finish(self) -> Digest {
        to_digest(self.0.finish().as_ref())
    }
}

fn to_digest(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes); // SHA-256 output is always 32 bytes
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    to_digest(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// An Ed25519 signing key (RFC 8032), made from its 32-byte seed.
pub struct SigningKey(ring::signature::Ed25519KeyPair);

impl SigningKey {
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, SeedRejected> {
        ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).map(SigningKey).map_err(|_| SeedRejected)
    }
    pub fn public_key(&self) -> [u8; 32] {
        use ring::signature::KeyPair;
        let mut out = [0u8; 32];
        // An Ed25519 public key is always 32 bytes.
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        // An Ed25519 signature is always 64 bytes.
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }
}

/// Is `signature` a valid Ed25519 signature of `message` under `public_key`?
pub fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key).verify(message, signature).is_ok()
}

/// Is `signature` (ASN.1 DER) a valid ECDSA P-256 SHA-256 signature of
/// `message` under `public_key` (an uncompressed SEC1 point)?
pub fn verify_ecdsa_p256_sha256(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key).verify(message, signature).is_ok()
}

/// Is `signature` a valid RSA PKCS#1 v1.5 SHA-256 signature of `message`
/// under `public_key` (a DER RSAPublicKey, 2048 to 8192 bits)?
pub fn verify_rsa_pkcs1_sha256(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public_key).verify(message, signature).is_ok()
}
