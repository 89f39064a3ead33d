//! The service files in `cluster/` are what an operator installs: the systemd
//! unit must pass `systemd-analyze verify` (with the binary it names present).

use std::process::Command;

use crate::harness::BIN;

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/custody-node@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/custody "), "the unit starts /usr/local/bin/custody");
    // The unit as installed, with the binary where it names it: this build's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custody-node@1.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/custody ", &format!("{BIN} "))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (Debian package systemd) is installed");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    // A unit that names no binary fails: the check is real.
    std::fs::write(&path, unit.replace("/usr/local/bin/custody ", "/nonexistent/custody ")).unwrap();
    assert!(!Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap().status.success());
}
