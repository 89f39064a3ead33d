//! C2SP `tlog-cosignature` v1 with Ed25519 (<https://c2sp.org/tlog-cosignature>):
//! the bytes a witness signs, its key id, its verifier key text, and the
//! check a court runs on a cosignature line.
//!
//! A cosignature is a signed-note signature line
//! `— <name> base64(key id ‖ timestamp ‖ Ed25519 signature)` over the message
//! `cosignature/v1\ntime <timestamp>\n` ‖ the checkpoint's note text. The key
//! id is `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[..4]`: the algorithm byte
//! 0x04 (not a plain note signature's 0x01) keeps a cosignature from ever
//! being read as an ordinary note signature by the same key, and the other way round.
//!
//! Pure computation: no files, no clock (the timestamp is handed in).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::crypto::{verify_ed25519, Hasher};
use crate::{Note, NoteSignature, Signer};

/// The signature type byte of Ed25519 `cosignature/v1` keys (C2SP tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The first line of every signed message: the domain separation the spec fixes.
pub const COSIGNATURE_HEADER: &str = "cosignature/v1\n";
/// Bytes of a key id, of the big-endian timestamp, and of an Ed25519 signature.
const KEY_ID_LEN: usize = 4;
const TIMESTAMP_LEN: usize = 8;
const ED25519_SIG_LEN: usize = 64;
/// The largest timestamp the spec allows (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// What can be wrong with a cosigner key or a cosignature.
#[derive(Debug, thiserror::Error)]
pub enum CosignatureError {
    /// A verifier key string is not `<name>+<key id hex>+<base64(0x04 ‖ key)>`.
    #[error("malformed cosigner verifier key: {0}")]
    MalformedKey(&'static str),
    /// The key id stated in a verifier key is not the one its name and key give.
    #[error("key id does not match the cosigner key {0:?}")]
    KeyIdMismatch(String),
    /// The note or checkpoint text cannot be cosigned or checked (not a signed note).
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A signature line is not one signature line, or its signature is not
    /// `timestamp ‖ 64-byte signature`.
    #[error("malformed cosignature: {0}")]
    MalformedCosignature(&'static str),
    /// A cosignature from a trusted witness key does not verify.
    #[error("the cosignature of {0} does not verify")]
    InvalidSignature(String),
    /// The note carries no cosignature from the given witness key.
    #[error("no cosignature from {0}")]
    Missing(String),
    /// A timestamp of zero or above 2^63 - 1: the spec forbids both in a checkpoint cosignature.
    #[error("cosignature timestamp {0} is out of range")]
    Timestamp(u64),
}

/// `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[..4]`: the key id of an Ed25519 cosigner.
pub fn cosigner_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut ctx = Hasher::new();
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_COSIGNATURE_V1]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; KEY_ID_LEN];
    // SHA-256 output is 32 bytes, longer than a key id.
    id.copy_from_slice(&d[..KEY_ID_LEN]);
    id
}

/// The exact bytes a witness signs: `cosignature/v1\n`, `time <decimal>\n`,
/// then the whole checkpoint note text (with its final newline, without
/// any signature line).
pub fn cosigned_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(COSIGNATURE_HEADER.len() + 26 + checkpoint_text.len());
    m.extend_from_slice(COSIGNATURE_HEADER.as_bytes());
    m.extend_from_slice(format!("time {timestamp}\n").as_bytes());
    m.extend_from_slice(checkpoint_text.as_bytes());
    m
}

/// A witness's public key as a court keeps it: a name, the cosignature key
/// id and the Ed25519 public key. Text form `<name>+<key id hex>+<base64(0x04 ‖ key)>`
/// (a C2SP vkey with signature type 0x04).
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    key_id: [u8; 4],
    public_key: [u8; 32],
}

impl CosignerKey {
    /// The cosigner key for `name` and an Ed25519 public key. The name
    /// follows the signed-note rules (non-empty, no space, no `+`).
    pub fn from_public_key(name: &str, public_key: [u8; 32]) -> Result<Self, CosignatureError> {
        // The note module owns the key name rules; borrow its check.
        crate::VerifierKey::from_public_key(name, public_key).map_err(|_| CosignatureError::MalformedKey("invalid key name"))?;
        Ok(Self { name: name.to_owned(), key_id: cosigner_key_id(name, &public_key), public_key })
    }

    /// Parses `<name>+<key id hex>+<base64(0x04 ‖ public key)>`, checking the key id.
    pub fn parse(text: &str) -> Result<Self, CosignatureError> {
        // The name holds no '+', the key id is hex; base64 may hold '+'.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureError::MalformedKey("expected name+keyid+key"));
        };
        let mut stated = [0u8; KEY_ID_LEN];
        if id_hex.len() != 2 * KEY_ID_LEN || hex::decode_to_slice(id_hex, &mut stated).is_err() {
            return Err(CosignatureError::MalformedKey("key id is not 8 hex digits"));
        }
        let key = BASE64.decode(key64).map_err(|_| CosignatureError::MalformedKey("key is not base64"))?;
        let Some((&alg, rest)) = key.split_first() else {
            return Err(CosignatureError::MalformedKey("empty key"));
        };
        if alg != ALG_COSIGNATURE_V1 {
            return Err(CosignatureError::MalformedKey("not a cosignature/v1 Ed25519 key (type byte 0x04)"));
        }
        let public_key: [u8; 32] = rest.try_into().map_err(|_| CosignatureError::MalformedKey("Ed25519 key is not 32 bytes"))?;
        let k = Self::from_public_key(name, public_key)?;
        if k.key_id != stated {
            return Err(CosignatureError::KeyIdMismatch(name.to_owned()));
        }
        Ok(k)
    }

    /// The key name (the witness's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte cosignature key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_COSIGNATURE_V1);
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{}+{}", self.name, hex::encode(self.key_id), BASE64.encode(key))
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({self})")
    }
}

/// One cosignature: who, when, and the Ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub name: String,
    /// The cosignature key id.
    pub key_id: [u8; 4],
    /// POSIX seconds at which the witness signed.
    pub timestamp: u64,
    /// The Ed25519 signature over [`cosigned_message`].
    pub signature: [u8; 64],
}

impl Cosignature {
    /// The signature line, with its final newline:
    /// `— <name> base64(key id ‖ big-endian timestamp ‖ signature)`.
    pub fn to_line(&self) -> String {
        let mut sig = Vec::with_capacity(TIMESTAMP_LEN + ED25519_SIG_LEN);
        sig.extend_from_slice(&self.timestamp.to_be_bytes());
        sig.extend_from_slice(&self.signature);
        NoteSignature { name: self.name.clone(), key_id: self.key_id, signature: sig }.to_line()
    }

    /// Reads a parsed note signature as a cosignature: its signature must be
    /// exactly 8 + 64 bytes. Nothing is verified.
    pub fn from_note_signature(s: &NoteSignature) -> Result<Self, CosignatureError> {
        if s.signature.len() != TIMESTAMP_LEN + ED25519_SIG_LEN {
            return Err(CosignatureError::MalformedCosignature("not an 8-byte timestamp and a 64-byte Ed25519 signature"));
        }
        let (ts, sig) = s.signature.split_at(TIMESTAMP_LEN);
        // Both lengths were checked just above.
        let timestamp = u64::from_be_bytes(ts.try_into().map_err(|_| CosignatureError::MalformedCosignature("timestamp"))?);
        let signature: [u8; 64] = sig.try_into().map_err(|_| CosignatureError::MalformedCosignature("signature"))?;
        Ok(Self { name: s.name.clone(), key_id: s.key_id, timestamp, signature })
    }
}

/// A witness's signing key: the Ed25519 key of a note [`Signer`], used only
/// for cosignatures (its key id is computed with 0x04, so its signatures
/// never pass for plain note signatures).
pub struct Cosigner {
    signer: Signer,
    key: CosignerKey,
}

impl Cosigner {
    /// The cosigner holding `signer`'s key under `signer`'s name.
    pub fn new(signer: Signer) -> Result<Self, CosignatureError> {
        let key = CosignerKey::from_public_key(signer.name(), *signer.verifier_key().public_key())?;
        Ok(Self { signer, key })
    }

    /// The verifier key courts and clients configure.
    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// Cosigns a checkpoint note text at `timestamp` (POSIX seconds, 1 ..= 2^63 - 1).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<Cosignature, CosignatureError> {
        if timestamp == 0 || timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Timestamp(timestamp));
        }
        if !checkpoint_text.ends_with('\n') {
            return Err(CosignatureError::MalformedNote("checkpoint text does not end in a newline".into()));
        }
        let signature = self.signer.sign_bytes(&cosigned_message(checkpoint_text, timestamp));
        Ok(Cosignature { name: self.key.name.clone(), key_id: self.key.key_id, timestamp, signature })
    }
}

impl fmt::Debug for Cosigner {
    /// Names the key, never shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({})", self.key)
    }
}

/// Checks a note's cosignatures against the witness keys a court trusts, as a
/// signed-note verifier would: every line whose name and key id match a
/// trusted witness key must be a valid cosignature of the note's text (one
/// that is not rejects the note), other lines are ignored, and each witness
/// counts once. Returns the witnesses whose cosignature verified, each with
/// its (first) timestamp, in order of appearance; possibly none.
pub fn verify_cosignatures(note: &str, keys: &[CosignerKey]) -> Result<Vec<(CosignerKey, u64)>, CosignatureError> {
    let parsed = Note::parse(note).map_err(|e| CosignatureError::MalformedNote(e.to_string()))?;
    let mut found: Vec<(CosignerKey, u64)> = Vec::new();
    for line in &parsed.signatures {
        let Some(key) = keys.iter().find(|k| k.name == line.name && k.key_id == line.key_id) else {
            continue; // not a witness this court trusts: ignored, as signed-note requires
        };
        let cosig = Cosignature::from_note_signature(line)?;
        if cosig.timestamp == 0 || cosig.timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Timestamp(cosig.timestamp));
        }
        if !verify_ed25519(&key.public_key, &cosigned_message(&parsed.text, cosig.timestamp), &cosig.signature) {
            return Err(CosignatureError::InvalidSignature(key.to_string()));
        }
        if !found.iter().any(|(k, _)| k == key) {
            found.push((key.clone(), cosig.timestamp));
        }
    }
    Ok(found)
}

/// Checks one cosignature line (as `add-checkpoint` returns it) on a
/// checkpoint note (with or without its own signature lines) under one
/// witness key; returns the cosignature's timestamp.
pub fn verify_cosignature(checkpoint: &str, line: &str, key: &CosignerKey) -> Result<u64, CosignatureError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.contains('\n') {
        return Err(CosignatureError::MalformedCosignature("more than one line"));
    }
    // A bare checkpoint text has no blank line; a note has one before its signatures.
    let text = match Note::parse(checkpoint) {
        Ok(n) => n.text,
        Err(_) => checkpoint.to_owned(),
    };
    let note = format!("{text}\n{line}\n");
    verify_cosignatures(&note, std::slice::from_ref(key))?
        .into_iter()
        .next()
        .map(|(_, t)| t)
        .ok_or_else(|| CosignatureError::Missing(key.to_string()))
}

/// Parses a file of witness verifier keys a court trusts: one
/// `<name>+<key id hex>+<base64(0x04 ‖ key)>` per line; blank lines and `#`
/// comments skipped. A key listed twice is kept once (it counts once, as in
/// a node key file); one public key under two names, or one name and key id
/// for two keys, is ambiguous and refused.
pub fn parse_witness_keys(text: &str) -> Result<Vec<CosignerKey>, String> {
    let mut keys: Vec<CosignerKey> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let k = CosignerKey::parse(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if keys.contains(&k) {
            continue;
        }
        if let Some(o) = keys.iter().find(|o| o.public_key() == k.public_key() || (o.name() == k.name() && o.key_id() == k.key_id())) {
            return Err(format!("line {}: {k} and {o} are one key under two names, or two keys under one name and key id", i + 1));
        }
        keys.push(k);
    }
    if keys.is_empty() {
        return Err("no witness keys".into());
    }
    Ok(keys)
}

/// Whether at least `min` of the trusted witnesses cosigned a checkpoint
/// note (each counts once; a trusted witness's line that does not verify
/// fails the whole check). Returns the names that cosigned.
pub fn check_witnesses(note: &str, keys: &[CosignerKey], min: usize) -> Result<Vec<String>, String> {
    let found = verify_cosignatures(note, keys).map_err(|e| e.to_string())?;
    let names: Vec<String> = found.iter().map(|(k, _)| k.name().to_owned()).collect();
    if names.len() < min {
        return Err(format!("cosigned by {} of the {} trusted witnesses; {min} needed", names.len(), keys.len()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosigner(name: &str, n: u8) -> Cosigner {
        Cosigner::new(Signer::from_seed(name, &[n; 32]).expect("signer")).expect("cosigner")
    }

    const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn the_signed_message_is_the_specs_example_byte_for_byte() {
        // tlog-cosignature, "Ed25519 signed message": two header lines, then the note text.
        let m = cosigned_message(SPEC_CHECKPOINT, 1_679_315_147);
        assert_eq!(m, b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
        // Extension lines are part of the text, so of the message.
        let m = cosigned_message("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n", 7);
        assert!(m.ends_with(b"=\next\n") && m.starts_with(b"cosignature/v1\ntime 7\no\n"));
    }

    #[test]
    fn key_id_uses_type_byte_4_as_published_keys_do() {
        // A published Ed25519 cosigner key (transparency-dev/formats' tests list it as a
        // working native cosignature/v1 verifier): its key id must be what we compute.
        let k = CosignerKey::parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2").expect("published key");
        assert_eq!(hex::encode(k.key_id()), "da77ade7");
        assert_eq!(k.to_string(), "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2");
        // By hand: SHA-256(name ‖ \n ‖ 0x04 ‖ key)[..4].
        let mut pre = b"remora.n621.de\n\x04".to_vec();
        pre.extend_from_slice(k.public_key());
        assert_eq!(crate::crypto::sha256(&pre)[..4], k.key_id());
        // The same key with the note type byte 0x01 has another id and is no cosigner key.
        assert_ne!(crate::key_id(k.name(), k.public_key()), k.key_id());
        let plain = crate::VerifierKey::from_public_key(k.name(), *k.public_key()).unwrap().to_string();
        assert!(CosignerKey::parse(&plain).is_err());
        assert!(CosignerKey::parse("remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2").is_err());
    }

    #[test]
    fn the_specs_example_line_reads_as_its_example_timestamp() {
        // tlog-cosignature's example cosignature line: key id, then the big-endian
        // timestamp of its example message (1679315147), then 64 signature bytes.
        let note = format!(
            "{SPEC_CHECKPOINT}\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
        );
        let n = Note::parse(&note).unwrap();
        let c = Cosignature::from_note_signature(&n.signatures[0]).unwrap();
        assert_eq!(c.timestamp, 1_679_315_147);
        assert_eq!(hex::encode(c.key_id), "8d66cf3f");
        // And it writes back to the same line.
        assert_eq!(c.to_line(), note[SPEC_CHECKPOINT.len() + 1..]);
    }

    #[test]
    fn a_cosignature_verifies_under_its_key_only_over_its_text_and_time() {
        let w = cosigner("witness.court.example/w1", 5);
        let c = w.cosign(SPEC_CHECKPOINT, 1_700_000_000).unwrap();
        let line = c.to_line();
        // The signature is Ed25519 over exactly the message bytes.
        assert!(verify_ed25519(w.key().public_key(), &cosigned_message(SPEC_CHECKPOINT, 1_700_000_000), &c.signature));
        assert_eq!(verify_cosignature(SPEC_CHECKPOINT, &line, w.key()).unwrap(), 1_700_000_000);
        // On the full note with the log's signature too.
        let log = Signer::from_seed("example.com/behind-the-sofa", &[9; 32]).unwrap();
        let note = crate::sign_note(SPEC_CHECKPOINT, &[&log]).unwrap();
        assert_eq!(verify_cosignature(&note, &line, w.key()).unwrap(), 1_700_000_000);
        let both = format!("{note}{line}");
        let got = verify_cosignatures(&both, &[w.key().clone()]).unwrap();
        assert_eq!(got, vec![(w.key().clone(), 1_700_000_000)]);
        // Another witness's key: no cosignature from it.
        let other = cosigner("witness.court.example/w2", 6);
        assert!(matches!(verify_cosignature(SPEC_CHECKPOINT, &line, other.key()), Err(CosignatureError::Missing(_))));
        assert!(verify_cosignatures(&both, &[other.key().clone()]).unwrap().is_empty());
        // Another text, another time: refused.
        let moved = SPEC_CHECKPOINT.replace("20852163", "20852164");
        assert!(matches!(verify_cosignature(&moved, &line, w.key()), Err(CosignatureError::InvalidSignature(_))));
        let mut later = c.clone();
        later.timestamp += 1;
        assert!(matches!(verify_cosignature(SPEC_CHECKPOINT, &later.to_line(), w.key()), Err(CosignatureError::InvalidSignature(_))));
        // A plain note signature by the same key is no cosignature (another key id).
        let plain = crate::sign_note(SPEC_CHECKPOINT, &[&Signer::from_seed("witness.court.example/w1", &[5; 32]).unwrap()]).unwrap();
        assert!(verify_cosignatures(&plain, &[w.key().clone()]).unwrap().is_empty());
        // Timestamps the spec forbids are neither made nor accepted.
        assert!(w.cosign(SPEC_CHECKPOINT, 0).is_err());
        assert!(w.cosign(SPEC_CHECKPOINT, MAX_TIMESTAMP + 1).is_err());
        let zero = Cosignature { timestamp: 0, ..c.clone() };
        assert!(matches!(verify_cosignature(SPEC_CHECKPOINT, &zero.to_line(), w.key()), Err(CosignatureError::Timestamp(0))));
        // A matching line of the wrong length rejects the note.
        let short = NoteSignature { name: c.name.clone(), key_id: c.key_id, signature: vec![1; 64] }.to_line();
        assert!(verify_cosignature(SPEC_CHECKPOINT, &short, w.key()).is_err());
    }
}
