//! Bad input gets a clear error and loses nothing.

use std::process::Command;
use std::time::Duration;

use crate::harness::{wait_until, write_clip, Cluster, BIN};

#[test]
fn missing_wrong_and_unreachable_profiles_are_clear_operational_errors() {
    let out = Command::new(BIN).arg("items").env_remove("CUSTODY_PROFILE").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("profile"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = Command::new(BIN).args(["--profile", "/nonexistent/p.toml", "items"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/p.toml"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "endpoints = 'not a list'").unwrap();
    let out = Command::new(BIN).arg("--profile").arg(&bad).arg("items").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid client profile"));

    // A real profile pointing at a cluster that is not running.
    let c = Cluster::init(1, "");
    let out = Command::new(BIN).arg("--profile").arg(c.profile("alice")).args(["--json", "items"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints one object even on error");
    assert!(v["error"].is_string());
}

#[test]
fn a_node_refuses_to_start_on_another_clusters_data() {
    let mut a = Cluster::init(1, "");
    a.start(1);
    a.wait_leader(1);
    a.kill(1);
    let b = Cluster::init(1, "");
    let cfg = b.node_dir(1).join("node.toml");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("data_dir = \"data\"", &format!("data_dir = \"{}\"", a.node_dir(1).join("data").display()));
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN).args(["node", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_deposit_arguments_are_refused_and_change_nothing() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1000, 1);
    let p = c.profile("alice");
    for args in [
        vec!["deposit", clip.to_str().unwrap(), "--case", "", "--system", "cam-demo-1", "--retention", "standard"],
        vec!["deposit", clip.to_str().unwrap(), "--case", "c", "--system", "cam-demo-1", "--retention", "forever"],
        vec!["deposit", "/nonexistent.mp4", "--case", "c", "--system", "cam-demo-1", "--retention", "standard"],
        vec!["show", "not-an-item-id"],
    ] {
        let out = c.cli(&p, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A well-formed id of no item: the vault's "no", not bad input.
    let out = c.cli(&p, &["show", &"ab".repeat(16)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no item"));
    assert!(c.items(&p).is_empty());
}

#[test]
fn an_upload_cut_off_midway_leaves_no_item_and_no_chunks() {
    // A short orphan grace, so the followers' copies are collected within the test.
    let mut c = Cluster::init(3, "orphan_grace_secs = 3");
    c.start_all(3);
    let leader = c.wait_leader(3);
    // Announce 10 MiB of sealed chunks (three 4 MiB chunks) and a manifest, send 5 MiB, hang up.
    let mut req = format!(
        "POST /v1/items HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nx-custody-sealed-bytes: {}\r\nx-custody-chunk-size: {}\r\ncontent-length: {}\r\n\r\n",
        c.token("alice"),
        10 << 20,
        4 << 20,
        (10 << 20) + 1000
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'v', 5 << 20));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut tls = c.connect_as("alice", leader).await;
        tls.write_all(&req).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(tls);
    });
    // The leader gives up on the deposit and drops what it wrote.
    let chunks = c.node_dir(leader).join("data/chunks");
    wait_until("the leader to drop the partial deposit's chunks", Duration::from_secs(30), || {
        let n: usize =
            std::fs::read_dir(&chunks).map(|rd| rd.flatten().map(|e| std::fs::read_dir(e.path()).map(|r| r.count()).unwrap_or(0)).sum()).unwrap_or(0);
        (n == 0).then_some(())
    });
    assert!(c.items(&c.profile("alice")).is_empty(), "no item from a cut-off upload");
    // The followers received chunks too; they are collected as orphans: no permanent garbage.
    for id in 1..=3 {
        let chunks = c.node_dir(id).join("data/chunks");
        wait_until(&format!("node {id} to collect the orphan chunks"), Duration::from_secs(30), || {
            let n: usize = std::fs::read_dir(&chunks)
                .map(|rd| rd.flatten().map(|e| std::fs::read_dir(e.path()).map(|r| r.count()).unwrap_or(0)).sum())
                .unwrap_or(0);
            (n == 0).then_some(())
        });
    }
    // The cluster is fine afterwards.
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 5000, 2);
    c.deposit("alice", &clip, "c");
}

#[test]
fn a_slow_deposit_keeps_its_early_chunks_past_the_orphan_grace() {
    // The grace (3 s) is shorter than the deposit (about 6 s, a chunk every 2 s): the collector
    // must still leave the deposit's early chunks alone while the deposit is active.
    let mut c = Cluster::init(3, "orphan_grace_secs = 3");
    c.start_all(3);
    let leader = c.wait_leader(3);
    // A real sealed deposit (12 MiB and 5 bytes: four chunks), made as the CLI makes it, sent slowly.
    let clip = c.path().join("slow.mp4");
    write_clip(&clip, (12 << 20) + 5, 3);
    let (head, body) = sealed_upload(&c, &clip, leader);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = c.connect_as("alice", leader).await;
        tls.write_all(head.as_bytes()).await.unwrap();
        for part in body.chunks(4 << 20) {
            tls.write_all(part).await.unwrap();
            tls.flush().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    for id in 1..=3 {
        let log = std::fs::read_to_string(c.node_dir(id).join("node.log")).unwrap();
        assert!(!log.contains("collected orphan chunks"), "node {id} collected chunks of a deposit still streaming");
    }
    let items = c.items(&c.profile("alice"));
    assert_eq!(items.len(), 1);
    assert!(c.holds_item(leader, &items[0]), "the leader holds every chunk");
}

#[test]
fn orphan_collection_deletes_no_chunk_on_the_word_of_one_node() {
    use custody::storage::{Batch, Cf, Db, Durability};
    let mut c = Cluster::init(3, "orphan_grace_secs = 2");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, (5 << 20) + 7, 4);
    c.deposit("alice", &clip, "t");
    let item = c.items(&c.profile("alice")).remove(0);
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    wait_until("the victim to hold the item", Duration::from_secs(30), || c.holds_item(victim, &item).then_some(()));
    // And to have applied it (its chunk index is what the test takes away): the deposit was
    // acknowledged once a majority held it, which need not include the victim yet.
    wait_until("the victim to list the item", Duration::from_secs(30), || {
        c.try_items(&c.node_profile("admin", victim)).is_some_and(|l| l.iter().any(|v| v["item"] == item["item"])).then_some(())
    });
    c.kill(victim);
    // The victim's state loses the item's chunk index, as a forged snapshot
    // would leave it; and its disk gets a real orphan, a chunk nobody deposited.
    let stray = b"never part of any deposit ".repeat(1000);
    let stray_name = custody::evidence::ChunkName::from_digest(custody::crypto::sha256(&stray));
    {
        let db = Db::open(&c.node_dir(victim).join("data/db")).unwrap();
        let index = db.scan_prefix(Cf::State, custody::vault::keys::CHUNK_PREFIX).unwrap();
        assert!(!index.is_empty(), "the victim had a chunk index");
        let mut b = Batch::default();
        for (k, _) in index {
            b.delete(Cf::State, k);
        }
        db.write(b, Durability::Fsync).unwrap();
        let store = custody::evidence::ChunkStore::open(&c.node_dir(victim).join("data/chunks")).unwrap();
        store.put(&stray_name, &stray).unwrap();
    }
    c.start(victim);
    let stray_path = c.chunk_path(victim, &stray_name.to_string());
    wait_until("the victim to collect the chunk that every voter holds to be an orphan", Duration::from_secs(60), || {
        (!stray_path.exists()).then_some(())
    });
    assert!(c.holds_item(victim, &item), "a node deleted footage on its own state's word");
    let log = std::fs::read_to_string(c.node_dir(victim).join("node.log")).unwrap();
    assert!(log.contains("no majority of the voters does"), "the victim did not say what it kept");
}

/// The request head and body of alice's deposit of `clip`, sealed for the
/// cluster's voters as her client seals it (docs/KEYS.md §4.1).
fn sealed_upload(c: &Cluster, clip: &std::path::Path, node: u64) -> (String, Vec<u8>) {
    use futures::StreamExt;
    let token = c.token("alice");
    let (status, view) = crate::keys::request(c, "alice", node, "GET", "/v1/holders", &token, &serde_json::Value::Null);
    assert_eq!(status, 200, "{view}");
    let view: custody::wire::HoldersView = serde_json::from_value(view).unwrap();
    let size = std::fs::metadata(clip).unwrap().len();
    let meta = custody::evidence::DepositMeta {
        case: "slow".into(),
        system: "cam-demo-1".into(),
        retention: custody::evidence::Retention::Standard,
        note: None,
    };
    let plan = std::sync::Arc::new(custody::sealing::DepositPlan::new(&view, size, meta, "alice".into()).unwrap_or_else(|f| panic!("{}", f.message)));
    let key = std::sync::Arc::new(crate::keys::signing_key(c, "alice"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body: Vec<u8> = rt.block_on(async {
        let f = tokio::fs::File::open(clip).await.unwrap();
        let parts: Vec<_> = custody::sealing::upload_stream(plan.clone(), key, f, None).collect().await;
        parts.into_iter().flat_map(|p| p.unwrap().to_vec()).collect()
    });
    let head = format!(
        "POST /v1/items HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nx-custody-sealed-bytes: {}\r\nx-custody-chunk-size: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        plan.sealed_bytes(),
        plan.chunk_size(),
        body.len()
    );
    (head, body)
}
