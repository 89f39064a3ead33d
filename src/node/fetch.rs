//! The fetch path on a node (docs/KEYS.md §4.2): the access is recorded first
//! through Raft; each holder releases its share only once its own applied
//! state shows it; the chunks go out sealed. The node never sees the data key
//! or a plaintext byte: the fetching client rebuilds the one and opens the
//! other.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{now_ms, proposer, Node};
use crate::auth::Principal;
use crate::crypto::shares;
use crate::evidence::{ChunkName, ChunkStoreError, ItemId, Manifest};
use crate::raft::NodeId;
use crate::vault::access::{self, AccessRecord};
use crate::vault::Refusal;
use crate::vault::{query, Command, Outcome};

/// Why a step of a fetch was not done. `api/` maps each to its problem type.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("this node is not the leader")]
    NotLeader(Option<String>),
    /// Raft did not take the access record (no leader, a leader change, shutdown).
    #[error("{0}")]
    Write(proposer::WriteError),
    /// The request is malformed (a fetch key that is not 32 bytes of hex).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The vault's rules say no: no grant, no applied access, a purged item.
    #[error("{0}")]
    Refused(Refusal, String),
    #[error("{0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> FetchError {
    FetchError::Internal(e.to_string())
}

/// Proposes a command on the leader; a command the vault refused is an error.
async fn propose(node: &Node, cmd: Command) -> Result<Outcome, FetchError> {
    if !node.is_leader() {
        return Err(FetchError::NotLeader(node.leader().map(|(_, a)| a)));
    }
    match node.propose(cmd).await.map_err(FetchError::Write)? {
        Outcome::Refused { reason, detail } => Err(FetchError::Refused(reason, detail)),
        other => Ok(other),
    }
}

/// The committed record of an item, or `NotFound`.
fn item_record(node: &Node, item: &ItemId) -> Result<crate::vault::ItemRecord, FetchError> {
    query::item(&node.state, item).map_err(internal)?.ok_or_else(|| FetchError::NotFound(format!("no item {item}")))
}

/// What the fetcher asks to record: its signed statement names the key the
/// shares go to (docs/KEYS.md §4.2).
pub struct AccessAsk {
    pub request: String,
    pub fetch_key: String,
    pub signature: String,
}

/// A recorded access and what the fetcher needs to open the item.
pub struct Recorded {
    pub cluster_id: String,
    pub access_leaf: u64,
    pub manifest: Manifest,
    /// The advertised address of every member this node knows, to find the holders by.
    pub addrs: Vec<(NodeId, String)>,
}

/// Records the access through Raft (the fetcher's signed statement names the
/// key the shares go to) and tells the fetcher how to open the item. No record,
/// no share: the holders check it in their own applied state.
pub async fn record_access(node: &Node, who: &Principal, item: ItemId, ask: AccessAsk) -> Result<Recorded, FetchError> {
    let by = who.name();
    let manifest = item_record(node, &item)?.manifest;
    let record = Command::RecordAccess {
        request: ask.request.clone(),
        item,
        by: by.to_string(),
        fetch_key: ask.fetch_key,
        signature: ask.signature,
        time_ms: now_ms(),
    };
    let access_leaf = if crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord) {
        // The deliberate bug: claim a leaf, record only after the last sealed byte.
        let leaf = crate::vault::audit::size(&node.state).map_err(internal)?;
        node.late_records.lock().map_err(internal)?.push((item, by.to_string(), record));
        leaf
    } else {
        match propose(node, record).await? {
            Outcome::AccessRecorded { leaf_index } => leaf_index,
            other => return Err(internal(format!("unexpected outcome {other:?}"))),
        }
    };
    tracing::info!(%item, request = %ask.request, %by, access_leaf, "access recorded; holders may release their shares");
    Ok(Recorded {
        cluster_id: node.cfg.cluster_id.clone(),
        access_leaf,
        manifest,
        addrs: node.members().into_iter().map(|(id, addr, _)| (id, addr)).collect(),
    })
}

/// How long a node waits for an access it is told of to reach its own applied state.
const APPLY_WAIT_MS: u64 = 10_000;

/// The access at `leaf`, once this node has applied it: by `user`, to `item`.
async fn applied_access(node: &Node, leaf: u64, item: &ItemId, user: &str) -> Result<AccessRecord, FetchError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(APPLY_WAIT_MS);
    // Raft's metrics change whenever this node applies an entry: subscribed before the first
    // look, so an apply between the look and the wait still wakes it.
    let mut applies = node.raft.metrics();
    loop {
        if let Some(a) = access::access_at(&node.state, leaf).map_err(internal)? {
            if a.item != *item || a.by != user {
                return Err(FetchError::Refused(Refusal::NoAccess, format!("the access at leaf {leaf} is not {user}'s access to item {item}")));
            }
            if now_ms() > a.at_ms.saturating_add(crate::limits::ACCESS_RELEASE_SECS * 1000) {
                return Err(FetchError::Refused(
                    Refusal::NoAccess,
                    format!("the access at leaf {leaf} was recorded more than {} s ago: record a new one", crate::limits::ACCESS_RELEASE_SECS),
                ));
            }
            return Ok(a);
        }
        let applied = crate::vault::audit::size(&node.state).map_err(internal)?;
        if applied > leaf || tokio::time::Instant::now() >= deadline {
            return Err(FetchError::Refused(
                Refusal::NoAccess,
                format!("this node's applied log records no access at leaf {leaf}: nothing is released"),
            ));
        }
        if let Ok(Err(_stopped)) = tokio::time::timeout_at(deadline, applies.changed()).await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// This node's share of an item's data key, sealed to a fetch key.
pub struct Released {
    pub node: NodeId,
    pub x: u8,
    /// The HPKE envelope (docs/KEYS.md §4.2): only the fetch key's secret half opens it.
    pub envelope: Vec<u8>,
}

/// Releases this node's share of an item's data key, sealed to the fetch key,
/// after checking in this node's own applied state that the access committed.
pub async fn release_share(node: &Node, who: &Principal, item: ItemId, access_leaf: u64, fetch_key: &str) -> Result<Released, FetchError> {
    let released = release_checked(node, who, item, access_leaf, fetch_key).await;
    node.metrics.key_release(released.is_ok());
    if let Err(FetchError::Refused(kind, _)) = &released {
        node.alerts.raise(crate::wire::Alert::KeyReleaseRefused {
            item: item.to_string(),
            access: access_leaf,
            by: who.name().to_string(),
            reason: kind.name().to_string(),
        });
    }
    released
}

async fn release_checked(node: &Node, who: &Principal, item: ItemId, access_leaf: u64, fetch_key: &str) -> Result<Released, FetchError> {
    let by = who.name();
    let unchecked = crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord);
    if !unchecked {
        let a = applied_access(node, access_leaf, &item, by).await?;
        if a.fetch_key != fetch_key {
            return Err(FetchError::Refused(Refusal::NotPermitted, format!("the access at leaf {access_leaf} names another fetch key")));
        }
    }
    let rec = item_record(node, &item)?;
    if rec.purged.is_some() {
        return Err(FetchError::Refused(Refusal::Purged, "the item was purged: its shares are destroyed".into()));
    }
    let me = node.id();
    let h =
        rec.manifest.holders.iter().find(|h| h.node == me).ok_or_else(|| FetchError::NotFound(format!("node {me} holds no share of item {item}")))?;
    let aad = shares::share_aad(&node.cfg.cluster_id, item.as_bytes(), me, h.x);
    let share = super::reshare::own_share(node, &rec).map_err(internal)?.to_bytes();
    let fetch_key = crate::evidence::parse_hex::<32>(fetch_key, "fetch key").map_err(|e| FetchError::Invalid(e.to_string()))?;
    let release_aad = [aad.as_slice(), &access_leaf.to_be_bytes()].concat();
    let envelope = shares::seal(&fetch_key, shares::RELEASE_INFO, &release_aad, &share).map_err(internal)?;
    tracing::info!(%item, %by, access_leaf, "released this node's share");
    Ok(Released { node: me, x: h.x, envelope })
}

/// An item's sealed chunks, back to back, as they are read.
pub struct Sealed {
    /// Bytes in all.
    pub length: u64,
    pub chunks: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// An item's sealed chunks (ciphertext only) for a recorded access.
pub async fn sealed_chunks(node: &Arc<Node>, who: &Principal, item: ItemId, access_leaf: u64) -> Result<Sealed, FetchError> {
    let by = who.name();
    let late: Vec<Command> = if crate::mutation::on(crate::mutation::Mutation::ServeBeforeRecord) {
        let mut pending = node.late_records.lock().map_err(internal)?;
        let (mine, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(i, u, _)| *i == item && u == by);
        *pending = rest;
        mine.into_iter().map(|(_, _, c)| c).collect()
    } else {
        applied_access(node, access_leaf, &item, by).await?;
        Vec::new()
    };
    let rec = item_record(node, &item)?;
    if rec.purged.is_some() {
        return Err(FetchError::Refused(Refusal::Purged, "the item was purged".into()));
    }
    let m = rec.manifest;
    let length: u64 = m.chunks.iter().map(|c| c.size).sum();
    node.metrics.fetch_started();
    let n = node.clone();
    // A local chunk is read when the client wants it; from a bucket, a few requests run ahead
    // (in order): one GET at a time left the fetch at a third of the local rate (`custody bench
    // --s3-env`).
    let ahead = if node.bucket.is_some() { crate::limits::BUCKET_READ_AHEAD } else { 1 };
    let stream = futures::stream::iter(m.chunks)
        .map(move |c| {
            let node = n.clone();
            async move {
                let b = read_chunk(&node, &c.name).await?;
                node.metrics.fetched(b.len());
                Ok(b)
            }
        })
        .buffered(ahead);
    let node = node.clone();
    let late = futures::stream::iter(late).then(move |cmd| {
        let node = node.clone();
        async move { propose(&node, cmd).await.map(|_| Bytes::new()).map_err(|e| std::io::Error::other(format!("{e:?}"))) }
    });
    Ok(Sealed { length, chunks: stream.chain(late).boxed() })
}

/// A chunk from this node's store, or from a peer if this node's copy is missing or corrupt.
async fn read_chunk(node: &Arc<Node>, name: &ChunkName) -> Result<Bytes, std::io::Error> {
    if node.bucket.is_some() {
        return super::objects::read_chunk(node, name).await;
    }
    let store = node.chunks.clone();
    let n = *name;
    match tokio::task::spawn_blocking(move || store.get(&n)).await.map_err(std::io::Error::other)? {
        Ok(b) => return Ok(b),
        Err(ChunkStoreError::HashMismatch(_)) => {
            tracing::error!(chunk = %name, "a stored chunk does not match its name; fetching a healthy copy");
            let _ = node.chunks.remove(name);
        }
        Err(_) => {}
    }
    super::heal::fetch_from_peers(node, name).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    let store = node.chunks.clone();
    let n = *name;
    tokio::task::spawn_blocking(move || store.get(&n)).await.map_err(std::io::Error::other)?.map_err(|e| std::io::Error::other(e.to_string()))
}
