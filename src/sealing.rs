//! The client's half of threshold key custody (docs/KEYS.md §4). A deposit is
//! sealed here: the data key is drawn here, split over the voters, each share
//! sealed to its holder's key; the vault receives ciphertext only. A fetch
//! rebuilds the key here from the shares the holders release once their own
//! applied state shows the access, and opens the chunks here. No node ever
//! sees a plaintext byte or a data key.
//!
//! This is library code, not the CLI's: the CLI, `custody bench` and the tests
//! use it. It knows the `/v1` routes a deposit and a fetch take, and talks to
//! the vault through whatever [`Vault`] it is handed (the CLI's logged-in
//! session); it knows no profile, prints nothing and picks no exit status.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{BoxError, HttpError, Incoming};
use crate::crypto::shares::{self, KeyShare, ShareSecretKey};
use crate::crypto::{ChunkCipher, DataKey, Hasher, SigningKey};
use crate::evidence::{chunk_count, AccessStatement, ChunkName, ChunkRef, DepositMeta, Holder, ItemId, Manifest};
use crate::limits;
use crate::wire::{AccessBody, AccessView, DepositReceipt, FetchOutput, HoldersView, ShareRelease, ShareRequest};

/// How long one holder may take to release its share.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the client half needs of its connection to the vault. The CLI's
/// logged-in session (`cli::ops::Session`: the nodes of a profile, following
/// the leader) is one.
pub trait Vault: Sync {
    /// The address of every node this client knows of.
    fn endpoints(&self) -> &[String];

    /// `method path` with a JSON body and a JSON answer, on whichever node
    /// answers (following a `not-leader` answer to the leader).
    fn call<B: Serialize + Sync, T: DeserializeOwned + Send>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> impl Future<Output = Result<T, HttpError>> + Send;

    /// `method path` on the one node at `base`.
    fn call_at<B: Serialize + Sync, T: DeserializeOwned + Send>(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> impl Future<Output = Result<T, HttpError>> + Send;

    /// A request `make` builds for a node's URL (again for each node it goes
    /// to), on whichever node answers, following the leader; a JSON answer.
    fn send<T, F, Fut>(&self, path: &str, timeout: Duration, make: F) -> impl Future<Output = Result<T, HttpError>> + Send
    where
        T: DeserializeOwned + Send,
        F: Fn(String) -> Fut + Send + Sync,
        Fut: Future<Output = Result<hyper::Request<crate::client::Body>, HttpError>> + Send;

    /// `GET path` on whichever node answers with a success: its URL and the
    /// answer, whose body is read as it streams.
    fn get_stream(&self, path: &str, timeout: Duration) -> impl Future<Output = Result<(String, hyper::Response<Incoming>), HttpError>> + Send;
}

/// Why the client half of a deposit or a fetch failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SealingError {
    pub kind: ErrorKind,
    pub message: String,
    /// The vault's problem type, when the error is its answer.
    pub problem: Option<String>,
}

/// Whose word a [`SealingError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The vault refused, or what it sent does not check out (a malformed
    /// holder set, too few good shares, a clip that is not the deposited one):
    /// a negative verdict.
    Verdict,
    /// Something on the way or on this machine: the network, a file, the
    /// random source.
    Operational,
}

fn bad(detail: impl Into<String>) -> SealingError {
    SealingError { kind: ErrorKind::Verdict, message: detail.into(), problem: None }
}

fn operational(e: impl std::fmt::Display) -> SealingError {
    SealingError { kind: ErrorKind::Operational, message: format!("{e:#}"), problem: None }
}

impl From<crate::crypto::CryptoError> for SealingError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        operational(e)
    }
}

/// A vault's answer as an error: a refusal is a verdict, anything else operational.
fn http(e: HttpError) -> SealingError {
    match e.problem() {
        Some(p) => {
            let kind = if p.is_refusal() { ErrorKind::Verdict } else { ErrorKind::Operational };
            SealingError { kind, message: format!("{}: {}", p.title, p.detail), problem: Some(p.kind.clone()) }
        }
        None => operational(e),
    }
}

/// How long a call for the holders may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A deposit of a large clip may take long; the server bounds each hop.
const DEPOSIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Attempts of a deposit in all, when the holders change while it is sealed.
const DEPOSIT_ATTEMPTS: u32 = 4;

/// Deposits `file` (`size` bytes, signed by `depositor` with `key`): sealed
/// for the current voters and streamed to the leader; sealed again for the
/// new ones when they changed meanwhile. The receipt must name the item sealed.
/// `bar` draws a progress bar for each attempt, if the caller wants one.
pub async fn deposit(
    s: &impl Vault,
    file: &Path,
    size: u64,
    meta: DepositMeta,
    depositor: &str,
    key: &Arc<SigningKey>,
    bar: &(dyn Fn() -> Option<indicatif::ProgressBar> + Sync),
) -> Result<DepositReceipt, SealingError> {
    let mut attempts = 0;
    let (plan, receipt) = loop {
        attempts += 1;
        match upload_once(s, file, size, meta.clone(), depositor, key, bar).await {
            Err(HttpError::Problem(p)) if p.kind.ends_with(":holders-changed") && attempts < DEPOSIT_ATTEMPTS => continue,
            other => break other.map_err(http)?,
        }
    };
    if receipt.item != plan.item() {
        return Err(bad(format!("the vault acknowledged item {}, not the deposited {}", receipt.item, plan.item())));
    }
    Ok(receipt)
}

/// One sealed upload to the current holder set.
async fn upload_once(
    s: &impl Vault,
    file: &Path,
    size: u64,
    meta: DepositMeta,
    depositor: &str,
    key: &Arc<SigningKey>,
    bar: &(dyn Fn() -> Option<indicatif::ProgressBar> + Sync),
) -> Result<(Arc<DepositPlan>, DepositReceipt), HttpError> {
    // Sealed here, to the voters' share keys: the vault receives ciphertext only (docs/KEYS.md §4.1).
    let view: HoldersView = s.call::<(), _>(Method::GET, "/v1/holders", None, CALL_TIMEOUT).await?;
    let local = |e: SealingError| HttpError::BadAnswer { url: "/v1/holders".into(), detail: e.message };
    let plan = Arc::new(DepositPlan::new(&view, size, meta, depositor.to_string()).map_err(local)?);
    let bar = bar();
    let file = file.to_path_buf();
    let receipt: DepositReceipt = s
        .send("/v1/items", DEPOSIT_TIMEOUT, |url| {
            let (file, bar, plan, key) = (file.clone(), bar.clone(), plan.clone(), key.clone());
            async move {
                if let Some(b) = &bar {
                    b.set_position(0);
                }
                let f = tokio::fs::File::open(&file)
                    .await
                    .map_err(|e| HttpError::BadAnswer { url: url.clone(), detail: format!("{}: {e}", file.display()) })?;
                let (sealed, chunk_size) = (plan.sealed_bytes(), plan.chunk_size());
                let stream = upload_stream(plan, key, f, bar).map(|r| r.map(Frame::data));
                let body = BodyExt::boxed(StreamBody::new(stream));
                hyper::Request::builder()
                    .method(Method::POST)
                    .uri(&url)
                    .header(crate::node::SEALED_BYTES_HEADER, sealed)
                    .header(crate::node::CHUNK_SIZE_HEADER, chunk_size)
                    .header("content-type", "application/octet-stream")
                    .body(body)
                    .map_err(|e| HttpError::BadAnswer { url, detail: e.to_string() })
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((plan, receipt))
}

/// Everything fixed for one deposit before its bytes stream: the same on every
/// attempt, so a retried upload seals to the same chunk names.
pub struct DepositPlan {
    cipher: ChunkCipher,
    manifest: Manifest,
    count: u64,
}

impl DepositPlan {
    /// Draws the item id, the data key and the nonce prefix; splits the key
    /// k-of-n over `view`'s voters and seals each share to its holder.
    pub fn new(view: &HoldersView, size: u64, meta: DepositMeta, depositor: String) -> Result<Self, SealingError> {
        let n = u8::try_from(view.holders.len())
            .ok()
            .filter(|n| (1..=shares::MAX_HOLDERS).contains(n))
            .ok_or_else(|| bad("the vault named no usable holder set"))?;
        if view.threshold != shares::threshold(n) || view.holders.windows(2).any(|w| w[0].node >= w[1].node) {
            return Err(bad("the vault's holder set is malformed"));
        }
        if !(limits::MIN_CHUNK_SIZE_BYTES..=limits::MAX_CHUNK_SIZE_BYTES).contains(&view.chunk_size) {
            return Err(bad(format!("the vault asks for chunks of {} bytes", view.chunk_size)));
        }
        let item = ItemId::from_bytes(crate::crypto::random_bytes::<16>()?);
        let key = DataKey::generate()?;
        let nonce_prefix = crate::crypto::random_bytes::<{ crate::crypto::NONCE_PREFIX_BYTES }>()?;
        let count = chunk_count(size, view.chunk_size);
        let cipher = ChunkCipher::new(&key, item.as_bytes(), nonce_prefix, count)?;
        let split = shares::split(key.bytes(), n)?;
        let mut holders = Vec::with_capacity(split.len());
        for (h, share) in view.holders.iter().zip(&split) {
            let to = crate::evidence::parse_hex::<32>(&h.share_key, "share key").map_err(|e| bad(e.to_string()))?;
            let aad = shares::share_aad(&view.cluster_id, item.as_bytes(), h.node, share.x);
            let envelope = shares::seal(&to, shares::SHARE_INFO, &aad, &share.to_bytes())?;
            holders.push(Holder { node: h.node, x: share.x, share_key: h.share_key.clone(), envelope: hex::encode(envelope), parts: Vec::new() });
        }
        let manifest = Manifest {
            item,
            sha256: String::new(),
            size,
            chunk_size: view.chunk_size,
            chunks: Vec::with_capacity(count as usize),
            nonce_prefix: hex::encode(nonce_prefix),
            holders,
            threshold: view.threshold,
            key_commitment: hex::encode(shares::key_commitment(item.as_bytes(), key.bytes())),
            meta,
            depositor,
            signature: String::new(),
        };
        Ok(DepositPlan { cipher, manifest, count })
    }

    pub fn item(&self) -> ItemId {
        self.manifest.item
    }

    /// Bytes of sealed chunks the upload carries before its manifest.
    pub fn sealed_bytes(&self) -> u64 {
        self.manifest.size + self.count * limits::GCM_TAG_BYTES
    }

    pub fn chunk_size(&self) -> u64 {
        self.manifest.chunk_size
    }
}

struct Upload {
    plan: Arc<DepositPlan>,
    key: Arc<SigningKey>,
    file: tokio::fs::File,
    index: u64,
    hasher: Option<Hasher>,
    chunks: Vec<ChunkRef>,
    done: bool,
    progress: Option<indicatif::ProgressBar>,
}

/// The upload body: each chunk read, hashed and sealed in one pass, then the
/// signed manifest (docs/KEYS.md §4.1).
pub fn upload_stream(
    plan: Arc<DepositPlan>,
    key: Arc<SigningKey>,
    file: tokio::fs::File,
    progress: Option<indicatif::ProgressBar>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send {
    let state = Upload { plan, key, file, index: 0, hasher: Some(Hasher::new()), chunks: Vec::new(), done: false, progress };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let r = next_piece(&mut st).await;
        if r.is_err() {
            st.done = true;
        }
        Some((r, st))
    })
}

async fn next_piece(st: &mut Upload) -> Result<Bytes, BoxError> {
    let plan = st.plan.clone();
    let m = &plan.manifest;
    if st.index < plan.count {
        let len = (m.size - st.index * m.chunk_size).min(m.chunk_size) as usize;
        let mut buf = Vec::with_capacity(len + limits::GCM_TAG_BYTES as usize);
        buf.resize(len, 0);
        st.file.read_exact(&mut buf).await.map_err(|e| format!("reading the clip: {e}"))?;
        let index = st.index;
        let mut h = st.hasher.take().ok_or("hasher lost")?;
        let p = plan.clone();
        let (h, buf, name) = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            h.update(&buf);
            p.cipher.seal(index, &mut buf)?;
            let name = ChunkName::from_digest(crate::crypto::sha256(&buf));
            Ok((h, buf, name))
        })
        .await??;
        st.hasher = Some(h);
        st.chunks.push(ChunkRef { name, size: buf.len() as u64 });
        st.index += 1;
        if let Some(p) = &st.progress {
            p.inc(len as u64);
        }
        return Ok(Bytes::from(buf));
    }
    let mut probe = [0u8; 1];
    if st.file.read(&mut probe).await.map_err(|e| format!("reading the clip: {e}"))? != 0 {
        return Err("the file grew while it was being deposited".into());
    }
    let mut manifest = m.clone();
    manifest.sha256 = hex::encode(st.hasher.take().ok_or("hasher lost")?.finish());
    manifest.chunks = std::mem::take(&mut st.chunks);
    let bytes = manifest.signing_bytes()?;
    manifest.signature = BASE64.encode(st.key.sign(&bytes));
    st.done = true;
    Ok(Bytes::from(serde_json::to_vec(&manifest)?))
}

/// Records the access, gathers a threshold of shares, rebuilds the data key,
/// then streams the sealed chunks and opens them here, writing `out` (or only
/// checking, when there is none). `fetcher` signs the access with `key`.
pub async fn fetch(
    s: &impl Vault,
    fetcher: &str,
    key: &SigningKey,
    item: ItemId,
    request: &str,
    out: Option<&Path>,
) -> Result<FetchOutput, SealingError> {
    fetch_timed(s, fetcher, key, item, request, out).await.map(|(done, _)| done)
}

/// How long each step of one fetch took, as `custody bench` reports it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FetchTimings {
    /// Signing the access statement and committing the access record through Raft.
    pub record_ms: f64,
    /// The key release: from the committed record until a threshold of holders'
    /// shares, each released only after that holder found the record in its own
    /// applied state, rebuilt the data key.
    pub release_ms: f64,
    /// Streaming the sealed chunks and opening and hashing them here.
    pub open_ms: f64,
}

/// [`fetch`], timing each step.
pub async fn fetch_timed(
    s: &impl Vault,
    fetcher: &str,
    key: &SigningKey,
    item: ItemId,
    request: &str,
    out: Option<&Path>,
) -> Result<(FetchOutput, FetchTimings), SealingError> {
    let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1000.0;
    let started = std::time::Instant::now();
    let fetch_secret = ShareSecretKey::generate()?;
    let fetch_key = hex::encode(fetch_secret.public_key());
    let statement = AccessStatement { item, request: request.to_string(), fetcher: fetcher.to_string(), fetch_key: fetch_key.clone() };
    let signed = statement.signing_bytes().map_err(operational)?;
    let body = AccessBody { request: request.to_string(), fetch_key: fetch_key.clone(), signature: BASE64.encode(key.sign(&signed)) };
    let view: AccessView = s.call(Method::POST, &format!("/v1/items/{item}/access"), Some(&body), Duration::from_secs(30)).await.map_err(http)?;
    if view.item != item {
        return Err(bad(format!("the vault answered for item {}, not {item}", view.item)));
    }
    let record_ms = ms(started);
    let released = std::time::Instant::now();
    let data_key = gather(s, &view, &fetch_secret, &fetch_key).await?;
    let release_ms = ms(released);
    let prefix =
        crate::evidence::parse_hex::<{ crate::crypto::NONCE_PREFIX_BYTES }>(&view.nonce_prefix, "nonce prefix").map_err(|e| bad(e.to_string()))?;
    if view.chunks != chunk_count(view.size, view.chunk_size) {
        return Err(bad("the vault's chunk count does not match the clip's size"));
    }
    let cipher = Arc::new(ChunkCipher::new(&data_key, item.as_bytes(), prefix, view.chunks)?);
    drop(data_key);
    let opened = std::time::Instant::now();
    let done = open_chunks(s, &view, cipher, out).await?;
    Ok((done, FetchTimings { record_ms, release_ms, open_ms: ms(opened) }))
}

/// How long the holders asked may take before one more is asked as well.
const HEDGE_AFTER: Duration = Duration::from_millis(250);

/// Asks a threshold of the holders for their shares, starting at a random one
/// (so the work spreads over them), and one more for each that fails, answers
/// garbage (it is outvoted: every share is checked against the commitment) or
/// has not answered after [`HEDGE_AFTER`]. Stops at the first key that matches
/// the item's commitment.
async fn gather(s: &impl Vault, view: &AccessView, fetch_secret: &ShareSecretKey, fetch_key: &str) -> Result<DataKey, SealingError> {
    let item = view.item;
    let commitment = crate::evidence::parse_hex::<32>(&view.key_commitment, "key commitment").map_err(|e| bad(e.to_string()))?;
    let ask = ShareRequest { access_leaf: view.access_leaf, fetch_key: fetch_key.to_string() };
    let path = format!("/v1/items/{item}/share");
    // Each holder where the vault says it is, then every node of the profile besides
    // (a wrong address costs only time).
    let mut targets: Vec<String> = view.holders.iter().filter_map(|h| h.addr.clone()).collect();
    let from = crate::crypto::random_bytes::<1>().map(|b| b[0] as usize).unwrap_or(0);
    if !targets.is_empty() {
        let n = targets.len();
        targets.rotate_left(from % n);
    }
    targets.extend(s.endpoints().iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    targets.retain(|t| seen.insert(t.clone()));
    let ask_one = |base: &String| {
        let (ask, path, base) = (&ask, &path, base.clone());
        async move {
            let answer = s.call_at::<_, ShareRelease>(&base, Method::POST, path, Some(ask), RELEASE_TIMEOUT).await;
            (base, answer)
        }
    };
    let mut untried = targets.iter();
    let mut pending = FuturesUnordered::new();
    let mut got: Vec<KeyShare> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    loop {
        // Enough asked to reach a threshold if all of them answer well; one more when a threshold
        // is in hand that does not rebuild the key.
        let wanted = (view.threshold as usize).saturating_sub(got.len()).max(1);
        while pending.len() < wanted {
            let Some(base) = untried.next() else { break };
            pending.push(ask_one(base));
        }
        let next = if untried.len() > 0 {
            match tokio::time::timeout(HEDGE_AFTER, pending.next()).await {
                Ok(next) => next,
                Err(_slow) => {
                    if let Some(base) = untried.next() {
                        pending.push(ask_one(base));
                    }
                    continue;
                }
            }
        } else {
            pending.next().await
        };
        let Some((base, answer)) = next else { break };
        let release = match answer {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{base}: {e}"));
                continue;
            }
        };
        match open_release(view, fetch_secret, &release) {
            Ok(share) if !got.iter().any(|g| g.x == share.x) => got.push(share),
            Ok(_) => {}
            Err(e) => errors.push(format!("{base}: {e}")),
        }
        if let Some(key) = rebuild(&got, view.threshold, item.as_bytes(), &commitment) {
            return Ok(key);
        }
    }
    Err(bad(format!(
        "{} of the {} shares needed were released, or they do not rebuild the item's key: {}",
        got.len(),
        view.threshold,
        if errors.is_empty() { "no holder answered".to_string() } else { errors.join("; ") }
    )))
}

fn open_release(view: &AccessView, fetch_secret: &ShareSecretKey, r: &ShareRelease) -> Result<KeyShare, String> {
    let h = view.holders.iter().find(|h| h.node == r.node && h.x == r.x).ok_or_else(|| format!("node {} is not holder x = {}", r.node, r.x))?;
    let cluster_id = view.cluster_id.as_str();
    let aad = [shares::share_aad(cluster_id, view.item.as_bytes(), h.node, h.x), view.access_leaf.to_be_bytes().to_vec()].concat();
    let envelope = hex::decode(&r.envelope).map_err(|e| format!("the released share is not hex: {e}"))?;
    let plain = fetch_secret.open(shares::RELEASE_INFO, &aad, &envelope).map_err(|e| format!("the released share does not open: {e}"))?;
    let share = KeyShare::from_bytes(&plain).map_err(|e| e.to_string())?;
    if share.x != h.x {
        return Err(format!("node {} released the share of x = {}, not its own", r.node, share.x));
    }
    Ok(share)
}

/// The data key from some `k` of `got` whose commitment matches, if any does.
fn rebuild(got: &[KeyShare], k: u8, item: &[u8; 16], commitment: &[u8; 32]) -> Option<DataKey> {
    let k = k as usize;
    if k == 0 || got.len() < k || got.len() > shares::MAX_HOLDERS as usize {
        return None;
    }
    for mask in 0u32..(1 << got.len()) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let subset: Vec<KeyShare> = got.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| s.clone()).collect();
        if let Ok(key) = shares::recover(&subset, k as u8) {
            if shares::key_commitment(item, &key) == *commitment {
                return Some(DataKey::from_bytes(key));
            }
        }
    }
    None
}

/// Streams the sealed chunks from any node, opens and hashes them here, and
/// keeps the clip only if its SHA-256 is the deposited one.
async fn open_chunks(s: &impl Vault, view: &AccessView, cipher: Arc<ChunkCipher>, out: Option<&Path>) -> Result<FetchOutput, SealingError> {
    let item = view.item;
    let tmp = out.map(|o| o.with_extension("partial"));
    let path = format!("/v1/items/{item}/sealed?access={}", view.access_leaf);
    let (size, chunk_size, chunks) = (view.size, view.chunk_size, view.chunks);
    let result = async {
        let (url, resp) = s.get_stream(&path, Duration::from_secs(24 * 3600)).await?;
        let bad = |detail: String| HttpError::BadAnswer { url: url.clone(), detail };
        let mut f = match &tmp {
            Some(t) => Some(tokio::fs::File::create(t).await.map_err(|e| bad(format!("{}: {e}", t.display())))?),
            None => None,
        };
        let mut h = Some(Hasher::new());
        let mut written = 0u64;
        let mut index = 0u64;
        let mut buf: Vec<u8> = Vec::new();
        let mut body = http_body_util::BodyExt::into_data_stream(resp.into_body());
        loop {
            let want = if index < chunks { (size - index * chunk_size).min(chunk_size) + limits::GCM_TAG_BYTES } else { 0 };
            if index < chunks && buf.len() as u64 >= want {
                let rest = buf.split_off(want as usize);
                let mut piece = std::mem::replace(&mut buf, rest);
                let c = cipher.clone();
                let mut hasher = h.take().ok_or_else(|| bad("hasher lost".into()))?;
                let (hasher, piece) = tokio::task::spawn_blocking(move || {
                    c.open(index, &mut piece).map(|_| {
                        hasher.update(&piece);
                        (hasher, piece)
                    })
                })
                .await
                .map_err(|e| bad(e.to_string()))?
                .map_err(|_| bad(format!("sealed chunk {index} does not open with the rebuilt key")))?;
                h = Some(hasher);
                if let Some(f) = f.as_mut() {
                    f.write_all(&piece).await.map_err(|e| bad(e.to_string()))?;
                }
                written += piece.len() as u64;
                index += 1;
                continue;
            }
            match body.next().await {
                Some(frame) => buf.extend_from_slice(&frame.map_err(|e| bad(format!("the transfer broke off: {e}")))?),
                None => break,
            }
        }
        if index != chunks || !buf.is_empty() {
            return Err(bad(format!("the vault sent {index} of {chunks} sealed chunks")));
        }
        if let Some(f) = f {
            f.sync_all().await.map_err(|e| bad(e.to_string()))?;
        }
        Ok((hex::encode(h.take().ok_or_else(|| bad("hasher lost".into()))?.finish()), written))
    }
    .await;
    let discard = || {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
    };
    let (got, written) = match result {
        Ok(x) => x,
        Err(e) => {
            discard();
            return Err(http(e));
        }
    };
    if got != view.sha256 || written != size {
        discard();
        return Err(bad(format!("the opened clip's SHA-256 {got} is not the deposited {}; nothing kept", view.sha256)));
    }
    if let (Some(t), Some(o)) = (&tmp, out) {
        std::fs::rename(t, o).map_err(|e| operational(format!("{}: {e}", o.display())))?;
    }
    Ok(FetchOutput { item, sha256: got, size, access_leaf: view.access_leaf, out: out.map(Path::to_path_buf) })
}
