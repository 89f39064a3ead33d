//! The vault's state machine: commands and how they change replicated state.
//!
//! Pure: no clock (the leader stamps time into each command), no randomness,
//! no network, no RocksDB handle. It reads state through [`StateRead`] and
//! returns the writes to make; the Raft adapter commits them atomically with
//! the applied log position. Every rule that guards a change is checked here,
//! inside apply, against replicated state — never only by the node that
//! proposed it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod access;
pub mod audit;
pub mod nodes;
pub mod refusal;
pub mod registry;
pub mod reshare;
pub mod retention;
pub mod snapshot;

pub use refusal::Refusal;

use crate::audit::records::{self, Body};

use crate::evidence::{ChunkName, ItemId, Manifest, RetentionPolicy};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("state read failed: {0}")]
    Read(String),
    #[error("stored state is corrupt at key {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// A record the command would write has no canonical form (an integer of
    /// 2^53 or more): apply refuses the command rather than stop the node.
    #[error("the record cannot be written: {0}")]
    Unrecordable(String),
}

/// Read access to replicated state (implemented over RocksDB by the adapter,
/// over a map in tests).
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError>;
}

/// Cluster-wide settings fixed when the cluster is formed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub cluster_id: String,
    pub retention: RetentionPolicy,
    /// Its nodes may unseal themselves from a shares file (a dev cluster,
    /// docs/KEYS.md §8): the origin says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev_auto_unseal: bool,
}

/// The registry a new cluster starts with (written by `cluster init`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialRegistry {
    #[serde(default)]
    pub people: Vec<registry::Person>,
    #[serde(default)]
    pub systems: Vec<registry::SourceSystem>,
    /// The first members' key bindings (docs/KEYS.md §7), each with its proofs.
    #[serde(default)]
    pub nodes: Vec<nodes::NodeBinding>,
}

impl ClusterConfig {
    /// The origin line of this cluster's checkpoints. A dev cluster says so.
    pub fn origin(&self) -> String {
        let mut origin = format!("custody.vault/{}", self.cluster_id);
        if self.retention.is_dev() {
            origin.push_str(&format!("/dev-retention-{}s", self.retention.standard_secs));
        }
        if self.dev_auto_unseal {
            origin.push_str("/dev-auto-unseal");
        }
        origin
    }
}

/// A command replicated through Raft. Time is stamped by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Fixes the cluster's settings and its initial registry; only the first one takes effect.
    Configure {
        config: ClusterConfig,
        #[serde(default)]
        registry: InitialRegistry,
        time_ms: u64,
    },
    /// An administrator files a registry change signed with their own key
    /// (docs/KEYS.md §5); `by` is the authenticated user, who must be the signer.
    ProposeRegistry { proposal: registry::Proposal, by: String, signature: String, time_ms: u64 },
    /// A second administrator signs a pending registry change, which then applies.
    ApproveRegistry { change: String, by: String, signature: String, time_ms: u64 },
    /// Commits a deposit: the leader proposes it only after a majority of voters
    /// durably hold every chunk the manifest names.
    Seal { manifest: Manifest, time_ms: u64 },
    /// Publishes a checkpoint cosigned by a majority of voters, with an
    /// RFC 3161 token on its text when the leader got one (base64 DER;
    /// docs/AUDIT_FORMATS.md, "Trusted time"). Entries written before tokens
    /// existed have none.
    PublishCheckpoint {
        note: String,
        time_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<String>,
    },
    /// Files an access request, signed by its first participant (`by`).
    FileRequest { request: crate::approval::AccessRequest, by: String, signature: String, time_ms: u64 },
    /// Adds `by`'s signature to a request, as participant or approver.
    Approve { request: String, by: String, signature: String, time_ms: u64 },
    /// Records an access under a live grant, before any share is released:
    /// `by` signed the access statement naming the key the shares go to.
    RecordAccess { request: String, item: ItemId, by: String, fetch_key: String, signature: String, time_ms: u64 },
    /// Places a legal hold on an item.
    Hold { item: ItemId, by: String, reason: String, time_ms: u64 },
    /// Releases a legal hold.
    Release { item: ItemId, by: String, time_ms: u64 },
    /// Moves an item to a longer retention class.
    Extend { item: ItemId, retention: crate::evidence::Retention, by: String, time_ms: u64 },
    /// Destroys an item's key and chunks after retention, under a granted purge request.
    Purge { item: ItemId, request: String, by: String, time_ms: u64 },
    /// Old holder `from` deals its share of an item's key anew over the current
    /// `voters` (docs/KEYS.md §4.4): one sub-share envelope per voter, in order.
    Reshare { item: ItemId, from: u64, voters: Vec<u64>, envelopes: Vec<String>, time_ms: u64 },
    /// What a node's scrubber found on its own disk: a chunk `corrupt` or `missing`, and whether it was repaired.
    RecordScrub { node: u64, chunk: ChunkName, found: String, repaired: bool, time_ms: u64 },
    /// Several small records proposed together, so one Raft entry and one
    /// fsync carry them all (see `node::proposer`). Each is applied as if it
    /// were its own entry, in order; each has its own outcome.
    Batch { commands: Vec<Command> },
}

impl Command {
    /// The leader-stamped time the command carries, if it carries one.
    pub fn time_ms(&self) -> Option<u64> {
        match self {
            Command::Configure { time_ms, .. }
            | Command::ProposeRegistry { time_ms, .. }
            | Command::ApproveRegistry { time_ms, .. }
            | Command::Seal { time_ms, .. }
            | Command::PublishCheckpoint { time_ms, .. }
            | Command::FileRequest { time_ms, .. }
            | Command::Approve { time_ms, .. }
            | Command::RecordAccess { time_ms, .. }
            | Command::Hold { time_ms, .. }
            | Command::Release { time_ms, .. }
            | Command::Extend { time_ms, .. }
            | Command::Purge { time_ms, .. }
            | Command::RecordScrub { time_ms, .. }
            | Command::Reshare { time_ms, .. } => Some(*time_ms),
            Command::Batch { .. } => None,
        }
    }

    /// The user the command acts for, if it names one.
    fn by(&self) -> Option<&str> {
        match self {
            Command::ProposeRegistry { by, .. }
            | Command::ApproveRegistry { by, .. }
            | Command::FileRequest { by, .. }
            | Command::Approve { by, .. }
            | Command::RecordAccess { by, .. }
            | Command::Hold { by, .. }
            | Command::Release { by, .. }
            | Command::Extend { by, .. }
            | Command::Purge { by, .. } => Some(by),
            _ => None,
        }
    }

    /// The bounds every command must keep before any rule is looked at
    /// (`limits.rs`): times, names, ids and the sizes of strings and lists.
    fn check_bounds(&self) -> Result<(), String> {
        use crate::limits::*;
        if self.time_ms().is_some_and(|t| t > MAX_TIME_MS) {
            return Err(format!("the command's time lies beyond the last one the vault records ({MAX_TIME_MS} ms)"));
        }
        if let Some(by) = self.by() {
            registry::check_name("user", by)?;
        }
        let id_ok = |s: &str| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match self {
            Command::Configure { config, registry, .. } => {
                crate::evidence::check_text("cluster id", &config.cluster_id, true)?;
                let r = &config.retention;
                if r.standard_secs == 0 || r.standard_secs > MAX_RETENTION_SECS || r.important_secs > MAX_RETENTION_SECS {
                    return Err(format!("retention periods are 1 to {MAX_RETENTION_SECS} seconds"));
                }
                if registry.people.len() + registry.systems.len() + registry.nodes.len() > MAX_BATCH_COMMANDS {
                    return Err(format!("an initial registry holds at most {MAX_BATCH_COMMANDS} entries"));
                }
            }
            Command::RecordScrub { node, .. } if *node > MAX_NODE_ID => return Err(format!("node ids are at most {MAX_NODE_ID}")),
            Command::Reshare { from, voters, envelopes, .. } => {
                if *from > MAX_NODE_ID || voters.iter().any(|v| *v > MAX_NODE_ID) {
                    return Err(format!("node ids are at most {MAX_NODE_ID}"));
                }
                if voters.is_empty() || voters.len() > crate::crypto::shares::MAX_HOLDERS as usize || envelopes.len() != voters.len() {
                    return Err(format!("a re-share deals 1 to {} sub-shares, one per voter", crate::crypto::shares::MAX_HOLDERS));
                }
                if envelopes.iter().any(|e| e.len() != 2 * crate::crypto::shares::SHARE_ENVELOPE_BYTES) {
                    return Err(format!("a sub-share envelope is {} bytes, hex", crate::crypto::shares::SHARE_ENVELOPE_BYTES));
                }
            }
            Command::PublishCheckpoint { note, .. } if note.len() > MAX_NOTE_BYTES => {
                return Err(format!("a checkpoint note is at most {MAX_NOTE_BYTES} bytes"))
            }
            Command::PublishCheckpoint { timestamp: Some(t), .. } if t.len() > crate::audit::timestamp::MAX_TOKEN_BYTES * 4 / 3 + 4 => {
                return Err(format!("a timestamp token is at most {} bytes", crate::audit::timestamp::MAX_TOKEN_BYTES))
            }
            Command::FileRequest { signature, .. }
            | Command::Approve { signature, .. }
            | Command::ProposeRegistry { signature, .. }
            | Command::ApproveRegistry { signature, .. }
            | Command::RecordAccess { signature, .. }
                if signature.len() > MAX_SIGNATURE_B64_BYTES =>
            {
                return Err("the signature is too long to be an Ed25519 signature".into())
            }
            Command::Batch { commands } if commands.len() > MAX_BATCH_COMMANDS => {
                return Err(format!("a batch holds at most {MAX_BATCH_COMMANDS} commands"))
            }
            _ => {}
        }
        match self {
            Command::Approve { request, .. }
            | Command::RecordAccess { request, .. }
            | Command::Purge { request, .. }
            | Command::ApproveRegistry { change: request, .. }
                if !id_ok(request) =>
            {
                Err("a request id is hex, at most 64 digits".into())
            }
            _ => Ok(()),
        }
    }

    /// May this command travel inside a `Batch`? Only small records whose
    /// outcome needs no work outside the state machine.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Command::ProposeRegistry { .. }
                | Command::ApproveRegistry { .. }
                | Command::FileRequest { .. }
                | Command::Approve { .. }
                | Command::RecordAccess { .. }
                | Command::Hold { .. }
                | Command::Release { .. }
                | Command::Extend { .. }
                | Command::RecordScrub { .. }
                | Command::Reshare { .. }
        )
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to report (membership and blank entries, repeated configure).
    Done,
    Configured,
    Sealed {
        item: ItemId,
        retain_until_ms: u64,
        seq: u64,
        leaf_index: u64,
    },
    /// Where a registry change stands: filed and waiting for a second
    /// administrator, or applied.
    RegistryStatus {
        change: String,
        applied: bool,
        leaf_index: u64,
    },
    /// A record was appended to the audit log.
    Recorded {
        leaf_index: u64,
    },
    /// A checkpoint of this size is now the latest.
    Published {
        size: u64,
    },
    /// Where a request stands after filing or a signature.
    RequestStatus {
        request: String,
        granted: bool,
        leaf_index: u64,
    },
    /// The access record is committed; bytes may now be served.
    AccessRecorded {
        leaf_index: u64,
    },
    /// An item was purged: every node deletes these chunks.
    Purged {
        item: ItemId,
        leaf_index: u64,
        chunks: Vec<ChunkName>,
    },
    /// An item's retention or hold changed.
    RetentionChanged {
        item: ItemId,
        retain_until_ms: u64,
        hold: bool,
        leaf_index: u64,
    },
    /// The command broke a rule; nothing changed.
    Refused {
        /// Which rule, by its stable name.
        reason: Refusal,
        /// What was wrong, for people.
        detail: String,
    },
    /// One outcome for each command of a `Batch`, in order.
    Batch {
        outcomes: Vec<Outcome>,
    },
}

/// The state of one item as committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub manifest: Manifest,
    pub deposited_at_ms: u64,
    pub retain_until_ms: u64,
    /// Position of the item among all deposits (0-based).
    pub seq: u64,
    /// Index of the deposit record in the audit log.
    pub leaf_index: u64,
    /// A legal hold, until released.
    #[serde(default)]
    pub hold: Option<retention::Hold>,
    /// Set once the item was lawfully destroyed.
    #[serde(default)]
    pub purged: Option<retention::Purged>,
}

/// Key layout of the state-machine column family (see docs/STORAGE.md).
pub mod keys {
    pub const CONFIG: &[u8] = b"v/config";
    /// The latest time a leader stamped: the time of records that carry none of their own.
    pub const CLOCK: &[u8] = b"v/clock";
    pub const VOTERS: &[u8] = b"v/voters";
    pub const LEARNERS: &[u8] = b"v/learners";
    pub const ITEM_COUNT: &[u8] = b"v/item_count";
    pub const ITEM_PREFIX: &[u8] = b"item/";
    pub const CHUNK_PREFIX: &[u8] = b"chunk/";

    pub fn item(id: &crate::evidence::ItemId) -> Vec<u8> {
        [ITEM_PREFIX, id.to_string().as_bytes()].concat()
    }
    pub fn chunk(name: &crate::evidence::ChunkName) -> Vec<u8> {
        [CHUNK_PREFIX, name.to_string().as_bytes()].concat()
    }
}

/// A transaction over state: reads see the writes made earlier in the same
/// batch of entries; the writes are committed together by the adapter.
pub struct Tx<'a> {
    base: &'a dyn StateRead,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Undo log: each write's key and what `pending` held for it before, so a
    /// refused command's writes are taken back ([`Tx::rollback`]).
    undo: Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>,
}

/// A point in a transaction to roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Savepoint(usize);

impl<'a> Tx<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Tx { base, pending: BTreeMap::new(), undo: Vec::new() }
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Takes back every write made since `sp`.
    pub fn rollback(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.0 {
            let Some((key, before)) = self.undo.pop() else { break };
            match before {
                Some(v) => self.pending.insert(key, v),
                None => self.pending.remove(&key),
            };
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let before = self.pending.insert(key.clone(), value);
        self.undo.push((key, before));
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.base.scan_prefix(prefix)?.into_iter().collect();
        for (k, v) in self.pending.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, VaultError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() }),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn put_json<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        // Serialising our own plain data types to JSON cannot fail.
        let bytes = serde_json::to_vec(value).expect("vault records serialise");
        self.put(key, bytes);
    }

    /// The writes to commit: `None` deletes the key.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.pending
    }
}

impl StateRead for Tx<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        Tx::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        self.scan(prefix)
    }
}

/// Applies one command. A refused command changes nothing: its writes, audit
/// leaves included, are rolled back. No input makes it panic; it returns an
/// error only when stored state cannot be read.
pub fn apply(tx: &mut Tx<'_>, cmd: &Command) -> Result<Outcome, VaultError> {
    let sp = tx.savepoint();
    let out = match cmd.check_bounds() {
        Err(detail) => Ok(Outcome::Refused { reason: Refusal::Invalid, detail }),
        Ok(()) => apply_checked(tx, cmd),
    };
    match out {
        Ok(Outcome::Refused { reason, detail }) => {
            tx.rollback(sp);
            Ok(Outcome::Refused { reason, detail })
        }
        Err(VaultError::Unrecordable(reason)) => {
            tx.rollback(sp);
            Ok(Outcome::Refused { reason: Refusal::Unrecordable, detail: format!("the record cannot be written: {reason}") })
        }
        other => other,
    }
}

fn apply_checked(tx: &mut Tx<'_>, cmd: &Command) -> Result<Outcome, VaultError> {
    match cmd {
        Command::Configure { config, registry: initial, time_ms } => {
            if tx.get(keys::CONFIG)?.is_some() {
                return Ok(Outcome::Done);
            }
            stamp(tx, *time_ms)?;
            tx.put_json(keys::CONFIG.to_vec(), config);
            let r = audit::record(
                *time_ms,
                Body::Cluster(records::Cluster {
                    cluster_id: config.cluster_id.clone(),
                    origin: config.origin(),
                    standard_retention_secs: config.retention.standard_secs,
                    important_retention_secs: config.retention.important_secs,
                    dev: config.retention.is_dev(),
                }),
            );
            audit::append(tx, &r)?;
            let people = initial.people.iter().map(|p| registry::RegistryChange::AddPerson { person: p.clone() });
            let systems = initial.systems.iter().map(|s| registry::RegistryChange::AddSystem { system: s.clone() });
            let bindings = initial.nodes.iter().map(|b| registry::RegistryChange::BindNode { binding: b.clone() });
            for change in people.chain(systems).chain(bindings) {
                // One bad entry refuses the whole configuration (and rolls it back).
                if let Outcome::Refused { reason, detail } = registry::initial(tx, &change, *time_ms)? {
                    return refuse(reason, format!("initial registry: {detail}"));
                }
            }
            // Every change to people needs two administrators: a cluster starts with two at least.
            let admins = initial.people.iter().filter(|p| p.roles.contains(&registry::Role::Admin)).count();
            if admins < 2 {
                return refuse(
                    Refusal::Invalid,
                    format!("the initial registry names {admins} administrators: two at least, or no person could ever be changed"),
                );
            }
            Ok(Outcome::Configured)
        }
        Command::ProposeRegistry { proposal, by, signature, time_ms } => registry::propose(tx, proposal, by, signature, *time_ms),
        Command::ApproveRegistry { change, by, signature, time_ms } => registry::approve(tx, change, by, signature, *time_ms),
        Command::Seal { manifest, time_ms } => seal(tx, manifest, *time_ms),
        Command::PublishCheckpoint { note, timestamp, .. } => publish_checkpoint(tx, note, timestamp.as_deref()),
        Command::FileRequest { request, by, signature, time_ms } => access::file(tx, request, by, signature, *time_ms),
        Command::Approve { request, by, signature, time_ms } => access::approve(tx, request, by, signature, *time_ms),
        Command::RecordAccess { request, item, by, fetch_key, signature, time_ms } => {
            access::record_access(tx, &access::Access { request, item, by, fetch_key, signature }, *time_ms)
        }
        Command::Hold { item, by, reason, time_ms } => retention::hold(tx, item, by, reason, *time_ms),
        Command::Release { item, by, time_ms } => retention::release(tx, item, by, *time_ms),
        Command::Extend { item, retention: to, by, time_ms } => retention::extend(tx, item, *to, by, *time_ms),
        Command::Purge { item, request, by, time_ms } => retention::purge(tx, item, request, by, *time_ms),
        Command::Reshare { item, from, voters, envelopes, time_ms } => reshare::contribute(tx, item, *from, voters, envelopes, *time_ms),
        Command::Batch { commands } => {
            let mut outcomes = Vec::with_capacity(commands.len());
            for c in commands {
                outcomes.push(if c.batchable() {
                    apply(tx, c)?
                } else {
                    Outcome::Refused { reason: Refusal::Invalid, detail: "this command cannot be batched".into() }
                });
            }
            Ok(Outcome::Batch { outcomes })
        }
        Command::RecordScrub { node, chunk, found, repaired, time_ms } => {
            let found = match found.as_str() {
                "corrupt" => records::Finding::Corrupt,
                "missing" => records::Finding::Missing,
                _ => return refuse(Refusal::Invalid, "a scrub finding is `corrupt` or `missing`"),
            };
            let time = stamp(tx, *time_ms)?;
            let owner = match query::chunk_owner(tx, chunk)? {
                None => None,
                Some(o) => {
                    Some(o.parse::<ItemId>().map_err(|e| VaultError::Corrupt { key: format!("chunk owner of {chunk}"), detail: e.to_string() })?)
                }
            };
            let r = audit::record(
                time,
                Body::Scrub(records::Scrub { node: *node, chunk: chunk.to_string(), item: owner.map(|o| o.to_string()), found, repaired: *repaired }),
            );
            let leaf_index = match owner {
                Some(item) => access::append_for_item(tx, &item, &r)?,
                None => audit::append(tx, &r)?,
            };
            Ok(Outcome::Recorded { leaf_index })
        }
    }
}

/// Advances the replicated clock to a leader-stamped time (it never goes back).
pub(crate) fn stamp(tx: &mut Tx<'_>, time_ms: u64) -> Result<u64, VaultError> {
    let now = clock(tx)?.max(time_ms);
    tx.put(keys::CLOCK.to_vec(), now.to_be_bytes().to_vec());
    Ok(now)
}

fn clock(s: &dyn StateRead) -> Result<u64, VaultError> {
    match s.get(keys::CLOCK)? {
        None => Ok(0),
        Some(b) => b
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| VaultError::Corrupt { key: String::from_utf8_lossy(keys::CLOCK).into_owned(), detail: "the clock is not 8 bytes".into() }),
    }
}

/// Records a membership change (called by the Raft adapter when a membership
/// entry applies; it carries no time of its own, so the replicated clock is used).
pub fn record_membership(tx: &mut Tx<'_>, voters: &[u64], learners: &[u64]) -> Result<u64, VaultError> {
    let time = clock(tx)?;
    // A member that left: its keys stop counting (docs/KEYS.md §7).
    let before: Vec<u64> = [tx.get_json::<Vec<u64>>(keys::VOTERS)?.unwrap_or_default(), tx.get_json(keys::LEARNERS)?.unwrap_or_default()].concat();
    for gone in before.iter().filter(|id| !voters.contains(id) && !learners.contains(id)) {
        nodes::retire(tx, *gone)?;
    }
    tx.put_json(keys::VOTERS.to_vec(), &voters);
    tx.put_json(keys::LEARNERS.to_vec(), &learners);
    // Node ids are integers in the record; one of 2^53 or more (which the API
    // refuses to add) is written as a decimal string, so the record always exists.
    let ids = |v: &[u64]| v.iter().map(|&id| records::MemberId::of(id)).collect();
    let r = audit::record(time, Body::Membership(records::Membership { voters: ids(voters), learners: ids(learners) }));
    audit::append(tx, &r)
}

fn publish_checkpoint(tx: &mut Tx<'_>, note: &str, timestamp: Option<&str>) -> Result<Outcome, VaultError> {
    use crate::audit::{Checkpoint, Note};
    let Some(config) = tx.get_json::<ClusterConfig>(keys::CONFIG)? else {
        return refuse(Refusal::NotConfigured, "the cluster is not configured yet");
    };
    let parsed = match Note::parse(note).and_then(|n| Checkpoint::parse(&n.text).map(|c| (n, c))) {
        Ok(x) => x,
        Err(e) => return refuse(Refusal::Invalid, format!("not a checkpoint note: {e}")),
    };
    let (parsed_note, cp) = parsed;
    // A token is kept only if it is a TSTInfo over exactly this checkpoint's
    // text; its signature is the court's to check (docs/AUDIT_FORMATS.md).
    let token = match timestamp.map(|t| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t)) {
        None => None,
        Some(Err(e)) => return refuse(Refusal::Invalid, format!("timestamp token: not base64: {e}")),
        Some(Ok(der)) => {
            let imprint = crate::audit::timestamp::imprint(&parsed_note.text);
            if let Err(e) = crate::audit::timestamp::token_imprint(&der, &imprint) {
                return refuse(Refusal::Invalid, format!("timestamp token: {e}"));
            }
            Some(der)
        }
    };
    if cp.origin != config.origin() {
        return refuse(Refusal::CheckpointMismatch, format!("checkpoint origin `{}` is not this cluster's", cp.origin));
    }
    if cp.size > audit::size(tx)? {
        return refuse(Refusal::CheckpointMismatch, "checkpoint is larger than the tree");
    }
    if cp.root != audit::root(tx, cp.size)? {
        return refuse(Refusal::CheckpointMismatch, "checkpoint root does not match the tree");
    }
    if let Some(prev) = query::checkpoint(tx)? {
        if let Ok(prev_cp) = Note::parse(&prev).and_then(|n| Checkpoint::parse(&n.text)) {
            if cp.size <= prev_cp.size {
                return Ok(Outcome::Done);
            }
        }
    }
    let voters: Vec<u64> = tx.get_json(keys::VOTERS)?.unwrap_or_default();
    let mut keys: Vec<crate::audit::VerifierKey> = Vec::new();
    for v in &voters {
        // A voter without a registered key simply cannot sign yet; a stored key that does not parse is corrupt state.
        if let Some(k) = tx.get(&audit::keys::node_key(*v))? {
            let text = String::from_utf8_lossy(&k).into_owned();
            keys.push(
                crate::audit::VerifierKey::parse(&text)
                    .map_err(|e| VaultError::Corrupt { key: format!("node key of {v}"), detail: e.to_string() })?,
            );
        }
    }
    let needed = voters.len() / 2 + 1;
    let signers = match crate::audit::verify_note(note, &keys) {
        Ok(v) => v.signers().len(),
        Err(e) => return refuse(Refusal::BadSignature, format!("checkpoint signatures: {e}")),
    };
    if signers < needed {
        return refuse(Refusal::TooFewSignatures, format!("checkpoint signed by {signers} voters, {needed} needed"));
    }
    tx.put(audit::keys::CHECKPOINT.to_vec(), note.as_bytes().to_vec());
    match token {
        Some(der) => tx.put(audit::keys::CHECKPOINT_TIMESTAMP.to_vec(), der),
        None => tx.delete(audit::keys::CHECKPOINT_TIMESTAMP.to_vec()),
    }
    Ok(Outcome::Published { size: cp.size })
}

pub(crate) fn refuse(reason: Refusal, detail: impl Into<String>) -> Result<Outcome, VaultError> {
    Ok(Outcome::Refused { reason, detail: detail.into() })
}

fn seal(tx: &mut Tx<'_>, manifest: &Manifest, time_ms: u64) -> Result<Outcome, VaultError> {
    let Some(config) = tx.get_json::<ClusterConfig>(keys::CONFIG)? else {
        return refuse(Refusal::NotConfigured, "the cluster is not configured yet");
    };
    if let Err(e) = manifest.validate() {
        return refuse(Refusal::Invalid, format!("invalid manifest: {e}"));
    }
    let depositor_key = match registry::person(tx, &manifest.depositor)? {
        Some(p) if p.has(registry::Role::Officer) => registry::public_key_bytes(&p.public_key)
            .map_err(|detail| VaultError::Corrupt { key: String::from_utf8_lossy(&registry::keys::person(&p.name)).into_owned(), detail })?,
        _ => return refuse(Refusal::NotRegistered, format!("{} is not a registered, unrevoked officer: only officers deposit", manifest.depositor)),
    };
    let signed = manifest.signing_bytes().map_err(|e| VaultError::Unrecordable(e.to_string()))?;
    let signature_ok = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &manifest.signature)
        .is_ok_and(|sig| crate::crypto::verify_ed25519(&depositor_key, &signed, &sig));
    if !signature_ok {
        return refuse(Refusal::BadSignature, format!("the deposit is not signed by {}'s registered key", manifest.depositor));
    }
    // The data key is split over exactly the current voters, each share sealed to
    // the key that voter registered: no one else's key can stand in for a holder's.
    let voters = query::voters(tx)?;
    let holders: Vec<u64> = manifest.holders.iter().map(|h| h.node).collect();
    if holders != voters {
        return refuse(
            Refusal::MembershipChanged,
            format!("the data key must be split over the voters {voters:?}, not {holders:?}: the membership changed, deposit again"),
        );
    }
    for h in &manifest.holders {
        let registered = query::share_key(tx, h.node)?.map(hex::encode);
        if registered.as_deref() != Some(h.share_key.as_str()) {
            return refuse(Refusal::MembershipChanged, format!("node {}'s share was sealed to a key it has not registered", h.node));
        }
    }
    if registry::system(tx, &manifest.meta.system)?.is_none() {
        return refuse(Refusal::NotRegistered, format!("source system `{}` is not registered (art. 12): register it first", manifest.meta.system));
    }
    let item_key = keys::item(&manifest.item);
    if tx.get(&item_key)?.is_some() {
        return refuse(Refusal::Duplicate, format!("item {} already exists", manifest.item));
    }
    for c in &manifest.chunks {
        if tx.get(&keys::chunk(&c.name))?.is_some() {
            return refuse(Refusal::Duplicate, format!("chunk {} already belongs to an item", c.name));
        }
    }
    let time_ms = stamp(tx, time_ms)?;
    let period_ms = config.retention.period_secs(manifest.meta.retention).saturating_mul(1000);
    let retain_until_ms = time_ms.saturating_add(period_ms);
    let seq = item_count(tx)?;
    let r = audit::record(
        time_ms,
        Body::Deposit(records::Deposit {
            statement: manifest.statement(),
            retain_until: audit::rfc3339(retain_until_ms),
            signature: manifest.signature.clone(),
        }),
    );
    let leaf_index = access::append_for_item(tx, &manifest.item, &r)?;
    let record = ItemRecord { manifest: manifest.clone(), deposited_at_ms: time_ms, retain_until_ms, seq, leaf_index, hold: None, purged: None };
    tx.put_json(item_key, &record);
    for c in &manifest.chunks {
        tx.put(keys::chunk(&c.name), manifest.item.to_string().into_bytes());
    }
    tx.put(keys::ITEM_COUNT.to_vec(), (seq + 1).to_be_bytes().to_vec());
    Ok(Outcome::Sealed { item: manifest.item, retain_until_ms, seq, leaf_index })
}

fn item_count(tx: &Tx<'_>) -> Result<u64, VaultError> {
    match tx.get(keys::ITEM_COUNT)? {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 8] =
                b.as_slice().try_into().map_err(|_| VaultError::Corrupt { key: "v/item_count".into(), detail: "not 8 bytes".into() })?;
            Ok(u64::from_be_bytes(arr))
        }
    }
}

/// Decodes a stored JSON value; one that does not decode is corrupt state, never absent.
fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice(v).map_err(|e| VaultError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), detail: e.to_string() })
}

/// Read-side queries over committed state.
pub mod query {
    use super::*;

    pub fn config(s: &dyn StateRead) -> Result<Option<ClusterConfig>, VaultError> {
        s.get(keys::CONFIG)?.map(|v| decode(keys::CONFIG, &v)).transpose()
    }

    /// How many items were ever deposited (purged ones included).
    pub fn item_count(s: &dyn StateRead) -> Result<u64, VaultError> {
        match s.get(keys::ITEM_COUNT)? {
            None => Ok(0),
            Some(b) => b
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| VaultError::Corrupt { key: "v/item_count".into(), detail: "not 8 bytes".into() }),
        }
    }

    /// The latest published (majority-cosigned) checkpoint note.
    pub fn checkpoint(s: &dyn StateRead) -> Result<Option<String>, VaultError> {
        Ok(s.get(audit::keys::CHECKPOINT)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The RFC 3161 token (DER) on the latest checkpoint, if it has one.
    /// Read apart from [`checkpoint`]: a reader checks that it belongs to the
    /// note it read (`crate::audit::timestamp::token_imprint`).
    pub fn checkpoint_timestamp(s: &dyn StateRead) -> Result<Option<Vec<u8>>, VaultError> {
        s.get(audit::keys::CHECKPOINT_TIMESTAMP)
    }

    /// Registered checkpoint verifier keys by node.
    pub fn node_keys(s: &dyn StateRead) -> Result<Vec<(u64, String)>, VaultError> {
        Ok(s.scan_prefix(audit::keys::NODE_KEY_PREFIX)?
            .into_iter()
            .filter_map(|(k, v)| {
                let id: [u8; 8] = k[audit::keys::NODE_KEY_PREFIX.len()..].try_into().ok()?;
                Some((u64::from_be_bytes(id), String::from_utf8_lossy(&v).into_owned()))
            })
            .collect())
    }

    /// The registered session-token public key of node `id`.
    pub fn session_key(s: &dyn StateRead, id: u64) -> Result<Option<[u8; 32]>, VaultError> {
        let k = audit::keys::session_key(id);
        match s.get(&k)? {
            None => Ok(None),
            Some(v) => {
                v.try_into().map(Some).map_err(|_| VaultError::Corrupt { key: hex::encode(&k), detail: "a session key is not 32 bytes".into() })
            }
        }
    }

    /// The registered share public key (X25519) of node `id`.
    pub fn share_key(s: &dyn StateRead, id: u64) -> Result<Option<[u8; 32]>, VaultError> {
        let k = audit::keys::share_key(id);
        match s.get(&k)? {
            None => Ok(None),
            Some(v) => v.try_into().map(Some).map_err(|_| VaultError::Corrupt { key: hex::encode(&k), detail: "a share key is not 32 bytes".into() }),
        }
    }

    pub fn voters(s: &dyn StateRead) -> Result<Vec<u64>, VaultError> {
        s.get(keys::VOTERS)?.map(|v| decode(keys::VOTERS, &v)).transpose().map(Option::unwrap_or_default)
    }

    pub fn item(s: &dyn StateRead, id: &ItemId) -> Result<Option<ItemRecord>, VaultError> {
        let k = keys::item(id);
        s.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Whether item `id` was purged (none when there is no such item), read
    /// without building its manifest: a clip of many chunks makes a long
    /// record, and every access request and access record asks this.
    pub fn item_purged(s: &dyn StateRead, id: &ItemId) -> Result<Option<bool>, VaultError> {
        #[derive(Deserialize)]
        struct Purge {
            #[serde(default)]
            purged: Option<retention::Purged>,
        }
        let k = keys::item(id);
        s.get(&k)?.map(|v| decode::<Purge>(&k, &v).map(|p| p.purged.is_some())).transpose()
    }

    pub fn items(s: &dyn StateRead) -> Result<Vec<ItemRecord>, VaultError> {
        let mut out: Vec<ItemRecord> = s.scan_prefix(keys::ITEM_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_, _>>()?;
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Does a committed manifest name this chunk?
    pub fn chunk_owner(s: &dyn StateRead, name: &ChunkName) -> Result<Option<String>, VaultError> {
        Ok(s.get(&keys::chunk(name))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every chunk named by a committed manifest.
    pub fn all_chunks(s: &dyn StateRead) -> Result<Vec<ChunkName>, VaultError> {
        s.scan_prefix(keys::CHUNK_PREFIX)?
            .iter()
            .map(|(k, _)| {
                std::str::from_utf8(&k[keys::CHUNK_PREFIX.len()..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| VaultError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), detail: "bad chunk key".into() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
