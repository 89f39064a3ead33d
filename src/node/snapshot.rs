//! What a follower checks in a leader's snapshot before it installs it
//! (docs/KEYS.md §7.3). The staged state must be internally whole (every leaf
//! and tree node, and the published checkpoint's root), its registry, accesses
//! and node bindings must be what its leaves say (`vault::snapshot`), and its
//! tree must be vouched for by a majority of the voters, none of them this
//! node: each other voter is asked to cosign the snapshot's size and root from
//! its own applied state, and each signature is checked with that voter's
//! checkpoint key, taken from a binding whose certificate this node's CA
//! issued. If too few voters answer, the majority-cosigned checkpoint the
//! snapshot publishes must do, with a loud warning for the records after it;
//! a voter whose own tree has another root refuses the snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

use super::checkpoint::{verify_range, CosignRequest, CosignResponse, COSIGN_PATH, ROOT_MISMATCH};
use crate::audit::{self, Checkpoint, Note, VerifierKey};
use crate::client::Http;
use crate::config::NodeConfig;
use crate::raft::state_machine::{SnapshotGate, StateView};
use crate::raft::{NodeId, SnapshotMeta};
use crate::vault::{audit as tree, nodes, query};

/// Rounds of asking the other voters, one second apart (a voter may not yet
/// have applied everything the leader's snapshot holds).
const ASK_ROUNDS: u32 = 10;

/// The check of every received snapshot on this node.
pub struct Gate {
    id: NodeId,
    cluster_id: String,
    ca: PathBuf,
    routes: BTreeMap<NodeId, String>,
    http: Http,
}

impl Gate {
    pub fn new(cfg: &NodeConfig, http: Http) -> Arc<Gate> {
        Arc::new(Gate { id: cfg.id, cluster_id: cfg.cluster_id.clone(), ca: cfg.ca.clone(), routes: cfg.routes.clone(), http })
    }
}

impl SnapshotGate for Gate {
    fn check<'a>(&'a self, staged: &'a StateView, own: &'a StateView, meta: &'a SnapshotMeta) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(self.check_snapshot(staged, own, meta))
    }
}

/// What the checks of the staged state alone found.
struct Local {
    size: u64,
    root: audit::Hash,
    text: String,
    /// The voters' checkpoint keys, from bindings that check out.
    keys: BTreeMap<NodeId, VerifierKey>,
    /// The published checkpoint's size and the voters that signed it.
    published: Option<(u64, Vec<NodeId>)>,
}

impl Gate {
    async fn check_snapshot(&self, staged: &StateView, own: &StateView, meta: &SnapshotMeta) -> Result<(), String> {
        let voters: Vec<NodeId> = meta.last_membership.membership().voter_ids().collect();
        let (s, o, cluster, ca, v) = (staged.clone(), own.clone(), self.cluster_id.clone(), self.ca.clone(), voters.clone());
        let Some(local) = tokio::task::spawn_blocking(move || {
            extends_own_tree(&s, &o)?;
            local_checks(&s, &cluster, &ca, &v)
        })
        .await
        .map_err(|e| e.to_string())??
        else {
            return Ok(()); // an empty state: nothing to vouch for
        };
        let need = voters.len() / 2 + 1;
        let addrs: BTreeMap<NodeId, String> = meta.last_membership.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        let mut signed: Vec<NodeId> = Vec::new();
        let mut mismatch: Vec<NodeId> = Vec::new();
        for round in 0..ASK_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let ask: Vec<NodeId> = voters.iter().copied().filter(|v| *v != self.id && !signed.contains(v) && !mismatch.contains(v)).collect();
            let answers = futures::future::join_all(ask.iter().map(|v| self.ask(*v, addrs.get(v), &local))).await;
            for (v, answer) in ask.into_iter().zip(answers) {
                match answer {
                    Answer::Signed => signed.push(v),
                    Answer::OtherRoot => mismatch.push(v),
                    Answer::NotNow(why) => tracing::debug!(voter = v, reason = %why, "a voter has not vouched for the snapshot's tree yet"),
                }
            }
            if !mismatch.is_empty() {
                return Err(format!("voters {mismatch:?} have another root for the snapshot's tree at size {}", local.size));
            }
            if signed.len() >= need {
                tracing::info!(size = local.size, voters = ?signed, "a majority of the voters vouched for the snapshot's tree");
                return Ok(());
            }
        }
        match &local.published {
            Some((size, by)) if by.len() >= need => {
                tracing::warn!(
                    checkpoint_size = size,
                    size = local.size,
                    unattested = local.size - size,
                    vouched = ?signed,
                    "SNAPSHOT ATTESTED ONLY UP TO ITS PUBLISHED CHECKPOINT: too few voters answered for the records after it"
                );
                Ok(())
            }
            _ => Err(format!(
                "only voters {signed:?} vouched for the snapshot's tree of size {}, and no checkpoint it publishes is signed by {need} of the voters",
                local.size
            )),
        }
    }

    async fn ask(&self, voter: NodeId, addr: Option<&String>, local: &Local) -> Answer {
        let Some(key) = local.keys.get(&voter) else { return Answer::NotNow("no checked binding".into()) };
        let Some(addr) = self.routes.get(&voter).or(addr).map(|a| self.http.node_url(voter, a)) else { return Answer::NotNow("no address".into()) };
        let req = CosignRequest { size: local.size, root: hex::encode(local.root) };
        match self.http.call::<_, CosignResponse>(Method::POST, &format!("{addr}{COSIGN_PATH}"), Some(&req), Duration::from_secs(5)).await {
            Ok(r) => match audit::verify_note(&format!("{}\n{}", local.text, r.line), std::slice::from_ref(key)) {
                Ok(_) => Answer::Signed,
                Err(e) => Answer::NotNow(format!("its signature does not verify: {e}")),
            },
            Err(e) if e.problem().is_some_and(|p| p.kind == format!("urn:custody:{ROOT_MISMATCH}")) => Answer::OtherRoot,
            Err(e) => Answer::NotNow(e.to_string()),
        }
    }
}

enum Answer {
    Signed,
    OtherRoot,
    NotNow(String),
}

/// The log is append-only: the snapshot's tree must hold this node's own tree
/// as a prefix (the same root at this node's size), so no snapshot shortens or
/// rewrites what this node has already applied, an empty one included.
fn extends_own_tree(staged: &StateView, own: &StateView) -> Result<(), String> {
    let own_size = tree::size(own).map_err(|e| e.to_string())?;
    if own_size == 0 {
        return Ok(());
    }
    let size = tree::size(staged).map_err(|e| e.to_string())?;
    if size < own_size {
        return Err(format!("the snapshot's audit tree has {size} records, fewer than the {own_size} this node already applied"));
    }
    let theirs = tree::root(staged, own_size).map_err(|e| e.to_string())?;
    let mine = tree::root(own, own_size).map_err(|e| e.to_string())?;
    if theirs != mine {
        return Err(format!("the snapshot's audit tree at size {own_size} is not the tree this node applied (another root)"));
    }
    Ok(())
}

/// The checks that need only the staged state; `None` for an empty one.
fn local_checks(s: &StateView, cluster_id: &str, ca: &std::path::Path, voters: &[NodeId]) -> Result<Option<Local>, String> {
    let size = tree::size(s).map_err(|e| e.to_string())?;
    let config = query::config(s).map_err(|e| e.to_string())?;
    let config = match config {
        Some(c) if c.cluster_id == cluster_id => c,
        Some(c) => return Err(format!("the snapshot is of cluster {}, not {cluster_id}", c.cluster_id)),
        None if size == 0 => return Ok(None),
        None => return Err("the snapshot holds records but no cluster configuration".into()),
    };
    verify_range(s, 0, size).map_err(|e| format!("its audit tree does not check out: {e}"))?;
    crate::vault::snapshot::check_against_leaves(s).map_err(|e| e.to_string())?;
    let mut keys = BTreeMap::new();
    for v in voters {
        let bound = nodes::bound(s, *v).map_err(|e| e.to_string())?;
        let Some(b) = bound else { continue };
        let checked = b.binding.check(cluster_id).and_then(|_| {
            let der = b.binding.keys.certificate_der()?;
            crate::tls::verify_node_certificate(ca, &der, *v).map_err(|e| e.to_string())?;
            b.binding.keys.checkpoint_verifier()
        });
        match checked {
            Ok(k) => {
                keys.insert(*v, k);
            }
            Err(e) => tracing::warn!(voter = v, error = %e, "a voter's binding in the snapshot does not check out: its word does not count"),
        }
    }
    let root = tree::root(s, size).map_err(|e| e.to_string())?;
    let text = Checkpoint { origin: config.origin(), size, root, extensions: Vec::new() }.to_text().map_err(|e| e.to_string())?;
    let published = match query::checkpoint(s).map_err(|e| e.to_string())? {
        None => None,
        Some(note) => {
            let cp =
                Note::parse(&note).and_then(|n| Checkpoint::parse(&n.text)).map_err(|e| format!("its published checkpoint does not parse: {e}"))?;
            if cp.origin != config.origin() || cp.size > size {
                return Err(format!("its published checkpoint is of {} at size {}, not of this tree", cp.origin, cp.size));
            }
            let all: Vec<VerifierKey> = keys.values().cloned().collect();
            let by = match audit::verify_note(&note, &all) {
                Ok(v) => keys.iter().filter(|(_, k)| v.keys().contains(k)).map(|(id, _)| *id).collect(),
                Err(audit::NoteError::NoKnownSignature) => Vec::new(),
                Err(e) => return Err(format!("its published checkpoint does not verify: {e}")),
            };
            Some((cp.size, by))
        }
    };
    Ok(Some(Local { size, root, text, keys, published }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, Cf, Db, Durability};
    use crate::vault::Tx;

    /// A RocksDB state whose audit tree holds `records`.
    fn tree_of(records: &[&str]) -> (tempfile::TempDir, StateView) {
        let dir = tempfile::tempdir().unwrap();
        let view = StateView(Db::open(dir.path()).unwrap());
        let mut tx = Tx::new(&view);
        for r in records {
            let body = crate::audit::records::Body::Scrub(crate::audit::records::Scrub {
                node: 1,
                chunk: (*r).to_string(),
                item: None,
                found: crate::audit::records::Finding::Missing,
                repaired: false,
            });
            tree::append(&mut tx, &tree::record(1, body)).unwrap();
        }
        let mut b = Batch::default();
        for (k, v) in tx.into_writes() {
            match v {
                Some(v) => b.put(Cf::State, k, v),
                None => b.delete(Cf::State, k),
            }
        }
        view.0.write(b, Durability::Buffered).unwrap();
        (dir, view)
    }

    /// Issue 14: a snapshot never shortens or rewrites the tree a node applied.
    #[test]
    fn a_snapshot_must_extend_the_tree_this_node_applied() {
        let (_a, own) = tree_of(&["a", "b", "c"]);
        let (_b, longer) = tree_of(&["a", "b", "c", "d"]);
        extends_own_tree(&longer, &own).expect("a longer tree with this node's as its prefix");
        let (_c, empty) = tree_of(&[]);
        extends_own_tree(&longer, &empty).expect("a node with nothing applied takes any tree");
        let e = extends_own_tree(&empty, &own).expect_err("an empty snapshot would wipe what this node applied");
        assert!(e.contains("fewer"), "{e}");
        let (_d, shorter) = tree_of(&["a", "b"]);
        extends_own_tree(&shorter, &own).expect_err("a shorter tree");
        let (_e, rewritten) = tree_of(&["a", "x", "c", "d"]);
        let e = extends_own_tree(&rewritten, &own).expect_err("a tree that rewrote a record this node applied");
        assert!(e.contains("another root"), "{e}");
    }
}
