//! Audit-log figures: a tree of `n` real-shaped records in RocksDB (the same
//! key layout and code the vault uses), proof times at that size, and the
//! offline check of a bundle for a leaf deep in it.

use std::path::Path;
use std::time::Instant;

use base64::Engine;
use serde::Serialize;

use crate::audit::bundle::{self, Bundle, LeafProof};
use crate::audit::{records, Checkpoint, Signer};
use crate::raft::state_machine::StateView;
use crate::storage::{Batch, Cf, Db, Durability};
use crate::vault::{audit as tree, Tx};

#[derive(Clone, Debug, Serialize)]
pub struct ProofFigures {
    pub leaves: u64,
    pub append_records_per_sec: f64,
    pub inclusion_us: f64,
    pub consistency_us: f64,
    pub root_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyFigures {
    /// Parse, three checkpoint signatures and the inclusion check.
    pub bundle_ms: f64,
    pub bundle_bytes: usize,
    pub proof_hashes: usize,
    pub at_leaves: u64,
}

/// Appends `n` records in batches of 10,000, as apply would: every fourth a
/// deposit, the rest accesses, shaped as the vault writes them.
pub fn build_tree(db: &Db, n: u64, mut progress: impl FnMut(u64)) -> anyhow::Result<f64> {
    let view = StateView(db.clone());
    let start = Instant::now();
    let batch_leaves = 10_000;
    let mut i = tree::size(&view)?;
    while i < n {
        let mut tx = Tx::new(&view);
        for j in i..(i + batch_leaves).min(n) {
            let item = format!("{:032x}", j / 4);
            let sha = hex::encode(crate::crypto::sha256(item.as_bytes()));
            let body = if j % 4 == 0 {
                let holder = |node: u64| records::ListedHolder { node, x: node as u8, share_key: sha.clone() };
                records::Body::Deposit(records::Deposit {
                    statement: records::DepositStatement {
                        item,
                        sha256: sha.clone(),
                        size: 1 << 30,
                        chunk_size: crate::limits::CHUNK_SIZE_BYTES,
                        chunks: 256,
                        chunks_sha256: sha.clone(),
                        nonce_prefix: "00010203".into(),
                        holders: (1..=3).map(holder).collect(),
                        threshold: 2,
                        key_commitment: sha.clone(),
                        case: "BENCH-1".into(),
                        system: "cam-1".into(),
                        retention: "standard".into(),
                        depositor: "alice".into(),
                        note: None,
                    },
                    retain_until: "2027-01-01T00:00:00Z".into(),
                    signature: "A".repeat(88),
                })
            } else {
                records::Body::Access(records::Access {
                    item,
                    request: format!("{j:032x}"),
                    officers: vec!["alice".into(), "bob".into()],
                    purpose: "bench".into(),
                    approval_doc: "DOC-1".into(),
                    action: "view".into(),
                    by: "bob".into(),
                    emergency: false,
                    fetch: 1,
                    max_fetches: 1,
                    fetch_key: sha.clone(),
                    signature: "A".repeat(88),
                })
            };
            let r = tree::record(1_700_000_000_000 + j, body);
            tree::append(&mut tx, &r)?;
        }
        let mut b = Batch::default();
        for (k, v) in tx.into_writes() {
            match v {
                Some(v) => b.put(Cf::State, k, v),
                None => b.delete(Cf::State, k),
            }
        }
        db.write(b, Durability::Buffered)?;
        i = (i + batch_leaves).min(n);
        progress(i);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Proof and root times at the tree's size, averaged over `reps` positions spread over the tree.
pub fn proof_times(db: &Db, append_rate: f64, reps: u64) -> anyhow::Result<ProofFigures> {
    let view = StateView(db.clone());
    let size = tree::size(&view)?;
    anyhow::ensure!(size >= 2, "the tree needs at least two leaves");
    let t = Instant::now();
    for k in 0..reps {
        std::hint::black_box(tree::inclusion_proof(&view, (k * 7_919_993) % size, size)?);
    }
    let inclusion_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t = Instant::now();
    for k in 0..reps {
        std::hint::black_box(tree::consistency_proof(&view, 1 + (k * 7_919_993) % (size - 1), size)?);
    }
    let consistency_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t = Instant::now();
    for _ in 0..reps / 10 + 1 {
        std::hint::black_box(tree::root(&view, size)?);
    }
    let root_us = t.elapsed().as_secs_f64() * 1e6 / (reps / 10 + 1) as f64;
    Ok(ProofFigures { leaves: size, append_records_per_sec: append_rate, inclusion_us, consistency_us, root_us })
}

/// A bundle for a deposit a third of the way into the tree, with a checkpoint
/// cosigned by three node keys; returns its bytes and the trusted keys.
pub fn sample_bundle(db: &Db) -> anyhow::Result<(Vec<u8>, Vec<bundle::TrustedKey>)> {
    let view = StateView(db.clone());
    let size = tree::size(&view)?;
    let signers: Vec<Signer> = (1..=3u8).map(|i| Signer::from_seed(&format!("custody-bench-node{i}"), &[i; 32])).collect::<Result<_, _>>()?;
    let root = tree::root(&view, size)?;
    let text = Checkpoint { origin: "custody.vault/bench".into(), size, root, extensions: vec![] }.to_text()?;
    let note = crate::audit::sign_note(&text, &signers.iter().collect::<Vec<_>>())?;
    let index = size / 3 / 4 * 4;
    let leaf = tree::leaf(&view, index)?.ok_or_else(|| anyhow::anyhow!("leaf {index} missing"))?;
    let leaf_json: serde_json::Value = serde_json::from_slice(&leaf)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    // A statement over the deposit alone: the scratch tree's other records are
    // unsigned stand-in accesses with no grant, which a trail check would
    // refuse, so the bundle leaves them out and the statement counts one
    // record. What is timed is the same work: three signatures and the count.
    let head = crate::audit::heads::ItemHead {
        origin: "custody.vault/bench".into(),
        item: leaf_json["item"].as_str().unwrap_or_default().to_string(),
        size,
        root,
        records: 1,
        head: index,
    };
    let head = crate::audit::sign_note(&head.to_text(), &signers.iter().collect::<Vec<_>>())?;
    let b = Bundle {
        format: bundle::BUNDLE_FORMAT.into(),
        version: bundle::BUNDLE_VERSION,
        checkpoint: note,
        item: serde_json::json!({
            "item": leaf_json["item"], "sha256": leaf_json["sha256"], "size": leaf_json["size"], "case": leaf_json["case"],
            "system": leaf_json["system"], "depositor": leaf_json["depositor"], "retention": leaf_json["retention"],
            "deposited_at": leaf_json["time"], "retain_until": leaf_json["retain_until"], "note": null,
        }),
        deposit: LeafProof { index, leaf: b64.encode(&leaf), inclusion: vec![] },
        inclusion: tree::inclusion_proof(&view, index, size)?.iter().map(|h| b64.encode(h)).collect(),
        trail: vec![],
        approvals: vec![],
        registry: vec![],
        head,
        timestamp: None,
    };
    Ok((serde_json::to_vec_pretty(&b)?, signers.iter().map(|s| bundle::TrustedKey::always(s.verifier_key())).collect()))
}

/// What a court's verifier does with a bundle file's bytes: parse, check
/// the checkpoint's signatures against the trusted keys, check the proof.
pub fn check_bundle(bytes: &[u8], keys: &[bundle::TrustedKey]) -> anyhow::Result<usize> {
    let parsed = bundle::parse(bytes)?;
    let checks = bundle::verify(&parsed, keys, None);
    // The scratch tree's records are unsigned stand-ins with no registry behind them: every
    // check but the depositor's signature applies (a real bundle's is timed by the tests).
    anyhow::ensure!(checks.iter().all(|c| c.ok || c.name == "deposit signature"), "the bench bundle did not verify: {checks:?}");
    Ok(parsed.inclusion.len())
}

/// The offline check of [`sample_bundle`], timed over `reps` runs.
pub fn bundle_check(db: &Db, reps: u32) -> anyhow::Result<VerifyFigures> {
    let (bytes, keys) = sample_bundle(db)?;
    let t = Instant::now();
    let mut proof_hashes = 0;
    for _ in 0..reps {
        proof_hashes = std::hint::black_box(check_bundle(&bytes, &keys)?);
    }
    Ok(VerifyFigures {
        bundle_ms: t.elapsed().as_secs_f64() * 1e3 / reps as f64,
        bundle_bytes: bytes.len(),
        proof_hashes,
        at_leaves: tree::size(&StateView(db.clone()))?,
    })
}

/// Opens (or reuses) the tree database under `dir`.
pub fn open(dir: &Path) -> anyhow::Result<Db> {
    Ok(Db::open(&dir.join("tree-db"))?)
}
