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
