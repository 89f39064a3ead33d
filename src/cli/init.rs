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
pub const DEMO_USERS: [(&str, &str); 6] =
    [("alice", "officer"), ("bob", "officer"), ("carol", "approver"), ("dave", "court"), ("admin", "admin"), ("admin2", "admin")];
/// The source video system `cluster init` registers, so a demo cluster can take deposits at once.
pub const DEMO_SYSTEM: &str = "cam-demo-1";
const CLUSTER_FILE: &str = "cluster.toml";

#[derive(Args, Clone)]
pub struct InitArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Node N listens on 127.0.0.1:(base-port + N - 1); with --hosts, every
    /// node listens on this port on all its addresses.
    #[arg(long, default_value_t = 7101)]
    pub base_port: u16,
    /// A cluster on real hosts: node N runs on the Nth (a DNS name or an IP
    /// address, comma-separated, one per node), advertises https://HOST:PORT,
    /// and its certificate names HOST as well as node-N.custody.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Replace the 15-day/365-day retention periods with S and 2·S seconds (tests only).
    #[arg(long)]
    pub dev_retention_secs: Option<u64>,
    /// How long the dev CA is valid, in days; no certificate it issues outlives it.
    #[arg(long, default_value_t = crate::limits::DEV_CA_VALID_DAYS, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::limits::MAX_CERT_VALID_DAYS)))]
    pub cert_days: u32,
    /// Seal every node for N custodians (docs/KEYS.md §8): custodian K's
    /// shares, one per node, go to `custodians/custodian-K.shares`, and each
    /// node starts sealed until k of them unseal it. Without it, a dev
    /// cluster: every node unseals itself from a shares file beside its
    /// config, and the cluster's status and checkpoints say so.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=i64::from(crate::node::seal::MAX_CUSTODIANS)))]
    pub custodians: Option<u8>,
    /// How many custodians' shares unseal a node [default: a majority of them].
    #[arg(long, requires = "custodians")]
    pub unseal_threshold: Option<u8>,
    /// Say it outright: the dev cluster that `cluster init` makes without
    /// --custodians, its nodes unsealing themselves.
    #[arg(long, conflicts_with_all = ["custodians", "unseal_threshold"])]
    pub dev_auto_unseal: bool,
}

impl InitArgs {
    /// A loopback dev cluster of `nodes` with the default lifetimes, its
    /// nodes unsealing themselves (`up`, `demo`, `bench`).
    pub fn local(dir: &Path, nodes: u64, base_port: u16, dev_retention_secs: Option<u64>) -> Self {
        InitArgs {
            dir: dir.to_path_buf(),
            nodes,
            base_port,
            dev_retention_secs,
            cert_days: crate::limits::DEV_CA_VALID_DAYS,
            hosts: Vec::new(),
            custodians: None,
            unseal_threshold: None,
            dev_auto_unseal: true,
        }
    }
}

#[derive(Args)]
pub struct IssueArgs {
    /// The user's name: the certificate's common name and their registry name.
    pub user: String,
    /// The CA's directory, holding `ca.pem` and `ca.key` (a dev cluster's `certs/`).
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Where to write USER.pem, USER.key, USER.signing.key and USER.toml
    /// [default: the cluster's `profiles/` when CA_DIR is a dev cluster's `certs/`].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The nodes' addresses for the profile, https://host:port, comma-separated
    /// [default: the dev cluster's nodes].
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// How long the certificate is valid, in days (never past the CA's end).
    #[arg(long, default_value_t = crate::limits::DEV_CERT_VALID_DAYS, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::limits::MAX_CERT_VALID_DAYS)))]
    pub days: u32,
}

/// `certs issue --json`: what was written for the user.
#[derive(Serialize, schemars::JsonSchema)]
pub struct IssuedUser {
    pub user: String,
    /// The client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The certificate's notAfter (RFC 3339 UTC).
    pub not_after: String,
    /// The user's new Ed25519 signing key (hex seed, mode 0600).
    pub signing_key: PathBuf,
    /// Its public key (base64), for `registry officer add --key`.
    pub public_key: String,
    /// The client profile naming all of the above (`custody --profile`).
    pub profile: PathBuf,
}

impl IssuedUser {
    pub fn summary(&self) -> String {
        format!(
            "issued {} a certificate valid until {}\n  profile     {}\n  public key  {}  (file them: custody registry officer add {} --key …)",
            self.user,
            self.not_after,
            self.profile.display(),
            self.public_key,
            self.user
        )
    }
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The CA's directory, holding `ca.pem`, `ca.key` and the `crl.pem` nodes read.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// The certificate to revoke (PEM): a user's or a node's.
    #[arg(long)]
    pub cert: PathBuf,
}

/// `certs revoke --json`: the revocation list written and what it revokes.
#[derive(Serialize, schemars::JsonSchema)]
pub struct CrlWritten {
    /// The CRL file (PEM) the nodes read (`crl` in node.toml); they load it within seconds.
    pub crl: PathBuf,
    /// Every certificate it revokes, the new one last.
    pub revoked: Vec<crate::pki::RevokedCert>,
}

fn usage(e: &dyn std::fmt::Display) -> super::Failure {
    super::Failure::new(2, e.to_string())
}

/// The CA in `ca_dir` and the certificate at `cert`, which it must have issued
/// (exit 1 otherwise): its DER, serial (hex) and subject.
fn ca_and_issued(ca_dir: &Path, cert: &Path) -> Result<(DevCa, Vec<u8>, String, String), super::Failure> {
    let ca = DevCa::load(ca_dir).map_err(|e| usage(&e))?;
    let der = crate::tls::load_certs(cert).map_err(|e| usage(&e))?[0].to_vec();
    crate::tls::issued_by(&ca.cert_path, &der).map_err(|e| super::Failure::new(1, format!("{}: {e}", cert.display())))?;
    let (serial, subject, _) = crate::tls::serial_subject_issuer(&der).map_err(|e| usage(&e))?;
    Ok((ca, der, serial, subject))
}

/// `certs revoke`: adds a certificate the CA issued to its revocation list.
/// A certificate revoked already is refused (exit 1), as is one another CA issued.
pub fn certs_revoke(a: &RevokeArgs) -> Result<CrlWritten, super::Failure> {
    let (ca, _, serial, subject) = ca_and_issued(&a.ca_dir, &a.cert)?;
    let mut revoked = ca.revoked().map_err(|e| usage(&e))?;
    if revoked.iter().any(|r| r.serial == serial) {
        return Err(super::Failure::new(1, format!("{subject} (serial {serial}) is revoked already")));
    }
    revoked.push(crate::pki::RevokedCert { serial, subject, revoked_at: crate::wire::rfc3339_ms(crate::node::now_ms()) });
    let crl = ca.write_crl(&revoked).map_err(|e| usage(&e))?;
    Ok(CrlWritten { crl, revoked })
}

#[derive(Args)]
pub struct RotateArgs {
    /// The CA's directory, holding `ca.pem` and `ca.key`.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// The certificate to replace (PEM): a node's `tls.pem` or a user's
    /// `NAME.pem`; its key is the file beside it ending in `.key`. Both are
    /// replaced in place, so node configs and profiles stay as they are.
    #[arg(long)]
    pub cert: PathBuf,
    /// How long the new certificate is valid, in days (never past the CA's end).
    #[arg(long, default_value_t = crate::limits::DEV_CERT_VALID_DAYS, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::limits::MAX_CERT_VALID_DAYS)))]
    pub days: u32,
    /// Also revoke the certificate replaced.
    #[arg(long)]
    pub revoke_old: bool,
}

/// `certs rotate --json`: the certificate that replaced another.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RotatedCert {
    /// The new certificate (PEM), where the old one was.
    pub cert: PathBuf,
    /// Its new private key (mode 0600), where the old one was; null for a
    /// sealed node, whose certificate is renewed over the key it holds.
    pub key: Option<PathBuf>,
    /// Whom it names: `node-<id>` or the user's name, as the old one did.
    pub subject: String,
    /// The new certificate's serial number (hex).
    pub serial: String,
    /// The new certificate's notAfter (RFC 3339 UTC).
    pub not_after: String,
    /// The replaced certificate's serial number (hex).
    pub old_serial: String,
    /// Whether the replaced certificate was revoked (`--revoke-old`).
    pub revoked_old: bool,
}

/// `certs rotate`: a new key and certificate for the same node or user,
/// written over the old files (each by an atomic rename, key first). A node
/// loads them within seconds, with no restart; a node's administrators then
/// register its new certificate with `cluster bind`.
pub fn certs_rotate(a: &RotateArgs) -> Result<RotatedCert, super::Failure> {
    let key_path = a.cert.with_extension("key");
    // A sealed node's key is inside its sealed file (docs/KEYS.md §8): its
    // certificate is renewed over the same key, which the node holds.
    let sealed = !key_path.exists() && a.cert.with_file_name("sealed.json").exists();
    if !key_path.exists() && !sealed {
        return Err(super::Failure::new(2, format!("{} has no key beside it ({})", a.cert.display(), key_path.display())));
    }
    let (ca, der, old_serial, _) = ca_and_issued(&a.ca_dir, &a.cert)?;
    let identity = crate::tls::identity_of(&der).map_err(|e| usage(&e))?;
    if sealed {
        let crate::tls::PeerIdentity::Node(id) = identity else {
            return Err(super::Failure::new(2, format!("{} is not a node certificate, and has no key beside it", a.cert.display())));
        };
        let new_cert = a.cert.with_extension("pem.new");
        let hosts = crate::tls::san_hosts(&der).map_err(|e| usage(&e))?;
        ca.renew_node_same_key(id, a.days, &hosts, &der, &new_cert).map_err(|e| usage(&e))?;
        fs::rename(&new_cert, &a.cert).map_err(|e| usage(&e))?;
        return finish_rotation(a, &ca, format!("node-{id}"), None, old_serial);
    }
    // Written beside the old files, then renamed over them: key, then certificate.
    let (new_cert, new_key) = (a.cert.with_extension("pem.new"), a.cert.with_extension("key.new"));
    let _ = (fs::remove_file(&new_cert), fs::remove_file(&new_key));
    let subject = match &identity {
        crate::tls::PeerIdentity::Node(id) => {
            // The hosts the old certificate named, kept.
            let hosts = crate::tls::san_hosts(&der).map_err(|e| usage(&e))?;
            ca.issue_node_for(*id, a.days, &hosts, &new_cert, &new_key).map_err(|e| usage(&e))?;
            format!("node-{id}")
        }
        crate::tls::PeerIdentity::User(name) => {
            ca.issue_user_for(name, a.days, &new_cert, &new_key).map_err(|e| usage(&e))?;
            name.clone()
        }
    };
    fs::rename(&new_key, &key_path).map_err(|e| usage(&e))?;
    fs::rename(&new_cert, &a.cert).map_err(|e| usage(&e))?;
    finish_rotation(a, &ca, subject, Some(key_path), old_serial)
}

/// Revokes the old certificate if asked, and says what the new one is.
fn finish_rotation(a: &RotateArgs, ca: &DevCa, subject: String, key: Option<PathBuf>, old_serial: String) -> Result<RotatedCert, super::Failure> {
    let der = crate::tls::load_certs(&a.cert).map_err(|e| usage(&e))?;
    let (serial, subject_dn, _) = crate::tls::serial_subject_issuer(der[0].as_ref()).map_err(|e| usage(&e))?;
    let (_, until) = crate::tls::validity_of(der[0].as_ref()).map_err(|e| usage(&e))?;
    if a.revoke_old {
        let mut revoked = ca.revoked().map_err(|e| usage(&e))?;
        if !revoked.iter().any(|r| r.serial == old_serial) {
            revoked.push(crate::pki::RevokedCert {
                serial: old_serial.clone(),
                subject: subject_dn,
                revoked_at: crate::wire::rfc3339_ms(crate::node::now_ms()),
            });
            ca.write_crl(&revoked).map_err(|e| usage(&e))?;
        }
    }
    Ok(RotatedCert {
        cert: a.cert.clone(),
        key,
        subject,
        serial,
        not_after: crate::wire::rfc3339_ms(u64::try_from(until).unwrap_or(0) * 1000),
        old_serial,
        revoked_old: a.revoke_old,
    })
}

#[derive(Args)]
pub struct NewNodeArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub id: u64,
    /// Where the new node runs, for a cluster made with --hosts.
    #[arg(long)]
    pub host: Option<String>,
}

/// What `cluster init` remembers about the cluster it wrote.
#[derive(Serialize, Deserialize)]
struct ClusterFile {
    cluster_id: String,
    cluster_name: String,
    base_port: u16,
    nodes: u64,
    dev_retention_secs: Option<u64>,
    /// Node N's host, for a cluster on real hosts (`--hosts`); absent: loopback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    /// How each node's seal is split: k of n custodians (0 of 0: the nodes
    /// keep plain key files, as clusters initialised before sealing do).
    #[serde(default)]
    custodians: u8,
    #[serde(default)]
    unseal_threshold: u8,
    #[serde(default)]
    dev_auto_unseal: bool,
}

/// Where custodian `k`'s shares go (one line per node).
fn custodian_file(dir: &Path, k: usize) -> PathBuf {
    dir.join("custodians").join(format!("custodian-{k}.shares"))
}

/// The dev shares file a node opens itself with (`--dev-auto-unseal`).
const DEV_SHARES_FILE: &str = "unseal-dev.shares";

/// Appends `line` to a secret file (made mode 0600), fsynced.
fn append_secret_line(path: &Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    let mut f = fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).with_context(|| format!("opening {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes()).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// What `cluster init` wrote (printed by the command, `--json` as is).
#[derive(Serialize, schemars::JsonSchema)]
pub struct Initialised {
    pub dir: PathBuf,
    pub cluster_id: String,
    pub cluster_name: String,
    /// The CA certificate every node and client trusts.
    pub ca: PathBuf,
    pub nodes: Vec<InitNode>,
    pub profiles: Vec<InitProfile>,
    /// The source video systems registered at init.
    pub systems: Vec<String>,
    /// Set when retention was shortened for testing: standard S seconds, important 2·S.
    pub dev_retention_secs: Option<u64>,
    /// Each custodian's shares file (one share per node): hand each to its
    /// custodian and remove it from here. Empty with `--dev-auto-unseal`.
    pub custodian_files: Vec<PathBuf>,
    /// How many custodians' shares unseal a node (0 with `--dev-auto-unseal`).
    pub unseal_threshold: u8,
    /// The nodes unseal themselves from a dev shares file.
    pub dev_auto_unseal: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct InitNode {
    pub id: u64,
    /// The `https://host:port` the node listens on and is known by.
    pub addr: String,
    pub config: PathBuf,
    /// The node that initialises the cluster on its first start.
    pub bootstrap: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct InitProfile {
    pub user: String,
    pub role: String,
    pub profile: PathBuf,
}

impl Initialised {
    /// The human summary of what was written.
    pub fn summary(&self) -> String {
        let mut out = format!("initialised cluster {} ({}) in {}", self.cluster_name, self.cluster_id, self.dir.display());
        for n in &self.nodes {
            out.push_str(&format!("\n  node {}  {}  {}", n.id, n.addr, n.config.display()));
        }
        for p in &self.profiles {
            out.push_str(&format!("\n  profile {} ({})  {}", p.user, p.role, p.profile.display()));
        }
        out.push_str(&format!("\n  source system {}", self.systems.join(", ")));
        if let Some(d) = self.dev_retention_secs {
            out.push_str(&format!("\n  DEV CLUSTER: retention shortened to {d} s (standard) / {} s (important)", d * 2));
        }
        if self.dev_auto_unseal {
            out.push_str("\n  DEV CLUSTER: every node unseals itself from a shares file beside its config");
        } else {
            out.push_str(&format!(
                "\n  every node starts SEALED: {} of these custodians' shares unseal it (`custody operator unseal --node N`):",
                self.unseal_threshold
            ));
            for f in &self.custodian_files {
                out.push_str(&format!("\n    {}", f.display()));
            }
            out.push_str("\n  hand each file to its custodian, then remove it from this directory");
        }
        out
    }
}

/// What `certs init` wrote.
#[derive(Serialize, schemars::JsonSchema)]
pub struct CertsWritten {
    pub dir: PathBuf,
    pub ca: CertFiles,
    pub nodes: Vec<NodeCert>,
    pub users: Vec<UserCert>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct NodeCert {
    pub id: u64,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct UserCert {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertsWritten {
    /// The human summary of what was written.
    pub fn summary(&self) -> String {
        let mut out = format!("wrote a dev CA in {}: {}", self.dir.display(), self.ca.cert.display());
        for n in &self.nodes {
            out.push_str(&format!("\n  node {}  {}", n.id, n.cert.display()));
        }
        for u in &self.users {
            out.push_str(&format!("\n  user {}  {}", u.name, u.cert.display()));
        }
        out
    }
}

/// Node `id`'s listen address and advertised URL: on loopback at
/// base port + id - 1, or, on real hosts, at the base port of its host.
fn addr(cf: &ClusterFile, id: u64) -> anyhow::Result<(String, String)> {
    if !cf.hosts.is_empty() {
        let i = usize::try_from(id).ok().and_then(|i| i.checked_sub(1)).filter(|i| *i < cf.hosts.len());
        let Some(host) = i.map(|i| &cf.hosts[i]) else { bail!("node {id} has no host: the cluster names {} hosts", cf.hosts.len()) };
        let shown = if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.clone() };
        let listen = if host.parse::<std::net::Ipv6Addr>().is_ok() { "[::]" } else { "0.0.0.0" };
        return Ok((format!("{listen}:{}", cf.base_port), format!("https://{shown}:{}", cf.base_port)));
    }
    let port = u64::from(cf.base_port) + id - 1;
    if port > 65535 {
        bail!("node {id} would listen on port {port}, above 65535");
    }
    Ok((format!("127.0.0.1:{port}"), format!("https://127.0.0.1:{port}")))
}

/// A host name or address `--hosts` may name.
fn check_host(h: &str) -> anyhow::Result<()> {
    let ok = h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && h.split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-')));
    if !ok {
        bail!("host `{h}` is neither an IP address nor a DNS name");
    }
    Ok(())
}

fn write_toml<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    fs::write(path, toml::to_string_pretty(v)?).with_context(|| format!("writing {}", path.display()))
}

/// Writes node `id`'s directory; answers its config's path and its key binding.
fn write_node(
    dir: &Path,
    cf: &ClusterFile,
    ca: &DevCa,
    id: u64,
    peers: Vec<PeerConfig>,
    bootstrap: bool,
) -> anyhow::Result<(PathBuf, crate::vault::nodes::NodeBinding)> {
    let node_dir = dir.join(format!("node{id}"));
    if node_dir.exists() {
        bail!("{} already exists", node_dir.display());
    }
    fs::create_dir_all(node_dir.join("data"))?;
    let host = usize::try_from(id).ok().and_then(|i| cf.hosts.get(i.wrapping_sub(1)));
    let hosts = host.map(std::slice::from_ref).unwrap_or_default();
    let days = crate::limits::DEV_CERT_VALID_DAYS;
    let (seal, secrets) = if cf.custodians == 0 {
        // A cluster initialised before sealing: plain key files.
        ca.issue_node_for(id, days, hosts, &node_dir.join("tls.pem"), &node_dir.join("tls.key"))?;
        write_secret(&node_dir.join("checkpoint.key"), hex::encode(crate::crypto::random_bytes::<32>()?).as_bytes())?;
        write_secret(&node_dir.join("session.key"), hex::encode(crate::crypto::random_bytes::<32>()?).as_bytes())?;
        (None, None)
    } else {
        // Sealed (docs/KEYS.md §8): the TLS key is made here and written
        // nowhere but into the sealed file, with the node's other secrets.
        let tls_key = ca.issue_sealed_node(id, days, hosts, &node_dir.join("tls.pem"))?;
        ca.issue_seal_cert(id, days, hosts, &node_dir.join("seal.pem"), &node_dir.join("seal.key"))?;
        let secrets = crate::node::seal::NodeSecrets::generate(tls_key)?;
        let (file, shares) = crate::node::seal::SealedFile::seal(&cf.cluster_id, id, &secrets, cf.unseal_threshold, cf.custodians)?;
        file.write(&node_dir.join("sealed.json"))?;
        if cf.dev_auto_unseal {
            for sh in &shares {
                append_secret_line(&node_dir.join(DEV_SHARES_FILE), &sh.to_text())?;
            }
        } else {
            for (k, sh) in shares.iter().enumerate() {
                append_secret_line(&custodian_file(dir, k + 1), &sh.to_text())?;
            }
        }
        let seal = crate::config::RawSealConfig {
            file: "sealed.json".into(),
            cert: "seal.pem".into(),
            key: "seal.key".into(),
            auto_unseal: cf.dev_auto_unseal.then(|| DEV_SHARES_FILE.to_string()),
            pkcs11: None,
        };
        (Some(seal), Some(secrets))
    };
    let (listen, advertise) = addr(cf, id)?;
    let raw = RawNodeConfig {
        id,
        cluster_id: cf.cluster_id.clone(),
        cluster_name: cf.cluster_name.clone(),
        listen,
        advertise,
        data_dir: "data".into(),
        ca: "../certs/ca.pem".into(),
        cert: "tls.pem".into(),
        key: seal.is_none().then(|| "tls.key".into()),
        crl: Some(format!("../certs/{}", crate::pki::CRL_FILE)),
        checkpoint_key: seal.is_none().then(|| "checkpoint.key".into()),
        session_key: seal.is_none().then(|| "session.key".into()),
        share_key: seal.is_none().then(|| "share.key".into()),
        max_clock_skew_secs: None,
        clock_offset_secs: None,
        bootstrap,
        registry_file: Some("../registry.json".into()),
        dev_retention_secs: cf.dev_retention_secs,
        chunk_size_bytes: None,
        snapshot_every_entries: None,
        orphan_grace_secs: None,
        peers,
        routes: Vec::new(),
        witnesses: Vec::new(),
        tsa: None,
        alerts: None,
        seal,
        chunks: None,
    };
    let path = node_dir.join("node.toml");
    write_toml(&path, &raw)?;
    fs::write(node_dir.join("data").join(crate::node::NEW_DISK_MARKER), b"a new node: this directory is empty on purpose\n")?;
    if bootstrap {
        fs::write(node_dir.join("data").join(crate::node::BOOTSTRAP_MARKER), b"initialise the cluster on first start\n")?;
    }
    // The key binding the genesis (or `cluster add-node`) registers.
    let cfg = crate::config::NodeConfig::load(&path)?;
    let secrets = match secrets {
        Some(s) => s,
        None => crate::node::seal::NodeSecrets::from_files(&cfg)?,
    };
    let binding = crate::node::binding_of(&cfg, &secrets)?;
    Ok((path, binding))
}

/// `cluster init`: CA, node certificates and configs, KEK, user profiles.
pub fn init(a: &InitArgs) -> anyhow::Result<Initialised> {
    if a.nodes == 0 || a.nodes > 99 {
        bail!("--nodes must be between 1 and 99");
    }
    if a.dev_retention_secs == Some(0) {
        bail!("--dev-retention-secs must be positive");
    }
    if a.dir.join(CLUSTER_FILE).exists() {
        bail!("{} already holds a cluster", a.dir.display());
    }
    let (custodians, unseal_threshold, dev_auto_unseal) = match a.custodians {
        None => (1, 1, true),
        Some(n) => {
            let k = a.unseal_threshold.unwrap_or(n / 2 + 1);
            if k == 0 || k > n {
                bail!("--unseal-threshold {k} of --custodians {n}: it must be 1 to {n}");
            }
            (n, k, false)
        }
    };
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cluster_id = hex::encode(crate::crypto::random_bytes::<8>()?);
    let cf = ClusterFile {
        cluster_name: format!("custody-{}", &cluster_id[..8]),
        cluster_id,
        base_port: a.base_port,
        nodes: a.nodes,
        dev_retention_secs: a.dev_retention_secs,
        hosts: a.hosts.clone(),
        custodians,
        unseal_threshold,
        dev_auto_unseal,
    };
    if !cf.hosts.is_empty() {
        if cf.hosts.len() as u64 != a.nodes {
            bail!("--hosts names {} hosts for {} nodes: give one per node", cf.hosts.len(), a.nodes);
        }
        for h in &cf.hosts {
            check_host(h)?;
        }
    }
    let ca = DevCa::create(&a.dir.join("certs"), &cf.cluster_name, a.cert_days)?;
    ca.write_crl(&[])?;
    let peers: Vec<PeerConfig> = (1..=a.nodes).map(|id| addr(&cf, id).map(|(_, adv)| PeerConfig { id, addr: adv })).collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    let mut registry = crate::vault::InitialRegistry::default();
    for p in &peers {
        let (config, binding) = write_node(&a.dir, &cf, &ca, p.id, peers.clone(), p.id == 1)?;
        // The first members' keys go into the genesis, each with its own proofs (docs/KEYS.md §7).
        registry.nodes.push(binding);
        nodes.push(InitNode { id: p.id, addr: p.addr.clone(), config, bootstrap: p.id == 1 });
    }
    let mut written = Vec::new();
    let profiles = a.dir.join("profiles");
    fs::create_dir_all(&profiles)?;
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
        let profile = profiles.join(format!("{user}.toml"));
        write_toml(&profile, &p)?;
        written.push(InitProfile { user: user.to_string(), role: role.to_string(), profile });
    }
    registry.systems.push(crate::vault::registry::SourceSystem {
        id: DEMO_SYSTEM.into(),
        filing: "LN-DEMO-0001".into(),
        operator: "demo operator".into(),
        location: "public road".into(),
    });
    fs::write(a.dir.join("registry.json"), serde_json::to_string_pretty(&registry)?)?;
    write_toml(&a.dir.join(CLUSTER_FILE), &cf)?;
    Ok(Initialised {
        dir: a.dir.clone(),
        ca: ca.cert_path.clone(),
        cluster_id: cf.cluster_id,
        cluster_name: cf.cluster_name,
        nodes,
        profiles: written,
        systems: vec![DEMO_SYSTEM.to_string()],
        dev_retention_secs: cf.dev_retention_secs,
        custodian_files: if cf.dev_auto_unseal { Vec::new() } else { (1..=usize::from(cf.custodians)).map(|k| custodian_file(&a.dir, k)).collect() },
        unseal_threshold: if cf.dev_auto_unseal { 0 } else { cf.unseal_threshold },
        dev_auto_unseal: cf.dev_auto_unseal,
    })
}

/// `cluster new-node`: one more node's certificate and config, pointing at the
/// existing members; returns the config's path. It does not bootstrap;
/// `cluster add-node` brings it in.
pub fn new_node(a: &NewNodeArgs) -> anyhow::Result<PathBuf> {
    let path = a.dir.join(CLUSTER_FILE);
    let mut cf: ClusterFile = toml::from_str(&fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let ca = DevCa::load(&a.dir.join("certs"))?;
    let mut peers: Vec<PeerConfig> = (1..=cf.nodes).map(|id| addr(&cf, id).map(|(_, adv)| PeerConfig { id, addr: adv })).collect::<Result<_, _>>()?;
    match (&a.host, cf.hosts.is_empty()) {
        (Some(h), false) => {
            check_host(h)?;
            if usize::try_from(a.id).ok() != Some(cf.hosts.len() + 1) {
                bail!("the next node of this cluster is node {}", cf.hosts.len() + 1);
            }
            cf.hosts.push(h.clone());
            cf.nodes += 1;
        }
        (None, false) => bail!("this cluster runs on real hosts: give the new node's --host"),
        (Some(_), true) => bail!("this cluster runs on loopback: --host does not apply"),
        (None, true) => {}
    }
    peers.push(PeerConfig { id: a.id, addr: addr(&cf, a.id)?.1 });
    let (config, _) = write_node(&a.dir, &cf, &ca, a.id, peers, false)?;
    if !cf.hosts.is_empty() {
        write_toml(&path, &cf)?;
    }
    Ok(config)
}

#[derive(Args)]
pub struct ExportP12Args {
    /// The user: their certificate is USER.pem and its key USER.key in --from.
    pub user: String,
    /// The directory holding USER.pem and USER.key (a dev cluster's `profiles/`).
    #[arg(long)]
    pub from: PathBuf,
    /// The CA certificate to put after the user's [default: FROM/../certs/ca.pem, when it exists].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The PKCS#12 file to write (mode 0600; an existing file is refused).
    #[arg(long)]
    pub out: PathBuf,
    /// A file whose first line is the password; otherwise it is typed (hidden) or piped.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// `certs export-p12 --json`: a user's certificate and key as a PKCS#12 file for a browser.
#[derive(Serialize, schemars::JsonSchema)]
pub struct P12Written {
    pub user: String,
    /// The file written (mode 0600).
    pub out: PathBuf,
    /// The certificate's serial number (hex).
    pub serial: String,
    /// The certificate's notAfter (RFC 3339 UTC).
    pub not_after: String,
    /// The CA certificate is in the file after the user's.
    pub includes_ca: bool,
}

/// `certs export-p12`: USER.pem and USER.key as one password-protected
/// PKCS#12 file (PBES2 with AES-256-CBC, HMAC-SHA256 MAC), what a browser
/// imports to reach the console over mutual TLS.
pub fn certs_export_p12(a: &ExportP12Args) -> Result<P12Written, super::Failure> {
    use std::io::{BufRead, IsTerminal};
    check_user_name(&a.user).map_err(|e| usage(&e))?;
    let (cert, key) = (a.from.join(format!("{}.pem", a.user)), a.from.join(format!("{}.key", a.user)));
    let der = crate::tls::load_certs(&cert)
        .map_err(|e| usage(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| usage(&format!("{} holds no certificate", cert.display())))?;
    let pkcs8 = crate::crypto::Secret::new(crate::tls::pkcs8_of(&key).map_err(|e| usage(&e))?);
    let ca = a.ca.clone().or_else(|| Some(a.from.join("../certs/ca.pem")).filter(|p| p.exists()));
    let chain: Vec<Vec<u8>> = match &ca {
        Some(p) => crate::tls::load_certs(p).map_err(|e| usage(&e))?.into_iter().map(|c| c.as_ref().to_vec()).collect(),
        None => Vec::new(),
    };
    let password = match &a.password_file {
        Some(f) => crate::crypto::Secret::new(fs::read_to_string(f).map_err(|e| usage(&format!("reading {}: {e}", f.display())))?),
        None if std::io::stdin().is_terminal() => {
            super::local::read_hidden_line("a password for the PKCS#12 file (input is hidden): ").map_err(|e| usage(&e))?
        }
        None => {
            let mut line = crate::crypto::Secret::new(String::new());
            std::io::stdin().lock().read_line(&mut line).map_err(|e| usage(&e))?;
            line
        }
    };
    let password = crate::crypto::Secret::new(password.lines().next().unwrap_or_default().to_string());
    if password.is_empty() {
        return Err(super::Failure::new(2, "the PKCS#12 file needs a password"));
    }
    let p12 = crate::pki::export_p12(&a.user, der.as_ref(), &pkcs8, &chain, &password).map_err(|e| usage(&e))?;
    write_secret(&a.out, &p12).map_err(|e| usage(&e))?;
    let (serial, _, _) = crate::tls::serial_subject_issuer(der.as_ref()).map_err(|e| usage(&e))?;
    let (_, until) = crate::tls::validity_of(der.as_ref()).map_err(|e| usage(&e))?;
    Ok(P12Written {
        user: a.user.clone(),
        out: a.out.clone(),
        serial,
        not_after: crate::wire::rfc3339_ms(u64::try_from(until).unwrap_or(0) * 1000),
        includes_ca: !chain.is_empty(),
    })
}

fn check_user_name(u: &str) -> anyhow::Result<()> {
    if u.is_empty() || u.len() > 64 || !u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') || u.starts_with('.') {
        bail!("user name `{u}` must be 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'");
    }
    Ok(())
}

/// `certs issue`: a client certificate from an existing CA, a signing key and
/// a profile for one user. Refuses to overwrite any file.
pub fn certs_issue(a: &IssueArgs) -> anyhow::Result<IssuedUser> {
    check_user_name(&a.user)?;
    let ca = DevCa::load(&a.ca_dir)?;
    let cluster = a.ca_dir.join("..").join(CLUSTER_FILE);
    let cf: Option<ClusterFile> = match fs::read_to_string(&cluster) {
        Ok(t) => Some(toml::from_str(&t).with_context(|| format!("reading {}", cluster.display()))?),
        Err(_) => None,
    };
    let endpoints: Vec<String> = if !a.endpoints.is_empty() {
        for e in &a.endpoints {
            let rest = e.strip_prefix("https://").unwrap_or_default();
            if rest.is_empty() || rest.rsplit_once(':').and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok()).is_none() {
                bail!("endpoint `{e}` must be https://host:port");
            }
        }
        a.endpoints.clone()
    } else if let Some(cf) = &cf {
        (1..=cf.nodes).map(|id| addr(cf, id).map(|(_, adv)| adv)).collect::<Result<_, _>>()?
    } else {
        bail!("--endpoints is required: {} is not a dev cluster's `certs/` directory", a.ca_dir.display());
    };
    let out = match (&a.out, &cf) {
        (Some(o), _) => o.clone(),
        (None, Some(_)) => a.ca_dir.join("..").join("profiles"),
        (None, None) => bail!("--out is required: {} is not a dev cluster's `certs/` directory", a.ca_dir.display()),
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let u = &a.user;
    let profile = out.join(format!("{u}.toml"));
    if profile.exists() {
        bail!("{} already exists: {u} has a profile", profile.display());
    }
    let files = ca.issue_user_for(u, a.days, &out.join(format!("{u}.pem")), &out.join(format!("{u}.key")))?;
    let signing_key = out.join(format!("{u}.signing.key"));
    let public_key = keygen(&signing_key)?;
    let der = crate::tls::load_certs(&files.cert)?;
    let (_, until) = crate::tls::validity_of(der[0].as_ref())?;
    let p = RawProfile {
        endpoints,
        ca: ca.cert_path.canonicalize()?.display().to_string(),
        cert: format!("{u}.pem"),
        key: format!("{u}.key"),
        signing_key: Some(format!("{u}.signing.key")),
    };
    write_toml(&profile, &p)?;
    Ok(IssuedUser {
        user: u.clone(),
        cert: files.cert,
        key: files.key,
        not_after: crate::wire::rfc3339_ms(u64::try_from(until).unwrap_or(0) * 1000),
        signing_key,
        public_key,
        profile,
    })
}

/// `certs init`: a dev CA, node and user certificates in DIR.
pub fn certs_init(dir: &Path, nodes: u64, users: &[String]) -> anyhow::Result<CertsWritten> {
    for u in users {
        check_user_name(u)?;
    }
    let ca = DevCa::create(dir, "custody", crate::limits::DEV_CA_VALID_DAYS)?;
    ca.write_crl(&[])?;
    let mut out = CertsWritten {
        dir: dir.to_path_buf(),
        ca: CertFiles { cert: ca.cert_path.clone(), key: dir.join("ca.key") },
        nodes: Vec::new(),
        users: Vec::new(),
    };
    for id in 1..=nodes {
        let f = ca.issue_node(id, &dir.join(format!("node{id}.pem")), &dir.join(format!("node{id}.key")))?;
        out.nodes.push(NodeCert { id, cert: f.cert, key: f.key });
    }
    for u in users {
        let f = ca.issue_user(u, &dir.join(format!("{u}.pem")), &dir.join(format!("{u}.key")))?;
        out.users.push(UserCert { name: u.clone(), cert: f.cert, key: f.key });
    }
    Ok(out)
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
