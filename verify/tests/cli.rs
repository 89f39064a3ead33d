//! The `custody-verify` binary's contract without a bundle to hand: usage and
//! unreadable input exit 2 with a typed JSON error (the vault's own tests run
//! it on real bundles from real clusters, tests/it/audit.rs).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_custody-verify");

fn run(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

#[test]
fn unusable_input_is_a_usage_error_not_a_verdict() {
    let dir = std::env::temp_dir().join(format!("custody-verify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, "").unwrap();
    // No --keys at all.
    let (code, v) = run(&["--json", junk.to_str().unwrap()]);
    assert_eq!((code, v["exit_code"].as_u64()), (Some(2), Some(2)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("--keys"), "{v}");
    // A bundle that is not one; a bundle that does not exist.
    let (code, v) = run(&["--json", junk.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{v}");
    let missing = dir.join("missing.json");
    let (code, v) = run(&["--json", missing.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{v}");
    // --min-witnesses without --witness-keys is refused by the parser.
    let out = Command::new(BIN).args([junk.to_str().unwrap(), "--min-witnesses", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
