//! Threshold custody of item data keys (docs/KEYS.md §4): the one home of
//! `blahaj` (Shamir over GF(256)) and `hpke` (RFC 9180). A data key is split
//! k-of-n over the voters, each share sealed to one voter's X25519 key with
//! HPKE; a voter releases its share sealed to the fetcher's key; a new voter
//! set gets fresh shares without anyone rebuilding the key (Desmedt–Jajodia).
//!
//! Formats (docs/KEYS.md §4.1): a share is `x (1 byte) ‖ y (32 bytes)`, x in
//! 1..=n; an envelope is `enc (32 bytes) ‖ HPKE ciphertext`, suite
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, base mode.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{TryCryptoRng, TryRng, UnwrapErr};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use ring::rand::SecureRandom;

use super::CryptoError;

type Kem = X25519HkdfSha256;
type Aead = ChaCha20Poly1305;
type Kdf = HkdfSha256;

/// `info` of a share sealed to a holder at deposit.
pub const SHARE_INFO: &[u8] = b"custody/share/v1";
/// `info` of a share a holder releases to a fetcher.
pub const RELEASE_INFO: &[u8] = b"custody/share-release/v1";
/// `info` of a sub-share dealt to a new holder when re-sharing.
pub const RESHARE_INFO: &[u8] = b"custody/reshare/v1";
/// Begins the data-key commitment.
pub const COMMITMENT_CONTEXT: &[u8] = b"custody/key-commitment/v1\0";
/// Most holders of one key (SPEC: clusters of up to 16 voters).
pub const MAX_HOLDERS: u8 = 16;
/// Bytes of an HPKE encapsulated key (X25519).
pub const ENC_BYTES: usize = 32;
/// Bytes of a sealed share: enc, then the 33-byte share and its 16-byte tag.
pub const SHARE_ENVELOPE_BYTES: usize = ENC_BYTES + 33 + 16;

/// The threshold of `n` holders: a majority.
pub fn threshold(n: u8) -> u8 {
    n / 2 + 1
}

/// rand_core's traits over ring's system generator (the one randomness source).
struct SystemRng(ring::rand::SystemRandom);

#[derive(Debug)]
struct RngFailed;

impl std::fmt::Display for RngFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system random generator failed")
    }
}

impl std::error::Error for RngFailed {}

impl TryRng for SystemRng {
    type Error = RngFailed;
    fn try_next_u32(&mut self) -> Result<u32, RngFailed> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b).map_err(|_| RngFailed)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, RngFailed> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b).map_err(|_| RngFailed)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RngFailed> {
        self.0.fill(dst).map_err(|_| RngFailed)
    }
}

impl TryCryptoRng for SystemRng {}

fn rng() -> UnwrapErr<SystemRng> {
    UnwrapErr(SystemRng(ring::rand::SystemRandom::new()))
}

fn bad(detail: impl Into<String>) -> CryptoError {
    CryptoError::BadKey(detail.into())
}

/// An X25519 key pair for HPKE: a node's share key, or a fetch key.
pub struct ShareSecretKey {
    sk: <Kem as hpke::Kem>::PrivateKey,
    pk: [u8; 32],
}

impl ShareSecretKey {
    /// From a 32-byte seed (RFC 9180 DeriveKeyPair): how a key file is read.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (sk, pk) = Kem::derive_keypair(seed);
        let pk = pk.to_bytes().into();
        ShareSecretKey { sk, pk }
    }

    /// A fresh random key pair.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_seed(&super::random_bytes::<32>()?))
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.pk
    }

    /// Opens an envelope sealed to this key.
    pub fn open(&self, info: &[u8], aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if envelope.len() < ENC_BYTES {
            return Err(bad("an envelope is at least 32 bytes"));
        }
        let (enc, ct) = envelope.split_at(ENC_BYTES);
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|e| bad(format!("bad encapsulated key: {e}")))?;
        hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Base, &self.sk, &enc, info, ct, aad).map_err(|_| CryptoError::Open)
    }
}

/// Seals `plaintext` to the X25519 public key `to`: `enc ‖ ciphertext`.
pub fn seal(to: &[u8; 32], info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(to).map_err(|e| bad(format!("bad share public key: {e}")))?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, info, plaintext, aad, &mut rng())
        .map_err(|e| bad(format!("sealing failed: {e}")))?;
    Ok([enc.to_bytes().as_slice(), &ct].concat())
}

/// The `aad` binding a share to its cluster, item, holder and x-coordinate.
pub fn share_aad(cluster_id: &str, item: &[u8; 16], node: u64, x: u8) -> Vec<u8> {
    [cluster_id.as_bytes(), &[0], item, &node.to_be_bytes(), &[x]].concat()
}

/// SHA-256(`COMMITMENT_CONTEXT` ‖ item ‖ key): lets a fetcher tell the right
/// key from one rebuilt out of a wrong share.
/// The `aad` of a sub-share old holder `from_x` deals new holder `node` at `x` when re-sharing.
pub fn reshare_aad(cluster_id: &str, item: &[u8; 16], node: u64, x: u8, from_x: u8) -> Vec<u8> {
    [share_aad(cluster_id, item, node, x).as_slice(), &[from_x]].concat()
}

pub fn key_commitment(item: &[u8; 16], key: &[u8; 32]) -> [u8; 32] {
    super::sha256(&[COMMITMENT_CONTEXT, item, key].concat())
}

/// One Shamir share of a 32-byte secret at x (1..=255).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyShare {
    pub x: u8,
    y: [u8; 32],
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyShare {{ x: {}, y: <secret> }}", self.x)
    }
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        self.y.iter_mut().for_each(|b| *b = 0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl KeyShare {
    /// `x ‖ y`, 33 bytes.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut b = [0u8; 33];
        b[0] = self.x;
        b[1..].copy_from_slice(&self.y);
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let (&x, y) = b.split_first().ok_or_else(|| bad("an empty share"))?;
        let y: [u8; 32] = y.try_into().map_err(|_| bad("a share is 33 bytes"))?;
        if x == 0 {
            return Err(bad("a share's x is 1 to 255: at 0 it would be the secret"));
        }
        Ok(KeyShare { x, y })
    }

    fn to_blahaj(&self) -> Result<blahaj::Share, CryptoError> {
        blahaj::Share::try_from(self.to_bytes().as_slice()).map_err(bad)
    }

    fn from_blahaj(s: &blahaj::Share) -> Result<Self, CryptoError> {
        Self::from_bytes(&Vec::from(s))
    }
}

/// Splits `secret` into `n` shares at x = 1..=n, threshold ⌊n/2⌋ + 1.
pub fn split(secret: &[u8; 32], n: u8) -> Result<Vec<KeyShare>, CryptoError> {
    if !(1..=MAX_HOLDERS).contains(&n) {
        return Err(bad(format!("a key is split over 1 to {MAX_HOLDERS} holders")));
    }
    blahaj::Sharks(threshold(n)).dealer_rng(secret, &mut rng()).take(n as usize).map(|s| KeyShare::from_blahaj(&s)).collect()
}

/// Splits `secret` into `n` shares at x = 1..=n, any `k` of which rebuild it
/// (custodians' unseal shares, docs/KEYS.md §8).
pub fn split_k_of_n(secret: &[u8; 32], k: u8, n: u8) -> Result<Vec<KeyShare>, CryptoError> {
    if k == 0 || k > n {
        return Err(bad(format!("a threshold of {k} of {n} shares: it must be 1 to {n}")));
    }
    blahaj::Sharks(k).dealer_rng(secret, &mut rng()).take(n as usize).map(|s| KeyShare::from_blahaj(&s)).collect()
}

/// Rebuilds the secret from at least `k` shares of distinct x.
pub fn recover(shares: &[KeyShare], k: u8) -> Result<[u8; 32], CryptoError> {
    let mut xs: Vec<u8> = shares.iter().map(|s| s.x).collect();
    xs.sort_unstable();
    xs.dedup();
    if k == 0 || xs.len() < k as usize || xs.len() != shares.len() {
        return Err(bad(format!("{} distinct shares, {k} needed", xs.len())));
    }
    let shares: Vec<blahaj::Share> = shares.iter().map(KeyShare::to_blahaj).collect::<Result<_, _>>()?;
    let mut secret = blahaj::Sharks(k).recover(&shares).map_err(bad)?;
    let out: [u8; 32] = secret.as_slice().try_into().map_err(|_| bad("the recovered secret is not 32 bytes"))?;
    secret.iter_mut().for_each(|b| *b = 0);
    Ok(out)
}

/// Re-sharing, the old holder's half: deals this share anew to `n_new`
/// holders at x' = 1..=n_new, threshold ⌊n_new/2⌋ + 1 (docs/KEYS.md §4.4).
pub fn reshare(share: &KeyShare, n_new: u8) -> Result<Vec<KeyShare>, CryptoError> {
    split(&share.y, n_new)
}

/// Re-sharing, the new holder's half: from the sub-shares dealt to it at
/// `x_new` by `k_old` old holders — `(old x, sub-share)` — its share of the
/// same secret: the Lagrange combination at 0 over the old x-coordinates.
pub fn combine(parts: &[(u8, KeyShare)], k_old: u8, x_new: u8) -> Result<KeyShare, CryptoError> {
    if parts.iter().any(|(_, s)| s.x != x_new) {
        return Err(bad("every sub-share combined must be dealt to the same new holder"));
    }
    let points: Vec<KeyShare> = parts.iter().map(|(x_old, s)| KeyShare { x: *x_old, y: s.y }).collect();
    let y = recover(&points, k_old)?;
    if x_new == 0 {
        return Err(bad("a share's x is 1 to 255"));
    }
    Ok(KeyShare { x: x_new, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 32] {
        crate::crypto::random_bytes::<32>().unwrap()
    }

    #[test]
    fn any_majority_rebuilds_the_key_and_a_minority_does_not() {
        let k = key();
        let shares = split(&k, 3).unwrap();
        assert_eq!(shares.iter().map(|s| s.x).collect::<Vec<_>>(), vec![1, 2, 3]);
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let got = recover(&[shares[pair[0]].clone(), shares[pair[1]].clone()], 2).unwrap();
            assert_eq!(got, k);
        }
        assert!(recover(&shares[..1], 2).is_err(), "one share of three");
        assert!(recover(&[shares[0].clone(), shares[0].clone()], 2).is_err(), "the same share twice");
        // A share alone says nothing of the key: it is not the key, nor equal across splits.
        assert_ne!(shares[0].y, k);
        assert_ne!(split(&k, 3).unwrap()[0].y, shares[0].y);
        // Five holders: three needed.
        let five = split(&k, 5).unwrap();
        assert_eq!(recover(&five[1..4], 3).unwrap(), k);
        assert!(recover(&five[..2], 3).is_err());
        assert!(split(&k, 0).is_err() && split(&k, MAX_HOLDERS + 1).is_err());
    }

    #[test]
    fn a_share_sealed_to_a_holder_opens_only_with_its_key_and_its_binding() {
        let holder = ShareSecretKey::generate().unwrap();
        let other = ShareSecretKey::generate().unwrap();
        let share = split(&key(), 3).unwrap().remove(0);
        let aad = share_aad("c1", &[7; 16], 2, share.x);
        let env = seal(&holder.public_key(), SHARE_INFO, &aad, &share.to_bytes()).unwrap();
        assert_eq!(env.len(), SHARE_ENVELOPE_BYTES);
        assert_eq!(KeyShare::from_bytes(&holder.open(SHARE_INFO, &aad, &env).unwrap()).unwrap(), share);
        assert!(other.open(SHARE_INFO, &aad, &env).is_err(), "another holder's key");
        assert!(holder.open(SHARE_INFO, &share_aad("c1", &[7; 16], 3, share.x), &env).is_err(), "another node in the binding");
        assert!(holder.open(RELEASE_INFO, &aad, &env).is_err(), "another purpose");
        let mut flipped = env.clone();
        flipped[40] ^= 1;
        assert!(holder.open(SHARE_INFO, &aad, &flipped).is_err());
        // A key file's seed gives the same key pair every time.
        assert_eq!(ShareSecretKey::from_seed(&[9; 32]).public_key(), ShareSecretKey::from_seed(&[9; 32]).public_key());
    }

    #[test]
    fn re_sharing_gives_the_new_holders_the_same_key_and_no_one_the_key() {
        let k = key();
        let item = [3u8; 16];
        let old = split(&k, 3).unwrap();
        // Holders 1 and 3 (a majority of the old three) deal their shares to five new holders.
        let dealt: Vec<(u8, Vec<KeyShare>)> = [&old[0], &old[2]].iter().map(|s| (s.x, reshare(s, 5).unwrap())).collect();
        let new: Vec<KeyShare> = (1..=5u8)
            .map(|x| {
                let parts: Vec<(u8, KeyShare)> = dealt.iter().map(|(x_old, subs)| (*x_old, subs[x as usize - 1].clone())).collect();
                combine(&parts, 2, x).unwrap()
            })
            .collect();
        // Any three of the five rebuild the very key; two do not.
        for trio in [[0, 1, 2], [0, 3, 4], [1, 2, 4]] {
            let got = recover(&trio.map(|i| new[i].clone()), 3).unwrap();
            assert_eq!(key_commitment(&item, &got), key_commitment(&item, &k));
        }
        assert!(recover(&new[..2], 3).is_err());
        // Old shares mixed with new ones rebuild a wrong key, which the commitment exposes.
        let mixed = recover(&[old[1].clone(), new[0].clone(), new[2].clone()], 3).unwrap();
        assert_ne!(key_commitment(&item, &mixed), key_commitment(&item, &k));
        // A sub-share is not the share it was dealt from.
        assert_ne!(dealt[0].1[0].y, old[0].y);
    }
}
