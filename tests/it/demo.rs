//! The README's first command works, as a newcomer would run it.

use std::process::Command;

use crate::harness::BIN;

#[test]
fn custody_demo_passes_every_step() {
    let out = Command::new(BIN).args(["demo", "--json", "--clip-mib", "6"]).output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    crate::json::Schemas::new().output("demo", &v);
    let steps = v["steps"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = steps.iter().filter(|s| s["ok"] != true).collect();
    assert!(failed.is_empty(), "failed demo steps: {failed:?}");
    assert!(out.status.success());
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for n in [
        "deposit a clip",
        "verify the bundle and the clip offline",
        "scrub finds and repairs an altered chunk",
        "fetch with a majority of the holders' shares",
    ] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with("directory alone opens nothing")), "{names:?}");
}
