//! What operators' tools read: `/metrics` (Prometheus text), `/healthz` and
//! `/readyz`, over the cluster's mutual TLS with no session.

use std::time::Duration;

use crate::harness::{wait_until, write_clip, Cluster};

/// `GET path` on node `id` as `user` (their certificate, no token): status and body.
fn get(c: &Cluster, user: &str, id: u64, path: &str) -> (u16, String) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = c.connect_as(user, id).await;
        tls.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    })
}

/// The value of a metric line `name` (with its labels) in a Prometheus text body.
fn value(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn metrics_health_and_readiness_tell_an_operator_what_each_node_sees() {
    let mut c = Cluster::init(3, "");
    // Node 1 logs for a log collector: one JSON object per line.
    c.start_with(1, &["--log-format", "json"]);
    c.start(2);
    c.start(3);
    c.wait_leader(3);
    for id in 1..=3 {
        let (status, body) = wait_until("every node ready", Duration::from_secs(30), || {
            let r = get(&c, "dave", id, "/readyz");
            (r.0 == 200).then_some(r)
        });
        assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
        assert_eq!(get(&c, "dave", id, "/healthz"), (200, r#"{"ok":true}"#.to_string()));
    }
    // A deposit and a fetch, then what the nodes counted.
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 2_000_000, 4);
    let item = c.deposit("alice", &clip, "case-O")["item"].as_str().unwrap().to_string();
    let req = c.grant(&item, "view");
    let out = c.path().join("fetched.mp4");
    c.cli_json(&c.profile("bob"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    let scrapes: Vec<String> = (1..=3)
        .map(|id| {
            let (status, body) = get(&c, "dave", id, "/metrics");
            assert_eq!(status, 200, "{body}");
            assert!(body.ends_with("# EOF\n"), "{body}");
            body
        })
        .collect();
    let sum = |name: &str| scrapes.iter().filter_map(|b| value(b, name)).sum::<f64>();
    assert_eq!(sum("custody_deposited_items_total"), 1.0, "{scrapes:?}");
    assert_eq!(sum("custody_deposited_bytes_total"), 2_000_000.0);
    assert_eq!(sum("custody_raft_is_leader"), 1.0);
    // The leader's commit index: what a majority holds, never past its own log.
    let leader = scrapes.iter().find(|b| value(b, "custody_raft_is_leader") == Some(1.0)).unwrap();
    let commit = value(leader, "custody_raft_commit_index").unwrap();
    assert!(commit > 0.0 && commit <= value(leader, "custody_raft_last_log_index").unwrap(), "{leader}");
    assert!(sum("custody_key_releases_total{outcome=\"granted\"}") >= 2.0, "a threshold of shares was released: {scrapes:?}");
    assert!(sum("custody_fetched_bytes_total") > 2_000_000.0, "sealed bytes served (with tags)");
    for b in &scrapes {
        assert!(value(b, "custody_audit_records").unwrap() > 5.0, "{b}");
        assert_eq!(value(b, "custody_items"), Some(1.0));
        assert_eq!(value(b, "custody_audit_tree_ok"), Some(1.0));
        assert_eq!(value(b, "custody_sealed"), Some(0.0));
    }
    let log = std::fs::read_to_string(c.node_dir(1).join("node.log")).unwrap();
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string() && v["fields"].is_object(), "{line}");
    }
    // Two nodes down: the third is live but not ready (no leader), and says why.
    let leader = c.wait_leader(3);
    let lone = (1..=3).find(|i| *i != leader).unwrap();
    for id in (1..=3).filter(|i| *i != lone) {
        c.kill(id);
    }
    let (status, body) = wait_until("the lone node to be not ready", Duration::from_secs(60), || {
        let r = get(&c, "dave", lone, "/readyz");
        (r.0 == 503).then_some(r)
    });
    assert_eq!(status, 503);
    assert!(body.contains("urn:custody:not-ready") && body.contains("no leader"), "{body}");
    assert_eq!(get(&c, "dave", lone, "/healthz").0, 200, "it still runs");
}
