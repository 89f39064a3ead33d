//! Sealing at rest (docs/KEYS.md §8). A node's secrets (its checkpoint,
//! session and share keys, and its TLS key) are stored in one file,
//! encrypted under a random root key; the root key exists only as the
//! custodians' Shamir shares (k of n). A node starts sealed: it answers only
//! health and `unseal` (with its seal certificate, which cannot pass for
//! the node), and opens its secrets once k custodians have each given a share.
//!
//! Formats, as docs/KEYS.md §8 specifies them:
//! - the sealed file, JSON `{format, cluster_id, node, threshold, shares,
//!   share_digests, nonce, ciphertext}`;
//! - an unseal share, one line of text:
//!   `custody-unseal-v1:<cluster id>:<node>:<x>:<64 hex digits of y>`.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::shares::KeyShare;
use crate::crypto::Secret;
use crate::wire::SealStatus;

/// The sealed file's `format`.
pub const FORMAT: &str = "custody-sealed-v1";
/// What an unseal share's text begins with.
pub const SHARE_PREFIX: &str = "custody-unseal-v1";
/// Begins the hashed text of a share digest.
const SHARE_DIGEST_CONTEXT: &[u8] = b"custody/unseal-share/v1\0";
/// Most custodians of one node.
pub const MAX_CUSTODIANS: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("not an unseal share: {0}")]
    Malformed(String),
    #[error("this share is for cluster {got}, not {want}")]
    WrongCluster { want: String, got: String },
    #[error("this share is for node {got}, not node {want}")]
    WrongNode { want: u64, got: u64 },
    #[error("share {x} is not one of this node's shares (it was never dealt, or the shares were changed by a rekey)")]
    NotDealt { x: u8 },
    #[error("the shares given do not open the sealed file (is it damaged?)")]
    Open,
    #[error("the sealed file: {0}")]
    File(String),
}

/// A node's secrets, wiped from memory when dropped.
pub struct NodeSecrets {
    pub checkpoint_seed: Secret<[u8; 32]>,
    pub session_seed: Secret<[u8; 32]>,
    pub share_seed: Secret<[u8; 32]>,
    /// The TLS private key, PKCS#8 DER.
    pub tls_key: Secret<Vec<u8>>,
}

/// The sealed plaintext: what [`NodeSecrets`] is written as before sealing.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    checkpoint_seed: String,
    session_seed: String,
    share_seed: String,
    tls_key: String,
}

fn seed(hexed: &str, what: &str) -> Result<Secret<[u8; 32]>, SealError> {
    let v = Secret::new(hex::decode(hexed).map_err(|_| SealError::File(format!("{what} is not hex")))?);
    let a: [u8; 32] = v.as_slice().try_into().map_err(|_| SealError::File(format!("{what} is not 32 bytes")))?;
    Ok(Secret::new(a))
}

impl NodeSecrets {
    /// New random seeds with `tls_key` (PKCS#8 DER).
    pub fn generate(tls_key: Vec<u8>) -> anyhow::Result<Self> {
        Ok(NodeSecrets {
            checkpoint_seed: Secret::new(crate::crypto::random_bytes::<32>()?),
            session_seed: Secret::new(crate::crypto::random_bytes::<32>()?),
            share_seed: Secret::new(crate::crypto::random_bytes::<32>()?),
            tls_key: Secret::new(tls_key),
        })
    }

    /// An unsealed node's secrets, from its key files (the session and
    /// share key files are made when absent).
    pub fn from_files(cfg: &crate::config::NodeConfig) -> anyhow::Result<Self> {
        Ok(NodeSecrets {
            checkpoint_seed: Secret::new(super::read_seed(&cfg.checkpoint_key).context("the checkpoint key")?),
            session_seed: Secret::new(super::load_or_make_seed(&cfg.session_key)?),
            share_seed: Secret::new(super::load_or_make_seed(&cfg.share_key)?),
            tls_key: Secret::new(crate::tls::pkcs8_of(&cfg.key)?),
        })
    }

    fn to_plain(&self) -> Secret<Vec<u8>> {
        let p = Plain {
            checkpoint_seed: hex::encode(*self.checkpoint_seed),
            session_seed: hex::encode(*self.session_seed),
            share_seed: hex::encode(*self.share_seed),
            tls_key: base64::engine::general_purpose::STANDARD.encode(self.tls_key.as_slice()),
        };
        let out = Secret::new(serde_json::to_vec(&p).unwrap_or_default());
        let Plain { checkpoint_seed, session_seed, share_seed, tls_key } = p;
        for s in [checkpoint_seed, session_seed, share_seed, tls_key] {
            drop(Secret::new(s));
        }
        out
    }

    fn from_plain(bytes: &[u8]) -> Result<Self, SealError> {
        let p: Plain = serde_json::from_slice(bytes).map_err(|e| SealError::File(format!("the opened secrets do not parse: {e}")))?;
        let tls_key = base64::engine::general_purpose::STANDARD.decode(&p.tls_key).map_err(|_| SealError::File("tls_key is not base64".into()))?;
        let out = NodeSecrets {
            checkpoint_seed: seed(&p.checkpoint_seed, "checkpoint_seed")?,
            session_seed: seed(&p.session_seed, "session_seed")?,
            share_seed: seed(&p.share_seed, "share_seed")?,
            tls_key: Secret::new(tls_key),
        };
        let Plain { checkpoint_seed, session_seed, share_seed, tls_key } = p;
        for s in [checkpoint_seed, session_seed, share_seed, tls_key] {
            drop(Secret::new(s));
        }
        Ok(out)
    }
}

/// One custodian's share of one node's root key.
pub struct UnsealShare {
    pub cluster_id: String,
    pub node: u64,
    share: KeyShare,
}

impl UnsealShare {
    pub fn x(&self) -> u8 {
        self.share.x
    }

    /// `SHA-256("custody/unseal-share/v1\0" ‖ cluster id ‖ 0x00 ‖ node (8 bytes, big-endian) ‖ x ‖ y)`, hex.
    fn digest(&self) -> String {
        let b = self.share.to_bytes();
        hex::encode(crate::crypto::sha256(&[SHARE_DIGEST_CONTEXT, self.cluster_id.as_bytes(), &[0], &self.node.to_be_bytes(), &b].concat()))
    }

    /// The share's one line of text (a secret: give it to its custodian only).
    pub fn to_text(&self) -> Secret<String> {
        let b = Secret::new(self.share.to_bytes());
        Secret::new(format!("{SHARE_PREFIX}:{}:{}:{}:{}", self.cluster_id, self.node, b[0], hex::encode(&b[1..])))
    }

    pub fn parse(text: &str) -> Result<Self, SealError> {
        let mut parts = text.trim().split(':');
        let bad = |what: &str| SealError::Malformed(format!("{what} (a share reads {SHARE_PREFIX}:<cluster id>:<node>:<x>:<64 hex digits>)"));
        if parts.next() != Some(SHARE_PREFIX) {
            return Err(bad("it does not begin with the share prefix"));
        }
        let cluster_id = parts.next().filter(|c| !c.is_empty()).ok_or_else(|| bad("no cluster id"))?.to_string();
        let node = parts.next().and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| bad("no node number"))?;
        let x = parts.next().and_then(|n| n.parse::<u8>().ok()).filter(|x| *x >= 1).ok_or_else(|| bad("no share number from 1 to 255"))?;
        let y = Secret::new(
            parts.next().and_then(|y| hex::decode(y).ok()).filter(|y| y.len() == 32).ok_or_else(|| bad("the share value is not 64 hex digits"))?,
        );
        if parts.next().is_some() {
            return Err(bad("more than five fields"));
        }
        let share = KeyShare::from_bytes(&[&[x], y.as_slice()].concat()).map_err(|e| SealError::Malformed(e.to_string()))?;
        Ok(UnsealShare { cluster_id, node, share })
    }
}

/// The shares for `node` of cluster `cluster_id` in `text`: one per line
/// (a custodian's file may hold one share of each node; blank lines and
/// lines beginning with `#` are skipped). A malformed line is an error.
pub fn shares_in(text: &str, cluster_id: &str, node: u64) -> Result<Vec<UnsealShare>, SealError> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let s = UnsealShare::parse(line)?;
        if s.cluster_id == cluster_id && s.node == node {
            out.push(s);
        }
    }
    Ok(out)
}

/// A node's sealed file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedFile {
    pub format: String,
    pub cluster_id: String,
    pub node: u64,
    /// How many shares open it (k).
    pub threshold: u8,
    /// How many shares were dealt (n), at x = 1..=n.
    pub shares: u8,
    /// The digest of share x at index x − 1 (hex; [`UnsealShare::digest`]).
    pub share_digests: Vec<String>,
    /// AES-256-GCM nonce, 24 hex digits.
    pub nonce: String,
    /// The sealed secrets and their tag, base64.
    pub ciphertext: String,
    /// The root key wrapped by a PKCS#11 token's key (`operator wrap`, §8.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<super::pkcs11::Wrapped>,
}

impl SealedFile {
    /// The associated data: every field but the nonce and the ciphertext,
    /// one per line: `format\ncluster_id\nnode\nthreshold\nshares\n` then each digest and `\n`.
    fn aad(&self) -> Vec<u8> {
        let mut s = format!("{}\n{}\n{}\n{}\n{}\n", self.format, self.cluster_id, self.node, self.threshold, self.shares);
        for d in &self.share_digests {
            s.push_str(d);
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Seals `secrets` for node `node` under a new root key split `k` of `n`.
    pub fn seal(cluster_id: &str, node: u64, secrets: &NodeSecrets, k: u8, n: u8) -> anyhow::Result<(SealedFile, Vec<UnsealShare>)> {
        if !(1..=MAX_CUSTODIANS).contains(&n) || k == 0 || k > n {
            anyhow::bail!("{k} of {n} custodians: give 1 to {MAX_CUSTODIANS} custodians and a threshold from 1 to their number");
        }
        let root = Secret::new(crate::crypto::random_bytes::<32>()?);
        let shares: Vec<UnsealShare> = crate::crypto::shares::split_k_of_n(&root, k, n)?
            .into_iter()
            .map(|share| UnsealShare { cluster_id: cluster_id.to_string(), node, share })
            .collect();
        let mut file = SealedFile {
            format: FORMAT.into(),
            cluster_id: cluster_id.to_string(),
            node,
            threshold: k,
            shares: n,
            share_digests: shares.iter().map(UnsealShare::digest).collect(),
            nonce: String::new(),
            ciphertext: String::new(),
            pkcs11: None,
        };
        let (nonce, ct) = crate::crypto::seal_at_rest(&root, &file.aad(), &secrets.to_plain())?;
        file.nonce = hex::encode(nonce);
        file.ciphertext = base64::engine::general_purpose::STANDARD.encode(ct);
        Ok((file, shares))
    }

    /// Checks that `s` is one of the shares dealt for this file.
    pub fn check(&self, s: &UnsealShare) -> Result<(), SealError> {
        if s.cluster_id != self.cluster_id {
            return Err(SealError::WrongCluster { want: self.cluster_id.clone(), got: s.cluster_id.clone() });
        }
        if s.node != self.node {
            return Err(SealError::WrongNode { want: self.node, got: s.node });
        }
        match self.share_digests.get(usize::from(s.x()) - 1) {
            Some(d) if *d == s.digest() => Ok(()),
            _ => Err(SealError::NotDealt { x: s.x() }),
        }
    }

    /// Opens the secrets with at least `threshold` checked shares of distinct x.
    pub fn open(&self, shares: &[UnsealShare]) -> Result<NodeSecrets, SealError> {
        let root = self.root_key(shares)?;
        self.open_with_root(&root)
    }

    /// The root key, rebuilt from at least `threshold` checked shares of distinct x.
    pub fn root_key(&self, shares: &[UnsealShare]) -> Result<Secret<[u8; 32]>, SealError> {
        for s in shares {
            self.check(s)?;
        }
        let keys: Vec<KeyShare> =
            shares.iter().map(|s| KeyShare::from_bytes(&s.share.to_bytes())).collect::<Result<_, _>>().map_err(|_| SealError::Open)?;
        Ok(Secret::new(crate::crypto::shares::recover(&keys, self.threshold).map_err(|e| SealError::Malformed(e.to_string()))?))
    }

    /// The header the root key's token wrapping is bound to (the same as the ciphertext's).
    pub fn header(&self) -> Vec<u8> {
        self.aad()
    }

    /// Opens the secrets with the root key.
    pub fn open_with_root(&self, root: &[u8; 32]) -> Result<NodeSecrets, SealError> {
        let nonce: [u8; 12] =
            hex::decode(&self.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| SealError::File("nonce is not 24 hex digits".into()))?;
        let ct =
            base64::engine::general_purpose::STANDARD.decode(&self.ciphertext).map_err(|_| SealError::File("ciphertext is not base64".into()))?;
        let plain = crate::crypto::open_at_rest(root, &nonce, &self.aad(), &ct).map_err(|_| SealError::Open)?;
        NodeSecrets::from_plain(&plain)
    }

    pub fn load(path: &Path) -> anyhow::Result<SealedFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let f: SealedFile = serde_json::from_str(&text).with_context(|| format!("{} is not a sealed file", path.display()))?;
        if f.format != FORMAT {
            anyhow::bail!("{}: format {:?}, expected {FORMAT}", path.display(), f.format);
        }
        if f.threshold == 0 || f.threshold > f.shares || f.share_digests.len() != usize::from(f.shares) {
            anyhow::bail!("{}: {} of {} shares with {} digests does not add up", path.display(), f.threshold, f.shares, f.share_digests.len());
        }
        Ok(f)
    }

    /// Writes the file atomically (a temporary file, fsynced, renamed over, mode 0600).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        crate::pki::write_secret_atomic(path, serde_json::to_string_pretty(self)?.as_bytes()).map_err(anyhow::Error::from)
    }
}

/// A sealed node's progress towards opening its secrets.
pub struct Unsealer {
    file: SealedFile,
    given: Mutex<Vec<UnsealShare>>,
    opened: tokio::sync::watch::Sender<bool>,
    secrets: Mutex<Option<NodeSecrets>>,
}

impl Unsealer {
    pub fn new(file: SealedFile) -> Self {
        Unsealer { file, given: Mutex::new(Vec::new()), opened: tokio::sync::watch::Sender::new(false), secrets: Mutex::new(None) }
    }

    fn given(&self) -> std::sync::MutexGuard<'_, Vec<UnsealShare>> {
        self.given.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> SealStatus {
        SealStatus {
            node: self.file.node,
            cluster_id: self.file.cluster_id.clone(),
            sealed: !*self.opened.borrow(),
            threshold: self.file.threshold,
            shares: self.file.shares,
            progress: u8::try_from(self.given().len()).unwrap_or(u8::MAX),
            dev_auto_unseal: false,
            pkcs11: false,
        }
    }

    /// Takes one custodian's share (its line of text). A share that is not
    /// one of this node's is refused and changes nothing; one given twice
    /// counts once. At the threshold the secrets open.
    pub fn submit(&self, text: &str) -> Result<SealStatus, SealError> {
        if *self.opened.borrow() {
            return Ok(self.status());
        }
        let share = UnsealShare::parse(text)?;
        self.file.check(&share)?;
        let mut given = self.given();
        if !given.iter().any(|g| g.x() == share.x()) {
            given.push(share);
        }
        if given.len() >= usize::from(self.file.threshold) {
            let opened = self.file.open(&given);
            given.clear();
            let secrets = opened?;
            *self.secrets.lock().unwrap_or_else(|p| p.into_inner()) = Some(secrets);
            drop(given);
            self.opened.send_replace(true);
            tracing::info!(node = self.file.node, "unsealed: this node's secrets are open");
        } else {
            drop(given);
        }
        Ok(self.status())
    }

    /// Forgets the shares given so far.
    pub fn reset(&self) -> SealStatus {
        self.given().clear();
        self.status()
    }

    /// Waits until the secrets open, then hands them over (once).
    pub async fn opened(&self) -> Option<NodeSecrets> {
        let mut rx = self.opened.subscribe();
        rx.wait_for(|o| *o).await.ok()?;
        self.secrets.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Opens a node's secrets with its PKCS#11 token: the root key the sealed
/// file keeps wrapped, unwrapped by the token's key (docs/KEYS.md §8.5).
pub fn token_unseal(file: &SealedFile, token: &crate::config::Pkcs11Config) -> anyhow::Result<NodeSecrets> {
    let wrapped =
        file.pkcs11.as_ref().ok_or_else(|| anyhow::anyhow!("the sealed file holds no root key wrapped by a token (`custody operator wrap`)"))?;
    let root = super::pkcs11::Token::from_config(token)?.unwrap(wrapped, &file.header())?;
    Ok(file.open_with_root(&root)?)
}

/// Opens a dev node's secrets with the shares in its `auto_unseal` file.
pub fn auto_unseal(file: &SealedFile, shares_file: &Path) -> anyhow::Result<NodeSecrets> {
    let text = Secret::new(std::fs::read_to_string(shares_file).with_context(|| format!("reading {}", shares_file.display()))?);
    let shares = shares_in(&text, &file.cluster_id, file.node)?;
    Ok(file.open(&shares)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> NodeSecrets {
        NodeSecrets::generate(b"pkcs8 bytes".to_vec()).unwrap()
    }

    #[test]
    fn k_of_n_shares_open_and_fewer_or_foreign_ones_do_not() {
        let s = secrets();
        let (file, shares) = SealedFile::seal("c1", 2, &s, 2, 3).unwrap();
        let texts: Vec<String> = shares.iter().map(|s| s.to_text().to_string()).collect();
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let given: Vec<UnsealShare> = pair.iter().map(|i| UnsealShare::parse(&texts[*i]).unwrap()).collect();
            let open = file.open(&given).unwrap();
            assert_eq!(*open.share_seed, *s.share_seed);
            assert_eq!(*open.tls_key, *s.tls_key);
        }
        assert!(file.open(&[UnsealShare::parse(&texts[0]).unwrap()]).is_err(), "one share is below the threshold");
        // A share of another seal of the same node: its digest is not among this file's.
        let (_, other) = SealedFile::seal("c1", 2, &s, 2, 3).unwrap();
        assert!(matches!(file.check(&other[0]), Err(SealError::NotDealt { x: 1 })));
        // Another node's share.
        let (_, node3) = SealedFile::seal("c1", 3, &s, 2, 3).unwrap();
        assert!(matches!(file.check(&node3[0]), Err(SealError::WrongNode { want: 2, got: 3 })));
        // A changed digit.
        let mut t = texts[0].clone();
        let last = t.pop().unwrap();
        t.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(file.check(&UnsealShare::parse(&t).unwrap()), Err(SealError::NotDealt { x: 1 })));
    }

    #[test]
    fn the_header_is_bound_to_the_ciphertext() {
        let (file, shares) = SealedFile::seal("c1", 1, &secrets(), 1, 1).unwrap();
        let mut lowered = file.clone();
        lowered.node = 9;
        let moved: Vec<UnsealShare> = shares
            .iter()
            .map(|s| UnsealShare { cluster_id: "c1".into(), node: 9, share: KeyShare::from_bytes(&s.share.to_bytes()).unwrap() })
            .collect();
        lowered.share_digests = moved.iter().map(UnsealShare::digest).collect();
        assert!(matches!(lowered.open(&moved), Err(SealError::Open)), "a header changed around the ciphertext must not open");
    }

    #[test]
    fn a_custodian_file_yields_the_shares_of_the_node_asked_for() {
        let s = secrets();
        let (_, a) = SealedFile::seal("c1", 1, &s, 1, 2).unwrap();
        let (_, b) = SealedFile::seal("c1", 2, &s, 1, 2).unwrap();
        let text = format!("# custodian 1\n{}\n\n{}\n", a[0].to_text().as_str(), b[0].to_text().as_str());
        let got = shares_in(&text, "c1", 2).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].node, 2);
        assert!(shares_in("not a share", "c1", 2).is_err());
    }

    #[test]
    fn the_unsealer_counts_distinct_dealt_shares_and_opens_at_the_threshold() {
        let (file, shares) = SealedFile::seal("c1", 1, &secrets(), 2, 3).unwrap();
        let u = Unsealer::new(file);
        let t0 = shares[0].to_text();
        assert_eq!(u.submit(&t0).unwrap().progress, 1);
        assert_eq!(u.submit(&t0).unwrap().progress, 1, "the same share twice counts once");
        assert!(u.submit("custody-unseal-v1:c1:1:3:00").is_err());
        let st = u.submit(&shares[2].to_text()).unwrap();
        assert!(!st.sealed);
        assert_eq!(st.progress, 0);
    }
}
