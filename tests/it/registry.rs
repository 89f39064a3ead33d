//! The replicated registry: administrators only, revocation, and deposits
//! tied to filed source systems (art. 12).

use std::process::Command;

use serde_json::Value;

use std::time::Duration;

use crate::harness::{wait_until, write_clip, Cluster, BIN};

#[test]
fn only_administrators_change_the_registry_and_deposits_need_a_filed_system() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let admin = c.profile("admin");
    let alice = c.profile("alice");

    // The initial registry commits with the cluster's configuration, just after the first election.
    let list = wait_until("the initial registry", Duration::from_secs(30), || {
        let v = c.cli_json(&alice, &["registry", "list"]);
        (v["people"].as_array()?.len() == 6).then_some(v)
    });
    let carol = list["people"].as_array().unwrap().iter().find(|p| p["name"] == "carol").unwrap();
    assert_eq!(carol["roles"], serde_json::json!(["approver"]));

    // An officer may not register a system: a refusal is a negative verdict (exit 1).
    let sys = ["registry", "system", "add", "cam-new", "--filing", "LN-2026-77", "--operator", "Shenyang Metro", "--location", "station"];
    let out = c.cli(&alice, &sys);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // A deposit naming an unfiled system is refused and stores nothing.
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 2000, 1);
    let dep = |system: &str| c.cli(&alice, &["deposit", clip.to_str().unwrap(), "--case", "r", "--system", system, "--retention", "standard"]);
    let out = dep("cam-new");
    assert_eq!(out.status.code(), Some(1), "a refused deposit is a negative verdict: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"), "{}", String::from_utf8_lossy(&out.stderr));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((said["exit_code"].as_u64(), said["problem"].as_str()), (Some(1), Some("urn:custody:not-registered")), "{said}");
    assert!(c.items(&alice).is_empty());
    // The administrator files it; now the deposit goes through.
    let r = c.cli_json(&admin, &sys);
    assert_eq!((r["subject"].as_str(), r["status"].as_str()), (Some("cam-new"), Some("applied")), "one administrator files a system");
    assert!(dep("cam-new").status.success());

    // A new officer with a key made by keygen; then revoked.
    let key_file = c.path().join("erin.signing.key");
    let out = Command::new(BIN).args(["--json", "keygen", "--out"]).arg(&key_file).output().unwrap();
    assert!(out.status.success());
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let public_key = key["public_key"].as_str().unwrap();
    assert_eq!(std::fs::metadata(&key_file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(), 0o600);
    let add = ["registry", "officer", "add", "erin", "--badge", "LN-0099", "--unit", "Heping precinct", "--role", "officer", "--key", public_key];
    assert_eq!(c.cli(&c.profile("bob"), &add).status.code(), Some(1), "an officer cannot register people");
    // One administrator's signature leaves it pending; the proposer's own approval does not count.
    let filed = c.cli_json(&admin, &add);
    assert_eq!(filed["status"], "pending", "{filed}");
    let id = filed["change"].as_str().unwrap().to_string();
    let people = |c: &Cluster| c.cli_json(&alice, &["registry", "list"])["people"].as_array().unwrap().iter().any(|p| p["name"] == "erin");
    assert!(!people(&c), "registered on one administrator's word");
    let out = c.cli(&admin, &["registry", "approve", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "the proposer approved their own change");
    assert!(String::from_utf8_lossy(&out.stderr).contains("proposer"), "{}", String::from_utf8_lossy(&out.stderr));
    // Without --yes and without a terminal, nothing is signed.
    assert_eq!(c.cli(&c.profile("admin2"), &["registry", "approve", &id]).status.code(), Some(2));
    let done = c.cli_json(&c.profile("admin2"), &["registry", "approve", &id, "--yes"]);
    assert_eq!(done["status"], "applied");
    assert!(people(&c));
    assert_eq!(c.cli(&admin, &add).status.code(), Some(1), "a name is registered once");
    // One key, one person: erin's key under a second name is refused.
    let twin = ["registry", "officer", "add", "erin2", "--badge", "LN-0100", "--unit", "Heping precinct", "--role", "officer", "--key", public_key];
    let out = c.cli(&admin, &twin);
    assert_eq!(out.status.code(), Some(1), "a second name on a held key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already registered to erin"), "{}", String::from_utf8_lossy(&out.stderr));
    // Only officers deposit: a court clerk's deposit is refused before any byte is streamed.
    let clip = c.path().join("court.mp4");
    crate::harness::write_clip(&clip, 1000, 1);
    let out = c.cli(&c.profile("dave"), &["deposit", clip.to_str().unwrap(), "--case", "c", "--system", "cam-demo-1", "--retention", "standard"]);
    assert!(!out.status.success(), "a court deposited: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only officers deposit"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.registry_change(&["registry", "revoke", "erin"])["status"], "applied");
    // The last two administrators cannot be removed.
    let out = c.cli(&admin, &["registry", "revoke", "admin2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last two"), "{}", String::from_utf8_lossy(&out.stderr));
    let list = c.cli_json(&alice, &["registry", "list"]);
    let erin = list["people"].as_array().unwrap().iter().find(|p| p["name"] == "erin").unwrap().clone();
    assert_eq!(erin["revoked"], true);

    // Membership changes need the admin role too.
    let out = c.cli(&alice, &["cluster", "remove-node", "--id", "3"]);
    assert_eq!(out.status.code(), Some(1), "refused: a negative verdict");
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin"));
}
