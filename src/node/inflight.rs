//! Deposits still streaming: their chunks are on disk but no committed
//! manifest names them yet. The orphan collector must leave them alone for as
//! long as the deposit is active, however long the clip — not just for a
//! fixed time after each chunk was written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::evidence::{ChunkName, ItemId};

#[derive(Default)]
pub struct Inflight {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Last time each in-flight deposit wrote a chunk here.
    deposits: HashMap<ItemId, Instant>,
    chunks: HashMap<ChunkName, ItemId>,
}

impl Inflight {
    /// A chunk of deposit `item` was just written here.
    pub fn touch(&self, item: ItemId, chunk: ChunkName) {
        if let Ok(mut s) = self.inner.lock() {
            s.deposits.insert(item, Instant::now());
            s.chunks.insert(chunk, item);
        }
    }

    /// Is `chunk` part of a deposit that wrote a chunk within `grace`?
    pub fn protects(&self, chunk: &ChunkName, grace: Duration) -> bool {
        let Ok(s) = self.inner.lock() else { return true };
        s.chunks.get(chunk).and_then(|item| s.deposits.get(item)).is_some_and(|t| t.elapsed() < grace)
    }

    /// Forgets deposits idle for longer than `grace`.
    pub fn prune(&self, grace: Duration) {
        if let Ok(mut s) = self.inner.lock() {
            s.deposits.retain(|_, t| t.elapsed() < grace);
            let State { deposits, chunks } = &mut *s;
            chunks.retain(|_, item| deposits.contains_key(item));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deposit_protects_all_its_chunks_while_it_is_active() {
        let f = Inflight::default();
        let item = ItemId::from_bytes([1; 16]);
        let first = ChunkName::from_digest([1; 32]);
        let later = ChunkName::from_digest([2; 32]);
        f.touch(item, first);
        std::thread::sleep(Duration::from_millis(30));
        f.touch(item, later);
        // The first chunk is older than the grace, but its deposit is still active.
        assert!(f.protects(&first, Duration::from_millis(20)));
        assert!(!f.protects(&ChunkName::from_digest([3; 32]), Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!f.protects(&first, Duration::from_millis(20)));
        f.prune(Duration::from_millis(20));
        assert!(!f.protects(&later, Duration::from_secs(60)), "pruned deposits protect nothing");
    }
}
