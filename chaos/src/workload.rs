//! The clients: concurrent workers that deposit clips of varied sizes, file
//! access requests, approve them, fetch, read checkpoints and list items, all
//! through the real CLI, each operation recorded by the oracle. The fault
//! injector uses the same operations for its targeted faults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sha2::Digest;

use crate::args;
use crate::cli::{CliOut, Custody};
use crate::oracle::{CheckpointObs, DepositRec, FetchRec, Oracle, Outcome, RequestRec};

const SYSTEM: &str = "cam-demo-1";
/// Deadline of a deposit (a node may be stopped mid-upload).
pub const DEPOSIT_TIMEOUT: Duration = Duration::from_secs(40);
/// Deadline of every other operation.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs operations as a given process name and records them.
#[derive(Clone)]
pub struct Client {
    pub custody: Custody,
    pub oracle: Arc<Oracle>,
    /// The cluster directory (profiles are under `profiles/`).
    pub dir: PathBuf,
    /// Scratch space for clips and fetched files.
    pub scratch: PathBuf,
    /// `chaos-<seed>`: the case every deposit is filed under.
    pub case: String,
}

/// How a fetch went.
pub struct FetchResult {
    pub ok: bool,
    pub delivered: u64,
}

/// What to do with a fetch once its first bytes arrived.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnFirstBytes {
    Continue,
    /// kill -9 the client.
    KillClient,
    /// Stop and return, leaving the client running (the caller acts, then calls `finish_fetch`).
    Pause,
}

impl Client {
    pub fn profile(&self, user: &str) -> PathBuf {
        self.dir.join(format!("profiles/{user}.toml"))
    }

    /// A profile for `user` that talks to `endpoint` only (a node, or a proxy in front of one).
    pub fn profile_at(&self, user: &str, tag: &str, endpoint: &str) -> PathBuf {
        let p = self.dir.join(format!("profiles/{user}-{tag}.toml"));
        let text = format!(
            "endpoints = [\"{endpoint}\"]\nca = \"../certs/ca.pem\"\ncert = \"{user}.pem\"\nkey = \"{user}.key\"\nsigning_key = \"{user}.signing.key\"\n"
        );
        let _ = std::fs::write(&p, text);
        p
    }

    async fn call(&self, process: &str, kind: &str, profile: &Path, args: &[String], logged: Value, timeout: Duration) -> (u64, CliOut) {
        let op = self.oracle.invoke(process, kind, logged);
        let out = self.custody.run(Some(profile), args, timeout).await;
        (op, out)
    }

    fn done(&self, op: u64, process: &str, kind: &str, out: &CliOut, value: Value) -> Outcome {
        let outcome = if out.ok() { Outcome::Ok } else { Outcome::Failed(out.error()) };
        self.oracle.complete(op, process, kind, &outcome, value);
        outcome
    }

    /// Deposits a fresh clip of `size` bytes made from `clip_seed`; returns the item if acknowledged.
    pub async fn deposit(&self, process: &str, profile: &Path, size: u64, clip_seed: u64, targeted: bool) -> Option<String> {
        let op = self.oracle.invoke(process, "deposit", json!({ "size": size, "clip_seed": clip_seed, "profile": profile }));
        let note = format!("op-{op}");
        let file = self.scratch.join(format!("clip-{op}.bin"));
        let sha256 = match write_clip(&file, size, clip_seed) {
            Ok(s) => s,
            Err(e) => {
                self.oracle.complete(op, process, "deposit", &Outcome::Failed(format!("cannot write the clip: {e}")), Value::Null);
                return None;
            }
        };
        self.oracle.with(|m| m.deposits.insert(note.clone(), DepositRec { op, size, sha256: sha256.clone(), acked: None, outcome: None, targeted }));
        let args = args!["deposit", file.display(), "--case", self.case, "--system", SYSTEM, "--retention", "standard", "--note", note];
        let out = self.custody.run(Some(profile), &args, DEPOSIT_TIMEOUT).await;
        let _ = std::fs::remove_file(&file);
        let receipt = out.json().filter(|_| out.ok());
        let item = receipt.as_ref().and_then(|r| r["item"].as_str().map(str::to_string));
        let mut outcome = if item.is_some() { Outcome::Ok } else { Outcome::Failed(out.error()) };
        if let Some(r) = &receipt {
            // The receipt must name what we sent.
            if r["sha256"] != sha256.as_str() || r["size"] != size {
                self.oracle.violation(format!(
                    "deposit op {op}: the receipt says sha256 {} size {}, but the clip sent has sha256 {sha256} size {size}",
                    r["sha256"], r["size"]
                ));
                outcome = Outcome::Failed("receipt mismatch".into());
            }
        }
        self.oracle.complete(op, process, "deposit", &outcome, json!({ "note": note, "sha256": sha256, "receipt": receipt }));
        self.oracle.with(|m| {
            if let Some(d) = m.deposits.get_mut(&note) {
                d.outcome = Some(outcome.clone());
                if outcome == Outcome::Ok {
                    d.acked = item.clone();
                }
            }
        });
        item.filter(|_| outcome == Outcome::Ok)
    }

    /// alice files a retrieval request for `item` with bob; returns the request id.
    pub async fn request(&self, process: &str, item: &str) -> Option<String> {
        let args = args![
            "request",
            item,
            "--action",
            "retrieve",
            "--purpose",
            "chaos check",
            "--approval-doc",
            "DOC-CHAOS",
            "--with",
            "bob",
            "--fetches",
            "100"
        ];
        let (op, out) =
            self.call(process, "request", &self.profile("alice"), &args, json!({ "item": item, "by": "alice", "with": ["bob"] }), OP_TIMEOUT).await;
        let v = out.json().unwrap_or(Value::Null);
        let outcome = self.done(op, process, "request", &out, v.clone());
        let id = v["request"].as_str().map(str::to_string).filter(|_| outcome == Outcome::Ok)?;
        self.oracle.with(|m| {
            m.requests.insert(
                id.clone(),
                RequestRec {
                    item: item.to_string(),
                    participants: vec!["alice".into(), "bob".into()],
                    approve_invoked: Default::default(),
                    approved: Default::default(),
                    granted_seen: false,
                },
            )
        });
        Some(id)
    }

    /// `user` signs request `req`; returns the status it answered.
    pub async fn approve(&self, process: &str, user: &str, req: &str) -> Option<String> {
        self.oracle.with(|m| {
            if let Some(r) = m.requests.get_mut(req) {
                r.approve_invoked.insert(user.to_string());
            }
        });
        let (op, out) = self
            .call(process, "approve", &self.profile(user), &args!["approve", req, "--yes"], json!({ "request": req, "by": user }), OP_TIMEOUT)
            .await;
        let v = out.json().unwrap_or(Value::Null);
        let outcome = self.done(op, process, "approve", &out, v.clone());
        let status = v["status"].as_str().map(str::to_string).filter(|_| outcome == Outcome::Ok)?;
        self.oracle.with(|m| {
            if let Some(r) = m.requests.get_mut(req) {
                r.approved.insert(user.to_string());
                r.granted_seen |= status == "granted";
            }
        });
        Some(status)
    }

    /// Starts a fetch and watches the client's output file; see [`OnFirstBytes`].
    /// Returns how it went, and the fetch itself if it was paused at its first bytes.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(
        &self,
        process: &str,
        user: &str,
        profile: &Path,
        item: &str,
        req: &str,
        on_first: OnFirstBytes,
        timeout: Duration,
    ) -> (FetchResult, Option<PendingFetch>) {
        let op = self.oracle.invoke(process, "fetch", json!({ "item": item, "request": req, "by": user, "profile": profile }));
        let out_path = self.scratch.join(format!("fetch-{op}.bin"));
        // The CLI streams into `<out>.partial` and renames it once the SHA-256 checks out.
        let partial = out_path.with_extension("partial");
        let args = args!["fetch", item, "--request", req, "--out", out_path.display()];
        let mut pending = PendingFetch {
            client: self.clone(),
            op,
            process: process.to_string(),
            user: user.to_string(),
            item: item.to_string(),
            req: req.to_string(),
            out_path,
            partial,
            delivered: 0,
            running: None,
        };
        let mut running = match self.custody.spawn(Some(profile), &args) {
            Ok(r) => r,
            Err(e) => {
                self.oracle.complete(op, process, "fetch", &Outcome::Failed(e.to_string()), Value::Null);
                return (FetchResult { ok: false, delivered: 0 }, None);
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            pending.observe();
            if pending.delivered > 0 && on_first != OnFirstBytes::Continue {
                if on_first == OnFirstBytes::KillClient {
                    running.kill().await;
                    break;
                }
                pending.running = Some(running);
                return (FetchResult { ok: false, delivered: pending.delivered }, Some(pending));
            }
            if running.exited() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(if on_first == OnFirstBytes::Continue { 10 } else { 1 })).await;
        }
        pending.running = Some(running);
        (pending.finish(Duration::from_secs(1)).await, None)
    }
}

/// A fetch whose client is still running.
pub struct PendingFetch {
    client: Client,
    op: u64,
    process: String,
    user: String,
    item: String,
    req: String,
    out_path: PathBuf,
    partial: PathBuf,
    delivered: u64,
    running: Option<crate::cli::Running>,
}

impl PendingFetch {
    fn observe(&mut self) {
        for p in [&self.partial, &self.out_path] {
            if let Ok(m) = std::fs::metadata(p) {
                self.delivered = self.delivered.max(m.len());
            }
        }
    }

    pub async fn kill_client(&mut self) {
        self.observe();
        if let Some(r) = self.running.as_mut() {
            r.kill().await;
        }
    }

    /// Waits for the client (at most `timeout`), records the outcome.
    pub async fn finish(mut self, timeout: Duration) -> FetchResult {
        let Some(running) = self.running.take() else { return FetchResult { ok: false, delivered: self.delivered } };
        let out = running.finish(timeout).await;
        self.observe();
        let c = &self.client;
        let v = out.json().unwrap_or(Value::Null);
        let mut outcome = if out.ok() { Outcome::Ok } else { Outcome::Failed(out.error()) };
        if outcome == Outcome::Ok {
            // The client checks the SHA-256 itself; check what it kept too.
            let want = c.oracle.with(|m| m.deposits.values().find(|d| d.acked.as_deref() == Some(&self.item)).map(|d| d.sha256.clone()));
            let got = file_sha256(&self.out_path).unwrap_or_default();
            if v["sha256"] != got.as_str() || want.as_ref().is_some_and(|w| *w != got) {
                c.oracle.violation(format!(
                    "fetch op {} of item {} delivered bytes with SHA-256 {got}; the client reported {} and the deposit was {}",
                    self.op,
                    self.item,
                    v["sha256"],
                    want.unwrap_or("unknown".into())
                ));
                outcome = Outcome::Failed("sha mismatch".into());
            }
        }
        let ok = outcome == Outcome::Ok;
        c.oracle.complete(self.op, &self.process, "fetch", &outcome, json!({ "result": v, "delivered": self.delivered }));
        c.oracle.with(|m| {
            m.fetches.push(FetchRec {
                op: self.op,
                user: self.user.clone(),
                item: self.item.clone(),
                request: self.req.clone(),
                delivered: self.delivered,
                ok,
            })
        });
        let _ = std::fs::remove_file(&self.out_path);
        let _ = std::fs::remove_file(&self.partial);
        FetchResult { ok, delivered: self.delivered }
    }
}

impl Client {
    /// Reads the latest checkpoint (as dave, the court clerk).
    pub async fn checkpoint(&self, process: &str, profile: &Path) -> Option<CheckpointObs> {
        let (op, out) = self.call(process, "checkpoint", profile, &args!["checkpoint"], json!({ "profile": profile }), OP_TIMEOUT).await;
        let v = out.json().unwrap_or(Value::Null);
        let outcome = self.done(op, process, "checkpoint", &out, json!({ "size": v["size"], "root": v["root"] }));
        if outcome != Outcome::Ok {
            return None;
        }
        let obs = CheckpointObs { op, size: v["size"].as_u64()?, root: v["root"].as_str()?.to_string(), note: v["note"].as_str()?.to_string() };
        self.oracle.with(|m| m.checkpoints.push(obs.clone()));
        Some(obs)
    }

    /// Asks every node to re-read its chunks and audit tree and repair from replicas (admin).
    pub async fn scrub(&self, process: &str) -> Option<Value> {
        let (op, out) = self.call(process, "scrub", &self.profile("admin"), &args!["scrub"], Value::Null, Duration::from_secs(60)).await;
        let v = out.json().unwrap_or(Value::Null);
        let outcome = self.done(op, process, "scrub", &out, v.clone());
        v.is_object().then_some(v).filter(|_| outcome == Outcome::Ok)
    }

    /// Lists the items; remembers every one seen (an item, once committed, never goes away).
    pub async fn list(&self, process: &str, profile: &Path) -> Option<Vec<Value>> {
        let (op, out) = self.call(process, "list", profile, &args!["items"], json!({ "profile": profile }), OP_TIMEOUT).await;
        let v = out.json().unwrap_or(Value::Null);
        let items = v["items"].as_array().cloned();
        let outcome = self.done(op, process, "list", &out, json!({ "count": items.as_ref().map(|i| i.len()) }));
        let items = items.filter(|_| outcome == Outcome::Ok)?;
        self.oracle.with(|m| {
            for i in &items {
                if let (Some(id), Some(sha)) = (i["item"].as_str(), i["sha256"].as_str()) {
                    m.seen_items.insert(id.to_string(), sha.to_string());
                }
            }
        });
        Some(items)
    }
}

/// Writes `size` pseudo-random bytes made from `seed`; returns their SHA-256 (hex).
pub fn write_clip(path: &Path, size: u64, seed: u64) -> std::io::Result<String> {
    use std::io::Write;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(hex::encode(h.finalize()))
}

pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A clip size: mostly small, some spanning several chunks (the cluster runs with 1 MiB chunks).
pub fn clip_size(rng: &mut impl Rng) -> u64 {
    match rng.gen_range(0..100) {
        0..=4 => 0,
        5..=39 => rng.gen_range(1..4096),
        40..=74 => rng.gen_range(4096..512 * 1024),
        75..=92 => rng.gen_range(512 * 1024..3 * 1024 * 1024),
        _ => rng.gen_range(3 * 1024 * 1024..9 * 1024 * 1024),
    }
}

/// One client worker: until `deadline` or `stop`, picks an operation from its own seeded
/// generator (the choice also depends on what earlier operations returned).
pub async fn worker(index: usize, client: Client, seed: u64, deadline: tokio::time::Instant, stop: tokio::sync::watch::Receiver<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1)));
    let process = format!("client-{index}");
    let officers = ["alice", "bob"];
    while tokio::time::Instant::now() < deadline && !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..500))).await;
        if *stop.borrow() {
            break;
        }
        let (acked, approvable, fetchable) = client.oracle.with(|m| {
            let acked: Vec<String> = m.acked().into_iter().map(|(i, _)| i).collect();
            let approvable: Vec<(String, String)> = m
                .requests
                .iter()
                .flat_map(|(id, r)| {
                    ["bob", "carol"].into_iter().filter(|u| !r.approved.contains(*u) && !r.granted_seen).map(move |u| (id.clone(), u.to_string()))
                })
                .collect();
            let fetchable: Vec<(String, String)> = m
                .requests
                .iter()
                .filter(|(_, r)| r.granted_seen || (r.approve_invoked.contains("bob") && r.approve_invoked.contains("carol")))
                .map(|(id, r)| (id.clone(), r.item.clone()))
                .collect();
            (acked, approvable, fetchable)
        });
        let roll = rng.gen_range(0..100);
        match roll {
            _ if acked.is_empty() || roll < 30 => {
                let size = clip_size(&mut rng);
                let user = officers[rng.gen_range(0..2)];
                client.deposit(&process, &client.profile(user), size, rng.gen(), false).await;
            }
            30..=41 => {
                let item = &acked[rng.gen_range(0..acked.len())];
                client.request(&process, item).await;
            }
            42..=61 if !approvable.is_empty() => {
                let (req, user) = &approvable[rng.gen_range(0..approvable.len())];
                client.approve(&process, user, req).await;
            }
            62..=79 if !fetchable.is_empty() => {
                let (req, item) = &fetchable[rng.gen_range(0..fetchable.len())];
                let user = officers[rng.gen_range(0..2)];
                client.fetch(&process, user, &client.profile(user), item, req, OnFirstBytes::Continue, OP_TIMEOUT).await;
            }
            80..=91 => {
                client.checkpoint(&process, &client.profile("dave")).await;
            }
            _ => {
                client.list(&process, &client.profile("dave")).await;
            }
        }
    }
}
