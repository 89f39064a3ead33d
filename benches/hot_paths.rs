//! Micro-benchmarks of the hot paths: chunk seal and open, chunk hashing,
//! audit appends and proofs, and the signature checks every node makes.
//!
//! `cargo bench --profile dev --bench hot_paths` reuses the test build;
//! plain `cargo bench` builds everything (RocksDB too) in release first.
//! Whole-system figures come from `custody bench`.

use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use custody::approval::{signature_valid, AccessRequest, Action};
use custody::audit::records::{self, Body};
use custody::cli::bench::proofs;
use custody::crypto::{sha256, verify_ed25519, ChunkCipher, DataKey, Hasher, SigningKey};
use custody::raft::state_machine::StateView;
use custody::vault::{audit as tree, Tx};

const CHUNK: usize = 4 * 1024 * 1024;

fn chunks(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    let cipher = ChunkCipher::new(&key, b"item", [1, 2, 3, 4], 1 << 20).unwrap();
    let plain = vec![0x42u8; CHUNK];
    let mut g = c.benchmark_group("chunk 4 MiB");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("seal (AES-256-GCM)", |b| {
        b.iter_batched_ref(
            || {
                let mut v = Vec::with_capacity(CHUNK + 16);
                v.extend_from_slice(&plain);
                v
            },
            |buf| cipher.seal(7, buf).unwrap(),
            BatchSize::LargeInput,
        )
    });
    let mut sealed = plain.clone();
    cipher.seal(7, &mut sealed).unwrap();
    g.bench_function("open (AES-256-GCM)", |b| b.iter_batched_ref(|| sealed.clone(), |buf| cipher.open(7, buf).unwrap(), BatchSize::LargeInput));
    g.bench_function("name (SHA-256)", |b| {
        b.iter(|| {
            let mut h = Hasher::new();
            h.update(&sealed);
            h.finish()
        })
    });
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[9; 32]).unwrap();
    let req = AccessRequest {
        item: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        action: Action::View,
        purpose: "investigation of case LN-2026-0042".into(),
        approval_doc: "APPROVAL-2026-117".into(),
        participants: vec!["alice".into(), "bob".into()],
        emergency: false,
        expires_at_ms: 1_900_000_000_000,
        nonce: hex::encode([5u8; 16]),
        max_fetches: 1,
    };
    let public = key.public_key();
    let mut g = c.benchmark_group("signatures");
    let bytes = req.signing_bytes().unwrap();
    let raw = key.sign(&bytes);
    let sig = base64::engine::general_purpose::STANDARD.encode(raw);
    g.bench_function("access request: canonical signing bytes (RFC 8785)", |b| b.iter(|| req.signing_bytes().unwrap()));
    g.bench_function("Ed25519 verify", |b| b.iter(|| assert!(verify_ed25519(&public, &bytes, &raw))));
    g.bench_function("access request: signature check, already verified once (apply's memory)", |b| {
        b.iter(|| assert!(signature_valid(&req, &public, &sig)))
    });
    g.bench_function("Ed25519 sign", |b| b.iter(|| key.sign(&bytes)));
    g.finish();
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = proofs::open(dir.path()).unwrap();
    let leaves = 1_000_000;
    proofs::build_tree(&db, leaves, |_| {}).unwrap();
    let view = StateView(db.clone());
    let mut g = c.benchmark_group(format!("audit log at {leaves} leaves"));
    g.bench_function("append one record (in a transaction, not committed)", |b| {
        let r = tree::record(1_800_000_000_000, Body::Hold(records::Hold::Release { item: hex::encode(&sha256(b"x")[..16]), by: "alice".into() }));
        b.iter_batched(|| Tx::new(&view), |mut tx| tree::append(&mut tx, &r).unwrap(), BatchSize::SmallInput)
    });
    let mut k = 0u64;
    g.bench_function("inclusion proof", |b| {
        b.iter(|| {
            k = (k + 7_919) % leaves;
            tree::inclusion_proof(&view, k, leaves).unwrap()
        })
    });
    g.bench_function("consistency proof", |b| {
        b.iter(|| {
            k = (k + 7_919) % (leaves - 1);
            tree::consistency_proof(&view, k + 1, leaves).unwrap()
        })
    });
    let (bundle, keys) = proofs::sample_bundle(&db).unwrap();
    g.bench_function("offline bundle check (parse, 3 signatures, inclusion)", |b| b.iter(|| proofs::check_bundle(&bundle, &keys).unwrap()));
    g.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    targets = chunks, signatures, audit
}
criterion_main!(hot_paths);
