//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 signatures,
//! and C2SP `tlog-checkpoint` note texts (<https://c2sp.org/tlog-checkpoint>).
//!
//! A signed note is a text ending in a newline, a blank line, and one line per
//! signature: `— <key name> <base64(key id ‖ signature)>`. The Ed25519 key id
//! is the first four bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`, so a
//! signature names the exact key (and algorithm) that made it. Verifier keys
//! travel as `<name>+<key id hex>+<base64(0x01 ‖ public key)>`.
//!
//! Checkpoints are valid for `custody` only when a strict majority of the
//! configured node keys signed them ([`verify_checkpoint_quorum`]).
//!
//! This file knows nothing of RocksDB, the network or the clock.

use std::fmt;
use std::str::FromStr;

use crate::crypto::{verify_ed25519, Hasher, SigningKey};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::merkle::Hash;

/// The signature type byte of Ed25519 note signatures (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// What starts every signature line: U+2014 EM DASH, then a space.
const SIG_LINE_PREFIX: &str = "\u{2014} ";
/// The most signature lines a note may carry; the spec asks verifiers to
/// accept at least 16 and to apply some limit.
pub const MAX_SIGNATURES: usize = 100;
/// Length of a key id in bytes.
const KEY_ID_LEN: usize = 4;
/// Length of an Ed25519 public key or seed in bytes.
const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
const ED25519_SIG_LEN: usize = 64;

/// Everything that can go wrong with keys, notes and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains a Unicode space or `+`.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A verifier key string is not `<name>+<key id hex>+<base64 key>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// A private key string is not `PRIVATE+KEY+<name>+<key id hex>+<base64 key>`.
    #[error("malformed private key: {0}")]
    MalformedPrivateKey(&'static str),
    /// A key's stated key id does not match its name and public key.
    #[error("key id does not match the key for {name:?}")]
    KeyIdMismatch {
        /// The key name.
        name: String,
    },
    /// A key of a signature type other than Ed25519 (0x01).
    #[error("unsupported signature type 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// Note text to sign does not end in a newline or holds a control character.
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    /// A signed note does not have the signed-note shape.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// A signature from a known key does not verify: the whole note is rejected.
    #[error("invalid signature by {name} (key id {key_id})")]
    InvalidSignature {
        /// The key name of the signature line.
        name: String,
        /// The key id, as hex.
        key_id: String,
    },
    /// No signature line came from a known key (or the note had none).
    #[error("no signature from a known key")]
    NoKnownSignature,
    /// Two known keys share a name and key id but differ.
    #[error("two known keys named {name:?} share key id {key_id}")]
    AmbiguousKey {
        /// The shared key name.
        name: String,
        /// The shared key id, as hex.
        key_id: String,
    },
    /// A quorum check was asked for with no keys at all.
    #[error("no verifier keys given")]
    NoKeys,
    /// The same key (same name and key id, or same public key) is listed twice.
    #[error("verifier key {0} is listed twice")]
    DuplicateKey(String),
    /// Fewer than a strict majority of the keys signed.
    #[error("signed by {signed} of {keys} keys; {needed} needed")]
    NoQuorum {
        /// Distinct keys whose signature verified.
        signed: usize,
        /// Keys given.
        keys: usize,
        /// Signatures needed for a strict majority.
        needed: usize,
    },
    /// A checkpoint text is not a strict `tlog-checkpoint` body, or a
    /// checkpoint value cannot be written as one.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4]`: the key id of an Ed25519
/// note key.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut ctx = Hasher::new();
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; KEY_ID_LEN];
    // SHA-256 output is 32 bytes, longer than a key id.
    id.copy_from_slice(&d[..KEY_ID_LEN]);
    id
}

/// Key names must be non-empty and hold no Unicode space, no control character and no `+`.
fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
        return Err(NoteError::InvalidKeyName(name.to_owned()));
    }
    Ok(())
}

/// True when `s` holds no ASCII control character other than newline.
fn has_only_allowed_chars(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// Text that may be signed: ends in a newline, no other control characters.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("does not end in a newline"));
    }
    if !has_only_allowed_chars(text) {
        return Err(NoteError::InvalidText("contains a control character"));
    }
    Ok(())
}

/// A public key that verifies note signatures: a name, its key id and an
/// Ed25519 public key. Its text form is `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    public_key: [u8; 32],
}

impl VerifierKey {
    /// The verifier key for `name` and an Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self { name: name.to_owned(), key_id: key_id(name, &public_key), public_key })
    }

    /// Parses `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, checking that
    /// the key id matches the name and key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        // The name holds no '+', the key id is hex; base64 may hold '+'.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedVerifierKey("expected name+keyid+key"));
        };
        check_key_name(name)?;
        let stated_id = parse_key_id(id_hex).ok_or(NoteError::MalformedVerifierKey("key id is not 8 hex digits"))?;
        let key = BASE64.decode(key64).map_err(|_| NoteError::MalformedVerifierKey("key is not base64"))?;
        let public_key = ed25519_key_bytes(&key).map_err(|e| match e {
            KeyBytesError::Algorithm(a) => NoteError::UnsupportedAlgorithm(a),
            KeyBytesError::Length => NoteError::MalformedVerifierKey("Ed25519 key is not 32 bytes"),
        })?;
        let vk = Self::from_public_key(name, public_key)?;
        if vk.key_id != stated_id {
            return Err(NoteError::KeyIdMismatch { name: name.to_owned() });
        }
        Ok(vk)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether `signature` is this key's Ed25519 signature over `text`.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        signature.len() == ED25519_SIG_LEN && verify_ed25519(&self.public_key, text.as_bytes(), signature)
    }
}

impl fmt::Display for VerifierKey {
    /// `<name>+<key id hex>+<base64(0x01 ‖ public key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(1 + ED25519_KEY_LEN);
        key.push(ALG_ED25519);
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{}+{}", self.name, hex::encode(self.key_id), BASE64.encode(key))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_key_id(hex_text: &str) -> Option<[u8; 4]> {
    if hex_text.len() != 2 * KEY_ID_LEN {
        return None;
    }
    let mut id = [0u8; KEY_ID_LEN];
    hex::decode_to_slice(hex_text, &mut id).ok()?;
    Some(id)
}

enum KeyBytesError {
    Algorithm(u8),
    Length,
}

/// `0x01 ‖ 32 bytes` → the 32 bytes.
fn ed25519_key_bytes(key: &[u8]) -> Result<[u8; 32], KeyBytesError> {
    let Some((&alg, rest)) = key.split_first() else {
        return Err(KeyBytesError::Length);
    };
    if alg != ALG_ED25519 {
        return Err(KeyBytesError::Algorithm(alg));
    }
    rest.try_into().map_err(|_| KeyBytesError::Length)
}

/// A named Ed25519 signing key that signs note texts.
pub struct Signer {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
    public_key: [u8; 32],
}

impl Signer {
    /// A signer for `name` with the given key pair.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let public_key = key.public_key();
        Ok(Self { name: name.to_owned(), key_id: key_id(name, &public_key), key, public_key })
    }

    /// A signer for `name` from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        let key = SigningKey::from_seed(seed).map_err(|_| NoteError::MalformedPrivateKey("seed rejected"))?;
        Self::new(name, key)
    }

    /// Parses the Go `sumdb/note` private key form
    /// `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ 32-byte seed)>`,
    /// checking the key id against the derived public key.
    pub fn from_private_key_text(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id_hex), Some(key64)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedPrivateKey("expected PRIVATE+KEY+name+keyid+key"));
        };
        check_key_name(name)?;
        let stated_id = parse_key_id(id_hex).ok_or(NoteError::MalformedPrivateKey("key id is not 8 hex digits"))?;
        let key = BASE64.decode(key64).map_err(|_| NoteError::MalformedPrivateKey("key is not base64"))?;
        let seed = ed25519_key_bytes(&key).map_err(|e| match e {
            KeyBytesError::Algorithm(a) => NoteError::UnsupportedAlgorithm(a),
            KeyBytesError::Length => NoteError::MalformedPrivateKey("Ed25519 seed is not 32 bytes"),
        })?;
        let signer = Self::from_seed(name, &seed)?;
        if signer.key_id != stated_id {
            return Err(NoteError::KeyIdMismatch { name: name.to_owned() });
        }
        Ok(signer)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The verifier key that checks this signer's signatures.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key_id: self.key_id, public_key: self.public_key }
    }

    /// Signs other bytes with the same key: a statement that begins with its
    /// own context string, which no note text can (it has no final newline),
    /// such as a node's key binding (docs/KEYS.md §7).
    pub fn sign_bytes(&self, statement: &[u8]) -> [u8; 64] {
        self.key.sign(statement)
    }

    /// Signs a note text (which must end in a newline), giving one signature line's worth.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, NoteError> {
        check_text(text)?;
        Ok(NoteSignature { name: self.name.clone(), key_id: self.key_id, signature: self.key.sign(text.as_bytes()).to_vec() })
    }
}

impl fmt::Debug for Signer {
    /// Names the key, never shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}+{})", self.name, hex::encode(self.key_id))
    }
}

/// One signature line of a note: `— <name> <base64(key id ‖ signature)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signing key's name.
    pub name: String,
    /// The signing key's id.
    pub key_id: [u8; 4],
    /// The signature bytes (64 for Ed25519; other lengths for other types).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(KEY_ID_LEN + self.signature.len());
        bytes.extend_from_slice(&self.key_id);
        bytes.extend_from_slice(&self.signature);
        format!("{SIG_LINE_PREFIX}{} {}\n", self.name, BASE64.encode(bytes))
    }

    fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line.strip_prefix(SIG_LINE_PREFIX).ok_or(NoteError::MalformedNote("signature line does not start with an em dash and a space"))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::MalformedNote("signature line has no signature"))?;
        check_key_name(name).map_err(|_| NoteError::MalformedNote("invalid key name in signature line"))?;
        let bytes = BASE64.decode(b64).map_err(|_| NoteError::MalformedNote("signature is not canonical base64"))?;
        if bytes.len() <= KEY_ID_LEN {
            return Err(NoteError::MalformedNote("signature too short"));
        }
        let (id, sig) = bytes.split_at(KEY_ID_LEN);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(id);
        Ok(Self { name: name.to_owned(), key_id, signature: sig.to_vec() })
    }
}

/// A note split into its text and signature lines; nothing is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a signed note at its last blank line into text and signature
    /// lines, checking the shape only (no signature is checked).
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if !has_only_allowed_chars(note) {
            return Err(NoteError::MalformedNote("contains a control character"));
        }
        let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::MalformedNote("signatures missing or not ending in a newline"));
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("too many signatures"));
        }
        let signatures = lines.into_iter().map(NoteSignature::parse_line).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn encode(&self) -> Result<String, NoteError> {
        check_text(&self.text)?;
        if self.signatures.is_empty() {
            return Err(NoteError::MalformedNote("a note needs at least one signature"));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("too many signatures"));
        }
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            check_key_name(&s.name)?;
            out.push_str(&s.to_line());
        }
        Ok(out)
    }
}

/// Signs `text` (ending in a newline) with each signer, in order, and returns
/// the signed note: `text`, a blank line, one signature line per signer.
pub fn sign_note(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    let signatures = signers.iter().map(|s| s.sign(text)).collect::<Result<Vec<_>, _>>()?;
    Note { text: text.to_owned(), signatures }.encode()
}

/// A note whose signatures from known keys all verified, with at least one of
/// them. Only [`verify_note`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    text: String,
    signers: Vec<String>,
    keys: Vec<VerifierKey>,
}

impl VerifiedNote {
    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Names of the distinct known keys that signed, in order of first signature.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }

    /// The distinct known keys that signed, in order of first signature.
    pub fn keys(&self) -> &[VerifierKey] {
        &self.keys
    }
}

/// The known key with this name and key id, if any; an error if two differ.
fn find_key<'a>(keys: &'a [VerifierKey], name: &str, id: [u8; 4]) -> Result<Option<&'a VerifierKey>, NoteError> {
    let mut found: Option<&VerifierKey> = None;
    for k in keys.iter().filter(|k| k.name == name && k.key_id == id) {
        match found {
            Some(f) if f.public_key != k.public_key => return Err(NoteError::AmbiguousKey { name: name.to_owned(), key_id: hex::encode(id) }),
            _ => found = Some(k),
        }
    }
    Ok(found)
}

/// Verifies a signed note against known keys (C2SP signed-note rules):
/// every signature line whose name and key id match a known key must verify
/// (one that does not rejects the whole note), lines from unknown keys are
/// ignored, repeated lines from one key count once, and at least one known
/// key must have signed.
pub fn verify_note(note: &str, keys: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
    let parsed = Note::parse(note)?;
    let mut verified: Vec<VerifierKey> = Vec::new();
    for sig in &parsed.signatures {
        let Some(key) = find_key(keys, &sig.name, sig.key_id)? else {
            continue; // unknown signer: ignored, as the spec requires
        };
        if !key.verifies(&parsed.text, &sig.signature) {
            return Err(NoteError::InvalidSignature { name: sig.name.clone(), key_id: hex::encode(sig.key_id) });
        }
        if !verified.contains(key) {
            verified.push(key.clone());
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(VerifiedNote { text: parsed.text, signers: verified.iter().map(|k| k.name.clone()).collect(), keys: verified })
}

/// A C2SP `tlog-checkpoint` body: the log's origin, tree size and root hash,
/// plus any extension lines (kept as they are).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity (first line); non-empty.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines after the root, each non-empty, without newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n` then one line per extension.
    pub fn to_text(&self) -> Result<String, NoteError> {
        if self.origin.is_empty() {
            return Err(NoteError::MalformedCheckpoint("empty origin"));
        }
        if self.extensions.iter().any(|e| e.is_empty()) {
            return Err(NoteError::MalformedCheckpoint("empty extension line"));
        }
        let has_bad_char = |s: &str| s.contains('\n') || !has_only_allowed_chars(s);
        if has_bad_char(&self.origin) || self.extensions.iter().any(|e| has_bad_char(e)) {
            return Err(NoteError::MalformedCheckpoint("newline or control character in a line"));
        }
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        Ok(out)
    }

    /// Parses a checkpoint body strictly: a non-empty origin; the size in
    /// decimal without sign or leading zeros; the root in canonical standard
    /// base64 of exactly 32 bytes; then non-empty extension lines, kept.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if !has_only_allowed_chars(text) {
            return Err(NoteError::MalformedCheckpoint("control character"));
        }
        let body = text.strip_suffix('\n').ok_or(NoteError::MalformedCheckpoint("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(NoteError::MalformedCheckpoint("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(NoteError::MalformedCheckpoint("empty origin"));
        }
        let size = parse_tree_size(size)?;
        let root = parse_root(root)?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(|e| e.is_empty()) {
            return Err(NoteError::MalformedCheckpoint("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

fn parse_tree_size(s: &str) -> Result<u64, NoteError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NoteError::MalformedCheckpoint("tree size is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(NoteError::MalformedCheckpoint("tree size has a leading zero"));
    }
    s.parse::<u64>().map_err(|_| NoteError::MalformedCheckpoint("tree size out of range"))
}

fn parse_root(s: &str) -> Result<Hash, NoteError> {
    let bytes = BASE64.decode(s).map_err(|_| NoteError::MalformedCheckpoint("root hash is not canonical base64"))?;
    let root: Hash = bytes.as_slice().try_into().map_err(|_| NoteError::MalformedCheckpoint("root hash is not 32 bytes"))?;
    // The engine already rejects non-canonical padding and trailing bits;
    // re-encoding makes the "one text per root" rule explicit.
    if BASE64.encode(root) != s {
        return Err(NoteError::MalformedCheckpoint("root hash is not canonical base64"));
    }
    Ok(root)
}

/// Verifies a checkpoint note against the cluster's node keys and parses its
/// body. Succeeds only when a strict majority of `keys` (more than half of
/// `keys.len()`) signed it, every signature from a listed key verifies, and
/// the body is a strict checkpoint. Returns the checkpoint and the names of
/// the keys that signed. Each key counts once however many lines it has.
pub fn verify_checkpoint_quorum(note: &str, keys: &[VerifierKey]) -> Result<(Checkpoint, Vec<String>), NoteError> {
    let verified = verify_note_quorum(note, keys)?;
    let checkpoint = Checkpoint::parse(&verified.text)?;
    Ok((checkpoint, verified.signers))
}

/// A note signed by a strict majority of `keys` (each listed once), whatever
/// its text says: the rule for checkpoints and item-head statements alike.
pub fn verify_note_quorum(note: &str, keys: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
    if keys.is_empty() {
        return Err(NoteError::NoKeys);
    }
    for (i, a) in keys.iter().enumerate() {
        if keys[..i].iter().any(|b| (b.name == a.name && b.key_id == a.key_id) || b.public_key == a.public_key) {
            return Err(NoteError::DuplicateKey(a.to_string()));
        }
    }
    let verified = verify_note(note, keys)?;
    let signed = verified.keys.len();
    let needed = keys.len() / 2 + 1;
    if signed < needed {
        return Err(NoteError::NoQuorum { signed, keys: keys.len(), needed });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        verifier_key: String,
        signer_key: String,
        text: String,
        note: String,
    }

    fn vector() -> Vector {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/signed-note.json");
        let text = std::fs::read_to_string(path).expect("read signed-note.json");
        serde_json::from_str(&text).expect("parse signed-note.json")
    }

    fn test_signer(name: &str, n: u8) -> Signer {
        Signer::from_seed(name, &[n; 32]).expect("signer")
    }

    #[test]
    fn vector_signs_byte_for_byte_and_verifies() {
        let v = vector();
        let signer = Signer::from_private_key_text(&v.signer_key).expect("private key");
        let vk = VerifierKey::parse(&v.verifier_key).expect("verifier key");
        assert_eq!(signer.verifier_key(), vk);
        assert_eq!(vk.to_string(), v.verifier_key);
        assert_eq!(hex::encode(vk.key_id()), "c74f20a3");
        assert_eq!(vk.name(), "PeterNeumann");
        assert_eq!(key_id(vk.name(), vk.public_key()), [0xc7, 0x4f, 0x20, 0xa3]);

        let note = sign_note(&v.text, &[&signer]).expect("sign");
        assert_eq!(note, v.note);
        assert!(note.contains("\n\n\u{2014} PeterNeumann "));

        let verified = verify_note(&v.note, std::slice::from_ref(&vk)).expect("verify");
        assert_eq!(verified.text(), v.text);
        assert_eq!(verified.signers(), ["PeterNeumann".to_owned()]);

        let parsed = Note::parse(&v.note).expect("parse");
        assert_eq!(parsed.encode().expect("encode"), v.note);
    }

    #[test]
    fn any_changed_byte_of_the_vector_note_fails() {
        let v = vector();
        let vk = VerifierKey::parse(&v.verifier_key).expect("verifier key");
        let bytes = v.note.as_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut m = bytes.to_vec();
                m[i] ^= bit;
                if let Ok(s) = String::from_utf8(m) {
                    assert!(verify_note(&s, std::slice::from_ref(&vk)).is_err(), "byte {i} bit {bit:#x} still verifies");
                }
            }
        }
        // Dropping or adding a byte fails too.
        assert!(verify_note(&v.note[..v.note.len() - 1], std::slice::from_ref(&vk)).is_err());
        assert!(verify_note(&format!("{}\n", v.note), std::slice::from_ref(&vk)).is_err());
        assert!(verify_note(&format!("x{}", v.note), std::slice::from_ref(&vk)).is_err());
    }

    #[test]
    fn verifier_key_parse_rejects_bad_forms() {
        let v = vector();
        let good = v.verifier_key.as_str();
        assert!(VerifierKey::parse(&good.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(VerifierKey::parse(&good.replace("c74f20a3", "c74f20a")).is_err());
        assert!(VerifierKey::parse(&good.replace("PeterNeumann", "Peter Neumann")).is_err());
        assert!(VerifierKey::parse(&good.replace("PeterNeumann", "")).is_err());
        assert!(VerifierKey::parse(&good.replace("+ARpc", "+AhpC")).is_err());
        assert!(VerifierKey::parse("PeterNeumann+c74f20a3").is_err());
        // Uppercase hex in the key id is read, lowercase is written.
        let upper = VerifierKey::parse(&good.replace("c74f20a3", "C74F20A3")).expect("upper hex");
        assert_eq!(upper.to_string(), good);
        // The private key's key id is checked too.
        assert!(Signer::from_private_key_text(&v.signer_key.replace("c74f20a3", "00000000")).is_err());
        assert!(Signer::from_private_key_text(&v.verifier_key).is_err());
    }

    #[test]
    fn unknown_signers_are_ignored_and_bad_known_signatures_reject() {
        let a = test_signer("node-a.custody", 1);
        let stranger = test_signer("stranger", 2);
        // Same name as a, other key: a different key id, so an unknown key.
        let impostor = test_signer("node-a.custody", 3);
        let text = "hello\n";
        let keys = [a.verifier_key()];

        let note = sign_note(text, &[&stranger, &a, &impostor]).unwrap();
        let v = verify_note(&note, &keys).unwrap();
        assert_eq!(v.signers(), ["node-a.custody".to_owned()]);

        // Only unknown signers: rejected.
        let note = sign_note(text, &[&stranger]).unwrap();
        assert!(matches!(verify_note(&note, &keys), Err(NoteError::NoKnownSignature)));

        // A known key's signature over other text: the whole note is rejected,
        // even beside a good one.
        let mut bad = a.sign("other\n").unwrap();
        bad.name = a.name().to_owned();
        let note = Note { text: text.to_owned(), signatures: vec![a.sign(text).unwrap(), bad] }.encode().unwrap();
        assert!(matches!(verify_note(&note, &keys), Err(NoteError::InvalidSignature { .. })));

        // A known key id with a signature of the wrong length is a bad signature.
        let short = NoteSignature { name: a.name().to_owned(), key_id: a.key_id(), signature: vec![0; 10] };
        let note = Note { text: text.to_owned(), signatures: vec![short] }.encode().unwrap();
        assert!(matches!(verify_note(&note, &keys), Err(NoteError::InvalidSignature { .. })));
    }

    #[test]
    fn malformed_notes_and_texts() {
        let a = test_signer("a", 1);
        let keys = [a.verifier_key()];
        assert!(matches!(sign_note("no newline", &[&a]), Err(NoteError::InvalidText(_))));
        assert!(matches!(sign_note("tab\there\n", &[&a]), Err(NoteError::InvalidText(_))));
        assert!(matches!(sign_note("text\n", &[]), Err(NoteError::MalformedNote(_))));
        let good = sign_note("text\n", &[&a]).unwrap();
        for bad in [
            good.replace("\n\n", "\n"),                  // no blank line
            good.trim_end().to_owned(),                  // last line not ended
            good.replace('\u{2014}', "-"),               // ascii dash
            good.replace("\u{2014} a ", "\u{2014} a  "), // double space
            format!("{good}\n"),                         // trailing blank line
            good.replace("text", "te\rxt"),              // control character
        ] {
            assert!(verify_note(&bad, &keys).is_err(), "{bad:?}");
        }
        // Text with blank lines inside is fine: the last blank line splits.
        let note = sign_note("a\n\nb\n", &[&a]).unwrap();
        assert_eq!(verify_note(&note, &keys).unwrap().text(), "a\n\nb\n");
        let note = sign_note("a\n\n", &[&a]).unwrap();
        assert_eq!(verify_note(&note, &keys).unwrap().text(), "a\n\n");
        // Too many signatures.
        let many: Vec<&Signer> = std::iter::repeat_n(&a, MAX_SIGNATURES + 1).collect();
        assert!(sign_note("x\n", &many).is_err());
        let many: Vec<&Signer> = std::iter::repeat_n(&a, MAX_SIGNATURES).collect();
        let note = sign_note("x\n", &many).unwrap();
        assert!(verify_note(&note, &keys).is_ok());
        assert!(verify_note(&format!("{note}{}", a.sign("x\n").unwrap().to_line()), &keys).is_err());
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "custody.example/cluster-1".to_owned(),
            size,
            root: crate::merkle::leaf_hash(&size.to_be_bytes()),
            extensions: Vec::new(),
        }
    }

    #[test]
    fn checkpoint_text_round_trip_and_strictness() {
        let c = cp(20_852_163);
        let text = c.to_text().unwrap();
        assert_eq!(text, format!("custody.example/cluster-1\n20852163\n{}\n", BASE64.encode(c.root)));
        assert_eq!(Checkpoint::parse(&text).unwrap(), c);

        let mut e = cp(0);
        e.extensions = vec!["dev-retention-secs 30".to_owned()];
        let text = e.to_text().unwrap();
        assert!(text.ends_with("\ndev-retention-secs 30\n"));
        assert_eq!(Checkpoint::parse(&text).unwrap(), e);

        // The spec's own example parses.
        let ex = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let p = Checkpoint::parse(ex).unwrap();
        assert_eq!((p.origin.as_str(), p.size), ("example.com/behind-the-sofa", 20_852_163));

        let root64 = BASE64.encode(c.root);
        for bad in [
            format!("o\n20852163\n{root64}"),                                                      // no final newline
            "o\n20852163\n".to_owned(),                                                            // two lines
            format!("\n1\n{root64}\n"),                                                            // empty origin
            format!("o\n01\n{root64}\n"),                                                          // leading zero
            format!("o\n+1\n{root64}\n"),                                                          // sign
            format!("o\n 1\n{root64}\n"),                                                          // space
            format!("o\n\n{root64}\n"),                                                            // empty size
            format!("o\n18446744073709551616\n{root64}\n"),                                        // overflow
            format!("o\n1\n{}\n", &root64[..root64.len() - 1]),                                    // unpadded
            format!("o\n1\n{}\n", BASE64.encode([0u8; 31])),                                       // short hash
            format!("o\n1\n{}\n", BASE64.encode([0u8; 33])),                                       // long hash
            format!("o\n1\n{}\n", base64::engine::general_purpose::URL_SAFE.encode([0xffu8; 32])), // url-safe alphabet
            format!("o\n1\n{root64}\n\next\n"),                                                    // empty extension line
            format!("o\n1\n{root64}\r\n"),                                                         // CR
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        // Non-canonical trailing bits in the root: 32 zero bytes end in "AA=";
        // "AB=" decodes to the same bytes in a lenient decoder.
        let zero64 = BASE64.encode([0u8; 32]);
        assert!(Checkpoint::parse(&format!("o\n1\n{zero64}\n")).is_ok());
        let nc = format!("{}B=", &zero64[..zero64.len() - 2]);
        assert!(Checkpoint::parse(&format!("o\n1\n{nc}\n")).is_err());
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{root64}\n")).unwrap().size, 0);

        let mut bad = cp(1);
        bad.origin = "two\nlines".to_owned();
        assert!(bad.to_text().is_err());
        bad.origin = String::new();
        assert!(bad.to_text().is_err());
        let mut bad = cp(1);
        bad.extensions = vec![String::new()];
        assert!(bad.to_text().is_err());
    }

    #[test]
    fn checkpoint_quorum() {
        let (a, b, c) = (test_signer("node-1", 1), test_signer("node-2", 2), test_signer("node-3", 3));
        let keys = [a.verifier_key(), b.verifier_key(), c.verifier_key()];
        let body = cp(1234).to_text().unwrap();

        let note = sign_note(&body, &[&a, &c]).unwrap();
        let (got, signers) = verify_checkpoint_quorum(&note, &keys).unwrap();
        assert_eq!(got, cp(1234));
        assert_eq!(signers, ["node-1".to_owned(), "node-3".to_owned()]);

        let note = sign_note(&body, &[&a, &b, &c]).unwrap();
        assert_eq!(verify_checkpoint_quorum(&note, &keys).unwrap().1.len(), 3);

        let note = sign_note(&body, &[&b]).unwrap();
        assert!(matches!(verify_checkpoint_quorum(&note, &keys), Err(NoteError::NoQuorum { signed: 1, keys: 3, needed: 2 })));

        // One key's line twice counts once.
        let note = sign_note(&body, &[&b, &b]).unwrap();
        assert!(matches!(verify_checkpoint_quorum(&note, &keys), Err(NoteError::NoQuorum { signed: 1, .. })));
        let note = sign_note(&body, &[&b, &b, &a]).unwrap();
        assert_eq!(verify_checkpoint_quorum(&note, &keys).unwrap().1, ["node-2".to_owned(), "node-1".to_owned()]);

        // Unknown signers do not help.
        let (x, y) = (test_signer("x", 9), test_signer("y", 10));
        let note = sign_note(&body, &[&a, &x, &y]).unwrap();
        assert!(matches!(verify_checkpoint_quorum(&note, &keys), Err(NoteError::NoQuorum { .. })));

        // Half is not a majority.
        let d = test_signer("node-4", 4);
        let keys4 = [a.verifier_key(), b.verifier_key(), c.verifier_key(), d.verifier_key()];
        let note = sign_note(&body, &[&a, &b]).unwrap();
        assert!(matches!(verify_checkpoint_quorum(&note, &keys4), Err(NoteError::NoQuorum { needed: 3, .. })));
        let note = sign_note(&body, &[&a, &b, &d]).unwrap();
        assert!(verify_checkpoint_quorum(&note, &keys4).is_ok());

        // A key list with a key twice is refused rather than miscounted.
        let dup = [a.verifier_key(), a.verifier_key(), b.verifier_key()];
        assert!(matches!(verify_checkpoint_quorum(&note, &dup), Err(NoteError::DuplicateKey(_))));
        let renamed = VerifierKey::from_public_key("alias", *a.verifier_key().public_key()).unwrap();
        let dup = [a.verifier_key(), renamed, b.verifier_key()];
        assert!(matches!(verify_checkpoint_quorum(&note, &dup), Err(NoteError::DuplicateKey(_))));
        assert!(matches!(verify_checkpoint_quorum(&note, &[]), Err(NoteError::NoKeys)));

        // A signed body that is not a checkpoint fails after verification.
        let note = sign_note("not a checkpoint\n", &[&a, &b]).unwrap();
        assert!(matches!(verify_checkpoint_quorum(&note, &keys), Err(NoteError::MalformedCheckpoint(_))));

        // A tampered checkpoint fails whoever signed it.
        let note = sign_note(&body, &[&a, &b, &c]).unwrap();
        let tampered = note.replacen("1234", "1235", 1);
        assert!(matches!(verify_checkpoint_quorum(&tampered, &keys), Err(NoteError::InvalidSignature { .. })));
    }
}
