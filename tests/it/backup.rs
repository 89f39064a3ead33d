//! Issue 16, backup and restore: a consistent backup of a running cluster,
//! checked offline against pinned keys; the whole cluster lost and restored
//! into new data directories; every item acknowledged before the backup
//! point is fetchable with its proofs, and a monitor holding a checkpoint
//! from before the backup finds the restored log consistent. A damaged
//! backup is refused with a clear error.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{wait_until, write_clip, Cluster, BIN};

fn custody(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("--json").args(args).output().unwrap()
}

#[test]
fn a_lost_cluster_is_restored_from_its_backup_with_items_proofs_and_history() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip1 = c.path().join("clip1.mp4");
    let clip2 = c.path().join("clip2.mp4");
    let sha2 = write_clip(&clip2, 2_500_000, 2);
    write_clip(&clip1, 300_000, 1);
    let item1 = c.deposit("alice", &clip1, "case-B")["item"].as_str().unwrap().to_string();
    let item2 = c.deposit("alice", &clip2, "case-B")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item1, "view");
    c.cli_json(&c.profile("bob"), &["fetch", &item1, "--request", &req, "--out", c.path().join("f1.mp4").to_str().unwrap()]);
    let keys = c.pin_keys();
    // A monitor keeps a checkpoint from before the backup.
    let dave = c.profile("dave");
    let monitor = c.path().join("monitor.json");
    wait_until("a monitored checkpoint", Duration::from_secs(30), || {
        c.cli(&dave, &["monitor", "--state", monitor.to_str().unwrap()]).status.success().then_some(())
    });

    // The backup, of the running cluster; a second run into the same directory is refused.
    let dir = c.path().join("backup");
    let admin = c.profile("admin");
    let b = c.cli_json(&admin, &["backup", "--out", dir.to_str().unwrap()]);
    crate::json::Schemas::new().output("backup", &b);
    assert_eq!((b["items"].as_u64(), &b["chunks_fetched"]), (Some(2), &b["chunks"]), "every chunk fetched on a first run: {b}");
    assert!(b["chunks"].as_u64().unwrap() >= 2, "{b}");
    assert_eq!(c.cli(&admin, &["backup", "--out", dir.to_str().unwrap()]).status.code(), Some(2));
    // Only an administrator takes one.
    let refused = c.cli(&c.profile("alice"), &["backup", "--out", c.path().join("b2").to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    // It holds no plaintext: no file of the backup contains the clip's first bytes.
    let head = &std::fs::read(&clip2).unwrap()[..64];
    for e in walk(&dir) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(!bytes.windows(head.len()).any(|w| w == head), "{} holds plaintext", e.display());
    }
    let v = custody(&["backup", "verify", dir.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&v.stdout).unwrap();
    crate::json::Schemas::new().output("backup verify", &report);
    assert_eq!((v.status.code(), &report["valid"]), (Some(0), &Value::Bool(true)), "{report:#}");

    // Acknowledged after the backup point: not in it.
    let clip3 = c.path().join("clip3.mp4");
    write_clip(&clip3, 1000, 3);
    c.deposit("alice", &clip3, "case-late");

    // The whole cluster is lost; new data directories are written from the backup.
    for id in 1..=3 {
        c.kill(id);
        std::fs::remove_dir_all(c.node_dir(id).join("data")).unwrap();
    }
    for id in 1..=3 {
        let cfg = c.node_dir(id).join("node.toml");
        let out = custody(&["restore", dir.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        crate::json::Schemas::new().output("restore", &r);
        // Twice is refused: restore writes only a new data directory.
        assert_eq!(custody(&["restore", dir.to_str().unwrap(), "--config", cfg.to_str().unwrap()]).status.code(), Some(2));
    }
    c.start_all(3);
    c.wait_leader(3);
    let items = c.items(&c.profile("bob"));
    let ids: Vec<&str> = items.iter().map(|i| i["item"].as_str().unwrap()).collect();
    assert_eq!(ids, [item1.as_str(), item2.as_str()], "the items acknowledged before the backup, and only those");

    // Fetchable: a new grant, a fetch, the deposited bytes.
    let req = c.grant(&item2, "view");
    let out = c.path().join("f2.mp4");
    c.cli_json(&c.profile("bob"), &["fetch", &item2, "--request", &req, "--out", out.to_str().unwrap()]);
    assert_eq!(hex::encode(custody::crypto::sha256(&std::fs::read(&out).unwrap())), sha2);
    // With its proofs: the bundle verifies against the keys pinned before the loss.
    let bpath = c.path().join("bundle.json");
    wait_until("a valid bundle after the restore", Duration::from_secs(60), || {
        c.cli(&dave, &["proof", &item1, "--out", bpath.to_str().unwrap()]).status.success().then_some(())?;
        custody(&["verify", bpath.to_str().unwrap(), "--keys", keys.to_str().unwrap()]).status.success().then_some(())
    });
    // And the monitor's checkpoint from before the backup is consistent with the restored log.
    let m = wait_until("the monitor after the restore", Duration::from_secs(60), || {
        let out = c.cli(&dave, &["monitor", "--state", monitor.to_str().unwrap()]);
        out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(m["consistent"], true, "{m}");

    // A damaged backup: one chunk's bytes changed. Verify says so, restore refuses.
    let chunk = walk(&dir.join("chunks")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&chunk, bytes).unwrap();
    let v = custody(&["backup", "verify", dir.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v.status.code(), Some(1), "{report:#}");
    let failed: Vec<&str> = report["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == false).map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(failed, ["chunks"], "{report:#}");
    let fresh = c.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let cfg = std::fs::read_to_string(c.node_dir(1).join("node.toml"))
        .unwrap()
        .replace("data_dir = \"data\"", &format!("data_dir = \"{}\"", fresh.join("data").display()));
    std::fs::write(c.node_dir(1).join("node-fresh.toml"), cfg).unwrap();
    let out = custody(&["restore", dir.to_str().unwrap(), "--config", c.node_dir(1).join("node-fresh.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not hash to its name"), "{}", String::from_utf8_lossy(&out.stdout));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
