//! What a follower checks in a snapshot's state before it installs it
//! (docs/KEYS.md §7.3), besides the tree and its attestation by the other
//! voters (`node::snapshot`): the state a holder and apply trust must be the
//! one the logged leaves say.
//!
//! - every registered person is what the registry records about them, replayed
//!   in leaf order, say (entry, badge, unit, roles, key, revocation), and every
//!   person those records add is registered;
//! - every access a holder would release its share for is an access record in
//!   the tree, for that item, request, fetcher and fetch key;
//! - every node's bound keys are the binding its bind record carries;
//! - every item is the deposit its leaf records (the depositor's signed
//!   statement, its chunk list by digest), with the retention, hold and purge
//!   its later leaves leave it with, and the chunk index names exactly the
//!   chunks of the items not purged: a chunk index entry without its item
//!   (which would have orphan collectors delete footage) is refused;
//! - every request is the one its leaf records, every signature on it an
//!   approval leaf, every grant a grant leaf, and its count of fetches the
//!   count of its access leaves: no grant exists that the tree does not show.
//!
//! A leader that forges any of these in a snapshot is refused; the tree itself
//! cannot be forged past the other voters, who vouch for its root.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::records::{self, Applied, Body, Hold, NodeAction, PersonAction, Record, Registry};

use super::access::RequestRecord;
use super::access::{keys as access_keys, AccessRecord};
use super::nodes::{self, Bound};
use super::registry::{keys as registry_keys, Person, Role};
use super::{audit, decode, keys as vault_keys, ItemRecord, StateRead, VaultError};

/// Why a snapshot's state is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotRefusal {
    #[error("the snapshot's state could not be read: {0}")]
    Read(#[from] VaultError),
    #[error("leaf {leaf} is not a record in its canonical encoding: {detail}")]
    Leaf { leaf: u64, detail: String },
    #[error("person {name}: {detail}")]
    Person { name: String, detail: String },
    #[error("the access at leaf {leaf}: {detail}")]
    Access { leaf: u64, detail: String },
    #[error("node {node}'s keys: {detail}")]
    Node { node: u64, detail: String },
    #[error("item {item}: {detail}")]
    Item { item: String, detail: String },
    #[error("request {request}: {detail}")]
    Request { request: String, detail: String },
}

/// The leaves that state derives from, typed and grouped as the checks read them.
#[derive(Default)]
struct Leaves {
    people: BTreeMap<String, Vec<(u64, PersonAction)>>,
    accesses: BTreeMap<u64, records::Access>,
    /// Every record about an item (deposit, retention, hold, purge), in order.
    items: BTreeMap<String, Vec<(u64, Body)>>,
    /// Every record about a request (request, approval, grant, access, purge), in order.
    requests: BTreeMap<String, Vec<(u64, Body)>>,
}

/// Reads leaf `leaf` as a record; refused unless it is one in its canonical encoding.
fn record_at(s: &dyn StateRead, leaf: u64) -> Result<Option<Record>, SnapshotRefusal> {
    let Some(bytes) = audit::leaf(s, leaf)? else { return Ok(None) };
    Record::from_leaf(&bytes).map(Some).map_err(|e| SnapshotRefusal::Leaf { leaf, detail: e.to_string() })
}

/// Checks the registry, the recorded accesses and the node bindings of
/// `s` against its leaves. The tree itself must have been checked first.
pub fn check_against_leaves(s: &dyn StateRead) -> Result<(), SnapshotRefusal> {
    let size = audit::size(s)?;
    let mut l = Leaves::default();
    for leaf in 0..size {
        // Every leaf must be one of the record types, in its one canonical
        // encoding (`audit::records`): a leaf the log could not have written is
        // refused before anything is read from it.
        let record = record_at(s, leaf)?.ok_or(SnapshotRefusal::Leaf { leaf, detail: "missing".into() })?;
        let (item, request) = (record.item().map(str::to_string), record.request().map(str::to_string));
        let by_item = |l: &mut Leaves, body: Body| l.items.entry(item.clone().unwrap_or_default()).or_default().push((leaf, body));
        let by_request = |l: &mut Leaves, body: Body| l.requests.entry(request.clone().unwrap_or_default()).or_default().push((leaf, body));
        match record.body {
            Body::Registry(Registry::Person(Applied { action, .. })) => {
                l.people.entry(action.name().to_string()).or_default().push((leaf, action));
            }
            body @ (Body::Deposit(_) | Body::Retention(_) | Body::Hold(_)) => by_item(&mut l, body),
            body @ Body::Purge(_) => {
                by_item(&mut l, body.clone());
                by_request(&mut l, body);
            }
            Body::Access(a) => {
                l.accesses.insert(leaf, a.clone());
                by_request(&mut l, Body::Access(a));
            }
            body @ (Body::Request(_) | Body::Approval(_) | Body::Grant(_)) => by_request(&mut l, body),
            _ => {}
        }
    }
    check_people(s, &l.people)?;
    check_accesses(s, &l.accesses)?;
    check_items(s, &l.items)?;
    check_requests(s, &l.requests)?;
    check_nodes(s)
}
fn check_people(s: &dyn StateRead, people: &BTreeMap<String, Vec<(u64, PersonAction)>>) -> Result<(), SnapshotRefusal> {
    let refuse = |name: &str, detail: String| SnapshotRefusal::Person { name: name.to_string(), detail };
    for (name, records) in people {
        let mut replayed: Option<Person> = None;
        for (leaf, action) in records {
            let roles = |list: &[String]| -> Result<BTreeSet<Role>, SnapshotRefusal> {
                list.iter().map(|r| r.parse::<Role>().map_err(|e| refuse(name, format!("leaf {leaf}: {e}")))).collect()
            };
            match (action, replayed.as_mut()) {
                (PersonAction::Add { badge, unit, roles: given, public_key, .. }, _) => {
                    replayed = Some(Person {
                        name: name.clone(),
                        badge: badge.clone(),
                        unit: unit.clone(),
                        roles: roles(given)?,
                        public_key: public_key.clone(),
                        revoked: false,
                    })
                }
                (PersonAction::Revoke { .. }, Some(p)) => p.revoked = true,
                (PersonAction::SetRoles { roles: given, .. }, Some(p)) => p.roles = roles(given)?,
                (PersonAction::ChangeKey { public_key, .. }, Some(p)) => p.public_key = public_key.clone(),
                (_, None) => return Err(refuse(name, format!("leaf {leaf} changes a person not added before"))),
            }
        }
        let k = registry_keys::person(name);
        let stored: Option<Person> = s.get(&k)?.map(|v| decode(&k, &v)).transpose()?;
        if stored != replayed {
            return Err(refuse(name, "the registered person is not what the registry records in the tree say".into()));
        }
    }
    for (k, _) in s.scan_prefix(registry_keys::PERSON_PREFIX)? {
        let name = String::from_utf8_lossy(&k[registry_keys::PERSON_PREFIX.len()..]).into_owned();
        if !people.contains_key(&name) {
            return Err(refuse(&name, "registered, but no registry record in the tree adds them".into()));
        }
    }
    Ok(())
}

fn check_accesses(s: &dyn StateRead, leaves: &BTreeMap<u64, records::Access>) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(access_keys::ACCESS_PREFIX)? {
        let a: AccessRecord = decode(&k, &v)?;
        let index: [u8; 8] = k[access_keys::ACCESS_PREFIX.len()..]
            .try_into()
            .map_err(|_| VaultError::Corrupt { key: hex::encode(&k), detail: "an access key ends in a u64 leaf index".into() })?;
        let leaf = u64::from_be_bytes(index);
        let refuse = |detail: &str| SnapshotRefusal::Access { leaf, detail: detail.to_string() };
        let l = leaves.get(&leaf).ok_or_else(|| refuse("that leaf is not an access record"))?;
        if l.item != a.item.to_string() || l.request != a.request || l.by != a.by || l.fetch_key != a.fetch_key {
            return Err(refuse("the access a holder would release its share for is not the one recorded in the tree"));
        }
    }
    Ok(())
}

/// The node bind record at `leaf`, with the binding it carries whole (an
/// unsigned genesis record carries it itself, a signed one in its proposal).
fn bind_record(s: &dyn StateRead, leaf: u64) -> Result<Option<(NodeAction, Option<nodes::NodeBinding>)>, SnapshotRefusal> {
    let Some(Record { body: Body::Registry(Registry::Node(Applied { action, proposal, .. })), .. }) = record_at(s, leaf)? else {
        return Ok(None);
    };
    let NodeAction::Bind { binding, .. } = &action;
    let whole = match (binding, proposal) {
        (Some(b), _) => serde_json::from_value(b.clone()).ok(),
        (None, Some(p)) => serde_json::from_value::<super::registry::Proposal>(p).ok().and_then(|p| match p.change {
            super::registry::RegistryChange::BindNode { binding } => Some(binding),
            _ => None,
        }),
        (None, None) => None,
    };
    Ok(Some((action, whole)))
}

fn check_nodes(s: &dyn StateRead) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(nodes::keys::BINDING_PREFIX)? {
        let b: Bound = decode(&k, &v)?;
        let node = b.binding.keys.node;
        let refuse = |detail: String| SnapshotRefusal::Node { node, detail };
        let recorded = bind_record(s, b.leaf_index)?.ok_or_else(|| refuse(format!("its bind record, leaf {}, is missing", b.leaf_index)))?;
        if recorded.1.as_ref() != Some(&b.binding) {
            return Err(refuse(format!("the bound keys are not the binding recorded at leaf {}", b.leaf_index)));
        }
        let keys = &b.binding.keys;
        let expect: [(Vec<u8>, Vec<u8>); 3] = [
            (audit::keys::node_key(node), keys.checkpoint_verifier().map_err(refuse)?.to_string().into_bytes()),
            (audit::keys::session_key(node), keys.session_key_bytes().map_err(refuse)?.to_vec()),
            (audit::keys::share_key(node), keys.share_key_bytes().map_err(refuse)?.to_vec()),
        ];
        for (key, want) in expect {
            if s.get(&key)?.as_deref() != Some(want.as_slice()) {
                return Err(refuse("a stored key differs from its binding".into()));
            }
        }
    }
    // Every checkpoint key's range begins at the bind record that bound that key.
    for r in nodes::key_ranges(s)? {
        let refuse =
            || SnapshotRefusal::Node { node: r.node, detail: format!("a checkpoint key's range is not the key bound at leaf {}", r.leaf_index) };
        let Some((NodeAction::Bind { node, checkpoint_key, .. }, _)) = bind_record(s, r.leaf_index)? else { return Err(refuse()) };
        if node != r.node || checkpoint_key != r.key || r.from_size != r.leaf_index + 1 {
            return Err(refuse());
        }
    }
    // A session or share key without a binding would let a forged key in beside the bound ones.
    for prefix in [audit::keys::node_key(0), audit::keys::session_key(0), audit::keys::share_key(0)] {
        let prefix = &prefix[..prefix.len() - 8];
        for (k, _) in s.scan_prefix(prefix)? {
            let id: [u8; 8] = k[prefix.len()..].try_into().unwrap_or_default();
            let node = u64::from_be_bytes(id);
            if nodes::bound(s, node)?.is_none() {
                return Err(SnapshotRefusal::Node { node, detail: "a key is stored for a node with no binding".into() });
            }
        }
    }
    Ok(())
}

fn check_items(s: &dyn StateRead, leaves: &BTreeMap<String, Vec<(u64, Body)>>) -> Result<(), SnapshotRefusal> {
    let mut indexed: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for (k, v) in s.scan_prefix(vault_keys::CHUNK_PREFIX)? {
        indexed.insert(k, String::from_utf8_lossy(&v).into_owned());
    }
    let mut items = 0usize;
    for (k, v) in s.scan_prefix(vault_keys::ITEM_PREFIX)? {
        let rec: ItemRecord = decode(&k, &v)?;
        items += 1;
        let id = rec.manifest.item.to_string();
        let refuse = |detail: String| SnapshotRefusal::Item { item: id.clone(), detail };
        let records = leaves.get(&id).map(Vec::as_slice).unwrap_or_default();
        let Some((leaf, Body::Deposit(deposit))) = records.first() else {
            return Err(refuse("no deposit record in the tree".into()));
        };
        if *leaf != rec.leaf_index {
            return Err(refuse(format!("its deposit record is leaf {leaf}, not {}", rec.leaf_index)));
        }
        // What the depositor signed, but for what later records change: the
        // holders and threshold on re-sharing, the retention class on an extension.
        let mut stated = rec.manifest.statement();
        stated.holders.clone_from(&deposit.statement.holders);
        stated.threshold = deposit.statement.threshold;
        stated.retention.clone_from(&deposit.statement.retention);
        if stated != deposit.statement {
            return Err(refuse("its deposit statement is not the one its deposit record carries".into()));
        }
        if deposit.signature != rec.manifest.signature {
            return Err(refuse("its depositor's signature is not the one its deposit record carries".into()));
        }
        // Retention only grows, so the last record that set it is the one in force.
        let mut until = deposit.retain_until.as_str();
        let (mut held, mut purged) = (false, false);
        for (_, body) in records {
            match body {
                Body::Retention(r) => until = r.retain_until.as_str(),
                Body::Hold(Hold::Hold { .. }) => held = true,
                Body::Hold(Hold::Release { .. }) => held = false,
                Body::Purge(_) => purged = true,
                _ => {}
            }
        }
        if audit::rfc3339(rec.retain_until_ms) != until {
            return Err(refuse(format!("it is kept until {}, the tree says {until}", audit::rfc3339(rec.retain_until_ms))));
        }
        if rec.hold.is_some() != held {
            return Err(refuse(format!("its legal hold is {}, the tree says {}", rec.hold.is_some(), held)));
        }
        if rec.purged.is_some() != purged {
            return Err(refuse(format!("it is purged: {}, the tree says {}", rec.purged.is_some(), purged)));
        }
        for c in &rec.manifest.chunks {
            let owner = indexed.remove(&vault_keys::chunk(&c.name));
            match (purged, owner) {
                (false, Some(o)) if o == id => {}
                (false, _) => return Err(refuse(format!("its chunk {} is not indexed to it", c.name))),
                (true, None) => {}
                (true, Some(_)) => return Err(refuse(format!("its chunk {} is still indexed after its purge", c.name))),
            }
        }
    }
    if let Some((k, owner)) = indexed.into_iter().next() {
        let chunk = String::from_utf8_lossy(&k[vault_keys::CHUNK_PREFIX.len()..]).into_owned();
        return Err(SnapshotRefusal::Item { item: owner, detail: format!("chunk {chunk} is indexed to it, but no item in the state holds it") });
    }
    let deposits = leaves.values().filter(|r| matches!(r.first(), Some((_, Body::Deposit(_))))).count();
    if deposits != items {
        return Err(SnapshotRefusal::Item {
            item: "*".into(),
            detail: format!("the tree records {deposits} deposits, the state holds {items} items"),
        });
    }
    Ok(())
}

fn check_requests(s: &dyn StateRead, leaves: &BTreeMap<String, Vec<(u64, Body)>>) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(super::access::keys::REQUEST_PREFIX)? {
        let rec: RequestRecord = decode(&k, &v)?;
        let refuse = |detail: String| SnapshotRefusal::Request { request: rec.id.clone(), detail };
        let records = leaves.get(&rec.id).map(Vec::as_slice).unwrap_or_default();
        let Some((leaf, filed)) = records.iter().find_map(|(leaf, b)| match b {
            Body::Request(r) => Some((leaf, r)),
            _ => None,
        }) else {
            return Err(refuse("no request record in the tree".into()));
        };
        if *leaf != rec.leaf_index {
            return Err(refuse(format!("its request record is leaf {leaf}, not {}", rec.leaf_index)));
        }
        let r = &rec.request;
        let differs = [
            ("item", filed.item != r.item.to_string()),
            ("action", filed.action != r.action.to_string()),
            ("officers", filed.officers != r.participants),
            ("purpose", filed.purpose != r.purpose),
            ("approval_doc", filed.approval_doc != r.approval_doc),
            ("emergency", filed.emergency != r.emergency),
            ("expires_at", filed.expires_at != audit::rfc3339(r.expires_at_ms)),
            ("max_fetches", filed.max_fetches != r.max_fetches),
        ];
        if let Some((f, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(refuse(format!("its `{f}` is not the one its request record carries")));
        }
        for (signer, signature) in &rec.signatures {
            let recorded = records.iter().any(|(_, b)| match b {
                Body::Request(q) => &q.by == signer && &q.signature == signature,
                Body::Approval(a) => &a.signer == signer && &a.signature == signature,
                _ => false,
            });
            if !recorded {
                return Err(refuse(format!("{signer}'s signature on it is in no request or approval record")));
            }
        }
        if let Some(g) = &rec.grant {
            let granted = records.iter().any(|(leaf, b)| matches!(b, Body::Grant(x) if *leaf == g.leaf_index && x.approver == g.approver));
            if !granted {
                return Err(refuse(format!("its grant by {} is not the grant record at leaf {}", g.approver, g.leaf_index)));
            }
        }
        let fetches = records.iter().filter(|(_, b)| matches!(b, Body::Access(_))).count();
        if rec.fetches as usize != fetches {
            return Err(refuse(format!("it counts {} fetches, the tree records {fetches}", rec.fetches)));
        }
    }
    Ok(())
}
