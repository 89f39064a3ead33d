//! Art. 17–18 access end to end: two officers and an approver, each signing
//! with their own key; the access record committed before any byte is served.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{write_clip, Cluster};

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap()
}

#[test]
fn two_officers_and_an_approver_grant_a_retrieval_and_every_step_is_recorded() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    let sha = write_clip(&clip, 9_000_001, 3);
    let item = c.deposit("alice", &clip, "case-A")["item"].as_str().unwrap().to_string();
    let p = |u: &str| c.profile(u);
    let req_args = ["request", &item, "--action", "retrieve", "--purpose", "trial LN-7", "--approval-doc", "APP-2026-17", "--with", "bob"];

    // One officer alone cannot ask (art. 18(1)); a court clerk cannot take part.
    assert_eq!(
        c.cli(&p("alice"), &["request", &item, "--action", "view", "--purpose", "x", "--approval-doc", "d", "--with", "alice"]).status.code(),
        Some(2)
    );
    assert_eq!(
        c.cli(&p("alice"), &["request", &item, "--action", "view", "--purpose", "x", "--approval-doc", "d", "--with", "dave"]).status.code(),
        Some(1)
    );

    let filed = c.cli_json(&p("alice"), &req_args);
    let req = filed["request"].as_str().unwrap().to_string();
    assert_eq!(status(&filed), "pending");
    let out = c.path().join("out.mp4");
    let fetch = |user: &str| c.cli(&p(user), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    assert_eq!(fetch("alice").status.code(), Some(1), "no bytes before the grant");
    // The approver first: still pending until every participant signed.
    assert_eq!(status(&c.cli_json(&p("carol"), &["approve", &req, "--yes"])), "pending");
    // Someone who is neither participant nor approver cannot sign.
    assert_eq!(c.cli(&p("dave"), &["approve", &req, "--yes"]).status.code(), Some(1));
    // A participant cannot sign twice.
    assert_eq!(c.cli(&p("alice"), &["approve", &req, "--yes"]).status.code(), Some(1));
    // Nobody signs blind: without a terminal and without --yes, approve shows the request and signs nothing.
    let blind = c.cli(&p("bob"), &["approve", &req]);
    assert_eq!(blind.status.code(), Some(2));
    let shown = String::from_utf8_lossy(&blind.stderr);
    for what in ["trial LN-7", "APP-2026-17", "alice, bob", "retrieve", "fetches:       1"] {
        assert!(shown.contains(what), "approve did not show {what}: {shown}");
    }
    assert_eq!(status(&c.cli_json(&p("bob"), &["approve", &req, "--yes"])), "granted");

    // Only participants fetch; the clip arrives whole and checked.
    assert_eq!(fetch("dave").status.code(), Some(1));
    assert_eq!(fetch("carol").status.code(), Some(1), "the approver is not a participant");
    let got = c.cli_json(&p("bob"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    assert_eq!(got["sha256"], sha.as_str());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&clip).unwrap());
    // The grant allowed one fetch (the default): a second one is refused.
    assert_eq!(fetch("bob").status.code(), Some(1), "a one-fetch grant served twice");
    // The trail as a program reads it: typed fields, kinds exactly the records' kinds.
    let shown = c.cli_json(&p("dave"), &["show", &item]);
    let trail = shown["trail"].as_array().unwrap();
    for t in trail {
        assert!(t["leaf_index"].is_u64(), "{t}");
        assert!(t["time"].as_str().is_some_and(|s| s.starts_with("20") && s.ends_with('Z')), "{t}");
        assert!(t.get("who").is_none() && t.get("detail").is_none(), "prose fields in {t}");
    }
    let kinds: Vec<&str> = trail.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["deposit", "request", "approval", "approval", "grant", "access"], "{trail:?}");
    let grant = &trail[4];
    assert_eq!(grant["purpose"], "trial LN-7");
    assert_eq!(grant["approver"], "carol");
    assert_eq!(grant["officers"], serde_json::json!(["alice", "bob"]));
    assert_eq!(trail[5]["by"], "bob");
    assert_eq!(trail[5]["fetch"], 1);
    assert_eq!(trail[0]["size"], 9_000_001);
    // The grant is for this item only.
    let other = c.deposit("alice", &clip, "case-B")["item"].as_str().unwrap().to_string();
    assert_eq!(c.cli(&p("bob"), &["fetch", &other, "--request", &req, "--out", out.to_str().unwrap()]).status.code(), Some(1));

    // The custody trail in the proof bundle: request, approvals, grant, access — each provable.
    let bpath = c.path().join("bundle.json");
    let keys = c.pin_keys();
    let trail_kinds = crate::harness::wait_until("a bundle whose checkpoint covers the access", Duration::from_secs(30), || {
        c.cli_json(&p("dave"), &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let v = c.cli_json(&p("dave"), &["verify", bpath.to_str().unwrap(), "--keys", keys.to_str().unwrap()]);
        let names: Vec<String> = v["checks"].as_array()?.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        (v["valid"] == true && names.iter().any(|n| n.contains("access"))).then_some(names)
    });
    for kind in ["request", "approval", "grant", "access"] {
        assert!(trail_kinds.iter().any(|n| n.contains(kind)), "trail lacks {kind}: {trail_kinds:?}");
    }
    assert!(trail_kinds.iter().any(|n| n.starts_with("approval signature")), "approval signatures checked offline: {trail_kinds:?}");
}

#[test]
fn a_fetch_cut_off_after_the_headers_still_left_its_access_record() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 20 << 20, 4);
    let item = c.deposit("alice", &clip, "case-C")["item"].as_str().unwrap().to_string();
    let p = |u: &str| c.profile(u);
    let req = c.grant(&item, "view");
    let leaf = crate::keys::record_access(&c, "bob", leader, &item, &req);
    // Read only the head of the sealed stream, then hang up.
    let token = c.token("bob");
    let head = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = c.connect_as("bob", leader).await;
        let r = format!("GET /v1/items/{item}/sealed?access={leaf} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n");
        tls.write_all(r.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tls.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The record is committed: it is in the log, whatever happened to the bytes.
    let bpath = c.path().join("b.json");
    let bundle = crate::harness::wait_until("a bundle with the access record", Duration::from_secs(30), || {
        c.cli_json(&p("dave"), &["proof", &item, "--out", bpath.to_str().unwrap()]);
        let b: Value = serde_json::from_str(&std::fs::read_to_string(&bpath).unwrap()).unwrap();
        b["trail"].as_array()?.iter().any(|t| t["index"] == leaf).then_some(b)
    });
    assert!(bundle["trail"].as_array().unwrap().iter().any(|t| t["index"] == leaf));
    // Without a recorded access by the asker, not even the sealed bytes go out.
    let (status, body) =
        crate::keys::request(&c, "alice", leader, "GET", &format!("/v1/items/{item}/sealed?access={leaf}"), &c.token("alice"), &Value::Null);
    assert_eq!(status, 403, "{body}");
}

#[test]
fn a_grant_forms_correctly_when_the_leader_is_killed_between_approvals() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    let leader = c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 100_000, 5);
    let item = c.deposit("alice", &clip, "case-K")["item"].as_str().unwrap().to_string();
    let dir = c.path().join("profiles");
    let p = move |u: &str| dir.join(format!("{u}.toml"));
    let req = c.cli_json(&p("alice"), &["request", &item, "--action", "copy", "--purpose", "appeal", "--approval-doc", "D-9", "--with", "bob"])
        ["request"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&c.cli_json(&p("bob"), &["approve", &req, "--yes"])), "pending");
    c.kill(leader);
    let other = (1..=3).find(|id| *id != leader).unwrap();
    c.wait_new_leader(leader, other);
    // The signatures gathered before the failover still count; the approver completes the grant.
    assert_eq!(status(&c.cli_json(&p("carol"), &["approve", &req, "--yes"])), "granted");
    c.start(leader);
    let out = c.path().join("out.mp4");
    let got = c.cli_json(&p("alice"), &["fetch", &item, "--request", &req, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&clip).unwrap());
    assert!(got["access_leaf"].as_u64().is_some());
}

#[test]
fn retention_only_grows_and_a_legal_hold_needs_an_approver_to_release() {
    let mut c = Cluster::init(3, "");
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 1000, 6);
    let dep = c.deposit("alice", &clip, "case-H");
    let item = dep["item"].as_str().unwrap().to_string();
    let p = |u: &str| c.profile(u);
    assert_eq!(c.cli(&p("alice"), &["extend", &item, "--retention", "standard"]).status.code(), Some(1), "not longer: refused");
    let ext = c.cli_json(&p("alice"), &["extend", &item, "--retention", "important"]);
    assert!(ext["retain_until"].as_str().unwrap() > dep["retain_until"].as_str().unwrap());
    assert_eq!(c.cli(&p("admin"), &["extend", &item, "--retention", "standard"]).status.code(), Some(1), "shortening is refused, even for an admin");
    assert_eq!(c.cli(&p("dave"), &["hold", &item, "--reason", "x"]).status.code(), Some(1), "a court clerk does not place holds");
    assert_eq!(c.cli_json(&p("alice"), &["hold", &item, "--reason", "appeal pending"])["hold"], true);
    assert_eq!(c.cli(&p("alice"), &["hold", &item, "--reason", "again"]).status.code(), Some(1));
    assert_eq!(c.cli(&p("alice"), &["release", &item]).status.code(), Some(1), "an officer cannot release a hold");
    assert_eq!(c.cli_json(&p("carol"), &["release", &item])["hold"], false);
    let shown = c.cli_json(&p("alice"), &["show", &item]);
    let kinds: Vec<&str> = shown["trail"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    for k in ["deposit", "retention", "hold"] {
        assert!(kinds.contains(&k), "trail lacks {k}: {kinds:?}");
    }
    assert_eq!(shown["item"]["retention"], "important");
}
