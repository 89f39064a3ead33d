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
    assert_eq!(purge().status.code(), Some(1), "inside retention: refused");
    c.cli_json(&p("alice"), &["hold", &item, "--reason", "appeal"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(purge().status.code(), Some(1), "under hold: refused");
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
