//! Issue 15: the C2SP tlog-tiles view (`/tlog/...`), checked by an
//! implementation that is not ours: tests/tlog_tiles_check.py downloads the
//! checkpoint, the hash tiles and the entry bundles over mutual TLS with
//! Python's standard library, recomputes the RFC 6962 root from the entries
//! and compares it with the checkpoint's, and checks every tile above level 0
//! against the tiles below.

use std::process::Command;

use serde_json::Value;

use crate::harness::{wait_until, write_clip, Cluster};
use crate::tls::{config, raw_request};

fn check(c: &Cluster, id: u64, cert: &std::path::Path, key: &std::path::Path) -> Result<Value, String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tlog_tiles_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("https://127.0.0.1:{}", c.base_port + id as u16 - 1))
        .arg(c.path().join("certs/ca.pem"))
        .args([cert, key])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn a_python_client_rebuilds_the_checkpoints_root_from_the_tiles_of_every_node() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1 << 16, 3);
    let item = c.deposit("alice", &clip, "case-T")["item"].as_str().unwrap().to_string();
    c.grant(&item, "view");
    let p = c.path().join("profiles");
    let (alice_cert, alice_key) = (p.join("alice.pem"), p.join("alice.key"));
    // Checkpoints follow records within seconds: wait until every node serves one
    // that covers the grant, then check each node as alice (no session) and as a node.
    let mut sizes = Vec::new();
    for id in 1..=3 {
        let seen =
            wait_until("a checkpoint covering the grant", std::time::Duration::from_secs(30), || match check(&c, id, &alice_cert, &alice_key) {
                Ok(v) => Some(v).filter(|v| v["size"].as_u64().unwrap_or(0) > 10),
                Err(e) => {
                    eprintln!("node {id}: {e}");
                    None
                }
            });
        eprintln!("node {id} as alice: {seen}");
        assert!(seen["signatures"].as_u64().unwrap() >= 2, "a majority's cosignatures: {seen}");
        sizes.push(seen["size"].as_u64().unwrap());
        let other = id % 3 + 1;
        let (cert, key) = (c.node_dir(other).join("tls.pem"), c.keys_dir(other).join("tls.key"));
        // A checkpoint published while the client reads makes its "not covered" look stale: read again.
        let seen = wait_until("the tiles checked as a node", std::time::Duration::from_secs(30), || match check(&c, id, &cert, &key) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("node {id} as node {other}: {e}");
                None
            }
        });
        eprintln!("node {id} as node {other}: {seen}");
    }
    assert!(sizes.iter().all(|s| *s > 10), "{sizes:?}");
}

/// `/tlog` needs no session, but is no open door: the checkpoint answers a
/// registered person without a token, with the spec's headers.
#[test]
fn the_tlog_checkpoint_is_plain_text_without_a_session() {
    let mut c = Cluster::init(1, "");
    c.start_all(1);
    c.wait_leader(1);
    let ca = c.path().join("certs/ca.pem");
    let p = c.path().join("profiles");
    let res = wait_until("a published checkpoint", std::time::Duration::from_secs(30), || {
        let cfg = config(&ca, Some((&p.join("alice.pem"), &p.join("alice.key"))));
        let res = raw_request(c.base_port, cfg, "GET /tlog/checkpoint HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".into()).ok()?;
        res.starts_with("HTTP/1.1 200").then_some(res)
    });
    let lower = res.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/plain; charset=utf-8") && lower.contains("cache-control: no-cache"), "{res}");
    assert!(res.contains("\n\u{2014} "), "the note's signature lines: {res}");
    // A person revoked from the registry reads nothing more, session or not.
    let get_as = |user: &str| {
        let cfg = config(&ca, Some((&p.join(format!("{user}.pem")), &p.join(format!("{user}.key")))));
        raw_request(c.base_port, cfg, "GET /tlog/checkpoint HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".into()).unwrap()
    };
    assert!(get_as("dave").starts_with("HTTP/1.1 200"));
    assert_eq!(c.registry_change(&["registry", "revoke", "dave"])["status"], "applied");
    let res = get_as("dave");
    assert!(res.starts_with("HTTP/1.1 403") && res.contains("urn:custody:forbidden"), "{res}");
}
