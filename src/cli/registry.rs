//! `keygen` and `registry …`.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;

use super::ops::Session;
use super::{emit, Failure};
use crate::api::registry::{Recorded, RegistryView};
use crate::client::HttpError;
use crate::vault::registry::{Person, Role, SourceSystem};

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
    match e.problem() {
        Some(p) if p.kind.ends_with(":refused") => Failure::new(1, format!("refused: {}", p.detail)),
        _ => Failure::from(e),
    }
}

pub fn keygen(out: &Path, json: bool) -> Result<(), Failure> {
    let public_key = super::init::keygen(out)?;
    let v = crate::wire::KeygenOutput { public_key, file: out.to_path_buf() };
    emit(json, &serde_json::to_value(&v)?, || format!("{}\n(secret key written to {}, mode 0600)", v.public_key, out.display()));
    Ok(())
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
                out
            });
            Ok(())
        }
        RegistryCmd::Officer(OfficerCmd::Add { name, badge, unit, roles, key }) => {
            let roles = roles.iter().map(|r| r.parse::<Role>()).collect::<Result<_, _>>().map_err(|e| Failure::new(2, e))?;
            let person = Person { name, badge, unit, roles, public_key: key, revoked: false };
            person.validate().map_err(|e| Failure::new(2, e))?;
            let r: Recorded = s.call(Method::POST, "/v1/registry/people", Some(&person), TIMEOUT).await.map_err(failure)?;
            emit(json, &serde_json::to_value(&r)?, || format!("registered {} (audit leaf {})", r.name, r.leaf_index));
            Ok(())
        }
        RegistryCmd::System(SystemCmd::Add { id, filing, operator, location }) => {
            let system = SourceSystem { id, filing, operator, location };
            system.validate().map_err(|e| Failure::new(2, e))?;
            let r: Recorded = s.call(Method::POST, "/v1/registry/systems", Some(&system), TIMEOUT).await.map_err(failure)?;
            emit(json, &serde_json::to_value(&r)?, || format!("registered source system {} (audit leaf {})", r.name, r.leaf_index));
            Ok(())
        }
        RegistryCmd::Revoke { name } => {
            let r: Recorded = s.call::<(), _>(Method::POST, &format!("/v1/registry/people/{name}/revoke"), None, TIMEOUT).await.map_err(failure)?;
            emit(json, &serde_json::to_value(&r)?, || format!("revoked {}", r.name));
            Ok(())
        }
    }
}
