//! Lawful purge: only after retention, never under hold, with a granted purge
//! request; the key and chunks go, the record and its proof stay.

use std::time::Duration;

use crate::harness::{wait_until, write_clip, Cluster};

#[test]
fn purge_is_refused_inside_retention_and_under_hold_and_leaves_a_verifiable_record() {
    let mut c = Cluster::init(3, "dev_retention_secs = 3");
    c.start_all(3);
    c.wait_leader(3);
    let st = wait_until("the dev settings", Duration::from_secs(30), || c.status().filter(|s| s["dev_retention_secs"] == 3));
    assert_eq!(st["dev_retention_secs"], 3, "a dev cluster says so");
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 5 << 20, 8);
    let item = c.deposit("alice", &clip, "case-P")["item"].as_str().unwrap().to_string();
    let p = |u: &str| c.profile(u);
    let req = c.grant(&item, "purge");
    let purge = || c.cli(&p("alice"), &["purge", &item, "--request", &req]);
    let problem = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "refused: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["problem"].as_str().map(str::to_string)
    };
    assert_eq!(problem(purge()).as_deref(), Some("urn:custody:inside-retention"), "inside retention: refused");
    c.cli_json(&p("alice"), &["hold", &item, "--reason", "appeal"]);
    let again = c.cli(&p("alice"), &["hold", &item, "--reason", "appeal"]);
    assert_eq!(problem(again).as_deref(), Some("urn:custody:already-done"), "a second hold: 409, still a refusal (exit 1)");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(problem(purge()).as_deref(), Some("urn:custody:on-hold"), "under hold: refused");
    let shown = c.cli_json(&p("alice"), &["show", &item]);
    for id in 1..=3 {
        assert!(c.holds_item(id, &shown["item"]), "nothing was destroyed by the refused purges");
    }
    c.cli_json(&p("carol"), &["release", &item]);
    let done = c.cli_json(&p("alice"), &["purge", &item, "--request", &req]);
    assert_eq!(done["chunks_destroyed"], 2);
    wait_until("every node to delete the purged chunks", Duration::from_secs(30), || {
        shown["item"]["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ch| (1..=3).all(|id| !c.chunk_path(id, ch["name"].as_str().unwrap()).exists()))
            .then_some(())
    });
    // The record stays and still proves the deposit, now with the purge in its trail.
    let b = c.path().join("b.json");
    let keys = c.pin_keys();
    let names = wait_until("a bundle showing the purge", Duration::from_secs(30), || {
        c.cli_json(&p("dave"), &["proof", &item, "--out", b.to_str().unwrap()]);
        let v = c.cli_json(&p("dave"), &["verify", b.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
        let names: Vec<String> = v["checks"].as_array()?.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        (v["valid"] == true && names.iter().any(|n| n.contains("purge"))).then_some(names)
    });
    assert!(names.iter().any(|n| n == "deposit inclusion"));
    assert_eq!(purge().status.code(), Some(1), "purged once only");
}

/// docs/KEYS.md §6: a leader whose clock runs ahead commits nothing it stamps,
/// the others stop following it, and no item becomes purgeable early. Two hours
/// ahead: past the item's 10-minute dev retention, inside its grant's 24 hours,
/// so a purge stamped by that clock would go through if followers took it.
#[test]
fn a_leader_with_a_clock_hours_ahead_makes_nothing_purgeable_early() {
    let mut c = Cluster::init(3, "dev_retention_secs = 600");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 3 << 20, 5);
    let item = c.deposit("alice", &clip, "case-T")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item, "purge");
    // Through node 2 (node 1's clock will refuse a login): sent on to the leader, whoever it is.
    let alice = c.profile_asking("alice", &[2, 3, 1]);
    let admin = c.profile_asking("admin", &[2, 3]);
    let purge = |c: &Cluster| c.cli(&alice, &["purge", &item, "--request", &req]);
    assert_eq!(purge(&c).status.code(), Some(1), "inside retention: refused");
    for id in 1..=3 {
        c.kill(id);
    }
    c.append_node_config(1, "clock_offset_secs = 7200");
    // Node 1 first: it wins the first election (its log is as long as the others').
    c.start(1);
    std::thread::sleep(Duration::from_secs(2));
    c.start(2);
    c.start(3);
    let refused = |c: &Cluster| {
        (2..=3).any(|id| std::fs::read_to_string(c.node_dir(id).join("node.log")).unwrap_or_default().contains("refusing an entry stamped too far"))
    };
    // Whoever leads meanwhile, the purge never goes through.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        assert_ne!(purge(&c).status.code(), Some(0), "a purge went through inside retention");
    }
    assert!(refused(&c), "node 1 led and the followers refused what it stamped");
    let status = |c: &Cluster| -> Option<serde_json::Value> {
        let out = c.cli(&admin, &["cluster", "status"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    };
    let next = wait_until("a leader other than node 1", Duration::from_secs(60), || status(&c)?["leader"].as_u64().filter(|l| *l != 1));
    assert_ne!(next, 1);
    assert_eq!(purge(&c).status.code(), Some(1), "with honest clocks: still inside retention");
    let shown = c.cli_json(&alice, &["show", &item]);
    for id in 1..=3 {
        assert!(c.holds_item(id, &shown["item"]), "node {id} lost the item's chunks");
    }
    // Every recorded time is an honest one.
    let limit = custody::node::now_ms() / 1000 + 120;
    for t in shown["trail"].as_array().unwrap() {
        let at = time::OffsetDateTime::parse(t["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert!((at.unix_timestamp() as u64) < limit, "a record stamped by the fast clock committed: {t}");
    }
}
