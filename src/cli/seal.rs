//! `custody operator unseal` and `custody operator rekey` (docs/KEYS.md §8).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;

use super::{emit, Failure};
use crate::crypto::Secret;
use crate::node::seal::{shares_in, SealedFile};
use crate::node::{SEAL_PATH, UNSEAL_PATH};
use crate::wire::{Rekeyed, SealStatus, TokenWrapped, UnsealRequest};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Give sealed node N a custodian's share: typed (not echoed) on a
    /// terminal, or piped, or from --share-file. The input may hold one share
    /// per line for several nodes (a custodian's file): node N's are taken.
    /// Prints the seal's progress (k of n); the node opens at the k-th.
    Unseal {
        #[arg(long)]
        node: u64,
        #[arg(long)]
        share_file: Option<PathBuf>,
        /// Only show the seal's progress.
        #[arg(long, conflicts_with_all = ["share_file", "reset"])]
        status: bool,
        /// Forget the shares given so far.
        #[arg(long, conflicts_with = "share_file")]
        reset: bool,
    },
    /// On a node's host: new custodian shares for its seal. Reads k of the
    /// current shares (piped, or from --share-file, repeatable), writes the
    /// sealed file anew under a new root key, and custodian K's new share to
    /// OUT/custodian-K.share. The old shares no longer open it. The node
    /// reads its sealed file when it starts.
    Rekey {
        /// The node's config (its `[seal]` names the sealed file).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=i64::from(crate::node::seal::MAX_CUSTODIANS)))]
        custodians: u8,
        /// [default: a majority of the custodians]
        #[arg(long)]
        unseal_threshold: Option<u8>,
        /// Where the new shares go (a directory it makes; existing share files are not overwritten).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        share_file: Vec<PathBuf>,
    },
    /// On a node's host: wraps its root key with the PKCS#11 token its config
    /// names (`[seal.pkcs11]`; the token's AES-256 key is made there if
    /// absent), so that it unseals itself at start with the token; its
    /// custodians can still unseal it. Reads k current shares (piped, or
    /// --share-file). A rekey drops the wrapping: wrap again after one.
    Wrap {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        share_file: Vec<PathBuf>,
    },
}

pub async fn run(cmd: OperatorCmd, profile: Option<PathBuf>, json: bool) -> Result<(), Failure> {
    match cmd {
        OperatorCmd::Unseal { node, share_file, status, reset } => {
            unseal(&super::ops::session(profile)?, node, share_file.as_deref(), status, reset, json).await
        }
        OperatorCmd::Rekey { config, custodians, unseal_threshold, out, share_file } => {
            rekey(&config, custodians, unseal_threshold, &out, &share_file, json)
        }
        OperatorCmd::Wrap { config, share_file } => wrap(&config, &share_file, json),
    }
}

fn summary(s: &SealStatus) -> String {
    if !s.sealed {
        let how = if s.dev_auto_unseal {
            " (DEV: it unsealed itself from a shares file)"
        } else if s.pkcs11 {
            " (by its PKCS#11 token)"
        } else if s.shares == 0 {
            " (its secrets are not sealed at rest)"
        } else {
            ""
        };
        return format!("node {}: unsealed{how}", s.node);
    }
    format!("node {}: SEALED, {} of {} shares given ({} custodians hold one each)", s.node, s.progress, s.threshold, s.shares)
}

/// Reads the input holding the shares: the files, or stdin (a terminal asks for one line, not echoed).
fn read_input(files: &[PathBuf], node: Option<u64>) -> Result<Secret<String>, Failure> {
    if !files.is_empty() {
        let mut all = Secret::new(String::new());
        for f in files {
            let text = Secret::new(std::fs::read_to_string(f).map_err(|e| Failure::new(2, format!("reading {}: {e}", f.display())))?);
            all.push_str(&text);
            all.push('\n');
        }
        return Ok(all);
    }
    if std::io::stdin().is_terminal() {
        let prompt = match node {
            Some(n) => format!("unseal share for node {n} (input is hidden): "),
            None => "an unseal share (input is hidden): ".into(),
        };
        return super::local::read_hidden_line(&prompt).map_err(Failure::from);
    }
    let mut text = Secret::new(String::new());
    std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::new(2, format!("reading stdin: {e}")))?;
    Ok(text)
}

/// Finds node `node` among the profile's endpoints as a sealed node: the
/// call is pinned to its seal certificate (`sealed.node-<id>.custody`), so
/// a share goes to no other server.
async fn find_sealed(s: &super::ops::Session, node: u64) -> Result<Result<(String, SealStatus), SealStatus>, Failure> {
    let http = s.http();
    for e in s.endpoints() {
        let base = http.sealed_node_url(node, e);
        if let Ok(st) = http.call::<(), SealStatus>(Method::GET, &format!("{base}{SEAL_PATH}"), None, CALL_TIMEOUT).await {
            if st.node == node {
                return Ok(Ok((base, st)));
            }
        }
    }
    // Not sealed (any more)? It answers as itself.
    for e in s.endpoints() {
        let base = http.node_url(node, e);
        if let Ok(st) = http.call::<(), SealStatus>(Method::GET, &format!("{base}{SEAL_PATH}"), None, CALL_TIMEOUT).await {
            if st.node == node {
                return Ok(Err(st));
            }
        }
    }
    Err(Failure::new(2, format!("no endpoint of the profile ({}) answers as node {node}, sealed or not", s.endpoints().join(", "))))
}

async fn unseal(s: &super::ops::Session, node: u64, share_file: Option<&Path>, status: bool, reset: bool, json: bool) -> Result<(), Failure> {
    let (base, mut st) = match find_sealed(s, node).await? {
        Ok(found) => found,
        Err(open) => {
            emit(json, &serde_json::to_value(&open)?, || summary(&open));
            return Ok(());
        }
    };
    let url = format!("{base}{UNSEAL_PATH}");
    if reset {
        st = s.http().call(Method::POST, &url, Some(&UnsealRequest { share: None, reset: true }), CALL_TIMEOUT).await?;
    } else if !status {
        let files: Vec<PathBuf> = share_file.map(Path::to_path_buf).into_iter().collect();
        let text = read_input(&files, Some(node))?;
        let shares = shares_in(&text, &st.cluster_id, node).map_err(|e| Failure::new(2, e.to_string()))?;
        if shares.is_empty() {
            return Err(Failure::new(2, format!("the input holds no share of node {node} of cluster {}", st.cluster_id)));
        }
        for sh in shares {
            st =
                s.http().call(Method::POST, &url, Some(&UnsealRequest { share: Some(sh.to_text().to_string()), reset: false }), CALL_TIMEOUT).await?;
            if !st.sealed {
                break;
            }
        }
    }
    emit(json, &serde_json::to_value(&st)?, || summary(&st));
    Ok(())
}

fn rekey(config: &Path, custodians: u8, threshold: Option<u8>, out: &Path, share_files: &[PathBuf], json: bool) -> Result<(), Failure> {
    let cfg = crate::config::NodeConfig::load(config)?;
    let sc = cfg.seal.as_ref().ok_or_else(|| Failure::new(2, format!("{} has no [seal]: this node's secrets are not sealed", config.display())))?;
    let k = threshold.unwrap_or(custodians / 2 + 1);
    if k == 0 || k > custodians {
        return Err(Failure::new(2, format!("--unseal-threshold {k} of --custodians {custodians}: it must be 1 to {custodians}")));
    }
    let file = SealedFile::load(&sc.file)?;
    let text = read_input(share_files, Some(cfg.id))?;
    let shares = shares_in(&text, &file.cluster_id, file.node).map_err(|e| Failure::new(2, e.to_string()))?;
    // A share that is not one of this seal's is refused (exit 1), as at unseal.
    let secrets = file.open(&shares).map_err(|e| Failure::new(1, format!("the current shares do not open {}: {e}", sc.file.display())))?;
    let (new_file, new_shares) = SealedFile::seal(&file.cluster_id, file.node, &secrets, k, custodians)?;
    std::fs::create_dir_all(out).map_err(|e| Failure::new(2, format!("creating {}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (i, sh) in new_shares.iter().enumerate() {
        let p = out.join(format!("custodian-{}.share", i + 1));
        crate::pki::write_secret(&p, format!("{}\n", sh.to_text().as_str()).as_bytes())?;
        written.push(p);
    }
    // The new shares are on disk before the file they open replaces the old one.
    new_file.write(&sc.file)?;
    let done = Rekeyed { node: file.node, sealed_file: sc.file.clone(), threshold: k, shares: custodians, share_files: written };
    emit(json, &serde_json::to_value(&done)?, || {
        let mut s = format!(
            "node {}: {} now opens with {} of {} new shares (the old ones no longer do):",
            done.node,
            done.sealed_file.display(),
            k,
            custodians
        );
        for f in &done.share_files {
            s.push_str(&format!("\n  {}", f.display()));
        }
        s.push_str("\nhand each to its custodian, then remove it from here");
        s
    });
    Ok(())
}

fn wrap(config: &Path, share_files: &[PathBuf], json: bool) -> Result<(), Failure> {
    let cfg = crate::config::NodeConfig::load(config)?;
    let sc = cfg.seal.as_ref().ok_or_else(|| Failure::new(2, format!("{} has no [seal]: this node's secrets are not sealed", config.display())))?;
    let token = sc.pkcs11.as_ref().ok_or_else(|| Failure::new(2, format!("{} has no [seal.pkcs11] naming the token", config.display())))?;
    let mut file = SealedFile::load(&sc.file)?;
    let text = read_input(share_files, Some(cfg.id))?;
    let shares = shares_in(&text, &file.cluster_id, file.node).map_err(|e| Failure::new(2, e.to_string()))?;
    let root = file.root_key(&shares).map_err(|e| Failure::new(1, format!("the shares do not open {}: {e}", sc.file.display())))?;
    file.open_with_root(&root).map_err(|e| Failure::new(1, format!("the shares do not open {}: {e}", sc.file.display())))?;
    let wrapped = crate::node::pkcs11::Token::from_config(token)?.wrap(&root, &file.header())?;
    file.pkcs11 = Some(wrapped);
    file.write(&sc.file)?;
    let done = TokenWrapped { node: file.node, sealed_file: sc.file.clone(), token: token.token.clone(), key_label: token.key_label.clone() };
    emit(json, &serde_json::to_value(&done)?, || {
        format!(
            "node {}: its root key is wrapped by key {:?} of token {:?}; it unseals itself at start with the token",
            done.node, done.key_label, done.token
        )
    });
    Ok(())
}
