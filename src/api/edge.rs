//! Limits at the edge (limits.rs; README, "Limits at the edge"): how many
//! connections a node serves, in all and per IP address, and how long a
//! connection may sit without moving a byte. Anyone holding a certificate of
//! the cluster's CA gets this far; none of them can hold the node's
//! connections open forever (slowloris) or take all of them.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER};
use crate::tls::PeerIdentity;

/// Which limit a connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Total,
    PerPeer,
}

/// Counts the connections being served: all of them, and per certificate
/// (the identity a handshake proved: a node, or a person or tool).
pub struct Gate {
    total: Arc<Semaphore>,
    per_peer: Mutex<HashMap<PeerIdentity, usize>>,
}

/// A place among all connections, taken at accept (before the handshake).
pub struct Place(#[allow(dead_code)] OwnedSemaphorePermit);

/// A connection admitted for its peer: its place is given back when this is dropped.
pub struct Admitted {
    peer: PeerIdentity,
    gate: Arc<Gate>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.gate.per_peer.lock() {
            if let Some(n) = m.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.peer);
                }
            }
        }
    }
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Gate { total: Arc::new(Semaphore::new(MAX_CONNECTIONS)), per_peer: Mutex::new(HashMap::new()) })
    }

    /// A place among all connections, or `Over::Total`.
    pub fn place(&self) -> Result<Place, Over> {
        self.total.clone().try_acquire_owned().map(Place).map_err(|_| Over::Total)
    }

    /// A place for one more connection of `peer`, or `Over::PerPeer`.
    pub fn admit(self: &Arc<Self>, peer: &PeerIdentity) -> Result<Admitted, Over> {
        let mut m = self.per_peer.lock().map_err(|_| Over::PerPeer)?;
        let n = m.entry(peer.clone()).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return Err(Over::PerPeer);
        }
        *n += 1;
        Ok(Admitted { peer: peer.clone(), gate: self.clone() })
    }
}

/// An I/O stream whose writes fail with `TimedOut` when they wait longer
/// than `idle` without a byte going out: a client that stopped reading its
/// answer (a fetch, say) does not hold the connection. Reads are not timed
/// here: a node also reads while a long call runs, only to notice a client
/// that hung up. A request head is timed by hyper (`HEADER_READ_TIMEOUT_SECS`),
/// a body by [`body_idle_timeout`].
pub struct StalledWrites<T> {
    inner: T,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<T> StalledWrites<T> {
    pub fn new(inner: T, idle: Duration) -> Self {
        StalledWrites { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)), waiting: false }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StalledWrites<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StalledWrites<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    this.sleep.as_mut().reset(Instant::now() + this.idle);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client read nothing for too long"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Middleware: a request body that sends no bytes for
/// `CONNECTION_IDLE_TIMEOUT_SECS` ends in an error (the handler then answers
/// or drops the request), so a stalled upload does not hold a deposit open.
pub async fn body_idle_timeout(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = idle_limited(body, Duration::from_secs(crate::limits::CONNECTION_IDLE_TIMEOUT_SECS));
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

/// `body`, ending in a `TimedOut` error once it sends no bytes for `idle`.
fn idle_limited(body: axum::body::Body, idle: Duration) -> axum::body::Body {
    use futures::StreamExt;
    let frames = body.into_data_stream();
    let timed = futures::stream::unfold(Some(frames), move |frames| async move {
        let mut frames = frames?;
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(frames))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(io::Error::new(io::ErrorKind::TimedOut, "the request body sent nothing for too long")), None)),
        }
    });
    axum::body::Body::from_stream(timed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_write_the_client_never_reads_fails_and_one_it_reads_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(16);
            let mut s = StalledWrites::new(a, Duration::from_millis(300));
            // The reader takes a byte every 50 ms: the writer waits, but never 300 ms.
            let reader = tokio::spawn(async move {
                let mut one = [0u8; 1];
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    b.read_exact(&mut one).await.unwrap();
                }
                b
            });
            s.write_all(&[7u8; 56]).await.expect("a slow reader is not a stalled one");
            let _b = reader.await.unwrap();
            // Then nobody reads: the write that fills the pipe fails after about 300 ms.
            let t = Instant::now();
            let e = s.write_all(&[7u8; 64]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
        });
    }

    /// A body that trickles is read whole; one that stops sending ends in
    /// `TimedOut` after the idle time, so a stalled upload frees its request.
    #[test]
    fn a_stalled_request_body_ends_in_an_error_and_a_slow_one_does_not() {
        use futures::StreamExt;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let idle = Duration::from_millis(300);
            let trickle = futures::stream::iter(0..8u8).then(|i| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, io::Error>(bytes::Bytes::from(vec![i; 10]))
            });
            let got = axum::body::to_bytes(idle_limited(axum::body::Body::from_stream(trickle), idle), usize::MAX).await.unwrap();
            assert_eq!(got.len(), 80);
            // Ten bytes, then nothing, ever.
            let stalled = futures::stream::iter([Ok::<_, io::Error>(bytes::Bytes::from_static(b"0123456789"))]).chain(futures::stream::pending());
            let t = Instant::now();
            let e = axum::body::to_bytes(idle_limited(axum::body::Body::from_stream(stalled), idle), usize::MAX).await.unwrap_err();
            assert!(t.elapsed() >= Duration::from_millis(250) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            assert!(format!("{e:?}").contains("sent nothing for too long"), "{e:?}");
        });
    }

    #[test]
    fn a_peer_gets_its_share_and_gives_it_back() {
        let gate = Gate::new();
        let a = PeerIdentity::User("dave".into());
        let b = PeerIdentity::Node(2);
        let held: Vec<Admitted> = (0..MAX_CONNECTIONS_PER_PEER).map(|_| gate.admit(&a).unwrap()).collect();
        assert_eq!(gate.admit(&a).err(), Some(Over::PerPeer));
        let other = gate.admit(&b).expect("another peer is still served");
        drop(held);
        drop(other);
        assert!(gate.per_peer.lock().unwrap().is_empty());
        assert!(gate.admit(&a).is_ok());
        let places: Vec<Place> = (0..MAX_CONNECTIONS).map(|_| gate.place().unwrap()).collect();
        assert_eq!(gate.place().err(), Some(Over::Total));
        drop(places);
        assert!(gate.place().is_ok());
    }
}
