//! Issue 15: `custody verify` on a real bundle from a real cluster, altered
//! by hand as a forger would. Every alteration must be rejected, and the
//! report must name the check that failed. One cluster makes the bundle for
//! every test here (deposit, a granted request, a fetch, a retention
//! extension and a hold); each test alters its own copy offline.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value;

use crate::harness::{write_clip, Cluster, BIN};

/// A bundle from a real cluster and the verifier keys a court pinned for it.
struct Fixture {
    bundle: Value,
    keys: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut c = Cluster::init(3, "");
        c.start_all(3);
        c.wait_leader(3);
        let clip = c.path().join("clip.mp4");
        write_clip(&clip, 10_000, 3);
        let item = c.deposit("alice", &clip, "case-15")["item"].as_str().unwrap().to_string();
        let req = c.grant(&item, "view");
        let out = c.path().join("fetched.mp4");
        c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
        c.cli_json(&c.profile("alice"), &["extend", &item, "--retention", "important"]);
        c.cli_json(&c.profile("alice"), &["hold", &item, "--reason", "appeal"]);
        let p = c.profile("dave");
        let bpath = c.path().join("bundle.json");
        c.cli_json(&p, &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let keys = c.cli_json(&p, &["cluster", "keys"]);
        let keys: Vec<String> =
            keys["ranges"].as_array().unwrap().iter().map(|r| format!("{} from={}", r["key"].as_str().unwrap(), r["from_size"])).collect();
        let bundle: Value = serde_json::from_slice(&std::fs::read(&bpath).unwrap()).unwrap();
        let kinds: Vec<String> = bundle["trail"].as_array().unwrap().iter().map(|t| leaf(t)["kind"].as_str().unwrap().to_string()).collect();
        assert_eq!(kinds, ["request", "approval", "approval", "grant", "access", "retention", "hold"], "the bundle's trail");
        Fixture { bundle, keys: keys.join("\n") }
    })
}

/// A leaf of the bundle, decoded.
fn leaf(proof: &Value) -> Value {
    serde_json::from_slice(&BASE64.decode(proof["leaf"].as_str().unwrap()).unwrap()).unwrap()
}

/// Runs `custody --json verify` on bundle text and a key file: (exit code, printed JSON).
fn verify_text(bundle: &str, keys: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let (b, k) = (dir.path().join("bundle.json"), dir.path().join("keys.txt"));
    std::fs::write(&b, bundle).unwrap();
    std::fs::write(&k, keys).unwrap();
    run(&b, &k)
}

fn run(bundle: &Path, keys: &Path) -> (i32, Value) {
    let out = Command::new(BIN).args(["--json", "verify"]).arg(bundle).arg("--keys").arg(keys).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

fn verify(bundle: &Value) -> (i32, Value) {
    verify_text(&serde_json::to_string_pretty(bundle).unwrap(), &fixture().keys)
}

/// The names of the checks that failed.
fn failed(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["ok"] == false).map(|c| c["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Verify must answer `valid: false` (exit 1) and name a failed check that `names` accepts.
#[track_caller]
fn rejected_by(what: &str, bundle: &Value, names: impl Fn(&str) -> bool) {
    vector(what, bundle);
    let (code, v) = verify(bundle);
    assert_eq!((code, &v["valid"]), (1, &Value::Bool(false)), "{what}: accepted: {v}");
    let f = failed(&v);
    assert!(f.iter().any(|n| names(n)), "{what}: rejected, but not by the expected check: {f:?}");
}

/// With `CUSTODY_WRITE_VECTORS` set, writes the case to the shared vectors
/// (verify/tests/vectors/bundles/, `cluster-…`): a real cluster's bundle,
/// altered, and the keys pinned for it; `custody-verify`'s own tests add the
/// verdict (run them after this with the variable still set).
fn vector(what: &str, bundle: &Value) {
    if std::env::var_os("CUSTODY_WRITE_VECTORS").is_none() {
        return;
    }
    let v = serde_json::json!({ "description": format!("a real cluster's bundle: {what}"), "keys": fixture().keys.clone() + "\n", "clip_sha256": null,
        "witness_keys": null, "min_witnesses": null, "bundle": bundle });
    let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(40).collect();
    let digest = hex::encode(&custody::crypto::sha256(serde_json::to_string(&v).unwrap().as_bytes())[..4]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify/tests/vectors/bundles");
    std::fs::write(dir.join(format!("cluster-{}-{digest}.json", slug.trim_matches('-'))), serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
}

#[test]
fn the_untouched_bundle_verifies() {
    vector("untouched", &fixture().bundle);
    let (code, v) = verify(&fixture().bundle);
    assert_eq!((code, &v["valid"]), (0, &Value::Bool(true)), "{v}");
}

#[test]
fn item_metadata_that_differs_from_the_logged_records_is_rejected() {
    let good = &fixture().bundle;
    for (field, forged) in [
        ("case", Value::from("case-FORGED")),
        ("depositor", Value::from("bob")),
        ("retain_until", Value::from("2099-01-01T00:00:00Z")),
        ("retention", Value::from("standard")),
        ("system", Value::from("cam-other")),
        ("deposited_at", Value::from("2020-01-01T00:00:00Z")),
        ("note", Value::from("added")),
    ] {
        let mut b = good.clone();
        b["item"][field] = forged;
        rejected_by(&format!("item {field} changed"), &b, |n| n == format!("item {field}"));
    }
    let mut b = good.clone();
    b["item"]["hold_reason"] = Value::from("none");
    rejected_by("an unknown item field", &b, |n| n == "item fields");
}

#[test]
fn a_grant_without_its_approvers_signatures_in_the_bundle_is_rejected() {
    let good = &fixture().bundle;
    let mut b = good.clone();
    b["approvals"] = Value::Array(vec![]);
    rejected_by("approvals emptied", &b, |n| n.ends_with("grant signatures"));
    // Only the approver's entry (carol) removed.
    let mut b = good.clone();
    b["approvals"].as_array_mut().unwrap().retain(|a| a["signer"] != "carol");
    assert_eq!(b["approvals"].as_array().unwrap().len(), 2);
    rejected_by("the approver's entry removed", &b, |n| n.ends_with("grant signatures") || n.ends_with("approval signature"));
}

#[test]
fn an_access_whose_grant_was_removed_from_the_trail_is_rejected() {
    let mut b = fixture().bundle.clone();
    b["trail"].as_array_mut().unwrap().retain(|t| leaf(t)["kind"] != "grant");
    rejected_by("grant removed", &b, |n| n.ends_with("access grant"));
}

#[test]
fn a_trail_record_twice_or_the_deposit_in_the_trail_is_rejected() {
    let good = &fixture().bundle;
    let trail = good["trail"].as_array().unwrap();
    for (i, t) in trail.iter().enumerate() {
        let mut b = good.clone();
        b["trail"].as_array_mut().unwrap().insert(i + 1, t.clone());
        rejected_by(&format!("trail[{i}] duplicated"), &b, |n| n == "leaves distinct");
    }
    let mut b = good.clone();
    let deposit = serde_json::json!({ "index": good["deposit"]["index"], "leaf": good["deposit"]["leaf"], "inclusion": good["inclusion"] });
    b["trail"].as_array_mut().unwrap().push(deposit);
    rejected_by("the deposit repeated in the trail", &b, |n| n.ends_with("deposit kind"));
}

/// The bundle as pretty JSON with `key: forged` inserted before the first
/// `"key":` after `anchor`: a duplicate key that serde_json would have
/// read as the last one's value.
fn with_duplicate(anchor: &str, key: &str, forged: &str) -> String {
    let text = serde_json::to_string_pretty(&fixture().bundle).unwrap();
    let from = text.find(anchor).unwrap();
    let at = from + text[from..].find(&format!("\"{key}\":")).unwrap();
    format!("{}\"{key}\": {forged},\n    {}", &text[..at], &text[at..])
}

#[test]
fn duplicate_keys_in_the_bundle_or_in_a_leaf_are_rejected() {
    for (anchor, key, forged) in [
        ("\"item\": {", "sha256", "\"0000000000000000000000000000000000000000000000000000000000000000\""),
        ("\"item\": {", "case", "\"case-FORGED\""),
        ("\"approvals\": [", "signer", "\"mallory\""),
        ("\"deposit\": {", "index", "0"),
        ("{", "format", "\"custody-proof-bundle\""),
    ] {
        let text = with_duplicate(anchor, key, forged);
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "the forged text is JSON");
        let (code, v) = verify_text(&text, &fixture().keys);
        assert_eq!(code, 2, "duplicate `{key}` after {anchor}: {v}");
        assert!(v["error"].as_str().unwrap().contains("duplicate key"), "{v}");
    }
    // Inside a leaf: the deposit record with a second `case` (first the forged one).
    let good = &fixture().bundle;
    let text = String::from_utf8(BASE64.decode(good["deposit"]["leaf"].as_str().unwrap()).unwrap()).unwrap();
    let forged = text.replacen("\"case\":", "\"case\":\"case-FORGED\",\"case\":", 1);
    let mut b = good.clone();
    b["deposit"]["leaf"] = Value::from(BASE64.encode(forged));
    rejected_by("a duplicate key in the deposit leaf", &b, |n| n == "deposit record");
}

/// The checkpoint note of the fixture, with the key id of its first signature line changed.
fn with_unknown_key_id(note: &str) -> String {
    let n = custody::audit::Note::parse(note).unwrap();
    let mut sigs = n.signatures.clone();
    sigs[0].key_id[0] ^= 0xff;
    custody::audit::Note { text: n.text, signatures: sigs }.encode().unwrap()
}

#[test]
fn a_signature_line_of_an_unknown_key_id_is_ignored_and_the_others_count() {
    let good = &fixture().bundle;
    let note = good["checkpoint"].as_str().unwrap();
    assert_eq!(custody::audit::Note::parse(note).unwrap().signatures.len(), 3, "three nodes signed");
    let mut b = good.clone();
    b["checkpoint"] = Value::from(with_unknown_key_id(note));
    let (code, v) = verify(&b);
    assert_eq!((code, &v["valid"]), (0, &Value::Bool(true)), "two of three still sign: {v}");
    let detail =
        v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "checkpoint signatures").unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("signed by 2 of the 3 keys"), "{detail}");
    // With two lines of unknown key ids, one signature of three is no majority.
    let n = custody::audit::Note::parse(note).unwrap();
    let mut sigs = n.signatures.clone();
    sigs[0].key_id[0] ^= 0xff;
    sigs[1].key_id[0] ^= 0xff;
    b["checkpoint"] = Value::from(custody::audit::Note { text: n.text, signatures: sigs }.encode().unwrap());
    rejected_by("two unknown key ids", &b, |n| n == "checkpoint signatures");
}

#[test]
fn a_key_listed_twice_in_the_key_file_counts_once() {
    let f = fixture();
    let first = f.keys.lines().next().unwrap();
    let keys = format!("{}\n{first}\n", f.keys);
    let (code, v) = verify_text(&serde_json::to_string_pretty(&f.bundle).unwrap(), &keys);
    assert_eq!((code, &v["valid"]), (0, &Value::Bool(true)), "{v}");
    let detail =
        v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "checkpoint signatures").unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("of the 3 keys"), "counted once: {detail}");
}
