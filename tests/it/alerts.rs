//! Issue 16, alerts (art. 14(3)): a suspicious event reaches the configured
//! webhook once, is retried until the webhook takes it, and a webhook that is
//! down never holds up a deposit; `cluster status` shows the deliveries.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_ports, wait_until, write_clip, Cluster};

/// A webhook on loopback that answers 500 to the first `fail_first`
/// requests, then 200, and keeps the bodies it accepted.
struct Receiver {
    port: u16,
    accepted: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<u32>>,
}

impl Receiver {
    fn start(fail_first: u32) -> Receiver {
        let port = free_ports(1);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (acc, refs) = (accepted.clone(), refused.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then the body by its content-length.
                let body = loop {
                    let Ok(n) = s.read(&mut chunk) else { break None };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(at) = text.find("\r\n\r\n") {
                        let len: usize = text[..at]
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if buf.len() >= at + 4 + len {
                            break Some(buf[at + 4..at + 4 + len].to_vec());
                        }
                    }
                };
                let Some(body) = body else { continue };
                let mut r = refs.lock().unwrap();
                if *r < fail_first {
                    *r += 1;
                    let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    continue;
                }
                drop(r);
                acc.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Receiver { port, accepted, refused }
    }

    fn alerts(&self, kind: &str) -> Vec<Value> {
        self.accepted.lock().unwrap().iter().filter(|a| a["alert"]["kind"] == kind).cloned().collect()
    }
}

fn alerts_status(c: &Cluster, via: u64) -> Option<Value> {
    let out = c.cli(&c.node_profile("admin", via), &["cluster", "status"]);
    let st: Value = serde_json::from_slice(&out.stdout).ok()?;
    crate::json::Schemas::new().output("cluster status", &st);
    Some(st["alerts"].clone()).filter(|a| a.is_object())
}

#[test]
fn a_lost_member_is_alerted_once_after_retries_and_a_dead_webhook_holds_nothing_up() {
    let hook = Receiver::start(2);
    let mut c = Cluster::init(3, &format!("[alerts]\nwebhook = \"http://127.0.0.1:{}/hook\"\nunreachable_after_secs = 2\n", hook.port));
    c.start_all(3);
    let leader = c.wait_leader(3);
    let lost = (1..=3).find(|id| *id != leader).unwrap();
    c.kill(lost);
    // Refused twice, then taken: delivered once, with its typed fields.
    let got = wait_until("the member_unreachable alert", Duration::from_secs(60), || {
        let a = hook.alerts("member_unreachable");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(*hook.refused.lock().unwrap(), 2, "the webhook's two refusals were retried");
    let a = &got[0];
    crate::json::Schemas::new().shape("AlertDelivery", a, "webhook body");
    assert_eq!(a["alert"]["node"].as_u64(), Some(lost), "{a}");
    assert!(a["alert"]["since"].as_str().unwrap().ends_with('Z') && a["id"].as_str().unwrap().len() == 32, "{a}");
    // Still down a while later: still one alert for this outage from the node that
    // raised it (a new leader, after an election, would report the outage once too).
    std::thread::sleep(Duration::from_secs(4));
    let from = |n: &Value| hook.alerts("member_unreachable").iter().filter(|x| x["node"] == *n).count();
    assert_eq!(from(&a["node"]), 1, "{:?}", hook.accepted.lock().unwrap());
    let st = alerts_status(&c, leader).unwrap();
    assert!(st["delivered"].as_u64().unwrap() >= 1 && st["pending"] == 0 && st["last_error"].is_null(), "{st}");
    c.start(lost);
    c.wait_leader(3);
}

#[test]
fn a_webhook_that_is_down_holds_up_no_deposit_and_shows_in_status() {
    let dead = free_ports(1);
    let mut c = Cluster::init(3, &format!("[alerts]\nwebhook = \"http://127.0.0.1:{dead}/hook\"\nunreachable_after_secs = 1\n"));
    c.start_all(3);
    let leader = c.wait_leader(3);
    let lost = (1..=3).find(|id| *id != leader).unwrap();
    c.kill(lost);
    let st = wait_until("status to show the undelivered alert", Duration::from_secs(60), || {
        let st = alerts_status(&c, leader)?;
        (st["pending"].as_u64()? >= 1 && st["last_error"].is_string()).then_some(st)
    });
    assert_eq!(st["delivered"], 0, "{st}");
    let clip = c.path().join("clip.mp4");
    write_clip(&clip, 10_000, 1);
    let t = Instant::now();
    c.deposit("alice", &clip, "case-A");
    assert!(t.elapsed() < Duration::from_secs(10), "a deposit waited {:?} with the webhook down", t.elapsed());
}

/// A holder refusing to release its share (no recorded access by the one
/// asking) raises `key_release_refused`, naming the item, the access leaf
/// claimed, who asked and why.
#[test]
fn a_refused_key_release_is_alerted_with_who_asked_and_why() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hook = Receiver::start(0);
    let mut c = Cluster::init(3, &format!("[alerts]\nwebhook = \"http://127.0.0.1:{}/hook\"\n", hook.port));
    c.start_all(3);
    c.wait_leader(3);
    let clip = c.path().join("clip.bin");
    write_clip(&clip, 50_000, 4);
    let item = c.deposit("alice", &clip, "CASE-ALERT")["item"].as_str().unwrap().to_string();
    // Bob, logged in, asks node 1 for its share of alice's item, claiming leaf 1 as his access.
    let token = c.token("bob");
    let body = format!(r#"{{"access_leaf":1,"fetch_key":"{}"}}"#, "11".repeat(32));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = rt.block_on(async {
        let mut tls = c.connect_as("bob", 1).await;
        let req = format!(
            "POST /v1/items/{item}/share HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let got = wait_until("the key_release_refused alert", Duration::from_secs(30), || {
        let a = hook.alerts("key_release_refused");
        (!a.is_empty()).then_some(a)
    });
    let a = &got[0]["alert"];
    crate::json::Schemas::new().shape("AlertDelivery", &got[0], "webhook body");
    assert_eq!((a["item"].as_str(), a["access"].as_u64(), a["by"].as_str()), (Some(item.as_str()), Some(1), Some("bob")), "{a}");
    assert!(!a["reason"].as_str().unwrap().is_empty(), "{a}");
    assert_eq!(got[0]["node"], 1, "{}", got[0]);
}
