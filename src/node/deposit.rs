//! The deposit path on the leader: stream in, cut into chunks, hash the
//! plaintext, seal each chunk, name it by the hash of its ciphertext, write it
//! locally and stream it to the other members concurrently (bounded pipeline,
//! backpressure from the slowest healthy peer). Only when a majority of voters
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
use crate::client::{full, read_body};
use crate::crypto::{self, ChunkCipher, DataKey, Hasher};
use crate::evidence::{chunk_count, ChunkName, ChunkRef, ChunkStoreError, DepositMeta, ItemId, Manifest};
use crate::limits;
use crate::vault::{Command, Outcome};

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
    #[error("the vault refused the deposit: {0}")]
    Refused(String),
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

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
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

/// Runs a deposit on the leader. `body` yields the clip's bytes; `size` is the
/// announced length, which binds the chunk count into every chunk's seal.
pub async fn deposit<S, E>(node: &Arc<Node>, depositor: String, meta: DepositMeta, size: u64, mut body: S) -> Result<Deposited, DepositError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    if !node.is_leader() {
        return Err(DepositError::NotLeader(node.leader().map(|(_, a)| a)));
    }
    meta.validate().map_err(DepositError::Invalid)?;
    node.ensure_configured().await.map_err(internal)?;
    if size > limits::MAX_CLIP_SIZE_BYTES {
        return Err(DepositError::Invalid(format!("a clip may be at most {} bytes", limits::MAX_CLIP_SIZE_BYTES)));
    }
    // Apply decides (the seal is refused for anyone else); this early look only
    // spares a court or an administrator from streaming a clip in for nothing.
    match crate::vault::registry::person(&node.state, &depositor) {
        Ok(Some(p)) if p.has(crate::vault::registry::Role::Officer) => {}
        Ok(_) => return Err(DepositError::Refused(format!("{depositor} is not a registered, unrevoked officer: only officers deposit"))),
        Err(e) => return Err(internal(e)),
    }
    let chunk_size = node.cfg.chunk_size_bytes;
    let count = chunk_count(size, chunk_size);
    let item = ItemId::from_bytes(crypto::random_bytes::<16>().map_err(internal)?);
    let data_key = DataKey::generate().map_err(internal)?;
    let nonce_prefix = crypto::random_bytes::<{ crypto::NONCE_PREFIX_BYTES }>().map_err(internal)?;
    let cipher = Arc::new(ChunkCipher::new(&data_key, item.as_bytes(), nonce_prefix, count).map_err(internal)?);
    let wrapped_key = node.kek.wrap(&data_key, item.as_bytes()).map_err(internal)?;
    drop(data_key);

    // Where the chunks go: this node, and every other member. Only voters count toward the quorum.
    let members = node.members();
    let voters = members.iter().filter(|m| m.2).count();
    let early_ack = crate::mutation::on(crate::mutation::Mutation::EarlyAck);
    let needed = if early_ack { 1 } else { voters / 2 + 1 };
    let mut senders: Vec<Sender> = Vec::new();
    let mut tasks = Vec::new();
    let (tx, rx) = mpsc::channel(limits::PIPELINE_CHUNKS);
    senders.push((true, Some(tx)));
    tasks.push((true, "local".to_string(), tokio::spawn(store_locally(node.clone(), item, rx))));
    for (id, addr, voter) in node.routed_peers().iter().filter(|_| !early_ack) {
        let (tx, rx) = mpsc::channel(limits::PIPELINE_CHUNKS);
        senders.push((*voter, Some(tx)));
        tasks.push((*voter, format!("node {id}"), tokio::spawn(replicate_to(node.clone(), item, addr.clone(), rx))));
    }

    let mut chunks: Vec<ChunkRef> = Vec::with_capacity(count as usize);
    let mut sealer = Sealer { cipher, hasher: Some(Hasher::new()), sealing: None, started: 0 };
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_size as usize + limits::GCM_TAG_BYTES as usize);
    let mut received: u64 = 0;

    let result: Result<(), DepositError> = async {
        loop {
            let frame = match body.next().await {
                None => break,
                Some(Err(e)) => return Err(DepositError::Upload(e.to_string())),
                Some(Ok(b)) => b,
            };
            received += frame.len() as u64;
            if received > size {
                return Err(DepositError::TooLong(size));
            }
            let mut frame = frame;
            while frame.has_remaining() {
                let take = (chunk_size as usize - buf.len()).min(frame.len());
                buf.extend_from_slice(&frame[..take]);
                frame.advance(take);
                if buf.len() == chunk_size as usize && sealer.started + 1 < count {
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(chunk_size as usize + 16));
                    sealer.seal(full, &mut chunks, &mut senders).await?;
                }
            }
        }
        if received != size {
            return Err(DepositError::Truncated { got: received, expected: size });
        }
        let last = std::mem::take(&mut buf);
        sealer.seal(last, &mut chunks, &mut senders).await?;
        sealer.finish(&mut chunks, &mut senders).await?;
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
        if held < needed {
            return Err(DepositError::NoQuorum { held, needed, detail: failures.join("; ") });
        }
        if !failures.is_empty() {
            tracing::warn!(item = %item, failures = %failures.join("; "), "some members missed chunks; they will fetch them");
        }
        let sha256 = hex::encode(sealer.hasher.take().ok_or_else(|| internal("hasher lost"))?.finish());
        let manifest = Manifest {
            item,
            sha256,
            size,
            chunk_size,
            chunks,
            nonce_prefix: hex::encode(nonce_prefix),
            wrapped_key: hex::encode(wrapped_key),
            meta,
            depositor,
        };
        let time_ms = now_ms();
        match node.raft.client_write(Command::Seal { manifest: manifest.clone(), time_ms }).await {
            Ok(resp) => match resp.data {
                Outcome::Sealed { retain_until_ms, seq, leaf_index, .. } => Ok(Deposited { manifest, time_ms, retain_until_ms, seq, leaf_index }),
                Outcome::Refused { reason } => Err(DepositError::Refused(reason)),
                other => Err(internal(format!("unexpected outcome {other:?}"))),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(DepositError::NotLeader(f.leader_node.map(|n| n.addr))),
            Err(e) => Err(internal(e)),
        }
    }
    .await;
    if outcome.is_err() {
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

type Sealed = Result<(Hasher, Vec<u8>, ChunkName), DepositError>;

/// Seals chunks off the executor, one at a time and in order, while the next
/// chunk is being received: receiving, sealing and writing overlap.
struct Sealer {
    cipher: Arc<ChunkCipher>,
    /// The clip's hasher, away in the chunk being sealed meanwhile.
    hasher: Option<Hasher>,
    sealing: Option<tokio::task::JoinHandle<Sealed>>,
    /// Chunks handed over so far (the one being sealed included).
    started: u64,
}

impl Sealer {
    /// Hands the chunk sealed before to the writers, then starts sealing `buf`.
    async fn seal(&mut self, mut buf: Vec<u8>, chunks: &mut Vec<ChunkRef>, senders: &mut [Sender]) -> Result<(), DepositError> {
        self.finish(chunks, senders).await?;
        let index = self.started;
        self.started += 1;
        let cipher = self.cipher.clone();
        let mut h = self.hasher.take().ok_or_else(|| internal("hasher lost"))?;
        self.sealing = Some(tokio::task::spawn_blocking(move || {
            h.update(&buf);
            cipher.seal(index, &mut buf).map_err(internal)?;
            let name = ChunkName::from_digest(crypto::sha256(&buf));
            Ok((h, buf, name))
        }));
        Ok(())
    }

    /// Waits for the chunk being sealed and hands it to every writer still healthy.
    async fn finish(&mut self, chunks: &mut Vec<ChunkRef>, senders: &mut [Sender]) -> Result<(), DepositError> {
        let Some(task) = self.sealing.take() else { return Ok(()) };
        let (h, buf, name) = task.await.map_err(internal)??;
        self.hasher = Some(h);
        chunks.push(ChunkRef { name, size: buf.len() as u64 });
        let bytes = Bytes::from(buf);
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
