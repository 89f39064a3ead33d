//! The fault proxy: one TCP listener per directed link `i → j` (the
//! connections node `i` opens to node `j`; each node's `[[routes]]` point its
//! outgoing traffic at these listeners). A link passes bytes, delays them,
//! drops connections (refuses new ones and cuts open ones) or blackholes them
//! (accepts and swallows everything). TLS runs end to end through it: the
//! proxy only moves bytes, so it can never forge or read node traffic.
//!
//! Because a request and its answer travel on the connection the requester
//! opened, blocking `i → j` silences whatever `i` asks of `j` (Raft RPCs,
//! chunk pushes, chunk fetches, health probes) while `j` can still ask `i`:
//! that is the one-way partition.
//!
//! The same machinery also gives a client a slow path to one node
//! ([`Throttle`]), so a fetch can be cut off reliably in the middle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does to traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Pass,
    /// Every byte arrives this many milliseconds late (order kept).
    Delay(u64),
    /// New connections are closed at once; open ones are cut.
    Drop,
    /// Connections are accepted and everything sent is swallowed.
    Blackhole,
}

impl LinkState {
    pub fn name(self) -> String {
        match self {
            LinkState::Pass => "pass".into(),
            LinkState::Delay(ms) => format!("delay {ms}ms"),
            LinkState::Drop => "drop".into(),
            LinkState::Blackhole => "blackhole".into(),
        }
    }
}

struct Link {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

/// Every directed link between the nodes `ids` (including nodes that may join later).
pub struct Proxies {
    links: BTreeMap<(u64, u64), Link>,
}

impl Proxies {
    /// Starts a listener for every ordered pair of `ids`; `port_of(j)` is node j's real port.
    pub async fn start(ids: &[u64], port_of: impl Fn(u64) -> u16) -> anyhow::Result<Proxies> {
        let mut links = BTreeMap::new();
        for &from in ids {
            for &to in ids {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let (tx, rx) = watch::channel(LinkState::Pass);
                let target: SocketAddr = ([127, 0, 0, 1], port_of(to)).into();
                let task = tokio::spawn(accept_loop(listener, target, rx, None));
                links.insert((from, to), Link { addr, state: tx, task });
            }
        }
        Ok(Proxies { links })
    }

    /// The address node `from` must use to reach node `to`.
    pub fn addr(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.links.get(&(from, to)).map(|l| l.addr)
    }

    pub fn set(&self, from: u64, to: u64, state: LinkState) {
        if let Some(l) = self.links.get(&(from, to)) {
            l.state.send_replace(state);
        }
    }

    /// Cuts `a` off from `b` in both directions.
    pub fn cut(&self, a: u64, b: u64, state: LinkState) {
        self.set(a, b, state);
        self.set(b, a, state);
    }

    /// Every link back to pass.
    pub fn heal(&self) {
        for l in self.links.values() {
            l.state.send_replace(LinkState::Pass);
        }
    }

    /// Links that are not passing, for the record.
    pub fn describe(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| *l.state.borrow() != LinkState::Pass)
            .map(|((a, b), l)| format!("{a}->{b}: {}", l.state.borrow().name()))
            .collect()
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for l in self.links.values() {
            l.task.abort();
        }
    }
}

/// A slow path for a client: bytes from the node to the client trickle at
/// `bytes_per_sec`, and the proxy reads from the node only as fast as it
/// forwards, so the node's writes back up instead of finishing into buffers.
pub struct Throttle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _state: watch::Sender<LinkState>,
}

impl Throttle {
    pub async fn start(target_port: u16, bytes_per_sec: u64) -> anyhow::Result<Throttle> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(LinkState::Pass);
        let target: SocketAddr = ([127, 0, 0, 1], target_port).into();
        let task = tokio::spawn(accept_loop(listener, target, rx, Some(bytes_per_sec)));
        Ok(Throttle { addr, task, _state: tx })
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<LinkState>, throttle: Option<u64>) {
    // Connection tasks are aborted with the listener, so a healed proxy leaves nothing behind.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        if *state.borrow() == LinkState::Drop {
            drop(inbound);
            continue;
        }
        conns.spawn(connection(inbound, target, state.clone(), throttle));
    }
}

/// Does a change from `was` to `now` break an open connection? Dropping cuts
/// it; bytes a blackhole swallowed can never be delivered, so leaving or
/// entering a blackhole cuts it too.
fn breaks(was: LinkState, now: LinkState) -> bool {
    now == LinkState::Drop || (was == LinkState::Blackhole) != (now == LinkState::Blackhole)
}

async fn connect(target: SocketAddr, small_buffer: bool) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if small_buffer {
        sock.set_recv_buffer_size(16 * 1024)?;
    }
    sock.connect(target).await
}

async fn connection(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>, throttle: Option<u64>) {
    let start_state = *state.borrow_and_update();
    let upstream = match tokio::time::timeout(Duration::from_secs(5), connect(target, throttle.is_some())).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let _ = inbound.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (ur, uw) = upstream.into_split();
    let st = Arc::new(state.clone());
    let mut pumps = tokio::task::JoinSet::new();
    pumps.spawn(pump(ir, uw, st.clone(), None));
    pumps.spawn(pump(ur, iw, st, throttle));
    let mut current = start_state;
    loop {
        tokio::select! {
            done = pumps.join_next() => {
                if done.is_none() {
                    return;
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *state.borrow_and_update();
                if breaks(current, now) {
                    // Dropping the JoinSet aborts both pumps and closes both sockets.
                    return;
                }
                current = now;
            }
        }
    }
}

/// Moves bytes one way. A reader stamps each read with its delivery time and
/// a writer waits for it, so delays keep order and never stall the reader.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<watch::Receiver<LinkState>>,
    throttle: Option<u64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(if throttle.is_some() { 1 } else { 64 });
    // Reader and writer live in this one task, so cutting the connection (aborting the task)
    // closes both sockets at once and nothing queued is delivered afterwards.
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; if throttle.is_some() { 4096 } else { 64 * 1024 }];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let s = *state.borrow();
            let delay = match s {
                LinkState::Pass => 0,
                LinkState::Delay(ms) => ms,
                LinkState::Blackhole => continue,
                LinkState::Drop => break,
            };
            if tx.send((Instant::now() + Duration::from_millis(delay), buf[..n].to_vec())).await.is_err() {
                break;
            }
            if let Some(rate) = throttle {
                tokio::time::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate.max(1))).await;
            }
        }
    };
    tokio::join!(reader, writer);
}
