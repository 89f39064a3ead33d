//! The audit log a court can check: bundles verify offline and any altered
//! byte is rejected; the monitor catches a rewritten history; a node whose
//! stored tree was altered stops signing while the others go on.

use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use custody::audit::bundle::{self, Bundle};
use custody::audit::{Checkpoint, Note, Signer};
use serde_json::Value;

use crate::harness::{wait_until, write_clip, Cluster, BIN};

fn rejected(b: &Bundle, keys: &[bundle::TrustedKey], clip: Option<&str>) -> bool {
    !bundle::verify(b, keys, clip).iter().all(|c| c.ok)
}

#[test]
fn a_bundle_verifies_offline_and_any_altered_byte_is_rejected() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    let sha = write_clip(&clip, 5_000_000, 7);
    let item = c.deposit("alice", &clip, "case-V")["item"].as_str().unwrap().to_string();
    // A granted request, so the bundle carries officers' and an approver's signatures.
    c.grant(&item, "view");
    let p = c.profile("dave");
    let bpath = c.path().join("bundle.json");
    c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
    let keys_out = c.cli_json(&p, &["cluster", "keys"]);
    let kpath = c.path().join("keys.txt");
    // What a court keeps: each key with the sizes it may sign for (here, from its binding on).
    let key_lines: Vec<String> =
        keys_out["ranges"].as_array().unwrap().iter().map(|r| format!("{} from={}", r["key"].as_str().unwrap(), r["from_size"])).collect();
    assert_eq!(key_lines.len(), 3, "one verifier key per node");
    std::fs::write(&kpath, key_lines.join("\n")).unwrap();

    // The CLI, with no cluster running at all: valid, and the clip matches.
    for id in 1..=3 {
        c.kill(id);
    }
    let v = c.cli_json(&p, &["verify", bpath.to_str().unwrap(), "--file", clip.to_str().unwrap(), "--keys", kpath.to_str().unwrap()]);
    assert_eq!(v["valid"], true, "{v}");
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in ["checkpoint signatures", "deposit record", "deposit inclusion", "clip sha256"] {
        assert!(names.contains(&n), "missing check {n}: {names:?}");
    }
    // The court's own verifier, built without the vault (verify/), gives the very same report.
    let court = Command::new(crate::harness::verify_bin())
        .args([bpath.to_str().unwrap(), "--json", "--file", clip.to_str().unwrap(), "--keys", kpath.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(court.status.code(), Some(0), "{}", String::from_utf8_lossy(&court.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&court.stdout).unwrap(), v, "custody-verify and custody verify disagree");
    // Another clip: exit 1, and it says which check failed.
    let other = c.path().join("other.mp4");
    write_clip(&other, 5_000_000, 8);
    let out = Command::new(BIN)
        .args(["--json", "verify", bpath.to_str().unwrap(), "--file", other.to_str().unwrap(), "--keys", kpath.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["checks"].as_array().unwrap().iter().any(|c| c["name"] == "clip sha256" && c["ok"] == false));
    let court = Command::new(crate::harness::verify_bin())
        .args(["--json", bpath.to_str().unwrap(), "--file", other.to_str().unwrap(), "--keys", kpath.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(court.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&court.stdout).unwrap(), v);
    // Unusable input: exit 2.
    let junk = c.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let out = Command::new(BIN).args(["verify", junk.to_str().unwrap(), "--keys", kpath.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // In process: every byte of the leaf, of every proof hash, and of the checkpoint note.
    let good: Bundle = bundle::parse(&std::fs::read(&bpath).unwrap()).unwrap();
    let keys = bundle::parse_keys(&key_lines.join("\n")).unwrap();
    assert!(!rejected(&good, &keys, Some(&sha)), "the untouched bundle verifies");
    // Every signer is traced to the registry records that gave them their key: the depositor's
    // signature and each approval are checked against those, and without them they fail.
    let names: Vec<String> = bundle::verify(&good, &keys, None).into_iter().map(|c| c.name).collect();
    assert!(names.iter().any(|n| n == "deposit signature") && names.iter().filter(|n| n.starts_with("approval signature")).count() >= 3, "{names:?}");
    assert!(good.registry.len() >= 3, "alice's, bob's and carol's records");
    let mut b = good.clone();
    b.registry.clear();
    let failed: Vec<String> = bundle::verify(&b, &keys, None).into_iter().filter(|c| !c.ok).map(|c| c.name).collect();
    assert!(failed.iter().any(|n| n == "deposit signature") && failed.iter().any(|n| n.starts_with("approval signature")), "{failed:?}");
    // A record about someone else cannot stand in for the depositor's.
    let mut b = good.clone();
    b.registry.retain(|r| {
        let v: Value = serde_json::from_slice(&BASE64.decode(&r.leaf).unwrap()).unwrap();
        v["name"] != "alice"
    });
    assert!(rejected(&b, &keys, None), "a deposit traced to no registry record of its depositor accepted");
    let leaf = BASE64.decode(&good.deposit.leaf).unwrap();
    for i in 0..leaf.len() {
        let mut l = leaf.clone();
        l[i] ^= 0x01;
        let mut b = good.clone();
        b.deposit.leaf = BASE64.encode(&l);
        assert!(rejected(&b, &keys, Some(&sha)), "leaf byte {i} altered and accepted");
    }
    for h in 0..good.inclusion.len() {
        let hash = BASE64.decode(&good.inclusion[h]).unwrap();
        for i in 0..hash.len() {
            let mut x = hash.clone();
            x[i] ^= 0x80;
            let mut b = good.clone();
            b.inclusion[h] = BASE64.encode(&x);
            assert!(rejected(&b, &keys, Some(&sha)), "proof hash {h} byte {i} altered and accepted");
        }
    }
    let note = good.checkpoint.as_bytes().to_vec();
    // Signer names and key ids are not signed: a line whose name or key id the court does
    // not know is ignored (C2SP), leaving 2 of 3 trusted signatures, which still is a
    // majority. The key id is the first 4 bytes of the base64: its first 6 characters.
    let mut name_bytes = std::collections::BTreeSet::new();
    let mut at = 0;
    for line in good.checkpoint.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("— ") {
            let start = at + "— ".len();
            name_bytes.extend(start..start + rest.find(' ').unwrap() + 1 + 6);
        }
        at += line.len();
    }
    let mut tried = 0;
    for i in (0..note.len()).filter(|i| !name_bytes.contains(i)) {
        let mut n = note.clone();
        n[i] ^= 0x01;
        let Ok(text) = String::from_utf8(n) else { continue };
        let mut b = good.clone();
        b.checkpoint = text;
        tried += 1;
        assert!(rejected(&b, &keys, Some(&sha)), "checkpoint byte {i} ({:?}) altered and accepted", note[i] as char);
    }
    assert!(tried > 200);
    // Other index, dropped proof hash, extra proof hash.
    let mut b = good.clone();
    b.deposit.index += 1;
    assert!(rejected(&b, &keys, None));
    if !good.inclusion.is_empty() {
        let mut b = good.clone();
        b.inclusion.pop();
        assert!(rejected(&b, &keys, None));
    }
    let mut b = good.clone();
    b.inclusion.push(BASE64.encode([0u8; 32]));
    assert!(rejected(&b, &keys, None));
    // The item metadata must match the signed record.
    let mut b = good.clone();
    b.item["sha256"] = Value::String("00".repeat(32));
    assert!(rejected(&b, &keys, None));
    // A checkpoint signed by only one of the keys the court trusts is not enough.
    let one_sig = {
        let n = Note::parse(&good.checkpoint).unwrap();
        Note { text: n.text, signatures: n.signatures[..1].to_vec() }.encode().unwrap()
    };
    let mut b = good.clone();
    b.checkpoint = one_sig;
    assert!(rejected(&b, &keys, None), "one signature of three accepted");
    // Keys of nodes that left before this size do not count: with every
    // signer's key retired just below it, no majority of the keys valid at
    // this size signed.
    let size = Checkpoint::parse(&Note::parse(&good.checkpoint).unwrap().text).unwrap().size;
    let signed_by: Vec<String> = Note::parse(&good.checkpoint).unwrap().signatures.iter().map(|s| s.name.clone()).collect();
    let mut retired = keys.clone();
    for k in retired.iter_mut().filter(|k| signed_by.contains(&k.key.name().to_string())) {
        k.until_size = Some(size - 1);
    }
    assert!(rejected(&good, &retired, None), "a checkpoint signed only by keys retired before its size accepted");
    // The same keys, valid through this size, count.
    for k in &mut retired {
        k.until_size = Some(size);
    }
    assert!(!rejected(&good, &retired, None));
}

fn signers(c: &Cluster) -> Vec<Signer> {
    let cluster_id = c.cluster_id();
    (1..=3)
        .map(|id| {
            let seed: [u8; 32] =
                hex::decode(std::fs::read_to_string(c.keys_dir(id).join("checkpoint.key")).unwrap().trim()).unwrap().try_into().unwrap();
            Signer::from_seed(&custody::node::checkpoint::signer_name(&cluster_id, id), &seed).unwrap()
        })
        .collect()
}

#[test]
fn the_monitor_detects_a_rewritten_history() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1000, 1);
    c.deposit("alice", &clip, "m");
    let p = c.profile("dave");
    let state = c.path().join("monitor.json");
    let first = wait_until("a checkpoint", Duration::from_secs(30), || {
        let out = c.cli(&p, &["monitor", "--state", state.to_str().unwrap()]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(first["consistent"], true);
    c.deposit("alice", &clip, "m");
    let size_after = wait_until("a newer checkpoint", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&c.cli(&p, &["checkpoint"]).stdout).ok()?;
        (v["size"].as_u64()? > first["size"].as_u64()?).then(|| v["size"].as_u64().unwrap())
    });
    let v = c.cli_json(&p, &["monitor", "--state", state.to_str().unwrap()]);
    assert_eq!(v["consistent"], true, "an honest log only grows: {v}");

    // A majority of node keys (stolen, say) sign histories the log never had.
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let kept = st["checkpoint"].as_str().unwrap();
    let cp = Checkpoint::parse(&Note::parse(kept).unwrap().text).unwrap();
    let s = signers(&c);
    let forge = |size: u64, root: [u8; 32]| -> String {
        let text = Checkpoint { origin: cp.origin.clone(), size, root, extensions: vec![] }.to_text().unwrap();
        custody::audit::sign_note(&text, &[&s[0], &s[1], &s[2]]).unwrap()
    };
    for (what, size, root) in [
        ("same size, other root", size_after, [7u8; 32]),
        ("a larger tree than the log has now", size_after + 5, [9u8; 32]),
        ("an earlier tree the log does not extend", size_after - 1, [3u8; 32]),
    ] {
        let mut forged = st.clone();
        forged["checkpoint"] = Value::String(forge(size, root));
        std::fs::write(&state, serde_json::to_string(&forged).unwrap()).unwrap();
        let out = c.cli(&p, &["monitor", "--state", state.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", String::from_utf8_lossy(&out.stdout));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["consistent"], false, "{what}");
        // The monitor keeps the old (forged) state rather than accepting the new one.
        assert_eq!(std::fs::read_to_string(&state).unwrap(), serde_json::to_string(&forged).unwrap());
    }
}

#[test]
fn a_node_whose_stored_tree_was_altered_stops_signing_and_the_others_publish() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1000, 1);
    c.deposit("alice", &clip, "t");
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    // Let the victim apply what the deposit committed before stopping it.
    wait_until("the victim to apply the deposit", Duration::from_secs(30), || {
        let st = c.status()?;
        let m = st["members"].as_array()?.iter().find(|m| m["id"] == victim)?.clone();
        (m["health"]["audit_size"].as_u64()? >= 3).then_some(())
    });
    c.kill(victim);
    {
        // Alter one stored leaf behind the node's back.
        let db = custody::storage::Db::open(&c.node_dir(victim).join("data/db")).unwrap();
        let key = custody::vault::audit::keys::leaf(0);
        let mut leaf = db.get(custody::storage::Cf::State, &key).unwrap().expect("leaf 0 stored");
        leaf[5] ^= 0x20;
        let mut b = custody::storage::Batch::default();
        b.put(custody::storage::Cf::State, key, leaf);
        db.write(b, custody::storage::Durability::Fsync).unwrap();
    }
    c.start(victim);
    let p = c.profile("admin");
    wait_until("the altered node to report that it refuses to sign", Duration::from_secs(30), || {
        let st = c.status()?;
        let m = st["members"].as_array()?.iter().find(|m| m["id"] == victim)?.clone();
        m["health"]["warnings"].as_array()?.iter().any(|w| w["kind"] == "audit_tree_invalid" && w["error"].is_string()).then_some(())
    });
    c.deposit("alice", &clip, "t");
    let size = c.cli_json(&p, &["items"])["items"].as_array().unwrap().iter().map(|i| i["leaf_index"].as_u64().unwrap()).max().unwrap() + 1;
    let cp = wait_until("a checkpoint covering the new deposit", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&c.cli(&p, &["checkpoint"]).stdout).ok()?;
        (v["size"].as_u64()? >= size).then_some(v)
    });
    let signers: Vec<&str> = cp["signers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(signers.len(), 2, "{signers:?}");
    assert!(!signers.iter().any(|s| s.ends_with(&format!("node{victim}"))), "the altered node signed: {signers:?}");
    let log = std::fs::read_to_string(c.node_dir(victim).join("node.log")).unwrap();
    assert!(log.contains("AUDIT TREE CHECK FAILED"), "the node says so loudly in its log");
}

/// A bundle whose trail holds every record about the item, with the item's
/// first-recorded request, grant and access (fetched for real).
fn bundle_with_an_access(c: &mut Cluster) -> (Bundle, Vec<bundle::TrustedKey>) {
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 300_000, 3);
    let item = c.deposit("alice", &clip, "case-W")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item, "view");
    let out = c.path().join("fetched.mp4");
    c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    let keys = c.pin_keys();
    let bpath = c.path().join("bundle.json");
    let p = c.profile("dave");
    let b = wait_until("a bundle whose checkpoint covers the access", Duration::from_secs(30), || {
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let b: Bundle = bundle::parse(&std::fs::read(&bpath).unwrap()).unwrap();
        b.trail.iter().any(|t| String::from_utf8(BASE64.decode(&t.leaf).unwrap()).unwrap().contains(r#""kind":"access""#)).then_some(b)
    });
    let trusted = bundle::parse_keys(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    (b, trusted)
}

fn failed(b: &Bundle, keys: &[bundle::TrustedKey]) -> Vec<String> {
    bundle::verify(b, keys, None).into_iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[test]
fn a_bundle_that_leaves_out_any_record_of_the_item_is_rejected() {
    let mut c = Cluster::init(3, "");
    let (good, keys) = bundle_with_an_access(&mut c);
    assert!(failed(&good, &keys).is_empty(), "{:?}", bundle::verify(&good, &keys, None));
    let complete = bundle::verify(&good, &keys, None).into_iter().find(|c| c.name == "trail completeness").unwrap();
    assert!(complete.ok && complete.detail.contains(&format!("all {} records", good.trail.len() + 1)), "{complete:?}");
    // Any one trail record left out, the last access above all: not complete.
    for i in 0..good.trail.len() {
        let mut b = good.clone();
        b.trail.remove(i);
        assert!(failed(&b, &keys).contains(&"trail completeness".to_string()), "trail record {i} left out and accepted");
    }
    // A record repeated to make up the count.
    let mut b = good.clone();
    let last = b.trail.pop().unwrap();
    b.trail.push(b.trail[0].clone());
    assert!(failed(&b, &keys).contains(&"trail completeness".to_string()), "a repeated record made up for {}", last.index);
    // The statement of one node alone, or none at all.
    let mut b = good.clone();
    let n = Note::parse(&good.head).unwrap();
    b.head = Note { text: n.text.clone(), signatures: n.signatures[..1].to_vec() }.encode().unwrap();
    assert!(failed(&b, &keys).contains(&"trail completeness".to_string()));
    let mut b = good.clone();
    b.head = String::new();
    assert!(failed(&b, &keys).contains(&"trail completeness".to_string()));
    // A statement that counts fewer records, signed by a majority of keys the court does not trust.
    let mut b = good.clone();
    b.trail.pop();
    let mut text: Vec<String> = n.text.lines().map(str::to_string).collect();
    text[5] = (good.trail.len()).to_string();
    text[6] = b.trail.iter().map(|t| t.index).max().unwrap().to_string();
    let forger = Signer::from_seed(&n.signatures[0].name, &[9; 32]).unwrap();
    b.head = custody::audit::sign_note(&(text.join("\n") + "\n"), &[&forger]).unwrap();
    assert!(failed(&b, &keys).contains(&"trail completeness".to_string()));
    // The nodes' real signatures do not move to another count.
    let mut b = good.clone();
    b.trail.pop();
    let mut forged = Note::parse(&good.head).unwrap();
    forged.text = text.join("\n") + "\n";
    b.head = forged.encode().unwrap();
    assert!(failed(&b, &keys).contains(&"trail completeness".to_string()));
}

/// A vault with a deliberate bug that leaves the last access out of its
/// bundles is caught by the court's check (run with
/// `cargo test --features chaos-mutations --test it omits`).
#[cfg(feature = "chaos-mutations")]
#[test]
fn a_vault_that_omits_the_last_access_from_bundles_is_caught() {
    let mut c = Cluster::init(3, "");
    for id in 1..=3 {
        c.start_mutant(id, "bundle-omits-last-access");
    }
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 300_000, 3);
    let item = c.deposit("alice", &clip, "case-M")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item, "view");
    let out = c.path().join("fetched.mp4");
    c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    let keys = c.pin_keys();
    let bpath = c.path().join("bundle.json");
    // Once a checkpoint covers the access, the mutant's bundle lacks it, and verify says so.
    let v = wait_until("a bundle whose statement counts the access", Duration::from_secs(30), || {
        c.cli_json(&c.profile("dave"), &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let out = Command::new(BIN).args(["--json", "verify", bpath.to_str().unwrap(), "--keys", keys.to_str().unwrap()]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["valid"] == false).then_some(v)
    });
    let bad: Vec<&str> = v["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == false).map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(bad, ["trail completeness"], "{v}");
}
