//! Group commit for small records.
//!
//! openraft 0.9 writes (and our log store fsyncs) each client write on its
//! own, so one record per fsync would cap small records at the disk's fsync
//! rate. The proposer instead gathers every batchable command that arrives
//! while earlier proposals are in flight into one `Command::Batch` entry: one
//! log write, one fsync on each node, one replication round for all of them.
//! Under light load a command goes alone and waits for nothing.
//!
//! Each caller still gets its own command's outcome, and a command is
//! acknowledged only when the entry carrying it is committed and applied.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::limits;
use crate::raft::{NodeId, Raft};
use crate::vault::{Command, Outcome};

pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;
type Waiter = (Command, oneshot::Sender<Result<Outcome, WriteError>>);

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Proposes `cmd` and waits until it is committed and applied. Commands
    /// that cannot be batched go to Raft directly.
    pub async fn propose(&self, raft: &Raft, cmd: Command) -> Result<Outcome, WriteError> {
        if !cmd.batchable() {
            return raft.client_write(cmd).await.map(|r| r.data);
        }
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((cmd, _))) = self.tx.send((cmd, tx)) {
            return raft.client_write(cmd).await.map(|r| r.data);
        }
        match rx.await {
            Ok(r) => r,
            // The batching task is gone only when the node is stopping.
            Err(_) => Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
        }
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let slots = Arc::new(Semaphore::new(limits::PROPOSALS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: whatever queues meanwhile joins this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < limits::MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write_batch(&raft, batch).await;
            drop(slot);
        });
    }
}

async fn write_batch(raft: &Raft, mut batch: Vec<Waiter>) {
    if batch.len() == 1 {
        let (cmd, tx) = batch.pop().expect("one waiter");
        let _ = tx.send(raft.client_write(cmd).await.map(|r| r.data));
        return;
    }
    let (commands, waiters): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
    let n = commands.len();
    match raft.client_write(Command::Batch { commands }).await {
        Ok(resp) => match resp.data {
            Outcome::Batch { outcomes } if outcomes.len() == n => {
                for (tx, out) in waiters.into_iter().zip(outcomes) {
                    let _ = tx.send(Ok(out));
                }
            }
            other => {
                // Cannot happen: apply answers a batch with one outcome per command.
                tracing::error!(?other, n, "a batch came back without one outcome per command");
                for tx in waiters {
                    let _ = tx.send(Err(RaftError::Fatal(openraft::error::Fatal::Panicked)));
                }
            }
        },
        Err(e) => {
            for tx in waiters {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
