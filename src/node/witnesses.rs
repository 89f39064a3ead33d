//! Pushing checkpoints to witnesses outside the vault's control (C2SP
//! `tlog-witness`, docs/AUDIT_FORMATS.md "Witnesses"). The leader hands each
//! majority-cosigned checkpoint to every configured witness and appends the
//! cosignatures that verify under that witness's configured key before it
//! publishes the note. A witness is never on the commit path: the push runs
//! in the checkpoint loop with a short deadline, and a checkpoint is published
//! with whatever cosignatures came back, possibly none.
//!
//! What the node remembers per witness lives only in memory: the size it last
//! cosigned is re-learned from the witness's 409 after a restart or a change
//! of leader, so none of it needs to go through Raft.

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::StatusCode;

use crate::client::{HttpError, PlainHttp};
use crate::config::WitnessConfig;
use crate::wire::WitnessStatus;
use crate::witness::verify_cosignature;

/// How long one witness may take over one push (both attempts): a slow
/// witness delays the checkpoint it is asked about by at most this.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from a witness: a few cosignature lines.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why one push to one witness failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("the witness answered HTTP {status}: {detail}")]
    Refused { status: u16, detail: String },
    #[error("the witness has cosigned size {known}, larger than this checkpoint's {size}")]
    Ahead { known: u64, size: u64 },
    #[error("the witness's 409 answer is not a size: {0:?}")]
    BadConflict(String),
    #[error("the witness's cosignature does not verify under its configured key: {0}")]
    BadCosignature(String),
    #[error("no consistency proof from size {old} to {size}: {detail}")]
    Proof { old: u64, size: u64, detail: String },
}

/// What the node knows of one witness.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The size this witness is believed to have cosigned last (0 until learned).
    old: u64,
    last_size: Option<u64>,
    last_ms: Option<u64>,
    /// How long the last successful push took, from sending to a checked cosignature.
    last_round_trip_ms: Option<f64>,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
}

/// The configured witnesses and what the node knows of each.
pub struct Witnesses {
    http: PlainHttp,
    list: Vec<WitnessConfig>,
    known: Mutex<Vec<Known>>,
}

impl Witnesses {
    pub fn new(list: Vec<WitnessConfig>) -> Self {
        let known = Mutex::new(vec![Known::default(); list.len()]);
        Witnesses { http: PlainHttp::new(), list, known }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Each configured witness as `cluster status` shows it.
    pub fn status(&self) -> Vec<WitnessStatus> {
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        self.list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let k = known.get(i).cloned().unwrap_or_default();
                WitnessStatus {
                    url: w.url.clone(),
                    key_name: w.key.name().to_owned(),
                    key: w.key.to_string(),
                    last_cosigned_size: k.last_size,
                    last_cosigned_at: k.last_ms.map(crate::wire::rfc3339_ms),
                    last_round_trip_ms: k.last_round_trip_ms,
                    last_error: k.last_error,
                    last_error_at: k.last_error_ms.map(crate::wire::rfc3339_ms),
                }
            })
            .collect()
    }

    fn old(&self, i: usize) -> u64 {
        self.known.lock().ok().and_then(|k| k.get(i).map(|k| k.old)).unwrap_or(0)
    }

    fn record(&self, i: usize, size: u64, result: &Result<String, PushError>, now_ms: u64, took: std::time::Duration) {
        let Ok(mut known) = self.known.lock() else { return };
        let Some(k) = known.get_mut(i) else { return };
        match result {
            Ok(_) => {
                k.old = size;
                k.last_size = Some(size);
                k.last_ms = Some(now_ms);
                k.last_round_trip_ms = Some(took.as_secs_f64() * 1e3);
                k.last_error = None;
                k.last_error_ms = None;
            }
            Err(e) => {
                k.last_error = Some(e.to_string());
                k.last_error_ms = Some(now_ms);
            }
        }
    }

    fn learn(&self, i: usize, old: u64) {
        if let Ok(mut known) = self.known.lock() {
            if let Some(k) = known.get_mut(i) {
                k.old = old;
            }
        }
    }

    /// Pushes `note` (the majority-cosigned checkpoint of `size`) to every
    /// witness at once and answers the cosignature lines that verified, in
    /// the configured order. `proof(old)` gives the consistency proof from
    /// `old` to `size`. Never fails: a witness that errs is only recorded;
    /// one that disagrees (it cosigned a larger tree, or its cosignature does
    /// not verify) is answered as an alert too.
    pub async fn push_all<P>(&self, note: &str, size: u64, proof: P) -> (String, Vec<crate::wire::Alert>)
    where
        P: Fn(u64) -> Result<Vec<crate::audit::Hash>, String>,
    {
        let pushes = (0..self.list.len()).map(|i| {
            let proof = &proof;
            async move {
                let started = std::time::Instant::now();
                let r = match tokio::time::timeout(PUSH_TIMEOUT, self.push_one(i, note, size, proof)).await {
                    Ok(r) => r,
                    Err(_) => Err(PushError::Http(HttpError::Timeout { url: self.url(i), secs: PUSH_TIMEOUT.as_secs() })),
                };
                self.record(i, size, &r, super::now_ms(), started.elapsed());
                if let Err(e) = &r {
                    tracing::warn!(witness = %self.list[i].url, size, error = %e, "witness did not cosign the checkpoint");
                }
                r
            }
        });
        let mut lines = String::new();
        let mut alerts = Vec::new();
        for (i, r) in futures::future::join_all(pushes).await.into_iter().enumerate() {
            match r {
                Ok(l) => lines.push_str(&l),
                Err(e @ (PushError::Ahead { .. } | PushError::BadCosignature(_))) => {
                    alerts.push(crate::wire::Alert::WitnessDisagrees { witness: self.list[i].url.clone(), error: e.to_string() })
                }
                Err(_) => {}
            }
        }
        (lines, alerts)
    }

    fn url(&self, i: usize) -> String {
        self.list.get(i).map(|w| format!("{}/add-checkpoint", w.url)).unwrap_or_default()
    }

    /// One push: `old` as remembered; on 409 once more from the size the witness names.
    async fn push_one<P>(&self, i: usize, note: &str, size: u64, proof: &P) -> Result<String, PushError>
    where
        P: Fn(u64) -> Result<Vec<crate::audit::Hash>, String>,
    {
        let old = self.old(i).min(size);
        match self.attempt(i, note, old, size, proof).await? {
            Attempt::Cosigned(line) => Ok(line),
            Attempt::Conflict(known) => {
                if known > size {
                    return Err(PushError::Ahead { known, size });
                }
                self.learn(i, known);
                match self.attempt(i, note, known, size, proof).await? {
                    Attempt::Cosigned(line) => Ok(line),
                    Attempt::Conflict(again) => Err(PushError::Refused { status: 409, detail: format!("the witness now names size {again}") }),
                }
            }
        }
    }

    async fn attempt<P>(&self, i: usize, note: &str, old: u64, size: u64, proof: &P) -> Result<Attempt, PushError>
    where
        P: Fn(u64) -> Result<Vec<crate::audit::Hash>, String>,
    {
        let w = &self.list[i];
        let url = self.url(i);
        let hashes = if old == 0 || old == size { Vec::new() } else { proof(old).map_err(|detail| PushError::Proof { old, size, detail })? };
        let mut body = format!("old {old}\n");
        for h in &hashes {
            body.push_str(&BASE64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let (status, bytes) = self.http.post_text(&url, body, MAX_ANSWER_BYTES, PUSH_TIMEOUT).await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status == StatusCode::CONFLICT {
            let known = text.trim().parse::<u64>().map_err(|_| PushError::BadConflict(text.chars().take(100).collect()))?;
            return Ok(Attempt::Conflict(known));
        }
        if !status.is_success() {
            return Err(PushError::Refused { status: status.as_u16(), detail: text.trim().chars().take(300).collect() });
        }
        // The answer may hold several lines (one per key the witness holds);
        // keep the ones that verify under the configured key.
        let mut good = String::new();
        let mut why = String::from("no cosignature line");
        for line in text.lines().filter(|l| !l.is_empty()) {
            match verify_cosignature(note, line, &w.key) {
                Ok(_) => {
                    good.push_str(line);
                    good.push('\n');
                }
                Err(e) => why = e.to_string(),
            }
        }
        if good.is_empty() {
            return Err(PushError::BadCosignature(why));
        }
        Ok(Attempt::Cosigned(good))
    }
}

enum Attempt {
    Cosigned(String),
    Conflict(u64),
}
