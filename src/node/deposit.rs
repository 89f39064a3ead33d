//! The deposit path on the leader: stream in the chunks the client sealed
//! (docs/KEYS.md §4.1), name each by the hash of its ciphertext, write it
//! locally and stream it to the other members concurrently (bounded pipeline,
//! backpressure from the slowest healthy peer). The leader never sees the
//! plaintext or the data key. Only when a majority of voters
//! durably holds every chunk is the seal entry proposed; its commit is the
//! acknowledgement. A deposit that fails leaves no item; its chunks become
//! orphans and are collected.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use hyper::{Method, Request};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::mpsc;

use super::{now_ms, Node};
use crate::auth::Principal;
use crate::client::{full, read_body};
use crate::crypto;
use crate::evidence::{chunk_count, AlignedBuf, ChunkName, ChunkRef, ChunkStoreError, ItemId, Manifest};
use crate::limits;
use crate::vault::{Command, Outcome, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("this node is not the leader")]
    NotLeader(Option<String>),
    #[error("invalid deposit: {0}")]
    Invalid(String),
    #[error("the upload ended after {got} of the announced {expected} bytes; nothing was stored")]
    Truncated { got: u64, expected: u64 },
    #[error("the upload carried more than the announced {0} bytes; nothing was stored")]
    TooLong(u64),
    #[error("the upload broke off: {0}; nothing was stored")]
    Upload(String),
    #[error("only {held} of the {needed} voters needed hold every chunk durably ({detail}); nothing was committed")]
    NoQuorum { held: usize, needed: usize, detail: String },
    #[error("the object store did not keep every chunk ({0}); nothing was committed")]
    Store(String),
    #[error("the voters or their share keys changed while the clip was sealed for {0:?}: seal it again for the new ones")]
    HoldersChanged(Vec<u64>),
    #[error("the vault refused the deposit: {0}")]
    Refused(Refusal, String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A writer's queue (`None` once it failed) and whether its node is a voter.
type Sender = (bool, Option<mpsc::Sender<ChunkMsg>>);

fn internal(e: impl std::fmt::Display) -> DepositError {
    DepositError::Internal(e.to_string())
}

/// What a committed deposit produced.
pub struct Deposited {
    pub manifest: Manifest,
    pub time_ms: u64,
    pub retain_until_ms: u64,
    pub seq: u64,
    pub leaf_index: u64,
}

type ChunkMsg = (ChunkName, Bytes);

/// Streams the chunks to one peer, several in flight. Ends (dropping its
/// receiver, which the producer notices) at the first failure.
async fn replicate_to(node: Arc<Node>, item: ItemId, addr: String, rx: mpsc::Receiver<ChunkMsg>) -> Result<(), String> {
    let mut puts = tokio_stream_from(rx)
        .map(|(name, bytes)| {
            let node = node.clone();
            let addr = addr.clone();
            async move { put_chunk(&node, item, &addr, &name, bytes).await }
        })
        .buffer_unordered(limits::PIPELINE_CHUNKS);
    while let Some(r) = puts.next().await {
        r?;
    }
    Ok(())
}

pub(super) fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn put_chunk(node: &Node, item: ItemId, addr: &str, name: &ChunkName, bytes: Bytes) -> Result<(), String> {
    let url = format!("{addr}/internal/chunks/{name}");
    let req = Request::builder()
        .method(Method::PUT)
        .uri(&url)
        .header(super::DEPOSIT_HEADER, item.to_string())
        .body(full(bytes))
        .map_err(|e| e.to_string())?;
    let resp = node.http.send(req, Duration::from_millis(limits::CHUNK_TRANSFER_TIMEOUT_MS)).await.map_err(|e| e.to_string())?;
    let (status, body) = read_body(&url, resp, 64 * 1024).await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{addr}: HTTP {status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// Writes the chunks to this node's own store.
async fn store_locally(node: Arc<Node>, item: ItemId, mut rx: mpsc::Receiver<ChunkMsg>) -> Result<(), String> {
    while let Some((name, bytes)) = rx.recv().await {
        node.inflight.touch(item, name);
        let (store, db) = (node.chunks.clone(), node.db.clone());
        match tokio::task::spawn_blocking(move || store.put_own(&name, &bytes).map(|_| super::held::mark(&db, &name))).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("marking chunk {name} held: {e}")),
            Ok(Err(ChunkStoreError::Full)) => return Err("this node's disk is full".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// How a deposit arrives (docs/KEYS.md §4.1): the client's sealed chunks,
/// `sealed_bytes` in all, each `chunk_size` + 16 bytes but the last, then its
/// signed manifest as JSON; `total` bytes in all when the request says.
pub struct Upload {
    pub sealed_bytes: u64,
    pub chunk_size: u64,
    pub total: Option<u64>,
}

/// Largest manifest a deposit of `chunks` chunks may carry.
fn max_manifest_bytes(chunks: u64) -> u64 {
    64 * 1024 + chunks * 160
}

/// Runs a deposit on the leader for the logged-in `depositor`. `body` yields
/// the sealed chunks, then the manifest; nothing here sees the plaintext or the
/// data key.
pub async fn deposit<S, E>(node: &Arc<Node>, depositor: &Principal, up: Upload, mut body: S) -> Result<Deposited, DepositError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let depositor = depositor.name();
    if !node.is_leader() {
        return Err(DepositError::NotLeader(node.leader().map(|(_, a)| a)));
    }
    node.ensure_configured().await.map_err(internal)?;
    let chunk_size = up.chunk_size;
    if !(limits::MIN_CHUNK_SIZE_BYTES..=limits::MAX_CHUNK_SIZE_BYTES).contains(&chunk_size) {
        return Err(DepositError::Invalid(format!(
            "chunks hold {} to {} bytes of the clip",
            limits::MIN_CHUNK_SIZE_BYTES,
            limits::MAX_CHUNK_SIZE_BYTES
        )));
    }
    let piece = chunk_size + limits::GCM_TAG_BYTES;
    let count = up.sealed_bytes.div_ceil(piece).max(1);
    let size = up.sealed_bytes.checked_sub(count * limits::GCM_TAG_BYTES).filter(|s| chunk_count(*s, chunk_size) == count).ok_or_else(|| {
        DepositError::Invalid(format!("{} sealed bytes are no whole number of sealed chunks of {chunk_size} bytes", up.sealed_bytes))
    })?;
    if size > limits::MAX_CLIP_SIZE_BYTES {
        return Err(DepositError::Invalid(format!("a clip may be at most {} bytes", limits::MAX_CLIP_SIZE_BYTES)));
    }
    let limit = up.sealed_bytes + max_manifest_bytes(count);
    if up.total.is_some_and(|t| t <= up.sealed_bytes || t > limit) {
        return Err(DepositError::Invalid(format!("the manifest after the chunks must be 1 to {} bytes", max_manifest_bytes(count))));
    }
    let expected = up.total.unwrap_or(limit);
    // Apply decides (the seal is refused for anyone else); this early look only
    // spares a court or an administrator from streaming a clip in for nothing.
    match crate::vault::registry::person(&node.state, depositor) {
        Ok(Some(p)) if p.has(crate::vault::registry::Role::Officer) => {}
        Ok(_) => {
            return Err(DepositError::Refused(
                Refusal::NotRegistered,
                format!("{depositor} is not a registered, unrevoked officer: only officers deposit"),
            ))
        }
        Err(e) => return Err(internal(e)),
    }
    // The chunks are named as they arrive; which item they are for, the manifest
    // says at the end. Until then they travel under a provisional id (which only
    // keeps the orphan collector off them while they stream).
    let item = ItemId::from_bytes(crypto::random_bytes::<16>().map_err(internal)?);

    // Where the chunks go: this node, and every other member. Only voters count toward the quorum.
    let members = node.members();
    let voters = members.iter().filter(|m| m.2).count();
    let early_ack = crate::mutation::on(crate::mutation::Mutation::EarlyAck);
    let needed = if early_ack { 1 } else { voters / 2 + 1 };
    let mut senders: Vec<Sender> = Vec::new();
    let mut tasks = Vec::new();
    let (tx, rx) = mpsc::channel(limits::PIPELINE_CHUNKS);
    senders.push((true, Some(tx)));
    // In bucket mode the object store is the one copy the deposit waits for (it keeps its own
    // replicas); the members hold no chunks.
    let needed = if node.bucket.is_some() { 1 } else { needed };
    if let Some(bucket) = &node.bucket {
        tasks.push((true, "the bucket".to_string(), tokio::spawn(super::objects::store_in_bucket(bucket.clone(), rx))));
    } else {
        tasks.push((true, "local".to_string(), tokio::spawn(store_locally(node.clone(), item, rx))));
    }
    for (id, addr, voter) in node.routed_peers().iter().filter(|_| !early_ack && node.bucket.is_none()) {
        let (tx, rx) = mpsc::channel(limits::PIPELINE_CHUNKS);
        senders.push((*voter, Some(tx)));
        tasks.push((*voter, format!("node {id}"), tokio::spawn(replicate_to(node.clone(), item, addr.clone(), rx))));
    }

    let mut chunks: Vec<ChunkRef> = Vec::with_capacity(count as usize);
    let mut namer = Namer { naming: None, started: 0 };
    // Each chunk gathered where direct I/O can write it from (`AlignedBuf`): no copy to store it.
    let mut buf = AlignedBuf::with_capacity(piece as usize);
    let mut manifest_json: Vec<u8> = Vec::with_capacity(((expected - up.sealed_bytes) as usize).min(1 << 20));
    let mut received: u64 = 0;

    let result: Result<(), DepositError> = async {
        while let Some(frame) = body.next().await {
            let mut frame = frame.map_err(|e| DepositError::Upload(e.to_string()))?;
            received += frame.len() as u64;
            if received > expected {
                return Err(DepositError::TooLong(expected));
            }
            while frame.has_remaining() {
                if namer.started * piece + buf.len() as u64 >= up.sealed_bytes {
                    manifest_json.extend_from_slice(&frame);
                    break;
                }
                let want = (piece - buf.len() as u64).min(up.sealed_bytes - namer.started * piece - buf.len() as u64);
                let take = (want as usize).min(frame.len());
                buf.extend_from_slice(&frame[..take]);
                frame.advance(take);
                let done = namer.started * piece + buf.len() as u64;
                if buf.len() as u64 == piece || done == up.sealed_bytes {
                    let full = std::mem::replace(&mut buf, AlignedBuf::with_capacity(piece as usize));
                    namer.name(full.into_bytes(), &mut chunks, &mut senders).await?;
                }
            }
        }
        if up.total.is_some_and(|t| received != t) || received <= up.sealed_bytes {
            return Err(DepositError::Truncated { got: received, expected: up.total.unwrap_or(up.sealed_bytes + 1) });
        }
        namer.finish(&mut chunks, &mut senders).await?;
        Ok(())
    }
    .await;
    // Closing the channels lets every writer finish.
    senders.clear();
    let mut held = 0;
    let mut failures = Vec::new();
    for (voter, who, task) in tasks {
        match task.await {
            Ok(Ok(())) if voter => held += 1,
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{who}: {e}")),
            Err(e) => failures.push(format!("{who}: {e}")),
        }
    }
    let names: Vec<ChunkName> = chunks.iter().map(|c| c.name).collect();
    let outcome = async {
        result?;
        if node.bucket.is_some() && held < needed {
            return Err(DepositError::Store(failures.join("; ")));
        }
        if held < needed {
            return Err(DepositError::NoQuorum { held, needed, detail: failures.join("; ") });
        }
        if !failures.is_empty() {
            tracing::warn!(item = %item, failures = %failures.join("; "), "some members missed chunks; they will fetch them");
        }
        let manifest: Manifest = serde_json::from_slice(&manifest_json).map_err(|e| DepositError::Invalid(format!("the manifest: {e}")))?;
        if manifest.depositor != depositor {
            return Err(DepositError::Refused(
                Refusal::NotPermitted,
                format!("the manifest names {} as depositor, but {depositor} is logged in", manifest.depositor),
            ));
        }
        if manifest.chunks != chunks || manifest.size != size || manifest.chunk_size != chunk_size {
            return Err(DepositError::Invalid("the manifest does not name the chunks that were sent".into()));
        }
        manifest.validate().map_err(DepositError::Invalid)?;
        // Apply refuses a key split over anyone but the current voters; say so in a way the client can act on.
        let holders: Vec<u64> = manifest.holders.iter().map(|h| h.node).collect();
        if crate::vault::query::voters(&node.state).map_err(internal)? != holders {
            return Err(DepositError::HoldersChanged(holders));
        }
        for h in &manifest.holders {
            if crate::vault::query::share_key(&node.state, h.node).map_err(internal)?.map(hex::encode).as_deref() != Some(h.share_key.as_str()) {
                return Err(DepositError::HoldersChanged(holders));
            }
        }
        let time_ms = now_ms();
        // In bucket mode the store refuses to delete the chunks before the seal can commit: each
        // is locked until the retention the seal will give it (apply may stamp a later time;
        // the lock is then extended before the acknowledgement). Only an error before the
        // commit reaches the clean-up below.
        let mut locked_until = 0;
        if let Some(bucket) = &node.bucket {
            let policy =
                crate::vault::query::config(&node.state).map_err(internal)?.ok_or_else(|| internal("the cluster is not configured"))?.retention;
            locked_until = time_ms.saturating_add(policy.period_secs(manifest.meta.retention).saturating_mul(1000));
            super::objects::lock_all(bucket, &names, locked_until).await.map_err(|e| DepositError::Store(format!("locking the chunks: {e}")))?;
        }
        match node.raft.client_write(Command::Seal { manifest: manifest.clone(), time_ms }).await {
            Ok(resp) => match resp.data {
                Outcome::Sealed { retain_until_ms, seq, leaf_index, .. } => {
                    if let Some(bucket) = node.bucket.as_ref().filter(|_| retain_until_ms > locked_until) {
                        // Committed: the deposit stands whatever happens here (its chunks are
                        // locked until `locked_until` already); the keeper extends what this misses.
                        if let Err(e) = super::objects::lock_all(bucket, &names, retain_until_ms).await {
                            tracing::error!(item = %manifest.item, error = %e, "could not extend the chunks' locks to the committed retention; the keeper retries");
                        }
                    }
                    node.metrics.deposited(manifest.size);
                    Ok(Deposited { manifest, time_ms, retain_until_ms, seq, leaf_index })
                }
                Outcome::Refused { reason, detail } => Err(DepositError::Refused(reason, detail)),
                other => Err(internal(format!("unexpected outcome {other:?}"))),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(DepositError::NotLeader(f.leader_node.map(|n| n.addr))),
            Err(e) => Err(internal(e)),
        }
    }
    .await;
    if outcome.is_err() {
        if let Some(bucket) = node.bucket.clone() {
            tokio::spawn(super::objects::delete_objects(bucket, names));
            return outcome;
        }
        // Nothing committed: drop our copies now rather than waiting for the orphan collector.
        let store = node.chunks.clone();
        tokio::task::spawn_blocking(move || {
            for n in names {
                let _ = store.remove(&n);
            }
        });
    }
    outcome
}

type Named = Result<(Bytes, ChunkName), DepositError>;

/// Names chunks (the SHA-256 of their sealed bytes) off the executor, one at a
/// time and in order, while the next chunk is being received.
struct Namer {
    naming: Option<tokio::task::JoinHandle<Named>>,
    /// Chunks handed over so far (the one being named included).
    started: u64,
}

impl Namer {
    /// Hands the chunk named before to the writers, then starts naming `buf`.
    async fn name(&mut self, buf: Bytes, chunks: &mut Vec<ChunkRef>, senders: &mut [Sender]) -> Result<(), DepositError> {
        self.finish(chunks, senders).await?;
        self.started += 1;
        self.naming = Some(tokio::task::spawn_blocking(move || {
            let name = ChunkName::from_digest(crypto::sha256(&buf));
            Ok((buf, name))
        }));
        Ok(())
    }

    /// Waits for the chunk being named and hands it to every writer still healthy.
    async fn finish(&mut self, chunks: &mut Vec<ChunkRef>, senders: &mut [Sender]) -> Result<(), DepositError> {
        let Some(task) = self.naming.take() else { return Ok(()) };
        let (buf, name) = task.await.map_err(internal)??;
        chunks.push(ChunkRef { name, size: buf.len() as u64 });
        let bytes = buf;
        for (_, slot) in senders.iter_mut() {
            if let Some(tx) = slot {
                if tx.send((name, bytes.clone())).await.is_err() {
                    // That writer failed and stopped; it no longer counts toward the quorum.
                    *slot = None;
                }
            }
        }
        Ok(())
    }
}
