//! Figures for the closing notes, not pass/fail timing: run with
//! `cargo test --test it figures -- --ignored --nocapture`
//! (`CUSTODY_FIGURES_LEAVES` sets the tree size, default 1,000,000).

use std::time::Instant;

use custody::raft::state_machine::StateView;
use custody::storage::{Batch, Cf, Db, Durability};
use custody::vault::{audit as tree, Tx};

#[test]
#[ignore = "prints figures; run by hand"]
fn audit_log_figures() {
    let n: u64 = std::env::var("CUSTODY_FIGURES_LEAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db")).unwrap();
    let view = StateView(db.clone());
    let start = Instant::now();
    let batch_leaves = 10_000;
    let mut i = 0;
    while i < n {
        let mut tx = Tx::new(&view);
        for j in i..(i + batch_leaves).min(n) {
            let r = tree::record(
                "access",
                1_700_000_000_000 + j,
                serde_json::json!({ "item": format!("{j:032x}"), "request": j, "officers": ["alice", "bob"], "purpose": "figures", "approval_doc": "doc", "action": "view" }),
            );
            tree::append(&mut tx, &r).unwrap();
        }
        let mut b = Batch::default();
        for (k, v) in tx.into_writes() {
            b.put(Cf::State, k, v.unwrap());
        }
        db.write(b, Durability::Buffered).unwrap();
        i += batch_leaves;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("append: {n} records in {secs:.1} s = {:.0} records/s (RocksDB, batches of {batch_leaves})", n as f64 / secs);

    let size = tree::size(&view).unwrap();
    let reps = 2000u64;
    let t = Instant::now();
    for k in 0..reps {
        let idx = (k * 7_919_993) % size;
        std::hint::black_box(tree::inclusion_proof(&view, idx, size).unwrap());
    }
    println!("inclusion proof at {size} leaves: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    let t = Instant::now();
    for k in 0..reps {
        let old = 1 + (k * 7_919_993) % (size - 1);
        std::hint::black_box(tree::consistency_proof(&view, old, size).unwrap());
    }
    println!("consistency proof at {size} leaves: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    let t = Instant::now();
    for _ in 0..200 {
        std::hint::black_box(tree::root(&view, size).unwrap());
    }
    println!("root at {size} leaves: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / 200.0);

    // A bundle for a leaf deep in this tree, cosigned by three node keys.
    let signers: Vec<custody::audit::Signer> =
        (1..=3).map(|i| custody::audit::Signer::from_seed(&format!("custody-figures-node{i}"), &[i as u8; 32]).unwrap()).collect();
    let root = tree::root(&view, size).unwrap();
    let text = custody::audit::Checkpoint { origin: "custody.vault/figures".into(), size, root, extensions: vec![] }.to_text().unwrap();
    let note = custody::audit::sign_note(&text, &signers.iter().collect::<Vec<_>>()).unwrap();
    let index = size / 3;
    let leaf = tree::leaf(&view, index).unwrap().unwrap();
    let leaf_json: serde_json::Value = serde_json::from_slice(&leaf).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = custody::audit::bundle::Bundle {
        format: custody::audit::bundle::BUNDLE_FORMAT.into(),
        version: custody::audit::bundle::BUNDLE_VERSION,
        checkpoint: note,
        item: serde_json::json!({ "item": leaf_json["item"], "sha256": leaf_json["sha256"], "size": leaf_json["size"] }),
        deposit: custody::audit::bundle::LeafProof { index, leaf: b64.encode(&leaf), inclusion: vec![] },
        inclusion: tree::inclusion_proof(&view, index, size).unwrap().iter().map(|h| b64.encode(h)).collect(),
        trail: vec![],
        approvals: vec![],
    };
    let bytes = serde_json::to_vec_pretty(&bundle).unwrap();
    let keys: Vec<custody::audit::VerifierKey> = signers.iter().map(|s| s.verifier_key()).collect();
    let t = Instant::now();
    let reps = 500;
    for _ in 0..reps {
        let b = custody::audit::bundle::parse(&bytes).unwrap();
        let checks = custody::audit::bundle::verify(&b, &keys, None);
        assert!(checks.iter().any(|c| c.name == "checkpoint signatures" && c.ok));
        std::hint::black_box(checks);
    }
    println!(
        "bundle ({} bytes, {} proof hashes): parse + verify {:.3} ms",
        bytes.len(),
        bundle.inclusion.len(),
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

#[test]
#[ignore = "prints figures; run by hand"]
fn small_records_figures() {
    // 32 concurrent clients filing signed access requests (each one Raft entry and one audit record).
    let mut c = crate::harness::Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    crate::harness::write_clip(&clip, 1000, 1);
    let item = c.deposit("alice", &clip, "bench")["item"].as_str().unwrap().to_string();
    c.token("alice");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let profile = c.profile("alice");
    let secs = 10.0;
    let total: u64 = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = custody::cli::ops::session(Some(profile.clone())).ok().unwrap();
            let item = item.clone();
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let a = custody::cli::access::RequestArgs {
                        item: item.clone(),
                        action: "view".into(),
                        purpose: "figures".into(),
                        approval_doc: "D".into(),
                        with: vec!["bob".into()],
                        emergency: false,
                    };
                    if custody::cli::access::file_request(&s, a).await.is_ok() {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    println!("small records: {total} signed requests committed in {secs} s by 32 clients = {:.0}/s", total as f64 / secs);
}
