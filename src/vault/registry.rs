//! The replicated registry (art. 12, 18): people with their roles and
//! Ed25519 public keys (their registered credential), and the source video
//! systems deposits come from. Only an administrator changes it; every change
//! is an audit record.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{audit, decode, refuse, stamp, Outcome, Refusal, StateRead, Tx, VaultError};
use crate::audit::records::{self, Applied, Body, PersonAction, SystemAction};
use crate::evidence::check_text;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Officer,
    Approver,
    EmergencyApprover,
    Court,
    Admin,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "officer" => Ok(Role::Officer),
            "approver" => Ok(Role::Approver),
            "emergency-approver" => Ok(Role::EmergencyApprover),
            "court" => Ok(Role::Court),
            "admin" => Ok(Role::Admin),
            o => Err(format!("role must be officer, approver, emergency-approver, court or admin, not `{o}`")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Officer => "officer",
            Role::Approver => "approver",
            Role::EmergencyApprover => "emergency-approver",
            Role::Court => "court",
            Role::Admin => "admin",
        })
    }
}

/// A registered person. `name` is also the common name of their client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Person {
    pub name: String,
    /// Badge or law-enforcement credential number.
    pub badge: String,
    pub unit: String,
    pub roles: BTreeSet<Role>,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    #[serde(default)]
    pub revoked: bool,
}

/// A filed source video system (art. 12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceSystem {
    pub id: String,
    /// Filing (備案) number with the county public-security organ.
    pub filing: String,
    pub operator: String,
    pub location: String,
}

/// A change to the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RegistryChange {
    AddPerson {
        person: Person,
    },
    RevokePerson {
        name: String,
    },
    /// Gives or takes roles: `roles` is the person's whole new set.
    SetRoles {
        name: String,
        roles: BTreeSet<Role>,
    },
    /// Replaces a person's public key (base64 of 32 bytes).
    ChangeKey {
        name: String,
        public_key: String,
    },
    AddSystem {
        system: SourceSystem,
    },
    /// Registers (or replaces) the keys a node states for itself, with its
    /// proofs (docs/KEYS.md §7); one administrator signs it.
    BindNode {
        binding: super::nodes::NodeBinding,
    },
}

impl RegistryChange {
    /// Changes to people (their entries, roles, keys, administrators) need a
    /// second administrator; filing a source system or binding a node's keys needs one.
    pub fn needs_two(&self) -> bool {
        !matches!(self, RegistryChange::AddSystem { .. } | RegistryChange::BindNode { .. })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            RegistryChange::AddPerson { person } => person.validate(),
            RegistryChange::RevokePerson { name } => check_name("name", name),
            RegistryChange::SetRoles { name, roles } => {
                check_name("name", name)?;
                if roles.is_empty() {
                    return Err("a person needs at least one role".into());
                }
                Ok(())
            }
            RegistryChange::ChangeKey { name, public_key } => {
                check_name("name", name)?;
                public_key_bytes(public_key).map(|_| ())
            }
            RegistryChange::AddSystem { system } => system.validate(),
            // Its proofs need the cluster id: `check_change` checks them.
            RegistryChange::BindNode { .. } => Ok(()),
        }
    }

    /// Who or what it is about: the person's name, the system's id or `node-<id>`.
    pub fn subject(&self) -> String {
        match self {
            RegistryChange::AddPerson { person } => person.name.clone(),
            RegistryChange::RevokePerson { name } | RegistryChange::SetRoles { name, .. } | RegistryChange::ChangeKey { name, .. } => name.clone(),
            RegistryChange::AddSystem { system } => system.id.clone(),
            RegistryChange::BindNode { binding } => format!("node-{}", binding.keys.node),
        }
    }
}

/// What an administrator signs to change the registry (docs/KEYS.md §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Proposal {
    pub change: RegistryChange,
    /// 32 random hex digits, so that two equal changes are distinct proposals.
    pub nonce: String,
    /// Unix milliseconds after which the proposal can no longer be approved.
    pub expires_at_ms: u64,
}

/// Begins the bytes every administrator signs for a registry change.
pub const CHANGE_CONTEXT: &[u8] = b"custody/registry-change/v1\n";

impl Proposal {
    pub fn validate(&self) -> Result<(), String> {
        self.change.validate()?;
        if self.nonce.len() != 32 || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err("a proposal's nonce is 32 lowercase hex digits".into());
        }
        if self.expires_at_ms > crate::limits::MAX_TIME_MS {
            return Err("the proposal expires beyond the last time the vault records".into());
        }
        Ok(())
    }

    /// `CHANGE_CONTEXT` ‖ the proposal as canonical JSON (RFC 8785); none for an invalid proposal.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        self.validate()?;
        let v = serde_json::to_value(self).map_err(|e| format!("the proposal does not serialise: {e}"))?;
        let body = crate::audit::to_canonical_bytes(&v).map_err(|e| format!("the proposal has no canonical form: {e}"))?;
        Ok([CHANGE_CONTEXT, &body].concat())
    }

    /// The change's id: the first 16 bytes of the SHA-256 of its signing bytes, hex.
    pub fn id(&self) -> Result<String, String> {
        Ok(hex::encode(&crate::crypto::sha256(&self.signing_bytes()?)[..16]))
    }
}

/// A proposal waiting for its second administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PendingChange {
    pub change: String,
    pub proposal: Proposal,
    /// The administrator who filed and signed it.
    pub by: String,
    /// Base64 Ed25519 signature of `by` over the proposal's signing bytes.
    pub signature: String,
    pub filed_at_ms: u64,
    /// The leaf that recorded the filing.
    pub leaf_index: u64,
}

pub mod keys {
    pub const PERSON_PREFIX: &[u8] = b"r/person/";
    pub const SYSTEM_PREFIX: &[u8] = b"r/system/";
    pub const CHANGE_PREFIX: &[u8] = b"r/change/";
    pub fn change(id: &str) -> Vec<u8> {
        [CHANGE_PREFIX, id.as_bytes()].concat()
    }
    pub fn person(name: &str) -> Vec<u8> {
        [PERSON_PREFIX, name.as_bytes()].concat()
    }
    pub fn system(id: &str) -> Vec<u8> {
        [SYSTEM_PREFIX, id.as_bytes()].concat()
    }
    /// Marks leaf `leaf` as a record about person `name` (for proof bundles).
    pub fn person_leaf(name: &str, leaf: u64) -> Vec<u8> {
        [b"r/personlog/".as_slice(), name.as_bytes(), b"\0", &leaf.to_be_bytes()].concat()
    }
    pub fn person_leaf_prefix(name: &str) -> Vec<u8> {
        [b"r/personlog/".as_slice(), name.as_bytes(), b"\0"].concat()
    }
}

/// A user name: what a client certificate's common name may be.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{what} `{name}` must be 1–64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

/// Decodes a registered public key.
pub fn public_key_bytes(b64: &str) -> Result<[u8; 32], String> {
    BASE64.decode(b64.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| "a public key must be the base64 of 32 bytes".to_string())
}

impl Person {
    pub fn validate(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        check_text("badge", &self.badge, true)?;
        check_text("unit", &self.unit, true)?;
        if self.roles.is_empty() {
            return Err("a person needs at least one role".into());
        }
        public_key_bytes(&self.public_key)?;
        Ok(())
    }
    pub fn has(&self, role: Role) -> bool {
        !self.revoked && self.roles.contains(&role)
    }
}

impl SourceSystem {
    pub fn validate(&self) -> Result<(), String> {
        check_name("system id", &self.id)?;
        check_text("filing", &self.filing, true)?;
        check_text("operator", &self.operator, true)?;
        check_text("location", &self.location, true)
    }
}

pub fn person(s: &dyn StateRead, name: &str) -> Result<Option<Person>, VaultError> {
    let k = keys::person(name);
    s.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

pub fn system(s: &dyn StateRead, id: &str) -> Result<Option<SourceSystem>, VaultError> {
    let k = keys::system(id);
    s.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

pub fn people(s: &dyn StateRead) -> Result<Vec<Person>, VaultError> {
    s.scan_prefix(keys::PERSON_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect()
}

pub fn systems(s: &dyn StateRead) -> Result<Vec<SourceSystem>, VaultError> {
    s.scan_prefix(keys::SYSTEM_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect()
}

/// The leaves that recorded person `name`'s entry, key, roles or revocation, in order.
pub fn person_leaves(s: &dyn StateRead, name: &str) -> Result<Vec<u64>, VaultError> {
    let prefix = keys::person_leaf_prefix(name);
    s.scan_prefix(&prefix)?
        .into_iter()
        .map(|(k, _)| {
            k[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| VaultError::Corrupt { key: hex::encode(&k), detail: "not a leaf index".into() })
        })
        .collect()
}

pub fn pending(s: &dyn StateRead, id: &str) -> Result<Option<PendingChange>, VaultError> {
    let k = keys::change(id);
    s.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

pub fn pending_changes(s: &dyn StateRead) -> Result<Vec<PendingChange>, VaultError> {
    s.scan_prefix(keys::CHANGE_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect()
}

/// Does `signature` (base64) by the current, unrevoked administrator `by` cover `bytes`?
fn admin_signed(tx: &Tx<'_>, by: &str, bytes: &[u8], signature: &str) -> Result<Result<(), (Refusal, String)>, VaultError> {
    let Some(p) = person(tx, by)?.filter(|p| p.has(Role::Admin)) else {
        return Ok(Err((Refusal::NotPermitted, format!("{by} is not an administrator: only administrators change the registry"))));
    };
    let key = public_key_bytes(&p.public_key).map_err(VaultError::Unrecordable)?;
    let Ok(sig) = BASE64.decode(signature) else { return Ok(Err((Refusal::Invalid, "the signature is not base64".into()))) };
    if !crate::crypto::verify_ed25519_remembered(&key, bytes, &sig) {
        return Ok(Err((Refusal::BadSignature, format!("the signature does not verify with {by}'s registered key"))));
    }
    Ok(Ok(()))
}

/// An administrator files a change, signed with their own key. A source
/// system is registered at once; every other change waits for a second one.
pub(super) fn propose(tx: &mut Tx<'_>, proposal: &Proposal, by: &str, signature: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    let bytes = match proposal.signing_bytes() {
        Ok(b) => b,
        Err(e) => return refuse(Refusal::Invalid, e),
    };
    if let Err((kind, e)) = admin_signed(tx, by, &bytes, signature)? {
        return refuse(kind, e);
    }
    let id = proposal.id().map_err(VaultError::Unrecordable)?;
    if pending(tx, &id)?.is_some() {
        return refuse(Refusal::Duplicate, format!("change {id} is already filed"));
    }
    let time = stamp(tx, time_ms)?;
    if time > proposal.expires_at_ms {
        return refuse(Refusal::Expired, "the proposal has expired");
    }
    if proposal.expires_at_ms - time > crate::limits::MAX_GRANT_SECS * 1000 {
        return refuse(Refusal::Invalid, format!("a proposal may stay open at most {} s", crate::limits::MAX_GRANT_SECS));
    }
    if !proposal.change.needs_two() {
        return apply_change(tx, &proposal.change, Some((&id, proposal)), &[(by, signature)], time);
    }
    // Checked now so that a change that could never apply is refused at once (it is checked again on approval).
    if let Err((kind, why)) = check_change(tx, &proposal.change)? {
        return refuse(kind, why);
    }
    let r = records::Registry::Proposal(records::Filed {
        change: id.clone(),
        by: by.to_string(),
        signature: signature.to_string(),
        proposal: serde_json::to_value(proposal).map_err(|e| VaultError::Unrecordable(e.to_string()))?,
    });
    let leaf_index = audit::append(tx, &audit::record(time, Body::Registry(r)))?;
    let p =
        PendingChange { change: id.clone(), proposal: proposal.clone(), by: by.into(), signature: signature.into(), filed_at_ms: time, leaf_index };
    tx.put(keys::change(&id), serde_json::to_vec(&p).expect("registry records serialise"));
    Ok(Outcome::RegistryStatus { change: id, applied: false, leaf_index })
}

/// A second administrator signs a pending change: it applies.
pub(super) fn approve(tx: &mut Tx<'_>, id: &str, by: &str, signature: &str, time_ms: u64) -> Result<Outcome, VaultError> {
    let Some(p) = pending(tx, id)? else { return refuse(Refusal::UnknownChange, format!("no pending registry change {id}")) };
    if p.by == by {
        return refuse(Refusal::NotPermitted, "the second signature must be another administrator's: the proposer's own does not count");
    }
    let bytes = p.proposal.signing_bytes().map_err(VaultError::Unrecordable)?;
    if let Err((kind, e)) = admin_signed(tx, by, &bytes, signature)? {
        return refuse(kind, e);
    }
    // The proposer must still be an administrator.
    if let Err((_, e)) = admin_signed(tx, &p.by, &bytes, &p.signature)? {
        return refuse(Refusal::NotPermitted, format!("the proposer's signature no longer counts: {e}"));
    }
    let time = stamp(tx, time_ms)?;
    if time > p.proposal.expires_at_ms {
        return refuse(Refusal::Expired, "the proposal has expired");
    }
    tx.delete(keys::change(id));
    apply_change(tx, &p.proposal.change, Some((id, &p.proposal)), &[(&p.by, &p.signature), (by, signature)], time)
}

/// The initial registry, written with the cluster's configuration (`cluster init`).
pub(super) fn initial(tx: &mut Tx<'_>, change: &RegistryChange, time: u64) -> Result<Outcome, VaultError> {
    if let Err((kind, why)) = check_change(tx, change)? {
        return refuse(kind, why);
    }
    apply_change(tx, change, None, &[], time)
}

/// Unrevoked administrators, by name.
fn admins(tx: &Tx<'_>) -> Result<BTreeSet<String>, VaultError> {
    Ok(people(tx)?.into_iter().filter(|p| p.has(Role::Admin)).map(|p| p.name).collect())
}

/// Whether `change` may apply to the registry as it stands.
fn check_change(tx: &Tx<'_>, change: &RegistryChange) -> Result<Result<(), (Refusal, String)>, VaultError> {
    if let Err(e) = change.validate() {
        return Ok(Err((Refusal::Invalid, e)));
    }
    let key_taken = |tx: &Tx<'_>, key: &str, except: &str| -> Result<Option<String>, VaultError> {
        let key = public_key_bytes(key).map_err(VaultError::Unrecordable)?;
        // One key, one person: a second name on a held key would let one
        // human sign as two officers. Revoked entries still hold theirs.
        Ok(people(tx)?.into_iter().find(|o| o.name != except && public_key_bytes(&o.public_key).is_ok_and(|k| k == key)).map(|o| o.name))
    };
    let taken = |who: String| (Refusal::Duplicate, format!("this public key is already registered to {who}: every person has a key of their own"));
    // The two-administrator rule must stay satisfiable: never fewer than two.
    let leaves_admins = |tx: &Tx<'_>, name: &str| -> Result<bool, VaultError> {
        let a = admins(tx)?;
        Ok(a.contains(name) && a.len() <= 2)
    };
    Ok(match change {
        RegistryChange::AddPerson { person: p } => {
            if person(tx, &p.name)?.is_some() {
                Err((Refusal::Duplicate, format!("{} is already registered", p.name)))
            } else if let Some(who) = key_taken(tx, &p.public_key, &p.name)? {
                Err(taken(who))
            } else {
                Ok(())
            }
        }
        RegistryChange::RevokePerson { name } | RegistryChange::SetRoles { name, .. } | RegistryChange::ChangeKey { name, .. } => {
            match person(tx, name)? {
                None => Err((Refusal::NotRegistered, format!("{name} is not registered"))),
                Some(p) if p.revoked => Err((Refusal::NotRegistered, format!("{name} is revoked"))),
                Some(_) => match change {
                    RegistryChange::RevokePerson { .. } if leaves_admins(tx, name)? => {
                        Err((Refusal::LastAdministrators, "the last two administrators cannot be removed: every change to people needs two".into()))
                    }
                    RegistryChange::SetRoles { roles, .. } if !roles.contains(&Role::Admin) && leaves_admins(tx, name)? => Err((
                        Refusal::LastAdministrators,
                        "the last two administrators cannot lose the role: every change to people needs two".into(),
                    )),
                    RegistryChange::ChangeKey { public_key, .. } => match key_taken(tx, public_key, name)? {
                        Some(who) => Err(taken(who)),
                        None => Ok(()),
                    },
                    _ => Ok(()),
                },
            }
        }
        RegistryChange::AddSystem { system: sys } => {
            if system(tx, &sys.id)?.is_some() {
                Err((Refusal::Duplicate, format!("source system {} is already registered", sys.id)))
            } else {
                Ok(())
            }
        }
        RegistryChange::BindNode { binding } => match tx.get_json::<super::ClusterConfig>(super::keys::CONFIG)? {
            None => Err((Refusal::NotConfigured, "the cluster is not configured yet".into())),
            Some(c) => binding.check(&c.cluster_id).map_err(|e| (Refusal::Invalid, format!("node binding: {e}"))),
        },
    })
}

/// Applies a checked change; `signed` is the change's id and proposal and
/// `signers` the administrators and their signatures (none for the initial
/// registry, recorded as `by: cluster init`). The record carries the proposal
/// and signatures, so a court can check them (docs/AUDIT_FORMATS.md).
fn apply_change(
    tx: &mut Tx<'_>,
    change: &RegistryChange,
    signed: Option<(&str, &Proposal)>,
    signers: &[(&str, &str)],
    time: u64,
) -> Result<Outcome, VaultError> {
    let id = signed.map(|s| s.0).unwrap_or_default();
    if let Err((kind, why)) = check_change(tx, change)? {
        return refuse(kind, why);
    }
    let by = signers.first().map(|s| s.0).unwrap_or("cluster init").to_string();
    // What the administrators signed, for every change but the initial registry's.
    let proposal = signed.map(|(_, p)| serde_json::to_value(p)).transpose().map_err(|e| VaultError::Unrecordable(e.to_string()))?;
    let (change_id, signatures) = match signers {
        [] => (None, None),
        _ => (
            Some(id.to_string()),
            Some(signers.iter().map(|(by, sig)| records::AdminSignature { by: by.to_string(), signature: sig.to_string() }).collect()),
        ),
    };
    let applied = Applied { by, action: (), change: change_id, proposal, signatures };
    let roles_of = |roles: &BTreeSet<Role>| roles.iter().map(Role::to_string).collect::<Vec<_>>();
    let record = match change {
        RegistryChange::AddPerson { person: p } => {
            let mut p = p.clone();
            p.revoked = false;
            let action = PersonAction::Add {
                name: p.name.clone(),
                badge: p.badge.clone(),
                unit: p.unit.clone(),
                roles: roles_of(&p.roles),
                public_key: p.public_key.clone(),
            };
            tx.put(keys::person(&p.name), serde_json::to_vec(&p).expect("registry records serialise"));
            records::Registry::Person(applied.with(action))
        }
        RegistryChange::RevokePerson { name } | RegistryChange::SetRoles { name, .. } | RegistryChange::ChangeKey { name, .. } => {
            let Some(mut p) = person(tx, name)? else { return refuse(Refusal::NotRegistered, format!("{name} is not registered")) };
            let action = match change {
                RegistryChange::RevokePerson { .. } => {
                    p.revoked = true;
                    PersonAction::Revoke { name: name.clone() }
                }
                RegistryChange::SetRoles { roles, .. } => {
                    p.roles = roles.clone();
                    PersonAction::SetRoles { name: name.clone(), roles: roles_of(roles) }
                }
                RegistryChange::ChangeKey { public_key, .. } => {
                    p.public_key = public_key.clone();
                    PersonAction::ChangeKey { name: name.clone(), public_key: public_key.clone() }
                }
                _ => return refuse(Refusal::Invalid, "not a change to a person"),
            };
            tx.put(keys::person(name), serde_json::to_vec(&p).expect("registry records serialise"));
            records::Registry::Person(applied.with(action))
        }
        RegistryChange::AddSystem { system: sys } => {
            tx.put(keys::system(&sys.id), serde_json::to_vec(sys).expect("registry records serialise"));
            let action =
                SystemAction::Add { id: sys.id.clone(), filing: sys.filing.clone(), operator: sys.operator.clone(), location: sys.location.clone() };
            records::Registry::System(applied.with(action))
        }
        RegistryChange::BindNode { binding } => match super::nodes::bind(tx, binding)? {
            Some(mut action) => {
                if signed.is_some() {
                    // The signed proposal carries the binding.
                    let records::NodeAction::Bind { binding, .. } = &mut action;
                    *binding = None;
                }
                records::Registry::Node(applied.with(action))
            }
            // The same binding again: nothing changes, nothing is recorded.
            None => {
                let leaf_index = super::nodes::bound(tx, binding.keys.node)?.map(|b| b.leaf_index).unwrap_or_default();
                return Ok(Outcome::RegistryStatus { change: id.to_string(), applied: true, leaf_index });
            }
        },
    };
    let leaf_index = audit::append(tx, &audit::record(time, Body::Registry(record)))?;
    if matches!(
        change,
        RegistryChange::AddPerson { .. } | RegistryChange::RevokePerson { .. } | RegistryChange::SetRoles { .. } | RegistryChange::ChangeKey { .. }
    ) {
        tx.put(keys::person_leaf(&change.subject(), leaf_index), Vec::new());
    }
    Ok(Outcome::RegistryStatus { change: id.to_string(), applied: true, leaf_index })
}
