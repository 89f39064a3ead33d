//! `cluster init`, `cluster new-node` and `certs init`: everything a local
//! cluster needs, written to a directory (nothing is started).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::config::{PeerConfig, RawNodeConfig, RawProfile};
use crate::pki::{write_secret, DevCa};

/// The demo users `cluster init` makes profiles for, with their roles.
pub const DEMO_USERS: [(&str, &str); 5] = [("alice", "officer"), ("bob", "officer"), ("carol", "approver"), ("dave", "court"), ("admin", "admin")];
/// The source video system `cluster init` registers, so a demo cluster can take deposits at once.
pub const DEMO_SYSTEM: &str = "cam-demo-1";
const CLUSTER_FILE: &str = "cluster.toml";

#[derive(Args, Clone)]
pub struct InitArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Node N listens on 127.0.0.1:(base-port + N - 1).
    #[arg(long, default_value_t = 7101)]
    pub base_port: u16,
    /// Replace the 15-day/365-day retention periods with S and 2·S seconds (tests only).
    #[arg(long)]
    pub dev_retention_secs: Option<u64>,
}

#[derive(Args)]
pub struct NewNodeArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub id: u64,
}

/// What `cluster init` remembers about the cluster it wrote.
#[derive(Serialize, Deserialize)]
struct ClusterFile {
    cluster_id: String,
    cluster_name: String,
    base_port: u16,
    nodes: u64,
    dev_retention_secs: Option<u64>,
}

fn addr(base_port: u16, id: u64) -> anyhow::Result<(String, String)> {
    let port = u64::from(base_port) + id - 1;
    if port > 65535 {
        bail!("node {id} would listen on port {port}, above 65535");
    }
    Ok((format!("127.0.0.1:{port}"), format!("https://127.0.0.1:{port}")))
}

fn write_toml<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    fs::write(path, toml::to_string_pretty(v)?).with_context(|| format!("writing {}", path.display()))
}

fn write_node(dir: &Path, cf: &ClusterFile, ca: &DevCa, id: u64, peers: Vec<PeerConfig>, bootstrap: bool) -> anyhow::Result<PathBuf> {
    let node_dir = dir.join(format!("node{id}"));
    if node_dir.exists() {
        bail!("{} already exists", node_dir.display());
    }
    fs::create_dir_all(node_dir.join("data"))?;
    ca.issue_node(id, &node_dir.join("tls.pem"), &node_dir.join("tls.key"))?;
    write_secret(&node_dir.join("checkpoint.key"), hex::encode(crate::crypto::random_bytes::<32>()?).as_bytes())?;
    let (listen, advertise) = addr(cf.base_port, id)?;
    let raw = RawNodeConfig {
        id,
        cluster_id: cf.cluster_id.clone(),
        cluster_name: cf.cluster_name.clone(),
        listen,
        advertise,
        data_dir: "data".into(),
        kek_file: "../kek.key".into(),
        ca: "../certs/ca.pem".into(),
        cert: "tls.pem".into(),
        key: "tls.key".into(),
        checkpoint_key: "checkpoint.key".into(),
        bootstrap,
        registry_file: Some("../registry.json".into()),
        dev_retention_secs: cf.dev_retention_secs,
        chunk_size_bytes: None,
        snapshot_every_entries: None,
        orphan_grace_secs: None,
        peers,
        routes: Vec::new(),
    };
    let path = node_dir.join("node.toml");
    write_toml(&path, &raw)?;
    fs::write(node_dir.join("data").join(crate::node::NEW_DISK_MARKER), b"a new node: this directory is empty on purpose\n")?;
    if bootstrap {
        fs::write(node_dir.join("data").join(crate::node::BOOTSTRAP_MARKER), b"initialise the cluster on first start\n")?;
    }
    Ok(path)
}

/// `cluster init`: CA, node certificates and configs, KEK, user profiles.
pub fn init(a: &InitArgs) -> anyhow::Result<Vec<PathBuf>> {
    if a.nodes == 0 || a.nodes > 99 {
        bail!("--nodes must be between 1 and 99");
    }
    if a.dev_retention_secs == Some(0) {
        bail!("--dev-retention-secs must be positive");
    }
    if a.dir.join(CLUSTER_FILE).exists() {
        bail!("{} already holds a cluster", a.dir.display());
    }
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cluster_id = hex::encode(crate::crypto::random_bytes::<8>()?);
    let cf = ClusterFile {
        cluster_name: format!("custody-{}", &cluster_id[..8]),
        cluster_id,
        base_port: a.base_port,
        nodes: a.nodes,
        dev_retention_secs: a.dev_retention_secs,
    };
    let ca = DevCa::create(&a.dir.join("certs"), &cf.cluster_name)?;
    write_secret(&a.dir.join("kek.key"), crate::crypto::Kek::generate_hex()?.as_bytes())?;
    let peers: Vec<PeerConfig> =
        (1..=a.nodes).map(|id| addr(a.base_port, id).map(|(_, adv)| PeerConfig { id, addr: adv })).collect::<Result<_, _>>()?;
    let mut configs = Vec::new();
    for id in 1..=a.nodes {
        configs.push(write_node(&a.dir, &cf, &ca, id, peers.clone(), id == 1)?);
    }
    let profiles = a.dir.join("profiles");
    fs::create_dir_all(&profiles)?;
    let mut registry = crate::vault::InitialRegistry::default();
    for (i, (user, role)) in DEMO_USERS.iter().enumerate() {
        ca.issue_user(user, &profiles.join(format!("{user}.pem")), &profiles.join(format!("{user}.key")))?;
        let public_key = keygen(&profiles.join(format!("{user}.signing.key")))?;
        registry.people.push(crate::vault::registry::Person {
            name: user.to_string(),
            badge: format!("DEMO-{:04}", i + 1),
            unit: "demo evidence unit".into(),
            roles: [role.parse().map_err(anyhow::Error::msg)?].into_iter().collect(),
            public_key,
            revoked: false,
        });
        let p = RawProfile {
            endpoints: peers.iter().map(|p| p.addr.clone()).collect(),
            ca: "../certs/ca.pem".into(),
            cert: format!("{user}.pem"),
            key: format!("{user}.key"),
            signing_key: Some(format!("{user}.signing.key")),
        };
        write_toml(&profiles.join(format!("{user}.toml")), &p)?;
    }
    registry.systems.push(crate::vault::registry::SourceSystem {
        id: DEMO_SYSTEM.into(),
        filing: "LN-DEMO-0001".into(),
        operator: "demo operator".into(),
        location: "public road".into(),
    });
    fs::write(a.dir.join("registry.json"), serde_json::to_string_pretty(&registry)?)?;
    write_toml(&a.dir.join(CLUSTER_FILE), &cf)?;
    Ok(configs)
}

/// `cluster new-node`: one more node's certificate and config, pointing at the
/// existing members; returns the config's path. It does not bootstrap;
/// `cluster add-node` brings it in.
pub fn new_node(a: &NewNodeArgs) -> anyhow::Result<PathBuf> {
    let path = a.dir.join(CLUSTER_FILE);
    let cf: ClusterFile = toml::from_str(&fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let ca = DevCa::load(&a.dir.join("certs"))?;
    let mut peers: Vec<PeerConfig> =
        (1..=cf.nodes).map(|id| addr(cf.base_port, id).map(|(_, adv)| PeerConfig { id, addr: adv })).collect::<Result<_, _>>()?;
    peers.push(PeerConfig { id: a.id, addr: addr(cf.base_port, a.id)?.1 });
    write_node(&a.dir, &cf, &ca, a.id, peers, false)
}

/// `certs init`: a dev CA, node and user certificates in DIR.
pub fn certs_init(dir: &Path, nodes: u64, users: &[String]) -> anyhow::Result<()> {
    let ca = DevCa::create(dir, "custody")?;
    for id in 1..=nodes {
        ca.issue_node(id, &dir.join(format!("node{id}.pem")), &dir.join(format!("node{id}.key")))?;
    }
    for u in users {
        if u.is_empty() || !u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            bail!("user name `{u}` must be letters, digits, '-', '_' or '.'");
        }
        ca.issue_user(u, &dir.join(format!("{u}.pem")), &dir.join(format!("{u}.key")))?;
    }
    Ok(())
}

/// Writes a new Ed25519 signing key (its 32-byte seed, hex, mode 0600) and
/// returns the public key as base64.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    let seed = crate::crypto::random_bytes::<32>()?;
    let key = crate::crypto::SigningKey::from_seed(&seed)?;
    write_secret(out, hex::encode(seed).as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key.public_key()))
}
