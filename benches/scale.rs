//! Province scale on paper, checked (docs/SCALE.md): the metadata and audit tree one Raft group
//! keeps for `SCALE_ITEMS` items (default 3,000,000: a province's year) of about 1 GB each.
//!
//!   cargo bench --profile dev --bench scale                 # reuses the test build
//!   SCALE_ITEMS=300000 SCALE_DIR=/var/tmp cargo bench --profile dev --bench scale
//!
//! It writes, with the vault's own types, key layout and serialisation, into a real RocksDB
//! (`storage::Db`, the product's tuning):
//! - today's layout for the first `SCALE_CURRENT_ITEMS` items (default 100,000): every item's
//!   record (`item/<id>`: manifest with its chunk list, holders' envelopes, retention) and its
//!   chunk index (`chunk/<name>` → item), for chunks of the default 4 MiB;
//! - the planned layout (docs/SCALE.md §3: the record without its chunk list, which goes to the
//!   object store, but with its SHA-256; no chunk index) for all items, and the audit tree: per
//!   item its deposit record and three access-side records, appended as apply appends them.
//!
//! It prints one JSON object: bytes per item in the state and in the Raft log, the databases'
//! sizes on disk, the times, and inclusion and consistency proof sizes at this size and at 10⁹
//! leaves. Today's layout (≈ 48 KB per item on disk) is not written for all items: 3M of them
//! would need ~145 GB. Either stops early, and says so, when the disk has less than 8 GiB left.

use std::path::{Path, PathBuf};
use std::time::Instant;

use custody::evidence::{ChunkName, ChunkRef, DepositMeta, Holder, ItemId, Manifest, Retention};
use custody::raft::state_machine::StateView;
use custody::storage::{Batch, Cf, Db, Durability};
use custody::vault::{audit as tree, keys, Command, ItemRecord};

const ITEM_BYTES: u64 = 1_000_000_000;
const BATCH_ITEMS: u64 = 1_000;

/// A manifest shaped as a real 1 GB deposit's: every field at its real length.
fn manifest(i: u64) -> Manifest {
    let chunk_size = custody::limits::CHUNK_SIZE_BYTES;
    let count = ITEM_BYTES.div_ceil(chunk_size);
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&i.to_be_bytes());
    let item = ItemId::from_bytes(seed);
    let hex64 = |tag: u64| hex::encode(custody::crypto::sha256(&[&seed[..], &tag.to_be_bytes()].concat()));
    let chunks = (0..count)
        .map(|c| {
            let size = if c + 1 == count { ITEM_BYTES - c * chunk_size } else { chunk_size } + custody::limits::GCM_TAG_BYTES;
            ChunkRef { name: ChunkName::from_digest(custody::crypto::sha256(&[&seed[..], &c.to_be_bytes(), b"c"].concat())), size }
        })
        .collect();
    // An HPKE envelope of a 33-byte share: 32 bytes of encapsulated key, the share, a 16-byte tag.
    let envelope = "e".repeat(2 * (32 + 33 + 16));
    let holders =
        (1..=3u64).map(|node| Holder { node, x: node as u8, share_key: hex64(100 + node), envelope: envelope.clone(), parts: Vec::new() }).collect();
    Manifest {
        item,
        sha256: hex64(1),
        size: ITEM_BYTES,
        chunk_size,
        chunks,
        nonce_prefix: "00010203".into(),
        holders,
        threshold: 2,
        key_commitment: hex64(2),
        meta: DepositMeta { case: format!("CASE-2027-{i:07}"), system: "cam-unit-042".into(), retention: Retention::Standard, note: None },
        depositor: "officer-0001".into(),
        signature: "A".repeat(86) + "==",
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0)
}

fn free_bytes(p: &Path) -> u64 {
    nix::sys::statvfs::statvfs(p).map(|s| s.blocks_available() * s.fragment_size()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// What the vault writes today: the record with its chunk list, and a chunk index entry per chunk.
    Current,
    /// docs/SCALE.md §3: the record without the chunk list but with its SHA-256; no chunk index.
    Planned,
}

/// Writes `n` items' metadata; stops early when the disk runs low. Returns (written, seconds, why stopped).
fn write_items(db: &Db, n: u64, layout: Layout, base: &Path) -> anyhow::Result<(u64, f64, Option<String>)> {
    let started = Instant::now();
    let mut written = 0u64;
    while written < n {
        if free_bytes(base) < 8 << 30 {
            return Ok((written, started.elapsed().as_secs_f64(), Some(format!("less than 8 GiB left on {} after {written} items", base.display()))));
        }
        let mut b = Batch::default();
        for i in written..(written + BATCH_ITEMS).min(n) {
            let mut m = manifest(i);
            let key = keys::item(&m.item);
            let value = match layout {
                Layout::Current => {
                    for c in &m.chunks {
                        b.put(Cf::State, keys::chunk(&c.name), m.item.to_string().into_bytes());
                    }
                    serde_json::to_vec(&record(m, i))?
                }
                Layout::Planned => {
                    let list = hex::encode(custody::crypto::sha256(&serde_json::to_vec(&m.chunks)?));
                    m.chunks.clear();
                    serde_json::to_vec(&serde_json::json!({ "record": record(m, i), "chunk_list_sha256": list }))?
                }
            };
            b.put(Cf::State, key, value);
        }
        db.write(b, Durability::Buffered)?;
        written = (written + BATCH_ITEMS).min(n);
        if written % 100_000 == 0 {
            eprintln!("scale: {written} items written ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    Ok((written, started.elapsed().as_secs_f64(), None))
}

fn record(manifest: Manifest, i: u64) -> ItemRecord {
    ItemRecord {
        manifest,
        deposited_at_ms: 1_800_000_000_000 + i,
        retain_until_ms: 1_801_296_000_000 + i,
        seq: i,
        leaf_index: 4 * i,
        hold: None,
        purged: None,
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let items: u64 = std::env::var("SCALE_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000_000);
    let begun = Instant::now();
    let base = PathBuf::from(std::env::var("SCALE_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()));
    let dir = tempfile::Builder::new().prefix("custody-scale-").tempdir_in(&base)?;
    let db = Db::open(&dir.path().join("db"))?;
    let view = StateView(db.clone());

    // Per item, measured on the real serialisations.
    let m0 = manifest(0);
    let record0 = record(m0.clone(), 0);
    let record_bytes = serde_json::to_vec(&record0)?.len() as u64;
    let chunk_list_bytes = serde_json::to_vec(&m0.chunks)?.len() as u64;
    let chunk_index_bytes: u64 = m0.chunks.iter().map(|c| keys::chunk(&c.name).len() as u64 + 32).sum();
    let seal_entry_bytes = serde_json::to_vec(&Command::Seal { manifest: m0.clone(), time_ms: 1_800_000_000_000 })?.len() as u64;

    // Today's layout for the first `SCALE_CURRENT_ITEMS` (default 100,000): measured bytes on disk
    // per item. The plan's layout (docs/SCALE.md §3: the chunk list as an object in the store,
    // its SHA-256 in the record, no chunk index) for all items, with the tree.
    let current_items: u64 = std::env::var("SCALE_CURRENT_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000).min(items);
    let current_dir = dir.path().join("current");
    let (current_written, current_secs, _) = write_items(&Db::open(&current_dir)?, current_items, Layout::Current, &base)?;
    let current_db_bytes = dir_bytes(&current_dir);
    let (written, metadata_secs, stopped_early) = write_items(&db, items, Layout::Planned, &base)?;

    let leaves = 4 * written;
    let t = Instant::now();
    let append_rate = custody::cli::bench::proofs::build_tree(&db, leaves, |n| {
        if n % 1_000_000 == 0 {
            eprintln!("scale: {n} leaves appended");
        }
    })?;
    let tree_secs = t.elapsed().as_secs_f64();
    let proofs = custody::cli::bench::proofs::proof_times(&db, append_rate, 2_000)?;
    let size = tree::size(&view)?;
    let incl = tree::inclusion_proof(&view, size / 3, size)?.len() as u64;
    let cons = tree::consistency_proof(&view, size / 3, size)?.len() as u64;
    // Closing flushes the memtables: what is left is what a snapshot or a new member copies.
    drop(view);
    drop(db);
    let db_bytes = dir_bytes(&dir.path().join("db"));
    let log2_ceil = |n: u64| 64 - (n - 1).leading_zeros() as u64;
    let out = serde_json::json!({
        "items": written,
        "items_asked": items,
        "stopped_early": stopped_early,
        "item_bytes": ITEM_BYTES,
        "chunk_size": custody::limits::CHUNK_SIZE_BYTES,
        "chunks_per_item": m0.chunks.len(),
        "current_layout": {
            "items": current_written,
            "item_record_bytes": record_bytes,
            "of_which_chunk_list_bytes": chunk_list_bytes,
            "chunk_index_bytes": chunk_index_bytes,
            "raft_seal_entry_bytes": seal_entry_bytes,
            "db_bytes_on_disk": current_db_bytes,
            "db_bytes_per_item": current_db_bytes.checked_div(current_written),
            "write_secs": current_secs,
        },
        "planned_layout": {
            "items": written,
            "db_bytes_on_disk_with_tree": db_bytes,
            "db_bytes_per_item_with_tree": db_bytes.checked_div(written),
            "write_secs": metadata_secs,
        },
        "tree": {
            "leaves": size,
            "append_secs": tree_secs,
            "append_records_per_sec": append_rate,
            "inclusion_us": proofs.inclusion_us,
            "consistency_us": proofs.consistency_us,
            "inclusion_proof_hashes": incl,
            "consistency_proof_hashes": cons,
            "inclusion_proof_bytes_at_1e9_leaves": 32 * log2_ceil(1_000_000_000),
            "consistency_proof_bytes_at_1e9_leaves_max": 32 * 2 * log2_ceil(1_000_000_000),
        },
        "seconds": begun.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
