//! `custody bench` runs every phase and reports every figure SPEC §4 names.
//! Sizes are tiny (`--quick`), so nothing here asserts a speed: the figures
//! themselves come from a full run (README, Performance).

use std::process::Command;

use serde_json::Value;

use crate::harness::BIN;

#[test]
fn bench_reports_every_figure_of_spec_section_4() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["bench", "--quick", "--json", "--memory-mib", "64", "--records-secs", "2", "--clients", "8", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "bench failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for path in [
        "deposit.mb_per_sec",
        "deposit.limit_mb_per_sec",
        "deposit.ratio_to_limit",
        "fetch.mb_per_sec",
        "fetch.release_ms",
        "key_release.release_median_ms",
        "key_release.release_p90_ms",
        "key_release.record_median_ms",
        "court_bundle.bundle_bytes",
        "court_bundle.verify_median_ms",
        "memory.peak_rss_mib",
        "small_records.per_sec",
        "small_records.warmup_secs",
        "proofs.inclusion_us",
        "proofs.consistency_us",
        "verify.bundle_ms",
        "machine.aes_gcm_mb_per_sec",
        "machine.sha256_mb_per_sec",
        "machine.disk_limit_mb_per_sec",
        "machine.disk_read_mb_per_sec",
        "recovery.join_secs",
    ] {
        let v = path.split('.').fold(&r, |v, k| &v[k]);
        assert!(v.as_f64().is_some_and(|x| x > 0.0), "{path} is {v}");
    }
    // The test-only mutations are never compiled into the binary under test.
    assert_eq!(r["chaos_mutations_compiled"], false);
    let sr = &r["small_records"];
    // Every kind of small record was committed: the whole two-person cycle ran, fetch included.
    for kind in ["requests", "approvals", "accesses"] {
        assert!(sr[kind].as_u64() > Some(0), "no {kind}: {sr}");
    }
    assert_eq!(sr["errors"], 0, "{sr}");
    assert!(sr["leaves"].as_u64() >= sr["requests"].as_u64(), "the audit log grew by fewer leaves than requests were filed: {sr}");
    // The ratio is the figure over the lower of the two limits.
    let d = &r["deposit"];
    let lower = r["machine"]["crypto_limit_mb_per_sec"].as_f64().unwrap().min(r["machine"]["disk_limit_mb_per_sec"].as_f64().unwrap());
    assert!((d["limit_mb_per_sec"].as_f64().unwrap() - lower).abs() < 1e-6);
    assert!((d["ratio_to_limit"].as_f64().unwrap() - d["mb_per_sec"].as_f64().unwrap() / lower).abs() < 1e-9);
    // So is the fetch's, over the lower of its crypto passes and the disk's read.
    let fe = &r["fetch"];
    let lower = r["machine"]["fetch_crypto_limit_mb_per_sec"].as_f64().unwrap().min(r["machine"]["disk_read_mb_per_sec"].as_f64().unwrap());
    assert!((fe["limit_mb_per_sec"].as_f64().unwrap() - lower).abs() < 1e-6, "{fe}");
    assert!((fe["ratio_to_limit"].as_f64().unwrap() - fe["mb_per_sec"].as_f64().unwrap() / lower).abs() < 1e-9);
    assert!(fe["limited_by"] == "crypto" || fe["limited_by"] == "disk", "{fe}");
    // The working directory is gone unless --keep.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "bench left files behind");
}
