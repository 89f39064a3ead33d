//! Art. 17–18 access requests and their quorum rules. A request names the
//! item, the action, at least two participating officers (the requester
//! first), a purpose and the approval document; each participant signs its
//! canonical bytes with their own registered key, and an approver who is not
//! a participant signs too (an emergency-approver for an emergency request).
//! Only [`evaluate`] makes a [`QuorumApproved`], and only when every rule holds
//! against the registry as it is now. Pure: no clock, no IO.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::evidence::{check_text, ItemId};

/// What every signature over a request covers first: a request signature can
/// never be mistaken for a signature over anything else.
pub const SIGNING_CONTEXT: &[u8] = b"custody/access-request/v1\n";
/// How long a request (and the grant it may form) stays valid by default.
pub const DEFAULT_TTL_SECS: u64 = 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    View,
    Retrieve,
    Copy,
    Purge,
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "view" => Ok(Action::View),
            "retrieve" => Ok(Action::Retrieve),
            "copy" => Ok(Action::Copy),
            "purge" => Ok(Action::Purge),
            o => Err(format!("action must be view, retrieve, copy or purge, not `{o}`")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::View => "view",
            Action::Retrieve => "retrieve",
            Action::Copy => "copy",
            Action::Purge => "purge",
        })
    }
}

/// The request as every signer signs it (the registration form of art. 18(4)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    pub item: ItemId,
    pub action: Action,
    pub purpose: String,
    pub approval_doc: String,
    /// Participating officers, the requester first.
    pub participants: Vec<String>,
    #[serde(default)]
    pub emergency: bool,
    /// Unix milliseconds after which neither the request nor its grant is valid.
    pub expires_at_ms: u64,
    /// Random hex, so two otherwise equal requests are distinct.
    pub nonce: String,
    /// How many fetches the grant allows (1 to `limits::MAX_FETCHES_PER_GRANT`).
    #[serde(default = "one_fetch")]
    pub max_fetches: u32,
}

fn one_fetch() -> u32 {
    1
}

impl AccessRequest {
    /// The exact bytes each signer signs: the context line, then the request
    /// as canonical JSON. A request that does not [`validate`](Self::validate)
    /// has none: it is refused, never signed.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        self.validate()?;
        let v = serde_json::to_value(self).map_err(|e| format!("the request does not serialise: {e}"))?;
        let body = crate::audit::to_canonical_bytes(&v).map_err(|e| format!("the request has no canonical form: {e}"))?;
        Ok([SIGNING_CONTEXT, &body].concat())
    }

    /// The request's id: the first 16 bytes of the SHA-256 of its signing
    /// bytes, hex; an error for a request that does not validate.
    pub fn id(&self) -> Result<String, String> {
        Ok(hex::encode(&crate::crypto::sha256(&self.signing_bytes()?)[..16]))
    }

    pub fn validate(&self) -> Result<(), String> {
        check_text("purpose", &self.purpose, true)?;
        check_text("approval document", &self.approval_doc, true)?;
        if self.participants.len() < 2 {
            return Err("a request names at least two participating officers (art. 18(1))".into());
        }
        if self.participants.len() > crate::limits::MAX_PARTICIPANTS {
            return Err(format!("a request names at most {} participants", crate::limits::MAX_PARTICIPANTS));
        }
        for (i, p) in self.participants.iter().enumerate() {
            crate::vault::registry::check_name("participant", p)?;
            if self.participants[..i].contains(p) {
                return Err(format!("{p} is named twice: a person never counts twice"));
            }
        }
        if self.max_fetches == 0 || self.max_fetches > crate::limits::MAX_FETCHES_PER_GRANT {
            return Err(format!("a grant allows 1 to {} fetches", crate::limits::MAX_FETCHES_PER_GRANT));
        }
        if self.nonce.len() != 32 || hex::decode(&self.nonce).is_err() {
            return Err("nonce must be 32 hex digits".into());
        }
        if self.expires_at_ms > crate::limits::MAX_TIME_MS {
            return Err("expiry out of range".into());
        }
        Ok(())
    }
}

/// What a signer is, for the rules.
#[derive(Clone, Debug)]
pub struct Signer {
    pub name: String,
    pub public_key: [u8; 32],
    pub officer: bool,
    pub approver: bool,
    pub emergency_approver: bool,
    pub revoked: bool,
}

/// Signatures gathered so far: signer name → base64 Ed25519 signature over the signing bytes.
pub type Signatures = BTreeMap<String, String>;

/// Does `signature` (base64) by `key` cover this request?
pub fn signature_valid(req: &AccessRequest, key: &[u8; 32], signature: &str) -> bool {
    let Ok(bytes) = req.signing_bytes() else { return false };
    signature.len() <= crate::limits::MAX_SIGNATURE_B64_BYTES
        && BASE64.decode(signature).is_ok_and(|sig| crate::crypto::verify_ed25519_remembered(key, &bytes, &sig))
}

/// Proof that a request met every quorum rule; only [`evaluate`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumApproved {
    request: String,
    approver: String,
}

impl QuorumApproved {
    pub fn request(&self) -> &str {
        &self.request
    }
    pub fn approver(&self) -> &str {
        &self.approver
    }
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Granted(QuorumApproved),
    /// Who still has to sign.
    Pending(Vec<String>),
}

/// Applies the rules: every participant an unrevoked officer whose own valid
/// signature is present; an unrevoked approver (emergency-approver for an
/// emergency request) who is not a participant, with a valid signature.
/// `lookup` returns a person as registered now, so a revoked signer stops counting.
pub fn evaluate(req: &AccessRequest, sigs: &Signatures, lookup: &dyn Fn(&str) -> Option<Signer>) -> Result<Standing, String> {
    req.validate()?;
    let mut missing = Vec::new();
    for p in &req.participants {
        let Some(s) = lookup(p) else { return Err(format!("{p} is not registered")) };
        if s.revoked || !s.officer {
            return Err(format!("{p} is not an unrevoked officer"));
        }
        match sigs.get(p) {
            Some(sig) if signature_valid(req, &s.public_key, sig) => {}
            _ => missing.push(p.clone()),
        }
    }
    let approver = sigs.iter().find(|(name, sig)| {
        !req.participants.contains(name)
            && lookup(name).is_some_and(|s| {
                !s.revoked && (if req.emergency { s.emergency_approver } else { s.approver }) && signature_valid(req, &s.public_key, sig)
            })
    });
    match (missing.is_empty(), approver) {
        (true, Some((name, _))) => Ok(Standing::Granted(QuorumApproved { request: req.id()?, approver: name.clone() })),
        (_, None) => {
            missing.push(if req.emergency { "an emergency-approver".into() } else { "an approver".into() });
            Ok(Standing::Pending(missing))
        }
        (false, Some(_)) => Ok(Standing::Pending(missing)),
    }
}

#[cfg(test)]
mod tests;
