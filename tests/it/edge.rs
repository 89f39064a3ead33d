//! Limits at the edge (limits.rs): a certificate holder cannot take all of a
//! node's connections, nor hold one open without sending a request; each
//! limit answers clearly, and other clients are served meanwhile.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Cluster;

/// `GET /healthz` on an open connection; the status line and the body.
async fn healthz<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(tls: &mut S) -> (u16, String) {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    (text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn one_peer_cannot_take_every_connection_nor_hold_one_without_a_request() {
    let mut c = Cluster::init(1, "");
    c.start_all(1);
    c.wait_leader(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Every connection one certificate may have, held open.
        let mut held = Vec::new();
        for _ in 0..custody::limits::MAX_CONNECTIONS_PER_PEER {
            held.push(c.connect_as("dave", 1).await);
        }
        // One more for it: a clear answer, then closed.
        let mut over = c.connect_as("dave", 1).await;
        let (status, body) = healthz(&mut over).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("urn:custody:too-many-connections"), "{body}");
        // Another certificate is served meanwhile.
        let (status, body) = healthz(&mut c.connect_as("alice", 1).await).await;
        assert_eq!(status, 200, "{body}");
        // One given back: the first certificate is served again.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = healthz(&mut c.connect_as("dave", 1).await).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "a connection given back was not reused");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(held);

        // Half a request head, then nothing: closed after the header timeout, while others are served.
        let mut slow = c.connect_as("dave", 1).await;
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let started = Instant::now();
        let (status, _) = healthz(&mut c.connect_as("alice", 1).await).await;
        assert_eq!(status, 200);
        let mut buf = Vec::new();
        let limit = Duration::from_secs(custody::limits::HEADER_READ_TIMEOUT_SECS + 10);
        let read = tokio::time::timeout(limit, slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a connection that never finished its request head stayed open over {limit:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(custody::limits::HEADER_READ_TIMEOUT_SECS - 1), "closed after {waited:?}, before the timeout");
    });
}

/// A raw request on a new connection: the status, the content type and the body.
fn raw(c: &Cluster, head: &str, body: &[u8]) -> (u16, String, String) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let mut tls = c.connect_as("alice", 1).await;
        tls.write_all(format!("{head}content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes()).await.unwrap();
        tls.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let ctype = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string)).unwrap_or_default();
        (status, ctype, body.to_string())
    })
}

#[test]
fn malformed_requests_answer_a_problem_document_like_every_other_error() {
    let mut c = Cluster::init(1, "");
    c.start_all(1);
    c.wait_leader(1);
    let token = c.token("alice");
    let post = |ctype: &str, body: &[u8]| {
        raw(&c, &format!("POST /v1/requests HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: {ctype}\r\n"), body)
    };
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(custody::limits::MAX_JSON_BODY_BYTES));
    for (what, (status, ctype, body), want_status, want_type) in [
        ("not JSON", post("application/json", b"{not json"), 400, "bad-request"),
        ("another shape", post("application/json", br#"{"request": 7}"#), 400, "bad-request"),
        ("too deep", post("application/json", deep.as_bytes()), 400, "bad-request"),
        ("too large", post("application/json", big.as_bytes()), 413, "too-large"),
        ("no JSON content type", post("text/plain", b"{}"), 415, "unsupported-media-type"),
        ("an unknown route", raw(&c, "GET /v1/nowhere HTTP/1.1\r\nhost: x\r\n", b""), 404, "not-found"),
    ] {
        assert_eq!(status, want_status, "{what}: {body}");
        assert_eq!(ctype, "application/problem+json", "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
        assert_eq!(v["type"], format!("urn:custody:{want_type}"), "{what}: {v}");
        assert_eq!(v["status"], want_status, "{what}");
    }
}
