//! Node configs and client profiles: raw TOML in, validated values out, once,
//! at the boundary. Relative paths are resolved against the file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::evidence::RetentionPolicy;
use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid {what}: {detail}")]
    Parse { path: String, what: &'static str, detail: String },
}

/// One peer as listed in a node config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: u64,
    /// `https://host:port` of the peer's API.
    pub addr: String,
}

/// `nodeN/node.toml` as written by `cluster init`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    pub id: u64,
    pub cluster_id: String,
    pub cluster_name: String,
    pub listen: String,
    pub advertise: String,
    pub data_dir: String,
    pub ca: String,
    pub cert: String,
    /// The certificate's private key (PEM). Absent on a sealed node, whose
    /// key is inside its sealed file (`[seal]`, docs/KEYS.md §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The CA's certificate revocation lists (PEM), checked on every
    /// handshake this node accepts or makes; read again when the file
    /// changes (`custody certs revoke` writes it). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<String>,
    /// This node's Ed25519 checkpoint signing key (64 hex digits of seed,
    /// mode 0600). Absent on a sealed node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<String>,
    /// This node's own Ed25519 session-token key (64 hex digits of seed, mode
    /// 0600); made on first start when absent. Default `session.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// This node's X25519 share key (64 hex digits of seed, RFC 9180 DeriveKeyPair; mode 0600): it
    /// opens this node's share of every data key (docs/KEYS.md §4); made on
    /// first start when absent. Default `share.key`. Keep it outside `data_dir`:
    /// a node that loses it loses its shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_key: Option<String>,
    /// How far a not-yet-committed entry's time may be from this node's clock
    /// before it refuses the entry (default `limits::MAX_CLOCK_SKEW_SECS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew_secs: Option<u64>,
    /// TESTING ONLY: shifts this node's clock by this many seconds (negative: behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_secs: Option<i64>,
    /// Only the first node of a new cluster initialises it, once.
    #[serde(default)]
    pub bootstrap: bool,
    /// The registry a new cluster starts with (JSON; read once, when the cluster is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_retention_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size_bytes: Option<u64>,
    /// Raft entries between state-machine snapshots (default in `limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_every_entries: Option<u64>,
    /// Age after which a chunk no committed manifest names is collected, unless its deposit is
    /// still active (default in `limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_grace_secs: Option<u64>,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Where this node sends its own traffic to a member, when that differs
    /// from the member's advertised address (a relay, or the chaos suite's
    /// fault proxy). Only outgoing node-to-node traffic uses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<PeerConfig>,
    /// Witnesses outside the vault's control (C2SP tlog-witness) the leader
    /// pushes each new checkpoint to; none is needed to run a cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<RawWitnessConfig>,
    /// An RFC 3161 time-stamping authority the leader asks for a token on
    /// each new checkpoint (docs/AUDIT_FORMATS.md, "Trusted time"); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa: Option<RawTsaConfig>,
    /// Where suspicious events go besides the log (art. 14(3)); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<RawAlertsConfig>,
    /// This node's secrets are sealed at rest (docs/KEYS.md §8): the key
    /// files above are not read; the node starts sealed and is unsealed by
    /// its custodians' shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<RawSealConfig>,
    /// Where chunks are kept (docs/STORAGE.md): absent, or `backend = "local"`, on this node's
    /// disk; `backend = "s3"`, in an S3 bucket with Object Lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<RawChunksConfig>,
}

/// The `[chunks]` table of a node config. Every member of a cluster must name the same backend
/// and, for `s3`, the same bucket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChunksConfig {
    /// `local` (the default) or `s3`.
    pub backend: String,
    /// The S3 API, `http://host:port` or `https://host:port` (path-style requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The SigV4 signing region (default `us-east-1`; Ceph RGW answers to any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// A file holding the secret key (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<String>,
    /// Object names start with this (default `chunks/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The CA (PEM) an `https` endpoint is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Seconds between the leader's checks of every item's objects and locks (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_every_secs: Option<u64>,
}

/// The `[seal]` table of a node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSealConfig {
    /// The sealed secrets (`custody-sealed-v1` JSON).
    pub file: String,
    /// The certificate (PEM) the node answers with while sealed: it names
    /// `sealed.node-<id>.custody` and the node's hosts, not `node-<id>.custody`.
    pub cert: String,
    /// Its key (PEM), kept in the clear: it can only be a sealed node.
    pub key: String,
    /// DEV ONLY: a file of unseal shares the node opens itself with at start.
    /// The cluster then says so in its checkpoints' origin and in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_unseal: Option<String>,
    /// A PKCS#11 token whose key unwraps the root key at start (docs/KEYS.md §8.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<RawPkcs11Config>,
}

/// The `[seal.pkcs11]` table of a node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPkcs11Config {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: String,
    /// The token's label.
    pub token: String,
    /// A file holding the user PIN (mode 0600).
    pub pin_file: String,
    /// The label of the token's AES-256 key that wraps the root key.
    pub key_label: String,
}

/// `[seal.pkcs11]`, its paths resolved.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token: String,
    pub pin_file: PathBuf,
    pub key_label: String,
}

/// A node's `[seal]` table, its paths resolved.
#[derive(Clone, Debug)]
pub struct SealConfig {
    pub file: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub auto_unseal: Option<PathBuf>,
    pub pkcs11: Option<Pkcs11Config>,
}

/// The `[alerts]` table of a node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertsConfig {
    /// Receives each alert as a JSON POST (http://).
    pub webhook: String,
    /// A member silent this long is reported lost (default `limits::MEMBER_UNREACHABLE_ALERT_SECS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_after_secs: Option<u64>,
}

/// The `[tsa]` table of a node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTsaConfig {
    /// Where the TSA answers `application/timestamp-query` POSTs (http://).
    pub url: String,
}

/// One `[[witnesses]]` entry of a node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitnessConfig {
    /// Where the witness serves `POST /add-checkpoint` (http://: what it is sent and answers is public and signed).
    pub url: String,
    /// The witness's verifier key (`<name>+<key id>+<base64>`), printed by `custody witness init`.
    pub key: String,
}

/// A configured witness, its key parsed.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    pub url: String,
    pub key: crate::witness::CosignerKey,
}

/// A validated node config with absolute paths.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    pub cluster_id: String,
    pub cluster_name: String,
    pub listen: SocketAddr,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crl: Option<PathBuf>,
    pub checkpoint_key: PathBuf,
    pub session_key: PathBuf,
    pub share_key: PathBuf,
    pub max_clock_skew_secs: u64,
    pub clock_offset_secs: i64,
    pub bootstrap: bool,
    pub registry_file: Option<PathBuf>,
    pub retention: RetentionPolicy,
    pub chunk_size_bytes: u64,
    pub snapshot_every_entries: u64,
    pub orphan_grace_secs: u64,
    pub peers: Vec<PeerConfig>,
    /// Member id → address this node uses to reach it (see `RawNodeConfig::routes`).
    pub routes: std::collections::BTreeMap<u64, String>,
    /// Witnesses the leader pushes checkpoints to.
    pub witnesses: Vec<WitnessConfig>,
    /// The URL of the time-stamping authority the leader asks, if any.
    pub tsa_url: Option<String>,
    /// The alert webhook, if any.
    pub alert_webhook: Option<String>,
    /// A member silent this long is reported lost.
    pub unreachable_after_secs: u64,
    /// Set when this node's secrets are sealed at rest.
    pub seal: Option<SealConfig>,
    /// Set when chunks go to an S3 bucket rather than this node's disk.
    pub bucket: Option<crate::evidence::BucketConfig>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn check_url(u: &str) -> Result<(), String> {
    let rest = u.strip_prefix("https://").ok_or_else(|| format!("`{u}` must start with https://"))?;
    if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
        return Err(format!("`{u}` must be https://host:port"));
    }
    Ok(())
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read(path)?;
        let perr = |detail: String| ConfigError::Parse { path: path.display().to_string(), what: "node config", detail };
        let raw: RawNodeConfig = toml::from_str(&text).map_err(|e| perr(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let listen: SocketAddr = raw.listen.parse().map_err(|e| perr(format!("listen: {e}")))?;
        check_url(&raw.advertise).map_err(perr)?;
        for p in raw.peers.iter().chain(&raw.routes) {
            check_url(&p.addr).map_err(perr)?;
        }
        let mut witnesses: Vec<WitnessConfig> = Vec::new();
        for w in &raw.witnesses {
            // The client that pushes to witnesses speaks plain HTTP only; an
            // https:// URL would fail at every push, so it is refused here.
            if !w.url.starts_with("http://") {
                return Err(perr(format!(
                    "witness url `{}` must start with http:// (what a witness is sent and answers is public and signed)",
                    w.url
                )));
            }
            let key = crate::witness::CosignerKey::parse(&w.key).map_err(|e| perr(format!("witness {}: key: {e}", w.url)))?;
            if witnesses.iter().any(|o| o.key.public_key() == key.public_key()) {
                return Err(perr(format!("witness key {key} is listed twice")));
            }
            witnesses.push(WitnessConfig { url: w.url.trim_end_matches('/').to_string(), key });
        }
        if let Some(a) = &raw.alerts {
            if !a.webhook.starts_with("http://") {
                return Err(perr(format!("alerts webhook `{}` must start with http:// (a local relay can forward to HTTPS)", a.webhook)));
            }
        }
        if let Some(t) = &raw.tsa {
            if !t.url.starts_with("http://") {
                return Err(perr(format!("tsa url `{}` must start with http:// (RFC 3161 §3.4; the token is signed)", t.url)));
            }
        }
        let chunk_size_bytes = raw.chunk_size_bytes.unwrap_or(limits::CHUNK_SIZE_BYTES);
        if !(limits::MIN_CHUNK_SIZE_BYTES..=limits::MAX_CHUNK_SIZE_BYTES).contains(&chunk_size_bytes) {
            return Err(perr("chunk_size_bytes must be 1–8 MiB".into()));
        }
        let retention = match raw.dev_retention_secs {
            Some(0) => return Err(perr("dev_retention_secs must be positive".into())),
            Some(s) => RetentionPolicy::dev(s),
            None => RetentionPolicy::REGULATION,
        };
        if raw.seal.is_none() && (raw.key.is_none() || raw.checkpoint_key.is_none()) {
            return Err(perr("`key` and `checkpoint_key` are required unless the node is sealed (`[seal]`)".into()));
        }
        let seal = raw.seal.as_ref().map(|s| SealConfig {
            file: resolve(base, &s.file),
            cert: resolve(base, &s.cert),
            key: resolve(base, &s.key),
            auto_unseal: s.auto_unseal.as_deref().map(|a| resolve(base, a)),
            pkcs11: s.pkcs11.as_ref().map(|p| Pkcs11Config {
                module: PathBuf::from(&p.module),
                token: p.token.clone(),
                pin_file: resolve(base, &p.pin_file),
                key_label: p.key_label.clone(),
            }),
        });
        let bucket = match &raw.chunks {
            None => None,
            Some(c) if c.backend == "local" => None,
            Some(c) if c.backend == "s3" => {
                let need = |v: &Option<String>, what: &str| {
                    v.clone().filter(|v| !v.is_empty()).ok_or_else(|| perr(format!("[chunks] backend = \"s3\" needs `{what}`")))
                };
                let endpoint = need(&c.endpoint, "endpoint")?.trim_end_matches('/').to_string();
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(perr(format!("[chunks] endpoint `{endpoint}` must start with http:// or https://")));
                }
                if endpoint.starts_with("https://") && c.ca.is_none() {
                    return Err(perr("[chunks] an https endpoint needs `ca`, the CA its certificate is checked against".into()));
                }
                let secret_file = resolve(base, &need(&c.secret_key_file, "secret_key_file")?);
                let secret_key = std::fs::read_to_string(&secret_file)
                    .map_err(|e| perr(format!("[chunks] secret_key_file {}: {e}", secret_file.display())))?
                    .trim()
                    .to_string();
                if secret_key.is_empty() {
                    return Err(perr(format!("[chunks] secret_key_file {} is empty", secret_file.display())));
                }
                Some(crate::evidence::BucketConfig {
                    endpoint,
                    bucket: need(&c.bucket, "bucket")?,
                    region: c.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    access_key: need(&c.access_key, "access_key")?,
                    secret_key,
                    prefix: c.prefix.clone().unwrap_or_else(|| "chunks/".into()),
                    ca: c.ca.as_deref().map(|p| resolve(base, p)),
                    sweep_every_secs: c.sweep_every_secs.unwrap_or(limits::OBJECT_SWEEP_SECS).max(1),
                })
            }
            Some(c) => return Err(perr(format!("[chunks] backend `{}` is neither \"local\" nor \"s3\"", c.backend))),
        };
        if raw.bootstrap && !raw.peers.iter().any(|p| p.id == raw.id) {
            return Err(perr("a bootstrap node must list itself among the peers".into()));
        }
        Ok(NodeConfig {
            id: raw.id,
            cluster_id: raw.cluster_id,
            cluster_name: raw.cluster_name,
            listen,
            advertise: raw.advertise.trim_end_matches('/').to_string(),
            data_dir: resolve(base, &raw.data_dir),
            ca: resolve(base, &raw.ca),
            cert: resolve(base, &raw.cert),
            key: resolve(base, raw.key.as_deref().unwrap_or("tls.key")),
            crl: raw.crl.as_deref().map(|c| resolve(base, c)),
            checkpoint_key: resolve(base, raw.checkpoint_key.as_deref().unwrap_or("checkpoint.key")),
            session_key: resolve(base, raw.session_key.as_deref().unwrap_or("session.key")),
            share_key: resolve(base, raw.share_key.as_deref().unwrap_or("share.key")),
            max_clock_skew_secs: raw.max_clock_skew_secs.unwrap_or(limits::MAX_CLOCK_SKEW_SECS).max(1),
            clock_offset_secs: raw.clock_offset_secs.unwrap_or(0),
            bootstrap: raw.bootstrap,
            registry_file: raw.registry_file.as_deref().map(|p| resolve(base, p)),
            retention,
            chunk_size_bytes,
            snapshot_every_entries: raw.snapshot_every_entries.unwrap_or(limits::SNAPSHOT_EVERY_ENTRIES).max(1),
            orphan_grace_secs: raw.orphan_grace_secs.unwrap_or(limits::ORPHAN_CHUNK_GRACE_SECS).max(1),
            peers: raw.peers,
            routes: raw.routes.into_iter().map(|r| (r.id, r.addr.trim_end_matches('/').to_string())).collect(),
            witnesses,
            tsa_url: raw.tsa.as_ref().map(|t| t.url.clone()),
            alert_webhook: raw.alerts.as_ref().map(|a| a.webhook.clone()),
            unreachable_after_secs: raw
                .alerts
                .as_ref()
                .and_then(|a| a.unreachable_after_secs)
                .unwrap_or(limits::MEMBER_UNREACHABLE_ALERT_SECS)
                .max(1),
            seal,
            bucket,
        })
    }
}

/// A client profile (`profiles/<user>.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub endpoints: Vec<String>,
    pub ca: String,
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub signing_key: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub endpoints: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub signing_key: Option<PathBuf>,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let text = read(path)?;
        let perr = |detail: String| ConfigError::Parse { path: path.display().to_string(), what: "client profile", detail };
        let raw: RawProfile = toml::from_str(&text).map_err(|e| perr(e.to_string()))?;
        if raw.endpoints.is_empty() {
            return Err(perr("endpoints must name at least one node".into()));
        }
        for e in &raw.endpoints {
            check_url(e).map_err(perr)?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Profile {
            endpoints: raw.endpoints.iter().map(|e| e.trim_end_matches('/').to_string()).collect(),
            ca: resolve(base, &raw.ca),
            cert: resolve(base, &raw.cert),
            key: resolve(base, &raw.key),
            signing_key: raw.signing_key.map(|s| resolve(base, &s)),
        })
    }
}

#[cfg(test)]
mod tests {
    /// The commented example in `cluster/` is a config a node accepts, sealed.
    #[test]
    fn the_example_node_config_loads() {
        let cfg = super::NodeConfig::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/node.example.toml")).unwrap();
        let seal = cfg.seal.expect("the example is sealed");
        assert!(seal.file.ends_with("cluster/sealed.json") && seal.auto_unseal.is_none() && seal.pkcs11.is_none());
        assert_eq!(cfg.peers.len(), 3);
    }
}
