//! The oracle: every operation's invocation and result, as it happened, in
//! `history.jsonl`, plus the model the checks run against at the end.
//!
//! An operation that failed or that we had to kill is *indeterminate*: it may
//! or may not have taken effect (a deposit whose client saw a timeout may well
//! have committed). The checks never count an indeterminate operation as done,
//! and never blame its effect for appearing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The CLI said no (exit 1 or 2), or we killed it: the effect is unknown.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct DepositRec {
    pub op: u64,
    pub size: u64,
    pub sha256: String,
    /// The item id of the acknowledgement.
    pub acked: Option<String>,
    pub outcome: Option<Outcome>,
    /// A fault was aimed at this deposit: it is always fetched in full at the end.
    pub targeted: bool,
}

#[derive(Clone, Debug)]
pub struct RequestRec {
    pub item: String,
    pub participants: Vec<String>,
    /// Users whose approval of this request was invoked (whatever came of it).
    pub approve_invoked: BTreeSet<String>,
    /// Users whose approval was acknowledged.
    pub approved: BTreeSet<String>,
    /// An approval answered `granted`.
    pub granted_seen: bool,
}

#[derive(Clone, Debug)]
pub struct FetchRec {
    pub op: u64,
    pub user: String,
    pub item: String,
    pub request: String,
    /// Most bytes ever seen in the client's output file (the partial file included).
    pub delivered: u64,
    pub ok: bool,
}

#[derive(Clone, Debug)]
pub struct CheckpointObs {
    pub op: u64,
    pub size: u64,
    pub root: String,
    pub note: String,
}

/// What the clients learned, for the checks.
#[derive(Default)]
pub struct Model {
    /// By the deposit's note (`op-N`), which the vault keeps with the item.
    pub deposits: BTreeMap<String, DepositRec>,
    pub requests: BTreeMap<String, RequestRec>,
    pub fetches: Vec<FetchRec>,
    pub checkpoints: Vec<CheckpointObs>,
    /// Items some listing showed during the run, with their SHA-256: once committed, an item never goes away.
    pub seen_items: BTreeMap<String, String>,
    /// Violations noticed while running (reported with the final ones).
    pub violations: Vec<String>,
}

impl Model {
    /// Acknowledged deposits: (item, note).
    pub fn acked(&self) -> Vec<(String, String)> {
        self.deposits.iter().filter_map(|(n, d)| d.acked.clone().map(|i| (i, n.clone()))).collect()
    }
}

/// Counts per operation kind.
#[derive(Default, Clone, serde::Serialize)]
pub struct KindCount {
    pub ok: u64,
    pub failed: u64,
}

pub struct Oracle {
    start: Instant,
    next_op: AtomicU64,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    pub model: Mutex<Model>,
    counts: Mutex<BTreeMap<String, KindCount>>,
}

impl Oracle {
    pub fn new(history: &Path) -> anyhow::Result<Oracle> {
        Ok(Oracle {
            start: Instant::now(),
            next_op: AtomicU64::new(1),
            file: Mutex::new(std::io::BufWriter::new(std::fs::File::create(history)?)),
            model: Mutex::new(Model::default()),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Milliseconds since the episode began.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn write(&self, mut v: Value) {
        v["t"] = json!(self.now_ms());
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{v}");
            let _ = f.flush();
        }
    }

    /// Records the start of an operation; returns its id.
    pub fn invoke(&self, process: &str, kind: &str, args: Value) -> u64 {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.write(json!({ "type": "invoke", "op": op, "process": process, "kind": kind, "args": args }));
        op
    }

    /// Records the end of an operation.
    pub fn complete(&self, op: u64, process: &str, kind: &str, outcome: &Outcome, value: Value) {
        let (ty, err) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Failed(e) => ("fail", Some(e.clone())),
        };
        self.write(json!({ "type": ty, "op": op, "process": process, "kind": kind, "value": value, "error": err }));
        if let Ok(mut c) = self.counts.lock() {
            let e = c.entry(kind.to_string()).or_default();
            if *outcome == Outcome::Ok {
                e.ok += 1;
            } else {
                e.failed += 1;
            }
        }
    }

    /// A fault injected or healed, or anything else worth a line in the history.
    pub fn event(&self, what: &str, detail: Value) {
        self.write(json!({ "type": "nemesis", "event": what, "detail": detail }));
    }

    pub fn violation(&self, v: String) {
        self.event("violation", json!(v));
        self.with(|m| m.violations.push(v));
    }

    pub fn counts(&self) -> BTreeMap<String, KindCount> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut m = self.model.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }
}
