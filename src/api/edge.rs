//! Limits at the edge (limits.rs; README, "Limits at the edge"): how many
//! connections a node serves, in all and per IP address, and how long a
//! connection may sit without moving a byte. Anyone holding a certificate of
//! the cluster's CA gets this far; none of them can hold the node's
//! connections open forever (slowloris) or take all of them.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER};

/// Which limit a connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Total,
    PerPeer,
}

/// Counts the connections being served.
pub struct Gate {
    total: Arc<Semaphore>,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection admitted: its place is given back when this is dropped.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    ip: IpAddr,
    gate: Arc<Gate>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.gate.per_peer.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Gate { total: Arc::new(Semaphore::new(MAX_CONNECTIONS)), per_peer: Mutex::new(HashMap::new()) })
    }

    /// A place for a connection from `ip`, or which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Over> {
        let mut m = self.per_peer.lock().map_err(|_| Over::Total)?;
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return Err(Over::PerPeer);
        }
        let permit = self.total.clone().try_acquire_owned().map_err(|_| Over::Total)?;
        *n += 1;
        Ok(Admitted { _total: permit, ip, gate: self.clone() })
    }
}

/// An I/O stream that fails with `TimedOut` when a read or a write waits
/// longer than `idle` without a byte moving.
pub struct IdleTimeout<T> {
    inner: T,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, idle: Duration) -> Self {
        IdleTimeout { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)) }
    }

    fn moved(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.idle);
    }

    /// Pending while the deadline has not passed (the timer wakes the task);
    /// the error once it has.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "no byte moved on the connection for too long")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.waited(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.waited(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_stream_that_moves_no_byte_for_too_long_fails_and_one_that_moves_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut s = IdleTimeout::new(a, Duration::from_millis(300));
            // Bytes every 100 ms for a second: never idle for 300 ms.
            let writer = tokio::spawn(async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    b.write_all(b"x").await.unwrap();
                }
                b
            });
            let mut got = [0u8; 10];
            s.read_exact(&mut got).await.expect("a trickle is not idle");
            let _b = writer.await.unwrap();
            // Then nothing: the next read fails with TimedOut after about 300 ms.
            let t = Instant::now();
            let e = s.read(&mut got).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
        });
    }

    #[test]
    fn a_peer_gets_its_share_and_gives_it_back() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = rt.enter();
        let gate = Gate::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Admitted> = (0..MAX_CONNECTIONS_PER_PEER).map(|_| gate.admit(a).unwrap()).collect();
        assert_eq!(gate.admit(a).err(), Some(Over::PerPeer));
        let other = gate.admit(b).expect("another peer is still served");
        drop(held);
        drop(other);
        assert!(gate.per_peer.lock().unwrap().is_empty());
        assert!(gate.admit(a).is_ok());
    }
}
