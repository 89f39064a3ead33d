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
use serde_json::json;

use super::{audit, refuse, stamp, Outcome, StateRead, Tx, VaultError};
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RegistryChange {
    AddPerson { person: Person },
    RevokePerson { name: String },
    AddSystem { system: SourceSystem },
}

pub mod keys {
    pub const PERSON_PREFIX: &[u8] = b"r/person/";
    pub const SYSTEM_PREFIX: &[u8] = b"r/system/";
    pub fn person(name: &str) -> Vec<u8> {
        [PERSON_PREFIX, name.as_bytes()].concat()
    }
    pub fn system(id: &str) -> Vec<u8> {
        [SYSTEM_PREFIX, id.as_bytes()].concat()
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

fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice(v).map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), detail: e.to_string() })
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

/// Applies a registry change on behalf of `by`, who must be an administrator
/// (`None`: the cluster's initial registry, written with its configuration).
pub(super) fn change(tx: &mut Tx<'_>, by: Option<&str>, change: &RegistryChange, time_ms: u64) -> Result<Outcome, VaultError> {
    if let Some(by) = by {
        match person(tx, by)? {
            Some(p) if p.has(Role::Admin) => {}
            _ => return refuse(format!("{by} is not an administrator: only administrators change the registry")),
        }
    }
    let time = stamp(tx, time_ms)?;
    let by_field = by.unwrap_or("cluster init");
    let record = match change {
        RegistryChange::AddPerson { person: p } => {
            if let Err(e) = p.validate() {
                return refuse(e);
            }
            if person(tx, &p.name)?.is_some() {
                return refuse(format!("{} is already registered", p.name));
            }
            // One key, one person: a second name on a held key would let one
            // human sign as two officers. Revoked entries still hold theirs.
            let key = public_key_bytes(&p.public_key).map_err(VaultError::Unrecordable)?;
            for other in people(tx)? {
                if public_key_bytes(&other.public_key).is_ok_and(|k| k == key) {
                    return refuse(format!("this public key is already registered to {}: every person has a key of their own", other.name));
                }
            }
            let mut p = p.clone();
            p.revoked = false;
            let roles: Vec<String> = p.roles.iter().map(Role::to_string).collect();
            let r = json!({ "subject": "person", "action": "add", "by": by_field, "name": p.name, "badge": p.badge, "unit": p.unit, "roles": roles, "public_key": p.public_key });
            tx.put(keys::person(&p.name), serde_json::to_vec(&p).expect("registry records serialise"));
            r
        }
        RegistryChange::RevokePerson { name } => {
            let Some(mut p) = person(tx, name)? else { return refuse(format!("{name} is not registered")) };
            if p.revoked {
                return Ok(Outcome::Done);
            }
            p.revoked = true;
            tx.put(keys::person(name), serde_json::to_vec(&p).expect("registry records serialise"));
            json!({ "subject": "person", "action": "revoke", "by": by_field, "name": name })
        }
        RegistryChange::AddSystem { system: sys } => {
            if let Err(e) = sys.validate() {
                return refuse(e);
            }
            if system(tx, &sys.id)?.is_some() {
                return refuse(format!("source system {} is already registered", sys.id));
            }
            tx.put(keys::system(&sys.id), serde_json::to_vec(sys).expect("registry records serialise"));
            json!({ "subject": "system", "action": "add", "by": by_field, "id": sys.id, "filing": sys.filing, "operator": sys.operator, "location": sys.location })
        }
    };
    let leaf_index = audit::append(tx, &audit::record("registry", time, record))?;
    Ok(Outcome::Recorded { leaf_index })
}
