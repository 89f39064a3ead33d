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
    assert_eq!(out.status.code(), Some(2), "scrubbing on demand is for administrators");
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
