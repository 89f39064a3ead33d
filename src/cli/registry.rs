//! `keygen` and `registry …`.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::access::{ask, me, Confirm};
use super::ops::Session;
use super::{emit, Failure};
use crate::api::access::Signature;
use crate::api::registry::{ChangeStatus, FileChange, RegistryView};
use crate::client::HttpError;
use crate::vault::registry::{PendingChange, Person, Proposal, RegistryChange, Role, SourceSystem};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// People: `officer add NAME --badge B --unit U --role R --key PUB`.
    #[command(subcommand)]
    Officer(OfficerCmd),
    /// Source video systems: `system add ID --filing F --operator O --location L`.
    #[command(subcommand)]
    System(SystemCmd),
    /// Everyone and every source system registered.
    List,
    /// Revoke a person: their signatures stop counting for grants not yet formed.
    Revoke { name: String },
    /// Give or take roles: ROLE… is the person's whole new set.
    Roles {
        name: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Replace a person's public key.
    Key {
        name: String,
        #[arg(long)]
        key: String,
    },
    /// As a second administrator: show a pending change, then sign it (it applies).
    Approve {
        change: String,
        /// Sign without asking (for scripts); without a terminal it is required.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum OfficerCmd {
    Add {
        name: String,
        #[arg(long)]
        badge: String,
        #[arg(long)]
        unit: String,
        /// officer, approver, emergency-approver, court or admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The person's Ed25519 public key, base64 (from `custody keygen`).
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
pub enum SystemCmd {
    Add {
        id: String,
        #[arg(long)]
        filing: String,
        #[arg(long)]
        operator: String,
        #[arg(long)]
        location: String,
    },
}

/// A refused change is a negative verdict (exit 1); anything else operational (exit 2).
fn failure(e: HttpError) -> Failure {
    Failure::from(e)
}

pub fn keygen(out: &Path, json: bool) -> Result<(), Failure> {
    let public_key = super::init::keygen(out)?;
    let v = crate::wire::KeygenOutput { public_key, file: out.to_path_buf() };
    emit(json, &serde_json::to_value(&v)?, || format!("{}\n(secret key written to {}, mode 0600)", v.public_key, out.display()));
    Ok(())
}

/// How long a filed change waits for its second administrator.
const PROPOSAL_TTL_MS: u64 = 24 * 3600 * 1000;

fn print_status(json: bool, st: &ChangeStatus) -> Result<(), Failure> {
    emit(json, &serde_json::to_value(st)?, || match st.status {
        crate::api::registry::ChangeState::Applied => format!("{}: applied (change {}, audit leaf {})", st.subject, st.change, st.leaf_index),
        crate::api::registry::ChangeState::Pending => format!(
            "{}: pending (change {}, audit leaf {}); a second administrator runs: custody registry approve {}",
            st.subject, st.change, st.leaf_index, st.change
        ),
    });
    Ok(())
}

/// Signs `change` with the profile's key and files it.
async fn file(s: &Session, change: RegistryChange, json: bool) -> Result<(), Failure> {
    let st = submit(s, change).await?;
    print_status(json, &st)
}

/// Signs `change` with the profile's key, files it and returns its status.
pub async fn submit(s: &Session, change: RegistryChange) -> Result<ChangeStatus, Failure> {
    change.validate().map_err(|e| Failure::new(2, e))?;
    let (_, key) = me(s)?;
    let proposal = Proposal {
        change,
        nonce: hex::encode(crate::crypto::random_bytes::<16>()?),
        expires_at_ms: crate::node::now_ms().saturating_add(PROPOSAL_TTL_MS),
    };
    let bytes = proposal.signing_bytes().map_err(|e| Failure::new(2, e))?;
    let body = FileChange { signature: BASE64.encode(key.sign(&bytes)), proposal };
    s.call(Method::POST, "/v1/registry/changes", Some(&body), TIMEOUT).await.map_err(failure)
}

/// What a second administrator is asked to sign, as a person reads it.
pub fn describe(p: &PendingChange) -> String {
    let what = match &p.proposal.change {
        RegistryChange::AddPerson { person } => format!(
            "add {} (badge {}, unit {}) with roles {} and key {}",
            person.name,
            person.badge,
            person.unit,
            person.roles.iter().map(Role::to_string).collect::<Vec<_>>().join(", "),
            person.public_key
        ),
        RegistryChange::RevokePerson { name } => format!("revoke {name}"),
        RegistryChange::SetRoles { name, roles } => {
            format!("set {name}'s roles to {}", roles.iter().map(Role::to_string).collect::<Vec<_>>().join(", "))
        }
        RegistryChange::ChangeKey { name, public_key } => format!("replace {name}'s key with {public_key}"),
        RegistryChange::AddSystem { system } => format!("add source system {} (filing {})", system.id, system.filing),
        RegistryChange::BindNode { binding } => {
            format!("bind node {}'s keys (checkpoint key {})", binding.keys.node, binding.keys.checkpoint_key)
        }
    };
    let expires = crate::wire::try_rfc3339_ms(p.proposal.expires_at_ms).unwrap_or_default();
    format!("change:     {what}\nfiled by:   {}\nexpires:    {expires}\n", p.by)
}

pub async fn run(s: &Session, cmd: RegistryCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        RegistryCmd::List => {
            let v: RegistryView = s.call::<(), _>(Method::GET, "/v1/registry", None, TIMEOUT).await?;
            emit(json, &serde_json::to_value(&v)?, || {
                let mut out = String::from("people:");
                for p in &v.people {
                    let roles: Vec<String> = p.roles.iter().map(Role::to_string).collect();
                    out.push_str(&format!(
                        "\n  {:<12} badge {:<12} {:<24} {}{}",
                        p.name,
                        p.badge,
                        p.unit,
                        roles.join(","),
                        if p.revoked { "  REVOKED" } else { "" }
                    ));
                }
                out.push_str("\nsource systems:");
                for sys in &v.systems {
                    out.push_str(&format!("\n  {:<16} filing {:<16} {} ({})", sys.id, sys.filing, sys.operator, sys.location));
                }
                if !v.pending.is_empty() {
                    out.push_str("\npending changes (a second administrator approves):");
                    for p in &v.pending {
                        out.push_str(&format!("\n  {}  {}", p.change, describe(p).lines().next().unwrap_or_default()));
                    }
                }
                out
            });
            Ok(())
        }
        RegistryCmd::Officer(OfficerCmd::Add { name, badge, unit, roles, key }) => {
            let roles = roles.iter().map(|r| r.parse::<Role>()).collect::<Result<_, _>>().map_err(|e| Failure::new(2, e))?;
            let person = Person { name, badge, unit, roles, public_key: key, revoked: false };
            file(s, RegistryChange::AddPerson { person }, json).await
        }
        RegistryCmd::System(SystemCmd::Add { id, filing, operator, location }) => {
            file(s, RegistryChange::AddSystem { system: SourceSystem { id, filing, operator, location } }, json).await
        }
        RegistryCmd::Revoke { name } => file(s, RegistryChange::RevokePerson { name }, json).await,
        RegistryCmd::Roles { name, roles } => {
            let roles = roles.iter().map(|r| r.parse::<Role>()).collect::<Result<_, _>>().map_err(|e| Failure::new(2, e))?;
            file(s, RegistryChange::SetRoles { name, roles }, json).await
        }
        RegistryCmd::Key { name, key } => file(s, RegistryChange::ChangeKey { name, public_key: key }, json).await,
        RegistryCmd::Approve { change, yes } => {
            if change.len() != 32 || !change.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::new(2, "a change id is 32 hex digits"));
            }
            let (_, key) = me(s)?;
            let p: PendingChange = s.call::<(), _>(Method::GET, &format!("/v1/registry/changes/{change}"), None, TIMEOUT).await.map_err(failure)?;
            // Sign only what the id names: a node cannot slip another change under this id.
            let got = p.proposal.id().map_err(|e| Failure::new(1, format!("the vault returned an invalid change: {e}")))?;
            if got != change {
                return Err(Failure::new(1, format!("the vault returned a change whose id is {got}, not {change}")));
            }
            ask(if yes { Confirm::Yes } else { Confirm::Ask }, &format!("registry change {change}"), &describe(&p))?;
            let bytes = p.proposal.signing_bytes().map_err(|e| Failure::new(1, e))?;
            let body = Signature { signature: BASE64.encode(key.sign(&bytes)) };
            let st: ChangeStatus =
                s.call(Method::POST, &format!("/v1/registry/changes/{change}/approvals"), Some(&body), TIMEOUT).await.map_err(failure)?;
            print_status(json, &st)
        }
    }
}
