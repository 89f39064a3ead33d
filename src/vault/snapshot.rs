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

use std::collections::BTreeMap;

use serde_json::Value;

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

/// The leaves that state derives from, grouped as the checks read them.
#[derive(Default)]
struct Leaves {
    people: BTreeMap<String, Vec<(u64, Value)>>,
    accesses: BTreeMap<u64, Value>,
    /// Every leaf about an item (deposit, retention, hold, purge), in order.
    items: BTreeMap<String, Vec<(u64, Value)>>,
    /// Every leaf about a request (request, approval, grant, access), in order.
    requests: BTreeMap<String, Vec<(u64, Value)>>,
}

/// Checks the registry, the recorded accesses and the node bindings of
/// `s` against its leaves. The tree itself must have been checked first.
pub fn check_against_leaves(s: &dyn StateRead) -> Result<(), SnapshotRefusal> {
    let size = audit::size(s)?;
    let mut l = Leaves::default();
    for leaf in 0..size {
        let bytes = audit::leaf(s, leaf)?.ok_or(SnapshotRefusal::Leaf { leaf, detail: "missing".into() })?;
        // Every leaf must be one of the record types, in its one canonical
        // encoding (`audit::records`): a leaf the log could not have written is
        // refused before anything is read from it.
        crate::audit::records::Record::from_leaf(&bytes).map_err(|e| SnapshotRefusal::Leaf { leaf, detail: e.to_string() })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| SnapshotRefusal::Leaf { leaf, detail: e.to_string() })?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let field = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
        match kind.as_str() {
            "registry" if field("subject").as_deref() == Some("person") => {
                l.people.entry(field("name").unwrap_or_default()).or_default().push((leaf, v));
            }
            "deposit" | "retention" | "hold" | "purge" => {
                if kind == "purge" {
                    l.requests.entry(field("request").unwrap_or_default()).or_default().push((leaf, v.clone()));
                }
                l.items.entry(field("item").unwrap_or_default()).or_default().push((leaf, v));
            }
            "request" | "approval" | "grant" | "access" => {
                if kind == "access" {
                    l.accesses.insert(leaf, v.clone());
                }
                l.requests.entry(field("request").unwrap_or_default()).or_default().push((leaf, v));
            }
            _ => {}
        }
    }
    check_people(s, &l.people)?;
    check_accesses(s, &l.accesses)?;
    check_items(s, &l.items)?;
    check_requests(s, &l.requests)?;
    check_nodes(s)
}

fn check_people(s: &dyn StateRead, people: &BTreeMap<String, Vec<(u64, Value)>>) -> Result<(), SnapshotRefusal> {
    let refuse = |name: &str, detail: String| SnapshotRefusal::Person { name: name.to_string(), detail };
    for (name, records) in people {
        let mut replayed: Option<Person> = None;
        for (leaf, v) in records {
            let text = |field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
            let roles = || -> Result<std::collections::BTreeSet<Role>, SnapshotRefusal> {
                let list = v.get("roles").and_then(Value::as_array).ok_or_else(|| refuse(name, format!("leaf {leaf} lists no roles")))?;
                list.iter().map(|r| r.as_str().unwrap_or_default().parse::<Role>().map_err(|e| refuse(name, format!("leaf {leaf}: {e}")))).collect()
            };
            let action = v.get("action").and_then(Value::as_str).unwrap_or_default();
            match (action, replayed.as_mut()) {
                ("add", _) => {
                    replayed = Some(Person {
                        name: name.clone(),
                        badge: text("badge").unwrap_or_default(),
                        unit: text("unit").unwrap_or_default(),
                        roles: roles()?,
                        public_key: text("public_key").ok_or_else(|| refuse(name, format!("leaf {leaf} names no key")))?,
                        revoked: false,
                    })
                }
                ("revoke", Some(p)) => p.revoked = true,
                ("set-roles", Some(p)) => p.roles = roles()?,
                ("change-key", Some(p)) => p.public_key = text("public_key").ok_or_else(|| refuse(name, format!("leaf {leaf} names no key")))?,
                (other, _) => return Err(refuse(name, format!("leaf {leaf} records `{other}` for a person not added before"))),
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

fn check_accesses(s: &dyn StateRead, leaves: &BTreeMap<u64, Value>) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(access_keys::ACCESS_PREFIX)? {
        let a: AccessRecord = decode(&k, &v)?;
        let index: [u8; 8] = k[access_keys::ACCESS_PREFIX.len()..]
            .try_into()
            .map_err(|_| VaultError::Corrupt { key: hex::encode(&k), detail: "an access key ends in a u64 leaf index".into() })?;
        let leaf = u64::from_be_bytes(index);
        let refuse = |detail: &str| SnapshotRefusal::Access { leaf, detail: detail.to_string() };
        let l = leaves.get(&leaf).ok_or_else(|| refuse("that leaf is not an access record"))?;
        let field = |f: &str| l.get(f).and_then(Value::as_str).unwrap_or_default();
        if field("item") != a.item.to_string() || field("request") != a.request || field("by") != a.by || field("fetch_key") != a.fetch_key {
            return Err(refuse("the access a holder would release its share for is not the one recorded in the tree"));
        }
    }
    Ok(())
}

fn check_nodes(s: &dyn StateRead) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(nodes::keys::BINDING_PREFIX)? {
        let b: Bound = decode(&k, &v)?;
        let node = b.binding.keys.node;
        let refuse = |detail: String| SnapshotRefusal::Node { node, detail };
        let leaf = audit::leaf(s, b.leaf_index)?.ok_or_else(|| refuse(format!("its bind record, leaf {}, is missing", b.leaf_index)))?;
        let v: Value = serde_json::from_slice(&leaf).map_err(|e| refuse(e.to_string()))?;
        // An unsigned (genesis) bind record carries the binding; a signed one
        // carries it in its proposal.
        let recorded = v.get("binding").or_else(|| v.pointer("/proposal/change/binding"));
        let recorded: Option<nodes::NodeBinding> = recorded.and_then(|b| serde_json::from_value(b.clone()).ok());
        if recorded.as_ref() != Some(&b.binding) {
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
        let refuse = |detail: String| SnapshotRefusal::Node { node: r.node, detail };
        let leaf =
            audit::leaf(s, r.leaf_index)?.ok_or_else(|| refuse(format!("the bind record of a key range, leaf {}, is missing", r.leaf_index)))?;
        let v: Value = serde_json::from_slice(&leaf).map_err(|e| refuse(e.to_string()))?;
        let bind = v.get("subject").and_then(Value::as_str) == Some("node") && v.get("action").and_then(Value::as_str) == Some("bind");
        if !bind
            || v.get("node").and_then(Value::as_u64) != Some(r.node)
            || v.get("checkpoint_key").and_then(Value::as_str) != Some(r.key.as_str())
            || r.from_size != r.leaf_index + 1
        {
            return Err(refuse(format!("a checkpoint key's range is not the key bound at leaf {}", r.leaf_index)));
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

/// The deposit statement's fields a later change never alters (holders change
/// on re-sharing, the retention class on an extension).
const FIXED_DEPOSIT_FIELDS: &[&str] =
    &["item", "sha256", "size", "chunk_size", "chunks", "chunks_sha256", "nonce_prefix", "key_commitment", "case", "system", "depositor", "note"];

fn check_items(s: &dyn StateRead, leaves: &BTreeMap<String, Vec<(u64, Value)>>) -> Result<(), SnapshotRefusal> {
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
        let Some((leaf, deposit)) = records.first().filter(|(_, v)| v.get("kind").and_then(Value::as_str) == Some("deposit")) else {
            return Err(refuse("no deposit record in the tree".into()));
        };
        if *leaf != rec.leaf_index {
            return Err(refuse(format!("its deposit record is leaf {leaf}, not {}", rec.leaf_index)));
        }
        let statement = serde_json::to_value(rec.manifest.statement()).map_err(|e| refuse(e.to_string()))?;
        for f in FIXED_DEPOSIT_FIELDS {
            if statement.get(*f) != deposit.get(*f) {
                return Err(refuse(format!("its `{f}` is not the one its deposit record carries")));
            }
        }
        if deposit.get("signature").and_then(Value::as_str) != Some(rec.manifest.signature.as_str()) {
            return Err(refuse("its depositor's signature is not the one its deposit record carries".into()));
        }
        // Retention only grows, so the last record that set it is the one in force.
        let until = records.iter().rev().find_map(|(_, v)| v.get("retain_until").and_then(Value::as_str)).unwrap_or_default();
        if audit::rfc3339(rec.retain_until_ms) != until {
            return Err(refuse(format!("it is kept until {}, the tree says {until}", audit::rfc3339(rec.retain_until_ms))));
        }
        let mut held = false;
        let mut purged = false;
        for (_, v) in records {
            match (v.get("kind").and_then(Value::as_str), v.get("action").and_then(Value::as_str)) {
                (Some("hold"), Some("hold")) => held = true,
                (Some("hold"), Some("release")) => held = false,
                (Some("purge"), _) => purged = true,
                _ => {}
            }
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
    let deposits = leaves.values().filter(|r| r.first().is_some_and(|(_, v)| v.get("kind").and_then(Value::as_str) == Some("deposit"))).count();
    if deposits != items {
        return Err(SnapshotRefusal::Item {
            item: "*".into(),
            detail: format!("the tree records {deposits} deposits, the state holds {items} items"),
        });
    }
    Ok(())
}

fn check_requests(s: &dyn StateRead, leaves: &BTreeMap<String, Vec<(u64, Value)>>) -> Result<(), SnapshotRefusal> {
    for (k, v) in s.scan_prefix(super::access::keys::REQUEST_PREFIX)? {
        let rec: RequestRecord = decode(&k, &v)?;
        let refuse = |detail: String| SnapshotRefusal::Request { request: rec.id.clone(), detail };
        let records = leaves.get(&rec.id).map(Vec::as_slice).unwrap_or_default();
        let of_kind = |kind: &'static str| records.iter().filter(move |(_, v)| v.get("kind").and_then(Value::as_str) == Some(kind));
        let Some((leaf, filed)) = of_kind("request").next() else { return Err(refuse("no request record in the tree".into())) };
        if *leaf != rec.leaf_index {
            return Err(refuse(format!("its request record is leaf {leaf}, not {}", rec.leaf_index)));
        }
        let r = &rec.request;
        let expect = [
            ("item", serde_json::json!(r.item)),
            ("action", serde_json::json!(r.action)),
            ("officers", serde_json::json!(r.participants)),
            ("purpose", serde_json::json!(r.purpose)),
            ("approval_doc", serde_json::json!(r.approval_doc)),
            ("emergency", serde_json::json!(r.emergency)),
            ("expires_at", serde_json::json!(audit::rfc3339(r.expires_at_ms))),
            ("max_fetches", serde_json::json!(r.max_fetches)),
        ];
        for (f, want) in expect {
            if filed.get(f) != Some(&want) {
                return Err(refuse(format!("its `{f}` is not the one its request record carries")));
            }
        }
        for (signer, signature) in &rec.signatures {
            let recorded = |(_, v): &&(u64, Value)| {
                v.get("signature").and_then(Value::as_str) == Some(signature.as_str())
                    && (v.get("by").and_then(Value::as_str) == Some(signer.as_str())
                        || v.get("signer").and_then(Value::as_str) == Some(signer.as_str()))
            };
            if !of_kind("request").chain(of_kind("approval")).any(|x| recorded(&x)) {
                return Err(refuse(format!("{signer}'s signature on it is in no request or approval record")));
            }
        }
        if let Some(g) = &rec.grant {
            let granted =
                of_kind("grant").any(|(leaf, v)| *leaf == g.leaf_index && v.get("approver").and_then(Value::as_str) == Some(g.approver.as_str()));
            if !granted {
                return Err(refuse(format!("its grant by {} is not the grant record at leaf {}", g.approver, g.leaf_index)));
            }
        }
        let fetches = of_kind("access").count();
        if rec.fetches as usize != fetches {
            return Err(refuse(format!("it counts {} fetches, the tree records {fetches}", rec.fetches)));
        }
    }
    Ok(())
}
