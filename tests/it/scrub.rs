//! The scrubber finds chunks altered or truncated behind the vault's back,
//! repairs them from healthy replicas, and records each finding.

use std::time::Duration;

use crate::harness::{wait_until, write_clip, Cluster};

#[test]
fn chunks_altered_or_truncated_on_a_stopped_node_are_found_repaired_and_recorded() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 9 << 20, 2);
    let item = c.deposit("alice", &clip, "case-S")["item"].as_str().unwrap().to_string();
    let shown = c.cli_json(&c.profile("alice"), &["show", &item]);
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    wait_until("the victim to hold the item", Duration::from_secs(30), || c.holds_item(victim, &shown["item"]).then_some(()));
    c.kill(victim);
    let names: Vec<String> = shown["item"]["chunks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let flipped = c.chunk_path(victim, &names[0]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&flipped, bytes).unwrap();
    let truncated = c.chunk_path(victim, &names[1]);
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(len / 2).unwrap();
    c.start(victim);
    c.wait_leader(3);

    let out = c.cli(&c.profile("alice"), &["scrub"]);
    assert_eq!(out.status.code(), Some(1), "scrubbing on demand is for administrators");
    let report = c.cli_json(&c.profile("admin"), &["scrub"]);
    assert_eq!(report["corrupt"], 2, "{report}");
    assert_eq!(report["repaired"], 2, "{report}");
    assert_eq!(report["unrepairable"].as_array().unwrap().len(), 0);
    assert!(c.holds_item(victim, &shown["item"]), "the victim's copies are whole again");
    let trail = wait_until("the findings in the item's trail", Duration::from_secs(30), || {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        let n = v["trail"].as_array()?.iter().filter(|t| t["kind"].as_str().unwrap_or("").starts_with("scrub")).count();
        (n == 2).then_some(n)
    });
    assert_eq!(trail, 2);
    // A second pass finds nothing.
    let again = c.cli_json(&c.profile("admin"), &["scrub"]);
    assert_eq!(again["corrupt"], 0);
    assert_eq!(again["missing"], 0);
}

#[test]
fn a_chunk_damaged_on_every_node_is_reported_and_not_served() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 6 << 20, 9);
    let item = c.deposit("alice", &clip, "case-D")["item"].as_str().unwrap().to_string();
    let dir = c.path().join("profiles");
    let p = move |u: &str| dir.join(format!("{u}.toml"));
    let req = c.grant(&item, "view");
    let shown = c.cli_json(&p("alice"), &["show", &item]);
    for id in 1..=3 {
        wait_until("every node to hold the item", Duration::from_secs(30), || c.holds_item(id, &shown["item"]).then_some(()));
    }
    let name = shown["item"]["chunks"][0]["name"].as_str().unwrap().to_string();
    for id in 1..=3 {
        c.kill(id);
        let path = c.chunk_path(id, &name);
        let mut b = std::fs::read(&path).unwrap();
        b[7] ^= 0x10;
        std::fs::write(&path, b).unwrap();
    }
    c.start_all(3);
    c.wait_leader(3);
    let report = c.cli_json(&p("admin"), &["scrub"]);
    assert_eq!(report["corrupt"], 3, "{report}");
    assert_eq!(report["repaired"], 0, "{report}");
    assert!(report["unrepairable"].as_array().unwrap().iter().any(|u| u == name.as_str()), "{report}");
    let st = c.status().unwrap();
    assert!(
        st["members"].as_array().unwrap().iter().any(|m| m["health"]["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w["kind"] == "chunks_damaged" && w["chunks"].as_array().is_some_and(|c| c.iter().any(|c| c == name.as_str()))))),
        "operators see it in cluster status: {st}"
    );
    // Nothing is served as if it were whole.
    let out_file = c.path().join("out.mp4");
    let out = c.cli(&p("bob"), &["fetch", &item, "--request", &req, "--out", out_file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!out_file.exists(), "no partial clip is kept");
}

/// Issue 13 §2: a chunk deleted behind the vault's back on a stopped node was
/// fetched back at start and no record said so. Now the node knows it had
/// held the chunk: the deletion is a finding in the trail, beside the
/// scrubber's finding for a chunk altered on the same node.
#[test]
fn a_chunk_deleted_on_a_stopped_node_is_a_recorded_finding_not_a_silent_repair() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 9 << 20, 4);
    let item = c.deposit("alice", &clip, "case-X")["item"].as_str().unwrap().to_string();
    let shown = c.cli_json(&c.profile("alice"), &["show", &item]);
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    wait_until("the victim to hold the item", Duration::from_secs(30), || c.holds_item(victim, &shown["item"]).then_some(()));
    c.kill(victim);
    let names: Vec<String> = shown["item"]["chunks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    std::fs::remove_file(c.chunk_path(victim, &names[0])).unwrap();
    let altered = c.chunk_path(victim, &names[1]);
    let mut bytes = std::fs::read(&altered).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&altered, bytes).unwrap();
    c.start(victim);
    c.wait_leader(3);
    let findings = |c: &Cluster| -> Vec<serde_json::Value> {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        v["trail"].as_array().unwrap().iter().filter(|t| t["kind"] == "scrub").cloned().collect()
    };
    // The healer fetches the deleted chunk back, and records that it was gone.
    let missing = wait_until("the deletion in the item's trail", Duration::from_secs(60), || {
        let f = findings(&c);
        let m: Vec<_> = f.into_iter().filter(|t| t["found"] == "missing" && t["chunk"] == names[0].as_str()).collect();
        m.iter().any(|t| t["repaired"] == true).then_some(m)
    });
    assert!(missing.iter().all(|t| t["node"] == victim), "{missing:?}");
    // The scrubber finds the altered one.
    let report = c.cli_json(&c.profile("admin"), &["scrub"]);
    assert_eq!(report["corrupt"], 1, "{report}");
    let f = findings(&c);
    assert!(f.iter().any(|t| t["found"] == "corrupt" && t["chunk"] == names[1].as_str() && t["node"] == victim), "{f:?}");
    // The other nodes, which lost nothing, reported nothing.
    assert!(f.iter().all(|t| t["node"] == victim), "{f:?}");
}

#[test]
fn a_chunk_gone_from_every_replica_stays_in_cluster_status_as_an_unrepaired_finding() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 5 << 20, 6);
    let item = c.deposit("alice", &clip, "case-L")["item"].as_str().unwrap().to_string();
    let shown = c.cli_json(&c.profile("alice"), &["show", &item]);
    for id in 1..=3 {
        wait_until("every node to hold the item", Duration::from_secs(30), || c.holds_item(id, &shown["item"]).then_some(()));
    }
    let name = shown["item"]["chunks"][0]["name"].as_str().unwrap().to_string();
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        std::fs::remove_file(c.chunk_path(id, &name)).unwrap();
    }
    c.start_all(3);
    c.wait_leader(3);
    // No replica is left to repair from: every node lists the chunk by name, typed.
    let st = wait_until("every node to list the lost chunk", Duration::from_secs(60), || {
        let st = c.status()?;
        st["members"]
            .as_array()?
            .iter()
            .all(|m| {
                m["health"]["warnings"].as_array().is_some_and(|w| {
                    w.iter().any(|w| w["kind"] == "chunks_lost" && w["chunks"].as_array().is_some_and(|c| c.iter().any(|c| c == name.as_str())))
                })
            })
            .then_some(st)
    });
    // And each node's finding is in the item's trail, unrepaired.
    let trail = wait_until("the three findings in the trail", Duration::from_secs(60), || {
        let v = c.cli_json(&c.profile("alice"), &["show", &item]);
        let f: Vec<_> = v["trail"].as_array()?.iter().filter(|t| t["kind"] == "scrub" && t["chunk"] == name.as_str()).cloned().collect();
        (f.len() >= 3).then_some(f)
    });
    assert!(trail.iter().all(|t| t["found"] == "missing" && t["repaired"] == false), "{trail:?} {st}");
    let mut nodes: Vec<u64> = trail.iter().map(|t| t["node"].as_u64().unwrap()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes, vec![1, 2, 3], "{trail:?}");
}
