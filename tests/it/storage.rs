//! The RocksDB-backed Raft storage: openraft's conformance suite, durability
//! across kill -9, and corrupt snapshots refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use custody::raft::log_store::LogStore;
use custody::raft::state_machine::StateMachineStore;
use custody::raft::{StorageError, TypeConfig};
use custody::storage::Db;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{blank_ent, membership_ent, StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open(dir.path());
        Ok((dir, log, sm))
    }
}

/// The storage suite's snapshots are of states no cluster made: it tests the
/// store, not the check a node makes of a leader's snapshot.
struct AnySnapshot;

impl custody::raft::state_machine::SnapshotGate for AnySnapshot {
    fn check<'a>(
        &'a self,
        _staged: &'a custody::raft::state_machine::StateView,
        _own: &'a custody::raft::state_machine::StateView,
        _meta: &'a custody::raft::SnapshotMeta,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

fn open(dir: &std::path::Path) -> (LogStore, StateMachineStore) {
    let db = Db::open(&dir.join("db")).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let sm = StateMachineStore::open(db.clone(), &dir.join("snapshots"), tx, std::sync::Arc::new(AnySnapshot)).unwrap();
    (LogStore::new(db), sm)
}

#[test]
fn openraft_storage_suite_passes_on_the_rocksdb_store() {
    Suite::test_all(Builder).unwrap();
}

/// The log store keeps the entries appended last in memory; every read of them
/// equals what a store that keeps none reads from RocksDB, after a truncation
/// and a purge too.
#[test]
fn kept_log_entries_read_as_rocksdb_holds_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let mut warm = LogStore::new(db.clone());
        Suite::<TypeConfig, LogStore, StateMachineStore, Builder, tempfile::TempDir>::feed_10_logs_vote_self(&mut warm).await.unwrap();
        let json = |v: Vec<custody::raft::Entry>| v.iter().map(|e| serde_json::to_string(e).unwrap()).collect::<Vec<_>>();
        async fn same(warm: &mut LogStore, db: &Db, json: impl Fn(Vec<custody::raft::Entry>) -> Vec<String>, expect: usize) {
            let mut cold = LogStore::new(db.clone());
            for start in 0..13 {
                for end in start..13 {
                    let (w, c) = (warm.try_get_log_entries(start..end).await.unwrap(), cold.try_get_log_entries(start..end).await.unwrap());
                    assert_eq!(json(w), json(c), "entries {start}..{end}");
                }
                assert_eq!(json(warm.try_get_log_entries(start..).await.unwrap()), json(cold.try_get_log_entries(start..).await.unwrap()));
            }
            assert_eq!(warm.try_get_log_entries(..).await.unwrap().len(), expect);
        }
        same(&mut warm, &db, json, 11).await;
        let at = |index: u64| openraft::LogId::new(openraft::CommittedLeaderId::new(1, 0), index);
        warm.truncate(at(7)).await.unwrap();
        same(&mut warm, &db, json, 7).await;
        warm.purge(at(3)).await.unwrap();
        same(&mut warm, &db, json, 3).await;
    });
}

/// Run as a child process by the test below: writes, says READY, waits to be killed.
#[test]
#[ignore = "helper process for log_and_vote_survive_kill_9"]
fn kill9_writer() {
    let Ok(dir) = std::env::var("CUSTODY_KILL9_DIR") else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut log, mut sm) = open(std::path::Path::new(&dir));
        Suite::<TypeConfig, LogStore, StateMachineStore, Builder, tempfile::TempDir>::feed_10_logs_vote_self(&mut log).await.unwrap();
        sm.apply([membership_ent::<TypeConfig>(1, 1, 1, vec![[1u64, 2, 3].into_iter().collect()]), blank_ent::<TypeConfig>(1, 1, 2)]).await.unwrap();
        println!("READY");
        std::thread::sleep(std::time::Duration::from_secs(600));
    });
}

#[test]
fn log_vote_and_applied_state_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "storage::kill9_writer", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("CUSTODY_KILL9_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.map(|l| l.contains("READY")).unwrap_or(false)), "writer never got ready");
    child.kill().unwrap(); // SIGKILL: no destructors, no flush
    child.wait().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(10), "every appended entry is still there");
        assert_eq!(log.try_get_log_entries(1..11).await.unwrap().len(), 10);
        assert!(log.read_vote().await.unwrap().is_some(), "the vote is still there");
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        assert_eq!(membership.membership().voter_ids().count(), 3);
    });
}

#[test]
fn a_corrupt_or_truncated_snapshot_is_an_error_not_an_empty_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = tempfile::tempdir().unwrap();
        let (_la, mut sa) = open(a.path());
        sa.apply([membership_ent::<TypeConfig>(1, 1, 1, vec![[1u64].into_iter().collect()]), blank_ent::<TypeConfig>(1, 1, 2)]).await.unwrap();
        let snap = sa.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let file = std::fs::read_dir(a.path().join("snapshots"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".snap"))
            .unwrap()
            .path();
        let good = std::fs::read(&file).unwrap();

        for (what, bytes) in [
            ("flipped", {
                let mut b = good.clone();
                let mid = b.len() / 2;
                b[mid] ^= 0x40;
                b
            }),
            ("truncated", good[..good.len() - 10].to_vec()),
            ("empty", Vec::new()),
        ] {
            let b = tempfile::tempdir().unwrap();
            let (_lb, mut sb) = open(b.path());
            let bad = b.path().join("bad.snap");
            std::fs::write(&bad, &bytes).unwrap();
            let f = tokio::fs::File::open(&bad).await.unwrap();
            let res = sb.install_snapshot(&snap.meta, Box::new(f)).await;
            assert!(res.is_err(), "a {what} snapshot was installed");
            assert_eq!(sb.applied_state().await.unwrap().0, None, "a {what} snapshot changed state");
        }
        // The intact one installs.
        let c = tempfile::tempdir().unwrap();
        let (_lc, mut sc) = open(c.path());
        let f = tokio::fs::File::open(&file).await.unwrap();
        sc.install_snapshot(&snap.meta, Box::new(f)).await.unwrap();
        assert_eq!(sc.applied_state().await.unwrap().0.map(|l| l.index), Some(2));
        assert!(sc.get_current_snapshot().await.unwrap().is_some());
    });
}

/// The builder runs beside the state machine worker. A reader asking for the
/// current snapshot while builds replace it must always get a readable file:
/// the record it reads must never name a file a build has just deleted (this
/// once stopped a leader's Raft core while it sent a new node its snapshot).
#[test]
fn the_current_snapshot_stays_readable_while_new_ones_are_built() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = open(dir.path());
        sm.apply([membership_ent::<TypeConfig>(1, 1, 1, vec![[1u64].into_iter().collect()]), blank_ent::<TypeConfig>(1, 1, 2)]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
        let builds = tokio::spawn(async move {
            for _ in 0..150 {
                builder.build_snapshot().await.unwrap();
            }
        });
        let mut reads = 0u32;
        while !builds.is_finished() {
            let snap = sm.get_current_snapshot().await.unwrap_or_else(|e| panic!("read {reads}: {e}"));
            assert!(snap.is_some(), "a built snapshot is current");
            reads += 1;
        }
        builds.await.unwrap();
        assert!(reads > 0);
    });
}
