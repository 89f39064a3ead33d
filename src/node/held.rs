//! Which chunks this node has held: a durable mark per chunk it stored (as the
//! leader's own copy, from a deposit stream, or fetched by the healer), kept
//! in the node's own RocksDB beside the Raft metadata. A committed chunk that
//! is missing from disk while its mark is present was deleted behind the
//! vault's back: a finding. A chunk without a mark was never received here (the
//! node was down during the deposit, or is new): simply fetched, no finding.

use crate::evidence::ChunkName;
use crate::storage::{Batch, Cf, Db, Durability, StorageError};

const PREFIX: &[u8] = b"held/";

fn key(name: &ChunkName) -> Vec<u8> {
    [PREFIX, name.to_string().as_bytes()].concat()
}

/// Marks `name` as held, fsynced: called once the chunk file is durable.
pub fn mark(db: &Db, name: &ChunkName) -> Result<(), StorageError> {
    let mut b = Batch::default();
    b.put(Cf::Meta, key(name), Vec::new());
    db.write(b, Durability::Fsync)
}

/// Did this node hold `name` once?
pub fn was_held(db: &Db, name: &ChunkName) -> Result<bool, StorageError> {
    Ok(db.get(Cf::Meta, &key(name))?.is_some())
}

/// Forgets `name` (its item was purged, or it was an orphan collected).
pub fn forget(db: &Db, name: &ChunkName) -> Result<(), StorageError> {
    let mut b = Batch::default();
    b.delete(Cf::Meta, key(name));
    db.write(b, Durability::Buffered)
}
