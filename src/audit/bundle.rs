//! The court's proof bundle (JSON, self-describing, versioned) and its
//! offline verification. Pure: the verifier needs the bundle, the verifier
//! keys the court keeps, and optionally the clip's SHA-256 — no network.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::merkle::{leaf_hash, verify_inclusion, Hash};
use super::note::{verify_checkpoint_quorum, verify_note, Checkpoint, Note, VerifierKey};

/// The `format` every bundle names.
pub const BUNDLE_FORMAT: &str = "custody-proof-bundle";
/// The bundle version this code writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

/// A leaf of the audit log with (for trail records) its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafProof {
    /// Leaf index in the tree.
    pub index: u64,
    /// Base64 of the canonical leaf bytes (RFC 8785 JSON).
    pub leaf: String,
    /// Base64 hashes, RFC 9162 order (empty for `deposit`, whose proof is the bundle's `inclusion`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion: Vec<String>,
}

/// What a court receives for one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Always [`BUNDLE_VERSION`] for bundles this code reads.
    pub version: u32,
    /// The checkpoint, as signed-note text, every proof is against.
    pub checkpoint: String,
    /// The item's metadata as the vault shows it (checked against the deposit record).
    pub item: Value,
    /// The deposit record.
    pub deposit: LeafProof,
    /// Inclusion proof of the deposit record.
    pub inclusion: Vec<String>,
    /// The item's other records (requests, approvals, grants, accesses, retention changes).
    pub trail: Vec<LeafProof>,
    /// Officers' public keys and signatures for each approval.
    pub approvals: Vec<Value>,
}

/// One named check and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `custody verify --json`: the verdict and every check it rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerifyReport {
    /// Every check holds.
    pub valid: bool,
    /// The item id the bundle names (absent when the bundle names none).
    pub item: Option<String>,
    pub checks: Vec<Check>,
}

fn check(name: impl Into<String>, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check { name: name.into(), ok: true, detail },
        Err(detail) => Check { name: name.into(), ok: false, detail },
    }
}

/// Why a bundle or key file cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a proof bundle: {0}")]
    Parse(String),
    #[error("unsupported bundle: {0}")]
    Unsupported(String),
    #[error("bad verifier key on line {line}: {detail}")]
    Key { line: usize, detail: String },
    #[error("the key file holds no verifier keys")]
    NoKeys,
}

/// Parses a bundle; refuses other formats and versions.
pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError::Parse(e.to_string()))?;
    if b.format != BUNDLE_FORMAT {
        return Err(BundleError::Unsupported(format!("format `{}`", b.format)));
    }
    if b.version != BUNDLE_VERSION {
        return Err(BundleError::Unsupported(format!("version {}", b.version)));
    }
    Ok(b)
}

/// Parses a verifier key file: one key per line; blank lines and `#` comments skipped.
pub fn parse_keys(text: &str) -> Result<Vec<VerifierKey>, BundleError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(VerifierKey::parse(line).map_err(|e| BundleError::Key { line: i + 1, detail: e.to_string() })?);
    }
    if keys.is_empty() {
        return Err(BundleError::NoKeys);
    }
    Ok(keys)
}

fn decode_hashes(list: &[String]) -> Result<Vec<Hash>, String> {
    list.iter()
        .enumerate()
        .map(|(i, h)| {
            let b = BASE64.decode(h).map_err(|e| format!("proof hash {i}: {e}"))?;
            b.try_into().map_err(|_| format!("proof hash {i} is not 32 bytes"))
        })
        .collect()
}

fn decode_leaf(p: &LeafProof) -> Result<(Vec<u8>, Value), String> {
    let bytes = BASE64.decode(&p.leaf).map_err(|e| format!("leaf {}: {e}", p.index))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("leaf {} is not JSON: {e}", p.index))?;
    Ok((bytes, v))
}

fn inclusion(leaf: &[u8], index: u64, proof: &[String], cp: &Checkpoint) -> Result<String, String> {
    let hashes = decode_hashes(proof)?;
    verify_inclusion(&leaf_hash(leaf), index, cp.size, &hashes, &cp.root).map_err(|e| e.to_string())?;
    Ok(format!("leaf {index} is in the tree of size {}", cp.size))
}

/// Stricter than signed-note verification, for evidence: a signature line
/// that names a trusted key must carry that key's id and a valid signature.
/// (Lines of names the court does not know are ignored, as in C2SP.)
fn strict_signatures(note: &str, keys: &[VerifierKey]) -> Result<(), String> {
    let parsed = Note::parse(note).map_err(|e| e.to_string())?;
    for sig in &parsed.signatures {
        if let Some(key) = keys.iter().find(|k| k.name() == sig.name) {
            let single = Note { text: parsed.text.clone(), signatures: vec![sig.clone()] }.encode().map_err(|e| e.to_string())?;
            verify_note(&single, std::slice::from_ref(key))
                .map_err(|_| format!("the signature line of {} does not verify under its trusted key", sig.name))?;
        }
    }
    Ok(())
}

/// Checks a bundle against the court's verifier keys and, if given, the
/// clip's SHA-256 (hex). Every check is reported; the bundle is valid only if
/// all of them hold.
pub fn verify(b: &Bundle, keys: &[VerifierKey], clip_sha256: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let cp = match strict_signatures(&b.checkpoint, keys).and_then(|_| verify_checkpoint_quorum(&b.checkpoint, keys).map_err(|e| e.to_string())) {
        Ok((cp, signers)) => {
            let dev = if cp.origin.contains("/dev-retention-") { " — a DEV cluster with shortened retention" } else { "" };
            checks.push(check(
                "checkpoint signatures",
                Ok(format!("signed by {} of {} keys ({}); origin {}{dev}", signers.len(), keys.len(), signers.join(", "), cp.origin)),
            ));
            Some(cp)
        }
        Err(e) => {
            checks.push(check("checkpoint signatures", Err(e)));
            None
        }
    };
    let untrusted = || Err::<String, String>("no trusted checkpoint to check against".into());
    let item_id = b.item.get("item").and_then(Value::as_str).unwrap_or_default().to_string();
    let deposit = decode_leaf(&b.deposit);
    let record = deposit.as_ref().map_err(Clone::clone).and_then(|(_, v)| {
        let same = |f: &str| v.get(f).is_some() && v.get(f) == b.item.get(f);
        if v.get("kind").and_then(Value::as_str) != Some("deposit") {
            return Err("the deposit leaf is not a deposit record".into());
        }
        for f in ["item", "sha256", "size"] {
            if !same(f) {
                return Err(format!("the deposit record's `{f}` differs from the bundle's item"));
            }
        }
        Ok(format!(
            "item {item_id} deposited {} by {}",
            v.get("time").and_then(Value::as_str).unwrap_or("?"),
            v.get("depositor").and_then(Value::as_str).unwrap_or("?")
        ))
    });
    checks.push(check("deposit record", record));
    checks.push(check(
        "deposit inclusion",
        match (&cp, &deposit) {
            (Some(cp), Ok((leaf, _))) => inclusion(leaf, b.deposit.index, &b.inclusion, cp),
            (None, _) => untrusted(),
            (_, Err(e)) => Err(e.clone()),
        },
    ));
    if let Some(clip) = clip_sha256 {
        let want = deposit.as_ref().ok().and_then(|(_, v)| v.get("sha256").and_then(Value::as_str).map(str::to_string));
        checks.push(check(
            "clip sha256",
            match want {
                Some(w) if w == clip => Ok(format!("the clip's SHA-256 is the deposited one ({w})")),
                Some(w) => Err(format!("the clip's SHA-256 {clip} is not the deposited {w}")),
                None => Err("no deposited SHA-256 to compare with".into()),
            },
        ));
    }
    for (i, a) in b.approvals.iter().enumerate() {
        let signer = a.get("signer").and_then(Value::as_str).unwrap_or("?");
        let name = format!("approval signature {signer}");
        checks.push(check(name, approval_signature(a, &item_id, &b.trail).map_err(|e| format!("approval {i}: {e}"))));
    }
    for (i, t) in b.trail.iter().enumerate() {
        let leaf = decode_leaf(t);
        let kind = leaf.as_ref().ok().and_then(|(_, v)| v.get("kind").and_then(Value::as_str).map(str::to_string)).unwrap_or_else(|| "record".into());
        let name = format!("trail[{i}] {kind} inclusion");
        let res = match (&cp, leaf) {
            (None, _) => untrusted(),
            (_, Err(e)) => Err(e),
            (Some(cp), Ok((bytes, v))) => {
                if v.get("item").and_then(Value::as_str) != Some(item_id.as_str()) {
                    Err("the record is about another item".into())
                } else {
                    inclusion(&bytes, t.index, &t.inclusion, cp)
                }
            }
        };
        checks.push(check(name, res));
    }
    checks
}

/// The context every request signature starts with (see `approval::SIGNING_CONTEXT`).
const REQUEST_CONTEXT: &[u8] = b"custody/access-request/v1\n";

/// An officer's or approver's signature: valid under the given key, over a
/// request for this item, and the same signature an included trail record names.
fn approval_signature(a: &Value, item: &str, trail: &[LeafProof]) -> Result<String, String> {
    let field = |f: &str| a.get(f).and_then(Value::as_str).ok_or_else(|| format!("no `{f}`"));
    let (signer, request) = (field("signer")?, field("request")?);
    let key: [u8; 32] = BASE64.decode(field("public_key")?).ok().and_then(|k| k.try_into().ok()).ok_or("the public key is not 32 bytes of base64")?;
    let signature = BASE64.decode(field("signature")?).map_err(|_| "the signature is not base64")?;
    let signed = BASE64.decode(field("signed")?).map_err(|_| "the signed bytes are not base64")?;
    let body = signed.strip_prefix(REQUEST_CONTEXT).ok_or("the signed bytes are not an access request")?;
    let req: Value = serde_json::from_slice(body).map_err(|e| format!("the signed request is not JSON: {e}"))?;
    if req.get("item").and_then(Value::as_str) != Some(item) {
        return Err("the signed request is for another item".into());
    }
    if !crate::crypto::verify_ed25519(&key, &signed, &signature) {
        return Err(format!("{signer}'s signature does not verify"));
    }
    let named = trail.iter().filter_map(|t| decode_leaf(t).ok()).any(|(_, v)| {
        let who = match v.get("kind").and_then(Value::as_str) {
            Some("approval") => v.get("signer"),
            Some("request") => v.get("by"),
            _ => None,
        };
        v.get("request").and_then(Value::as_str) == Some(request)
            && who.and_then(Value::as_str) == Some(signer)
            && v.get("signature") == a.get("signature")
    });
    if !named {
        return Err(format!("no included trail record names {signer}'s signature on request {request}"));
    }
    Ok(format!("{signer} signed request {request} for this item"))
}
