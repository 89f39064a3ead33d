//! `checkpoint`, `cluster keys`, `proof`, `verify` (offline) and `monitor`.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::ops::Session;
use super::{emit, Failure};
use crate::audit::bundle::{self, Bundle};
use crate::audit::{verify_consistency, Checkpoint, Hash, VerifierKey};
use crate::wire::{CheckpointView, ConsistencyView, KeysView};

const TIMEOUT: Duration = Duration::from_secs(30);

fn usage(message: impl Into<String>) -> Failure {
    Failure::new(2, message.into())
}

pub async fn checkpoint(s: &Session, json: bool) -> Result<(), Failure> {
    let v: CheckpointView = s.call::<(), _>(Method::GET, "/v1/checkpoint", None, TIMEOUT).await?;
    emit(json, &serde_json::to_value(&v)?, || v.note.trim_end().to_string());
    Ok(())
}

pub async fn keys(s: &Session, json: bool) -> Result<(), Failure> {
    let v: KeysView = s.call::<(), _>(Method::GET, "/v1/cluster/keys", None, TIMEOUT).await?;
    emit(json, &serde_json::to_value(&v)?, || key_file(&v));
    Ok(())
}

pub async fn proof(s: &Session, item: &str, out: &Path, json: bool) -> Result<(), Failure> {
    let id: crate::evidence::ItemId = item.parse().map_err(|e| usage(format!("{e}")))?;
    let b: Bundle = s.call::<(), _>(Method::GET, &format!("/v1/items/{id}/proof"), None, TIMEOUT).await?;
    let text = serde_json::to_string_pretty(&b)?;
    std::fs::write(out, text + "\n").map_err(|e| usage(format!("{}: {e}", out.display())))?;
    let v = crate::wire::ProofWritten { item: id, bundle: out.to_path_buf() };
    emit(json, &serde_json::to_value(&v)?, || format!("wrote the proof bundle of {id} to {}", out.display()));
    Ok(())
}

/// The key file a court keeps: one line per checkpoint key and the sizes it may sign for.
pub fn key_file(v: &KeysView) -> String {
    v.ranges.iter().map(|r| range_key(r).map(|k| k.to_line()).unwrap_or_else(|e| format!("# {}: {e}", r.key))).collect::<Vec<_>>().join("\n")
}

fn range_key(r: &crate::vault::nodes::KeyRange) -> Result<bundle::TrustedKey, String> {
    Ok(bundle::TrustedKey { key: VerifierKey::parse(&r.key).map_err(|e| e.to_string())?, from_size: r.from_size, until_size: r.until_size })
}

/// `custody verify`: offline, no network; the court's own verifier (`custody-verify`) runs the same code.
pub fn verify(a: &custody_verify::run::VerifyArgs, json: bool) -> Result<(), Failure> {
    if a.page {
        print!("{}", custody_verify::page::html());
        return Ok(());
    }
    let report = custody_verify::run::verify(a).map_err(|e| usage(e.0))?;
    emit(json, &serde_json::to_value(&report)?, || custody_verify::run::report_text(&report));
    if report.valid {
        Ok(())
    } else {
        Err(Failure::verdict("the bundle does not verify"))
    }
}

/// What `monitor` keeps between runs.
#[derive(Serialize, Deserialize)]
struct MonitorState {
    keys: Vec<String>,
    checkpoint: String,
}

fn root_of(cp: &Checkpoint) -> String {
    BASE64.encode(cp.root)
}

/// `custody monitor --state FILE`: checks that the log only ever grew.
pub async fn monitor(s: &Session, state_path: &Path, keys: Option<&Path>, json: bool) -> Result<(), Failure> {
    let old: Option<MonitorState> = match std::fs::read_to_string(state_path) {
        Ok(t) => Some(serde_json::from_str(&t).map_err(|e| usage(format!("{}: not a monitor state file: {e}", state_path.display())))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(usage(format!("{}: {e}", state_path.display()))),
    };
    let key_texts: Vec<String> = match (keys, &old) {
        (Some(p), _) => custody_verify::run::read_keys(p).map_err(|e| usage(e.0))?.iter().map(|k| k.to_line()).collect(),
        (None, Some(o)) => o.keys.clone(),
        (None, None) => {
            // Trust on first use, said out loud: pass --keys to pin keys obtained out of band.
            eprintln!("monitor: no --keys and no state yet: trusting the cluster's keys on first use");
            key_file(&s.call::<(), KeysView>(Method::GET, "/v1/cluster/keys", None, TIMEOUT).await?).lines().map(str::to_string).collect()
        }
    };
    let keys = bundle::parse_keys(&key_texts.join("\n")).map_err(|e| usage(format!("bad key: {e}")))?;
    let view: CheckpointView = s.call::<(), _>(Method::GET, "/v1/checkpoint", None, TIMEOUT).await?;
    let (new_cp, ..) =
        bundle::verify_checkpoint(&view.note, &keys).map_err(|e| Failure::new(1, format!("the newest checkpoint does not verify: {e}")))?;
    let verdict: Result<String, String> = match &old {
        None => Ok("first checkpoint kept".into()),
        Some(o) => {
            let (old_cp, ..) =
                bundle::verify_checkpoint(&o.checkpoint, &keys).map_err(|e| usage(format!("the kept checkpoint does not verify: {e}")))?;
            if new_cp.origin != old_cp.origin {
                Err(format!("the origin changed from `{}` to `{}`", old_cp.origin, new_cp.origin))
            } else if new_cp.size < old_cp.size {
                Err(format!("the tree shrank from {} to {} leaves", old_cp.size, new_cp.size))
            } else if new_cp.size == old_cp.size {
                if new_cp.root == old_cp.root {
                    Ok("no new records".into())
                } else {
                    Err(format!("two checkpoints of size {} with different roots ({} and {})", new_cp.size, root_of(&old_cp), root_of(&new_cp)))
                }
            } else {
                let c: ConsistencyView =
                    s.call::<(), _>(Method::GET, &format!("/v1/audit/consistency?old={}&new={}", old_cp.size, new_cp.size), None, TIMEOUT).await?;
                let proof: Result<Vec<Hash>, String> = c
                    .proof
                    .iter()
                    .map(|h| BASE64.decode(h).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| "bad proof hash".to_string()))
                    .collect();
                match proof.and_then(|p| verify_consistency(old_cp.size, new_cp.size, &old_cp.root, &new_cp.root, &p).map_err(|e| e.to_string())) {
                    Ok(()) => Ok(format!("grew from {} to {} leaves; the new tree extends the old one", old_cp.size, new_cp.size)),
                    Err(e) => Err(format!("the tree of {} leaves does not extend the kept one of {}: {e}", new_cp.size, old_cp.size)),
                }
            }
        }
    };
    let consistent = verdict.is_ok();
    let detail = match &verdict {
        Ok(d) | Err(d) => d.clone(),
    };
    if consistent {
        let st = MonitorState { keys: key_texts, checkpoint: view.note.clone() };
        let tmp = state_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&st)?)
            .and_then(|_| std::fs::rename(&tmp, state_path))
            .map_err(|e| usage(format!("{}: {e}", state_path.display())))?;
    }
    let report = crate::wire::MonitorOutput {
        old_size: old.as_ref().and_then(|o| bundle::verify_checkpoint(&o.checkpoint, &keys).ok()).map(|(cp, ..)| cp.size),
        size: new_cp.size,
        root: root_of(&new_cp),
        consistent,
        detail: detail.clone(),
    };
    emit(json, &serde_json::to_value(&report)?, || format!("{} {detail}", if consistent { "✔" } else { "✘ INCONSISTENT:" }));
    if consistent {
        Ok(())
    } else {
        Err(Failure::verdict(detail))
    }
}
