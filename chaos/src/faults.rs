//! The fault injector ("nemesis"): one fault at a time, chosen from the seed,
//! held for a while, then healed. Faults that destroy data on a node (bit
//! flips, truncation, deletion, a wiped data directory) only ever hit one node
//! of a whole cluster, and the next such fault waits until the cluster is
//! whole again: the promise is about a minority, so that is the model.
//!
//! Some faults are aimed at specific bugs (see `chaos/README.md`, mutation
//! check): losing the leader's copy right after an acknowledgement catches a
//! deposit acknowledged before a majority held it; cutting a fetch off after its
//! first bytes catches bytes served before the access record committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::args;
use crate::cluster::Cluster;
use crate::proxy::{LinkState, Proxies, Throttle};
use crate::workload::{Client, OnFirstBytes};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillNode,
    KillAll,
    PauseLeader,
    PauseNode,
    PartitionNode,
    PartitionLeader,
    PartitionBridge,
    PartitionOneWay,
    PartitionHalves,
    LinkDelay,
    LinkFlaky,
    Membership,
    DiskFull,
    CorruptChunks,
    CorruptDb,
    WipeNode,
    AckThenLoseLeader,
    FetchAbort,
    FetchKillServer,
}

impl Fault {
    pub const ALL: [Fault; 20] = [
        Fault::KillLeader,
        Fault::KillNode,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::PauseNode,
        Fault::PartitionNode,
        Fault::PartitionLeader,
        Fault::PartitionBridge,
        Fault::PartitionOneWay,
        Fault::PartitionHalves,
        Fault::LinkDelay,
        Fault::LinkFlaky,
        Fault::Membership,
        Fault::DiskFull,
        Fault::CorruptChunks,
        Fault::CorruptDb,
        Fault::WipeNode,
        Fault::AckThenLoseLeader,
        Fault::FetchAbort,
        Fault::FetchKillServer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillNode => "kill-node",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseNode => "pause-node",
            Fault::PartitionNode => "partition-node",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionOneWay => "partition-one-way",
            Fault::PartitionHalves => "partition-halves",
            Fault::LinkDelay => "link-delay",
            Fault::LinkFlaky => "link-flaky",
            Fault::Membership => "membership",
            Fault::DiskFull => "disk-full",
            Fault::CorruptChunks => "corrupt-chunks",
            Fault::CorruptDb => "corrupt-db",
            Fault::WipeNode => "wipe-node",
            Fault::AckThenLoseLeader => "ack-then-lose-leader",
            Fault::FetchAbort => "fetch-abort",
            Fault::FetchKillServer => "fetch-kill-server",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Relative frequency in an ordinary episode.
    fn weight(self) -> u32 {
        match self {
            Fault::KillLeader => 10,
            Fault::KillNode => 8,
            Fault::KillAll => 3,
            Fault::PauseLeader => 6,
            Fault::PauseNode => 5,
            Fault::PartitionNode => 6,
            Fault::PartitionLeader => 7,
            Fault::PartitionBridge => 4,
            Fault::PartitionOneWay => 5,
            Fault::PartitionHalves => 4,
            Fault::LinkDelay => 5,
            Fault::LinkFlaky => 4,
            Fault::Membership => 5,
            Fault::DiskFull => 4,
            Fault::CorruptChunks => 4,
            Fault::CorruptDb => 3,
            Fault::WipeNode => 3,
            Fault::AckThenLoseLeader => 4,
            Fault::FetchAbort => 4,
            Fault::FetchKillServer => 3,
        }
    }

    /// Does it destroy data on a node? Then the cluster must be whole before and is made whole after.
    fn destructive(self) -> bool {
        matches!(self, Fault::CorruptChunks | Fault::CorruptDb | Fault::WipeNode | Fault::AckThenLoseLeader)
    }

    /// The fault aimed at a mutation (`--mutation`).
    pub fn aimed_at(mutation: &str) -> Vec<Fault> {
        match mutation {
            "early-ack" => vec![Fault::AckThenLoseLeader],
            "serve-before-record" => vec![Fault::FetchAbort, Fault::FetchKillServer],
            _ => vec![],
        }
    }
}

/// Mixed into the seed so the fault injector's choices do not mirror the clients'.
const NEMESIS_STREAM: u64 = 0x6e65_6d65_7369_7300;

/// The outcome of one attempt: injected (with what exactly), or skipped (and why).
enum Did {
    Injected(String),
    Skipped(String),
}

pub struct Nemesis {
    pub cluster: Cluster,
    pub proxies: Proxies,
    pub client: Client,
    rng: ChaCha8Rng,
    kinds: Vec<(Fault, u32)>,
    first: Vec<Fault>,
    /// Fault kind → times actually injected.
    pub counts: BTreeMap<String, u64>,
    /// Nodes that exited without being told to, and whether their damaged database explains it.
    pub crashes: Vec<(String, bool)>,
    /// Nodes running on a database we damaged (and did not wipe since): exiting is fair for them.
    damaged_db: BTreeSet<u64>,
    /// Things that went wrong with the faults themselves (not the vault's fault, or not yet known to be).
    pub notes: Vec<String>,
    /// Spare node ids not used yet.
    spares: Vec<u64>,
    /// A spare node we added as a voter.
    extra: Option<u64>,
    /// When the faults must end.
    deadline: Instant,
    /// The cluster did not become whole after the last destructive fault: do not wait for it again.
    unhealed: bool,
}

impl Nemesis {
    pub fn new(cluster: Cluster, proxies: Proxies, client: Client, seed: u64, only: &[Fault], mutation: Option<&str>) -> Nemesis {
        let aimed = mutation.map(Fault::aimed_at).unwrap_or_default();
        let kinds: Vec<(Fault, u32)> = Fault::ALL
            .into_iter()
            .filter(|f| only.is_empty() || only.contains(f))
            .map(|f| (f, if aimed.contains(&f) { f.weight() * 8 } else { f.weight() }))
            .collect();
        let spares: Vec<u64> = cluster.all_ids.iter().copied().filter(|id| !cluster.initial.contains(id)).collect();
        Nemesis {
            cluster,
            proxies,
            client,
            rng: ChaCha8Rng::seed_from_u64(seed ^ NEMESIS_STREAM),
            first: aimed.into_iter().filter(|f| only.is_empty() || only.contains(f)).collect(),
            kinds,
            counts: BTreeMap::new(),
            crashes: Vec::new(),
            damaged_db: BTreeSet::new(),
            notes: Vec::new(),
            spares,
            extra: None,
            deadline: Instant::now(),
            unhealed: false,
        }
    }

    fn pick_fault(&mut self) -> Option<Fault> {
        if !self.first.is_empty() {
            return Some(self.first.remove(0));
        }
        let total: u32 = self.kinds.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.rng.gen_range(0..total);
        for (f, w) in &self.kinds {
            if x < *w {
                return Some(*f);
            }
            x -= w;
        }
        None
    }

    fn members(&self) -> Vec<u64> {
        self.cluster.members.iter().copied().collect()
    }

    fn pick_member(&mut self) -> u64 {
        let m = self.members();
        m[self.rng.gen_range(0..m.len())]
    }

    fn event(&self, what: &str, detail: Value) {
        self.client.oracle.event(what, detail);
    }

    /// Restarts nodes that exited or panicked by themselves, and says so.
    pub async fn supervise(&mut self) {
        self.cluster.handle_panics().await;
        for (id, status) in self.cluster.exited() {
            let tail = self.cluster.log_tail(id, 3).join(" | ");
            let explained = self.damaged_db.contains(&id);
            let why = if explained { " after its database was damaged" } else { "" };
            let msg = format!("node {id} exited by itself{why} ({status}) at t={}ms; log ends: {tail}", self.client.oracle.now_ms());
            self.event("crash", json!(msg));
            self.crashes.push((msg, explained));
            if self.cluster.members.contains(&id) {
                if let Err(e) = self.cluster.start(id) {
                    self.notes.push(format!("cannot restart node {id}: {e}"));
                }
            }
        }
    }

    /// Injects faults until `deadline`.
    pub async fn run(&mut self, deadline: Instant) {
        self.deadline = deadline;
        while Instant::now() + Duration::from_secs(3) < deadline {
            self.supervise().await;
            let Some(f) = self.pick_fault() else { return };
            let left = deadline.saturating_duration_since(Instant::now());
            let hold = Duration::from_millis(self.rng.gen_range(1500..7000)).min(left.saturating_sub(Duration::from_secs(1)));
            self.event("fault-start", json!({ "fault": f.name(), "hold_ms": hold.as_millis() as u64 }));
            let did = if f.destructive() && left < Duration::from_secs(25) {
                Ok(Did::Skipped("too close to the end for a destructive fault".into()))
            } else {
                self.inject(f, hold).await
            };
            match did {
                Ok(Did::Injected(detail)) => {
                    // Membership changes are counted as `membership-add` / `membership-remove`.
                    if f != Fault::Membership {
                        *self.counts.entry(f.name().to_string()).or_default() += 1;
                    }
                    self.event("fault-done", json!({ "fault": f.name(), "detail": detail }));
                }
                Ok(Did::Skipped(why)) => self.event("fault-skipped", json!({ "fault": f.name(), "why": why })),
                Err(e) => {
                    let msg = format!("{}: {e:#}", f.name());
                    self.event("fault-error", json!(msg));
                    self.notes.push(msg);
                }
            }
            let gap = Duration::from_millis(self.rng.gen_range(300..2500));
            tokio::time::sleep(gap.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn inject(&mut self, f: Fault, hold: Duration) -> anyhow::Result<Did> {
        if f.destructive() {
            let wait = if self.unhealed { Duration::ZERO } else { Duration::from_secs(20) };
            if let Err(why) = self.cluster.wait_whole(wait, 50).await {
                return Ok(Did::Skipped(format!("the cluster is not whole: {why}")));
            }
            self.unhealed = false;
        }
        // Every fault but a membership change picks among the members, and the partitions need a
        // majority and a minority: after a rebuild that could not add its node again, skip them.
        if f != Fault::Membership && self.members().len() < 3 {
            return Ok(Did::Skipped(format!("only {} members", self.members().len())));
        }
        match f {
            Fault::KillLeader | Fault::KillNode => {
                let Some(id) = self.target(f == Fault::KillLeader).await else { return Ok(Did::Skipped("no leader".into())) };
                self.cluster.kill(id).await;
                tokio::time::sleep(hold).await;
                self.cluster.start(id)?;
                Ok(Did::Injected(format!("node {id} killed for {}ms", hold.as_millis())))
            }
            Fault::KillAll => {
                let ids = self.cluster.running();
                for id in &ids {
                    self.cluster.kill(*id).await;
                }
                tokio::time::sleep(hold.min(Duration::from_secs(2))).await;
                for id in self.members() {
                    self.cluster.start(id)?;
                }
                Ok(Did::Injected(format!("nodes {ids:?} killed at once")))
            }
            Fault::PauseLeader | Fault::PauseNode => {
                let Some(id) = self.target(f == Fault::PauseLeader).await else { return Ok(Did::Skipped("no leader".into())) };
                if !self.cluster.pause(id) {
                    return Ok(Did::Skipped(format!("node {id} is not running")));
                }
                tokio::time::sleep(hold).await;
                self.cluster.resume(id);
                Ok(Did::Injected(format!("node {id} stopped (SIGSTOP) for {}ms", hold.as_millis())))
            }
            Fault::PartitionNode | Fault::PartitionLeader => {
                let Some(id) = self.target(f == Fault::PartitionLeader).await else { return Ok(Did::Skipped("no leader".into())) };
                let mode = self.cut_mode();
                let others: Vec<u64> = self.cluster.all_ids.iter().copied().filter(|o| *o != id).collect();
                for o in others {
                    self.proxies.cut(id, o, mode);
                }
                self.hold_partition(hold).await;
                Ok(Did::Injected(format!("node {id} cut off ({}) for {}ms", mode.name(), hold.as_millis())))
            }
            Fault::PartitionBridge => {
                let mut m = self.members();
                if m.len() < 3 {
                    return Ok(Did::Skipped("fewer than 3 members".into()));
                }
                m.shuffle(&mut self.rng);
                let bridge = m[0];
                let rest = &m[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                let mode = self.cut_mode();
                for a in left {
                    for b in right {
                        self.proxies.cut(*a, *b, mode);
                    }
                }
                self.hold_partition(hold).await;
                Ok(Did::Injected(format!("{left:?} and {right:?} see each other only through node {bridge} ({})", mode.name())))
            }
            Fault::PartitionOneWay => {
                let id = self.pick_member();
                let outgoing = self.rng.gen_bool(0.5);
                for o in self.cluster.all_ids.clone() {
                    if o != id {
                        if outgoing {
                            self.proxies.set(id, o, LinkState::Drop);
                        } else {
                            self.proxies.set(o, id, LinkState::Drop);
                        }
                    }
                }
                self.hold_partition(hold).await;
                let what = if outgoing { "reach no one (others still reach it)" } else { "be reached by no one (it still reaches others)" };
                Ok(Did::Injected(format!("node {id} can {what} for {}ms", hold.as_millis())))
            }
            Fault::PartitionHalves => {
                let mut m = self.members();
                m.shuffle(&mut self.rng);
                let k = self.rng.gen_range(1..=(m.len() - 1) / 2).max(1);
                let (minority, majority) = m.split_at(k);
                let mode = self.cut_mode();
                for a in minority {
                    for b in majority {
                        self.proxies.cut(*a, *b, mode);
                    }
                }
                self.hold_partition(hold).await;
                Ok(Did::Injected(format!("{minority:?} | {majority:?} ({})", mode.name())))
            }
            Fault::LinkDelay => {
                let m = self.members();
                let mut delayed = Vec::new();
                for a in &m {
                    for b in &m {
                        if a != b && (delayed.is_empty() || self.rng.gen_bool(0.5)) {
                            let ms = self.rng.gen_range(20..400);
                            self.proxies.set(*a, *b, LinkState::Delay(ms));
                            delayed.push(format!("{a}->{b} {ms}ms"));
                        }
                    }
                }
                self.hold_partition(hold).await;
                Ok(Did::Injected(format!("delays: {}", delayed.join(", "))))
            }
            Fault::LinkFlaky => {
                let m = self.members();
                let end = Instant::now() + hold;
                let mut flips = 0;
                while Instant::now() < end {
                    let a = m[self.rng.gen_range(0..m.len())];
                    let b = m[self.rng.gen_range(0..m.len())];
                    if a != b {
                        let s = if self.rng.gen_bool(0.6) { LinkState::Drop } else { LinkState::Pass };
                        self.proxies.set(a, b, s);
                        flips += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(self.rng.gen_range(100..600))).await;
                }
                self.proxies.heal();
                Ok(Did::Injected(format!("{flips} link flips over {}ms", hold.as_millis())))
            }
            Fault::Membership => self.membership().await,
            Fault::DiskFull => {
                let id = self.pick_member();
                let slack = self.rng.gen_range(0..3 << 20);
                self.cluster.kill(id).await;
                let r = self.cluster.fill_disk(id, slack);
                self.cluster.start(id)?;
                if let Err(e) = r {
                    return Ok(Did::Skipped(format!("{e:#}")));
                }
                tokio::time::sleep(hold * 2).await;
                self.cluster.kill(id).await;
                self.cluster.free_disk()?;
                self.cluster.start(id)?;
                Ok(Did::Injected(format!("node {id}'s chunk store full (+{slack} bytes of room) for {}ms", (hold * 2).as_millis())))
            }
            Fault::CorruptChunks => {
                let id = self.pick_member();
                self.cluster.kill(id).await;
                let mut files = self.cluster.chunk_files(id);
                files.shuffle(&mut self.rng);
                let n = self.rng.gen_range(1..=4).min(files.len());
                let mut done = Vec::new();
                for f in &files[..n] {
                    done.push(damage(&mut self.rng, f)?);
                }
                self.cluster.mark(id, &format!("damaged chunk files: {}", done.join("; ")));
                self.cluster.start(id)?;
                self.repair(id).await;
                if done.is_empty() {
                    return Ok(Did::Skipped(format!("node {id} holds no chunks yet")));
                }
                Ok(Did::Injected(format!("node {id}: {}", done.join("; "))))
            }
            Fault::CorruptDb => self.corrupt_db().await,
            Fault::WipeNode => {
                let id = self.pick_member();
                self.cluster.kill(id).await;
                std::fs::remove_dir_all(self.cluster.data_dir(id))?;
                self.damaged_db.remove(&id);
                self.cluster.mark(id, "data directory deleted");
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..3000))).await;
                let how = self.rebuild(id).await;
                self.repair(id).await;
                Ok(Did::Injected(format!("node {id}'s data directory deleted; {how}")))
            }
            Fault::AckThenLoseLeader => self.ack_then_lose_leader().await,
            Fault::FetchAbort | Fault::FetchKillServer => self.fetch_cut(f == Fault::FetchKillServer, hold).await,
        }
    }

    /// The leader, or any member.
    async fn target(&mut self, leader: bool) -> Option<u64> {
        if leader {
            // A stale answer can still name a node that just left the membership (and was
            // wiped for a later rejoin): that is no target.
            self.cluster.leader().await.filter(|l| self.cluster.members.contains(l))
        } else {
            Some(self.pick_member())
        }
    }

    fn cut_mode(&mut self) -> LinkState {
        if self.rng.gen_bool(0.7) {
            LinkState::Drop
        } else {
            LinkState::Blackhole
        }
    }

    async fn hold_partition(&mut self, hold: Duration) {
        self.event("links", json!(self.proxies.describe()));
        tokio::time::sleep(hold).await;
        self.proxies.heal();
    }

    /// After a destructive fault: scrub (repairs altered copies from healthy ones), then wait
    /// for the cluster to be whole again.
    async fn repair(&mut self, id: u64) {
        let _ = self.cluster.wait_whole(Duration::from_secs(10), 50).await;
        self.client.scrub("nemesis").await;
        // Not much past the end of the episode: the final phase waits for the cluster anyway.
        let wait = Duration::from_secs(30).min(self.deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5));
        if let Err(why) = self.cluster.wait_whole(wait, 50).await {
            self.unhealed = true;
            let msg = format!("the cluster was not whole {} s after a destructive fault on node {id}: {why}", wait.as_secs());
            self.event("not-whole", json!(msg));
            self.notes.push(msg);
        }
    }

    /// Adds a spare node as a voter, or removes the one added before.
    async fn membership(&mut self) -> anyhow::Result<Did> {
        if let Some(k) = self.extra {
            let out = self
                .client
                .custody
                .run(Some(&self.cluster.profile("admin")), &args!["cluster", "remove-node", "--id", k], Duration::from_secs(60))
                .await;
            if !out.ok() {
                return Ok(Did::Skipped(format!("remove-node {k}: {}", out.error())));
            }
            self.cluster.members.remove(&k);
            self.extra = None;
            self.retire(k).await;
            *self.counts.entry("membership-remove".into()).or_default() += 1;
            return Ok(Did::Injected(format!("node {k} removed")));
        }
        let Some(k) = self.spares.first().copied() else { return Ok(Did::Skipped("no spare node left".into())) };
        self.spares.remove(0);
        if !self.cluster.node_dir(k).exists() {
            let out = self
                .client
                .custody
                .run(None, &args!["cluster", "new-node", "--dir", self.cluster.dir.display(), "--id", k], Duration::from_secs(60))
                .await;
            if !out.ok() {
                anyhow::bail!("cluster new-node {k}: {}", out.error());
            }
            self.cluster.configure(k, &self.proxies)?;
        }
        // A spare is either brand new or was removed and wiped: either way its directory is empty on purpose.
        self.cluster.start_new_disk(k)?;
        let addr = self.cluster.addr(k);
        let out = self
            .client
            .custody
            .run(Some(&self.cluster.profile("admin")), &args!["cluster", "add-node", "--id", k, "--addr", addr], Duration::from_secs(90))
            .await;
        if out.ok() {
            self.cluster.members.insert(k);
            self.extra = Some(k);
            *self.counts.entry("membership-add".into()).or_default() += 1;
            return Ok(Did::Injected(format!("node {k} added as a voter")));
        }
        // It may have become a member anyway; find out.
        match self.membership_of(k).await {
            Some(m) if m["voter"] == true => {
                self.cluster.members.insert(k);
                self.extra = Some(k);
                *self.counts.entry("membership-add".into()).or_default() += 1;
                Ok(Did::Injected(format!("node {k} added as a voter (the command itself failed: {})", out.error())))
            }
            Some(_) => {
                // Left a learner: take it out again.
                let _ = self
                    .client
                    .custody
                    .run(Some(&self.cluster.profile("admin")), &args!["cluster", "remove-node", "--id", k], Duration::from_secs(60))
                    .await;
                self.retire(k).await;
                Ok(Did::Skipped(format!("node {k} stayed a learner ({}); removed", out.error())))
            }
            None => {
                self.retire(k).await;
                Ok(Did::Skipped(format!("add-node {k}: {}", out.error())))
            }
        }
    }

    /// What an operator does for a member whose data directory is gone: it refuses to start
    /// blank (a blank voter could help elect a leader without committed entries), so remove it
    /// from the cluster, start it with `--new-disk`, and add it again; it catches up as a learner
    /// before it votes. Returns what happened, for the fault's description.
    async fn rebuild(&mut self, id: u64) -> String {
        if let Err(e) = std::fs::create_dir_all(self.cluster.data_dir(id)) {
            return format!("could not recreate its data directory: {e}");
        }
        // A try that timed out may have removed it all the same: then it is simply not a member.
        if let Err(why) = self.admin_until_ok(&args!["cluster", "remove-node", "--id", id], "remove-node").await {
            if !why.contains("is not a member") {
                self.notes.push(format!("node {id} lost its disk and could not be removed: {why}"));
                return format!("not rebuilt ({why})");
            }
        }
        self.cluster.members.remove(&id);
        if let Err(e) = self.cluster.start_new_disk(id) {
            return format!("removed, but could not start it: {e}");
        }
        let addr = self.cluster.addr(id);
        match self.admin_until_ok(&args!["cluster", "add-node", "--id", id, "--addr", addr], "add-node").await {
            Ok(()) => {
                self.cluster.members.insert(id);
                *self.counts.entry("rebuilt".into()).or_default() += 1;
                "removed, started with --new-disk, added again".into()
            }
            // The add may have committed despite the error (a timeout): ask.
            Err(_) if self.membership_of(id).await.is_some_and(|m| m["voter"] == true) => {
                self.cluster.members.insert(id);
                *self.counts.entry("rebuilt".into()).or_default() += 1;
                "removed, started with --new-disk, added again (the command itself failed)".into()
            }
            Err(why) => {
                self.notes.push(format!("node {id} was removed after losing its disk but could not be added again: {why}"));
                format!("removed, not added again ({why})")
            }
        }
    }

    /// Node `k` as the leader lists it (its entry in the status' members), if it does.
    async fn membership_of(&mut self, k: u64) -> Option<Value> {
        let l = self.cluster.leader().await?;
        let st = self.cluster.status_via(l).await?;
        st["members"].as_array()?.iter().find(|m| m["id"] == k).cloned()
    }

    /// Runs an admin command until it succeeds (a few tries: an election may be on).
    async fn admin_until_ok(&mut self, args: &[String], what: &str) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..4 {
            let out = self.client.custody.run(Some(&self.cluster.profile("admin")), args, Duration::from_secs(90)).await;
            if out.ok() {
                return Ok(());
            }
            last = out.error();
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Err(format!("{what}: {last}"))
    }

    /// Stops a node that left the membership and wipes its disk, so it can join again later as a
    /// blank machine (same identity, certificate and checkpoint key).
    async fn retire(&mut self, k: u64) {
        self.cluster.kill(k).await;
        let _ = std::fs::remove_dir_all(self.cluster.data_dir(k));
        let _ = std::fs::create_dir_all(self.cluster.data_dir(k));
        self.damaged_db.remove(&k);
        self.cluster.mark(k, "left the membership; data directory wiped for a later rejoin");
        self.spares.push(k);
    }

    /// Damages one or two RocksDB (or snapshot) files of a stopped node. If the node then
    /// refuses to start, or cannot rejoin, the operator's answer is to wipe it and start it blank.
    async fn corrupt_db(&mut self) -> anyhow::Result<Did> {
        let id = self.pick_member();
        self.cluster.kill(id).await;
        let mut files = self.cluster.db_files(id);
        // Mostly what holds the data (tables, write-ahead logs, the manifest), not RocksDB's own info logs.
        let vital: Vec<_> = files
            .iter()
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                n.ends_with(".sst") || n.ends_with(".log") || n.starts_with("MANIFEST") || n == "CURRENT"
            })
            .cloned()
            .collect();
        if !vital.is_empty() && self.rng.gen_bool(0.8) {
            files = vital;
        }
        if files.is_empty() {
            self.cluster.start(id)?;
            return Ok(Did::Skipped(format!("node {id} has no database files")));
        }
        files.shuffle(&mut self.rng);
        let n = self.rng.gen_range(1..=2).min(files.len());
        let mut done = Vec::new();
        for f in &files[..n] {
            done.push(damage(&mut self.rng, f)?);
        }
        self.cluster.mark(id, &format!("damaged database files: {}", done.join("; ")));
        self.damaged_db.insert(id);
        self.cluster.start(id)?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut outcome = "it started".to_string();
        let refused = !self.cluster.is_running(id);
        let rejoined = !refused && self.cluster.wait_whole(Duration::from_secs(30), 50).await.is_ok();
        if !rejoined {
            let tail = self.cluster.log_tail(id, 2).join(" | ");
            outcome = if refused { format!("it refused to start ({tail})") } else { format!("it did not rejoin ({tail})") };
            self.cluster.kill(id).await;
            std::fs::remove_dir_all(self.cluster.data_dir(id))?;
            self.damaged_db.remove(&id);
            self.cluster.mark(id, "data directory wiped by the operator after database damage");
            let how = self.rebuild(id).await;
            *self.counts.entry("db-wipe".into()).or_default() += 1;
            outcome.push_str(&format!("; wiped, {how}"));
        }
        self.repair(id).await;
        Ok(Did::Injected(format!("node {id}: {}; {outcome}", done.join("; "))))
    }

    /// Right after the leader acknowledges a deposit, kill -9 it and delete its chunks (or its
    /// whole data directory). Meanwhile the followers cannot reach the leader, so they only hold
    /// what the leader pushed before acknowledging: a majority, if the leader waited for one.
    async fn ack_then_lose_leader(&mut self) -> anyhow::Result<Did> {
        let Some(l) = self.target(true).await else { return Ok(Did::Skipped("no leader".into())) };
        for j in self.cluster.all_ids.clone() {
            if j != l {
                self.proxies.set(j, l, LinkState::Drop);
            }
        }
        let size = self.rng.gen_range(1..6 << 20);
        let profile = self.cluster.node_profile("alice", l);
        let item = self.client.deposit("nemesis", &profile, size, self.rng.gen(), true).await;
        let Some(item) = item else {
            self.proxies.heal();
            return Ok(Did::Skipped("the deposit was not acknowledged".into()));
        };
        self.cluster.kill(l).await;
        let whole_dir = self.rng.gen_bool(0.5);
        let what = if whole_dir {
            std::fs::remove_dir_all(self.cluster.data_dir(l))?;
            self.damaged_db.remove(&l);
            "data directory"
        } else {
            let chunks = self.cluster.data_dir(l).join("chunks");
            if chunks.exists() {
                std::fs::remove_dir_all(&chunks)?;
            }
            "chunk store"
        };
        self.cluster.mark(l, &format!("{what} deleted right after acknowledging {item}"));
        self.proxies.heal();
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..2000))).await;
        if whole_dir {
            let how = self.rebuild(l).await;
            self.cluster.mark(l, &how);
        } else {
            self.cluster.start(l)?;
        }
        self.repair(l).await;
        Ok(Did::Injected(format!("deposit {item} ({size} bytes) acknowledged by node {l}; node {l} killed, its {what} deleted")))
    }

    /// A fetch of a large clip through a slow path to the leader, cut off once its first bytes
    /// arrived: by killing the client, or by killing the node serving it.
    async fn fetch_cut(&mut self, kill_server: bool, hold: Duration) -> anyhow::Result<Did> {
        let size = self.rng.gen_range(20 << 20..36 << 20);
        let Some(item) = self.client.deposit("nemesis", &self.client.profile("alice"), size, self.rng.gen(), true).await else {
            return Ok(Did::Skipped("the deposit was not acknowledged".into()));
        };
        let Some(req) = self.client.request("nemesis", &item).await else { return Ok(Did::Skipped("the request was not filed".into())) };
        self.client.approve("nemesis", "bob", &req).await;
        if self.client.approve("nemesis", "carol", &req).await.as_deref() != Some("granted") {
            return Ok(Did::Skipped("the request was not granted".into()));
        }
        let Some(l) = self.target(true).await else { return Ok(Did::Skipped("no leader".into())) };
        let throttle = Throttle::start(self.cluster.port(l), 256 * 1024).await?;
        let profile = self.client.profile_at("bob", "slow", &format!("https://{}", throttle.addr));
        let (res, pending) = self.client.fetch("nemesis", "bob", &profile, &item, &req, OnFirstBytes::Pause, Duration::from_secs(30)).await;
        let Some(mut pending) = pending else {
            return Ok(Did::Skipped(format!("no bytes arrived to cut off (fetch ok: {}, {} bytes)", res.ok, res.delivered)));
        };
        let detail = if kill_server {
            self.cluster.kill(l).await;
            let r = pending.finish(Duration::from_secs(15)).await;
            tokio::time::sleep(hold).await;
            self.cluster.start(l)?;
            format!("node {l} killed while serving {item} to bob after {} bytes", r.delivered)
        } else {
            pending.kill_client().await;
            let r = pending.finish(Duration::from_secs(1)).await;
            format!("bob's fetch of {item} from node {l} killed after {} bytes", r.delivered)
        };
        drop(throttle);
        Ok(Did::Injected(detail))
    }

    /// Ends every fault: continue paused nodes, heal links, give the full disk its room back,
    /// restart every member that is down.
    pub async fn heal(&mut self) {
        for id in self.cluster.paused() {
            self.cluster.resume(id);
        }
        self.proxies.heal();
        if let Some(id) = self.cluster.full_disk.as_ref().map(|f| f.id) {
            self.cluster.kill(id).await;
            if let Err(e) = self.cluster.free_disk() {
                self.notes.push(format!("freeing node {id}'s disk: {e:#}"));
            }
        }
        self.supervise().await;
        for id in self.members() {
            if !self.cluster.is_running(id) {
                if let Err(e) = self.cluster.start(id) {
                    self.notes.push(format!("cannot restart node {id}: {e:#}"));
                }
            }
        }
        self.event("healed", json!({ "members": self.members() }));
    }

    /// After the clients stopped: the membership goes back to the initial nodes.
    pub async fn restore_membership(&mut self) {
        let Some(k) = self.extra else { return };
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let op = self.client.oracle.invoke("nemesis", "remove-node", json!({ "id": k }));
            let out = self
                .client
                .custody
                .run(Some(&self.cluster.profile("admin")), &args!["cluster", "remove-node", "--id", k], Duration::from_secs(15))
                .await;
            let outcome = if out.ok() { crate::oracle::Outcome::Ok } else { crate::oracle::Outcome::Failed(out.error()) };
            self.client.oracle.complete(op, "nemesis", "remove-node", &outcome, Value::Null);
            if out.ok() {
                self.cluster.members.remove(&k);
                self.extra = None;
                self.retire(k).await;
                self.event("membership-restored", json!({ "removed": k }));
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.notes.push(format!("could not remove node {k} within 20 s after healing; it stays a member"));
    }
}

/// Flips a bit, truncates or deletes `path`; says which.
fn damage(rng: &mut ChaCha8Rng, path: &Path) -> anyhow::Result<String> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let len = std::fs::metadata(path)?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let short = if name.len() > 16 { format!("{}…", &name[..12]) } else { name };
    match rng.gen_range(0..3) {
        0 if len > 0 => {
            let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
            let flips = rng.gen_range(1..=4);
            for _ in 0..flips {
                let at = rng.gen_range(0..len);
                let mut b = [0u8; 1];
                f.seek(SeekFrom::Start(at))?;
                f.read_exact(&mut b)?;
                b[0] ^= 1 << rng.gen_range(0..8);
                f.seek(SeekFrom::Start(at))?;
                f.write_all(&b)?;
            }
            f.sync_all()?;
            Ok(format!("{flips} bit flip(s) in {short}"))
        }
        1 if len > 0 => {
            let to = rng.gen_range(0..len);
            std::fs::OpenOptions::new().write(true).open(path)?.set_len(to)?;
            Ok(format!("{short} truncated {len}→{to}"))
        }
        _ => {
            std::fs::remove_file(path)?;
            Ok(format!("{short} deleted"))
        }
    }
}
