//! Items, chunks and manifests: the vocabulary of evidence, and the write-once
//! chunk store on a node's disk. Knows nothing of Raft, HTTP or RocksDB.

mod chunk_store;

pub mod bucket;
pub use bucket::{Bucket, BucketConfig, BucketError};
pub use chunk_store::{aligned_copy, read_file, write_new_file, AlignedBuf, ChunkStore, ChunkStoreError, Put, DIRECT_IO_ALIGN};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::audit::records::{DepositStatement, ListedHolder};
use crate::limits;

/// An item's identifier: 16 random bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId([u8; 16]);

impl ItemId {
    pub fn from_bytes(b: [u8; 16]) -> Self {
        ItemId(b)
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A chunk's name: the SHA-256 of its sealed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkName([u8; 32]);

impl ChunkName {
    pub fn from_digest(d: [u8; 32]) -> Self {
        ChunkName(d)
    }
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }
    /// Does `sealed` hash to this name?
    pub fn matches(&self, sealed: &[u8]) -> bool {
        crate::crypto::sha256(sealed) == self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{what} must be {len} lowercase hex digits")]
pub struct BadId {
    what: &'static str,
    len: usize,
}

pub fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], BadId> {
    let err = || BadId { what, len: N * 2 };
    if s.len() != N * 2 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(err());
    }
    let v = hex::decode(s).map_err(|_| err())?;
    v.try_into().map_err(|_| err())
}

macro_rules! hex_id {
    ($t:ident, $n:expr, $what:expr) => {
        impl FromStr for $t {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                parse_hex::<$n>(s, $what).map($t)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self)
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_id!(ItemId, 16, "an item id");
hex_id!(ChunkName, 32, "a chunk name");

/// Retention class (art. 14(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// 15 days from deposit.
    Standard,
    /// 365 days from deposit.
    Important,
}

impl FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(Retention::Standard),
            "important" => Ok(Retention::Important),
            other => Err(format!("retention must be `standard` or `important`, not `{other}`")),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Retention::Standard => "standard",
            Retention::Important => "important",
        })
    }
}

/// Retention periods in force for a cluster. Production uses the
/// regulation's; a dev cluster may shorten them, and says so everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub standard_secs: u64,
    pub important_secs: u64,
}

impl RetentionPolicy {
    pub const REGULATION: RetentionPolicy =
        RetentionPolicy { standard_secs: limits::STANDARD_RETENTION_SECS, important_secs: limits::IMPORTANT_RETENTION_SECS };

    /// Dev periods: standard = `secs`, important = 2·`secs`.
    pub fn dev(secs: u64) -> Self {
        RetentionPolicy { standard_secs: secs, important_secs: secs.saturating_mul(2) }
    }
    pub fn period_secs(&self, r: Retention) -> u64 {
        match r {
            Retention::Standard => self.standard_secs,
            Retention::Important => self.important_secs,
        }
    }
    pub fn is_dev(&self) -> bool {
        *self != Self::REGULATION
    }
}

/// One sealed chunk of an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkRef {
    pub name: ChunkName,
    /// Size of the sealed chunk in bytes (plaintext + GCM tag).
    pub size: u64,
}

/// What a deposit says about its clip, as given by the depositor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositMeta {
    pub case: String,
    pub system: String,
    pub retention: Retention,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DepositMeta {
    /// Checks the free-text fields: present, bounded, printable.
    pub fn validate(&self) -> Result<(), String> {
        check_text("case", &self.case, true)?;
        check_text("system", &self.system, true)?;
        if let Some(n) = &self.note {
            check_text("note", n, false)?;
        }
        Ok(())
    }
}

/// Validates a free-text field.
pub fn check_text(what: &str, s: &str, required: bool) -> Result<(), String> {
    if required && s.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > limits::MAX_TEXT_BYTES {
        return Err(format!("{what} is longer than {} bytes", limits::MAX_TEXT_BYTES));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

/// Everything needed to find, check and open an item's chunks. It is the
/// payload of the seal entry that Raft replicates; it never holds plaintext
/// or an unwrapped key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub item: ItemId,
    /// Hex SHA-256 of the plaintext clip.
    pub sha256: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Plaintext bytes per chunk (the last may be shorter).
    pub chunk_size: u64,
    pub chunks: Vec<ChunkRef>,
    /// Hex of the per-item nonce prefix.
    pub nonce_prefix: String,
    /// The voters the data key is split over, in the order of their ids; x = 1..n.
    pub holders: Vec<Holder>,
    /// Shares needed to rebuild the data key: a majority of the holders.
    pub threshold: u8,
    /// Hex SHA-256 commitment to the data key (`crypto::shares::key_commitment`).
    pub key_commitment: String,
    pub meta: DepositMeta,
    /// Name of the user whose client certificate made the deposit.
    pub depositor: String,
    /// Base64 Ed25519 signature by the depositor over [`Manifest::signing_bytes`].
    pub signature: String,
}

/// One holder of an item's data key (docs/KEYS.md §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub node: u64,
    /// The share's x-coordinate, 1..=n.
    pub x: u8,
    /// Hex of the holder's X25519 share public key the envelope is sealed to.
    pub share_key: String,
    /// Hex of the HPKE envelope holding the share, sealed at deposit; empty once
    /// the item is purged, or when the share came from re-sharing (`parts`).
    pub envelope: String,
    /// A share dealt by re-sharing (docs/KEYS.md §4.4): the sub-shares the old
    /// holders dealt this holder, which it combines; empty for a deposit's holders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<SubShare>,
}

impl Holder {
    /// The holder as deposit and re-share records list it (no envelopes).
    pub fn listed(&self) -> ListedHolder {
        ListedHolder { node: self.node, x: self.x, share_key: self.share_key.clone() }
    }
}

/// A sub-share one old holder (at `from_x`) dealt a new holder when re-sharing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubShare {
    pub from_x: u8,
    /// Hex of the HPKE envelope (`custody/reshare/v1`) sealed to the new holder's share key.
    pub envelope: String,
}

/// Begins the bytes a depositor signs.
pub const DEPOSIT_CONTEXT: &[u8] = b"custody/deposit/v1\n";
/// Begins the bytes a fetcher signs.
pub const ACCESS_CONTEXT: &[u8] = b"custody/access/v1\n";

/// What a fetcher signs before any holder releases its share (docs/KEYS.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccessStatement {
    pub item: ItemId,
    pub request: String,
    pub fetcher: String,
    /// Hex of the X25519 public key the holders seal their shares to.
    pub fetch_key: String,
}

impl AccessStatement {
    /// `ACCESS_CONTEXT` ‖ the statement as canonical JSON (RFC 8785).
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        if parse_hex::<32>(&self.fetch_key, "fetch key").is_err() {
            return Err("a fetch key is 64 lowercase hex digits".into());
        }
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let body = crate::audit::to_canonical_bytes(&v).map_err(|e| format!("the statement has no canonical form: {e}"))?;
        Ok([ACCESS_CONTEXT, &body].concat())
    }
}

/// Number of chunks a clip of `size` bytes is cut into. An empty clip is one empty chunk,
/// so every item has at least one sealed chunk binding its count.
pub fn chunk_count(size: u64, chunk_size: u64) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(chunk_size)
    }
}

impl Manifest {
    /// Structural checks a manifest must pass before it may be committed.
    pub fn validate(&self) -> Result<(), String> {
        self.meta.validate()?;
        if !(limits::MIN_CHUNK_SIZE_BYTES..=limits::MAX_CHUNK_SIZE_BYTES).contains(&self.chunk_size) {
            return Err("chunk size out of range".into());
        }
        if self.size > limits::MAX_CLIP_SIZE_BYTES {
            return Err("clip too large".into());
        }
        if self.chunks.len() as u64 != chunk_count(self.size, self.chunk_size) {
            return Err("chunk count does not match the clip size".into());
        }
        let sealed: u64 = self.chunks.iter().map(|c| c.size).sum();
        if sealed != self.size + self.chunks.len() as u64 * limits::GCM_TAG_BYTES {
            return Err("chunk sizes do not add up to the clip size".into());
        }
        if parse_hex::<32>(&self.sha256, "sha256").is_err() {
            return Err("sha256 must be 64 lowercase hex digits".into());
        }
        if parse_hex::<{ crate::crypto::NONCE_PREFIX_BYTES }>(&self.nonce_prefix, "nonce prefix").is_err() {
            return Err("bad nonce prefix".into());
        }
        if parse_hex::<32>(&self.key_commitment, "key commitment").is_err() {
            return Err("the key commitment must be 64 lowercase hex digits".into());
        }
        let n = self.holders.len();
        if n == 0 || n > crate::crypto::shares::MAX_HOLDERS as usize {
            return Err(format!("an item has 1 to {} key holders", crate::crypto::shares::MAX_HOLDERS));
        }
        if self.threshold != crate::crypto::shares::threshold(n as u8) {
            return Err(format!("the threshold of {n} holders is {}", crate::crypto::shares::threshold(n as u8)));
        }
        for (i, h) in self.holders.iter().enumerate() {
            if h.x as usize != i + 1 {
                return Err("holders take x = 1..n in order".into());
            }
            if i > 0 && self.holders[i - 1].node >= h.node {
                return Err("holders are listed in increasing node id, each once".into());
            }
            if parse_hex::<32>(&h.share_key, "share key").is_err() {
                return Err("a holder's share key is 64 lowercase hex digits".into());
            }
            if !h.parts.is_empty() {
                return Err("a deposit's holders hold their own envelopes, not re-shared parts".into());
            }
            if parse_hex::<{ crate::crypto::shares::SHARE_ENVELOPE_BYTES }>(&h.envelope, "envelope").is_err() {
                return Err(format!("a holder's envelope is {} bytes, hex", crate::crypto::shares::SHARE_ENVELOPE_BYTES));
            }
        }
        check_text("depositor", &self.depositor, true)?;
        if self.signature.len() > limits::MAX_SIGNATURE_B64_BYTES {
            return Err("the depositor's signature is too long".into());
        }
        Ok(())
    }

    /// What the depositor signs, and what the deposit leaf records: every field
    /// but the envelopes (which purge destroys; HPKE binds them to their holders),
    /// with the chunk names by their digest.
    pub fn statement(&self) -> DepositStatement {
        let mut names = Vec::with_capacity(self.chunks.len() * 32);
        for c in &self.chunks {
            names.extend_from_slice(c.name.digest());
        }
        DepositStatement {
            item: self.item.to_string(),
            sha256: self.sha256.clone(),
            size: self.size,
            chunk_size: self.chunk_size,
            chunks: self.chunks.len() as u64,
            chunks_sha256: hex::encode(crate::crypto::sha256(&names)),
            nonce_prefix: self.nonce_prefix.clone(),
            holders: self.holders.iter().map(Holder::listed).collect(),
            threshold: self.threshold,
            key_commitment: self.key_commitment.clone(),
            case: self.meta.case.clone(),
            system: self.meta.system.clone(),
            retention: self.meta.retention.to_string(),
            depositor: self.depositor.clone(),
            note: self.meta.note.clone(),
        }
    }

    /// `DEPOSIT_CONTEXT` ‖ the statement as canonical JSON (RFC 8785).
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        let body = self.statement().canonical_bytes().map_err(|e| format!("the deposit has no canonical form: {e}"))?;
        Ok([DEPOSIT_CONTEXT, &body].concat())
    }

    pub fn nonce_prefix_bytes(&self) -> Result<[u8; crate::crypto::NONCE_PREFIX_BYTES], BadId> {
        parse_hex(&self.nonce_prefix, "nonce prefix")
    }
    pub fn key_commitment_bytes(&self) -> Result<[u8; 32], BadId> {
        parse_hex(&self.key_commitment, "key commitment")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        let id = ItemId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<ItemId>().unwrap(), id);
        assert!("AB".repeat(16).parse::<ItemId>().is_err(), "uppercase is not canonical");
        assert!("ab".repeat(15).parse::<ItemId>().is_err());
        assert!("../etc/passwd".parse::<ChunkName>().is_err());
    }

    #[test]
    fn chunk_counts() {
        assert_eq!(chunk_count(0, 4), 1);
        assert_eq!(chunk_count(4, 4), 1);
        assert_eq!(chunk_count(5, 4), 2);
    }

    #[test]
    fn text_fields_are_checked() {
        assert!(check_text("case", "", true).is_err());
        assert!(check_text("case", "a\nb", true).is_err());
        assert!(check_text("case", &"x".repeat(2000), true).is_err());
        assert!(check_text("case", "2026-LN-0042 沈阳", true).is_ok());
    }
}
