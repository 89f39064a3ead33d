use super::*;
use crate::evidence::{chunk_count, ChunkRef, DepositMeta, Retention};
use crate::limits::{CHUNK_SIZE_BYTES, GCM_TAG_BYTES};

/// Committed state as a map: the reference the RocksDB adapter must agree with.
#[derive(Default)]
pub(crate) struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl StateRead for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self.0.get(key).cloned())
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        Ok(self.0.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// The test cluster's voters; their key bindings are in the genesis.
const VOTERS: [u64; 3] = [1, 2, 3];

/// Node `node`'s certificate (DER) and its key (PKCS#8), from a test CA;
/// made once per test run, so every test sees the same.
fn node_cert(node: u64) -> (Vec<u8>, Vec<u8>) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CERTS: OnceLock<Mutex<HashMap<u64, (Vec<u8>, Vec<u8>)>>> = OnceLock::new();
    let mut certs = CERTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    certs
        .entry(node)
        .or_insert_with(|| {
            let dir = tempfile::tempdir().unwrap();
            let ca = crate::pki::DevCa::create(&dir.path().join("ca"), "test", 30).unwrap();
            let (cert, key) = (dir.path().join("n.pem"), dir.path().join("n.key"));
            ca.issue_node(node, &cert, &key).unwrap();
            (crate::tls::load_certs(&cert).unwrap().remove(0).as_ref().to_vec(), crate::tls::pkcs8_of(&key).unwrap())
        })
        .clone()
}

/// Node `node`'s binding: its keys derived from its id, signed with them.
fn binding(node: u64) -> nodes::NodeBinding {
    binding_with_cert(node, node)
}

/// Node `node`'s binding carrying (and signed with) node `cert_of`'s
/// certificate; made once (ECDSA signatures are randomised).
fn binding_with_cert(node: u64, cert_of: u64) -> nodes::NodeBinding {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static MADE: OnceLock<Mutex<HashMap<(u64, u64), nodes::NodeBinding>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    if let Some(b) = made.lock().unwrap_or_else(|p| p.into_inner()).get(&(node, cert_of)) {
        return b.clone();
    }
    let b = make_binding(node, cert_of);
    made.lock().unwrap_or_else(|p| p.into_inner()).entry((node, cert_of)).or_insert(b).clone()
}

fn make_binding(node: u64, cert_of: u64) -> nodes::NodeBinding {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (der, pkcs8) = node_cert(cert_of);
    let signer = checkpoint_signer(node);
    let keys = nodes::NodeKeys {
        cluster_id: "c1".into(),
        node,
        checkpoint_key: signer.verifier_key().to_string(),
        session_key: b64
            .encode(crate::crypto::SigningKey::from_seed(&crate::crypto::sha256(format!("session-{node}").as_bytes())).unwrap().public_key()),
        share_key: hex::encode(share_secret(node).public_key()),
        certificate: b64.encode(der),
    };
    nodes::NodeBinding::sign(keys, &signer, &pkcs8).unwrap()
}

/// Node `node`'s checkpoint signer, derived from its id.
fn checkpoint_signer(node: u64) -> crate::audit::Signer {
    crate::audit::Signer::from_seed(&nodes::checkpoint_key_name("c1", node), &crate::crypto::sha256(format!("checkpoint-{node}").as_bytes())).unwrap()
}

/// Voter `node`'s share key, derived from its id.
fn share_secret(node: u64) -> crate::crypto::shares::ShareSecretKey {
    crate::crypto::shares::ShareSecretKey::from_seed(&crate::crypto::sha256(format!("node-{node}").as_bytes()))
}

impl MemState {
    /// Applies `cmd`; a configure that succeeds is followed by what a real
    /// cluster has by then: the membership of `VOTERS`.
    fn run(&mut self, cmd: &Command) -> Outcome {
        let out = self.run_one(cmd);
        if matches!(cmd, Command::Configure { .. }) && out == Outcome::Configured {
            self.members(&VOTERS, &[]);
        }
        out
    }

    /// A membership change applies.
    fn members(&mut self, voters: &[u64], learners: &[u64]) {
        let mut tx = Tx::new(self);
        record_membership(&mut tx, voters, learners).unwrap();
        let writes = tx.into_writes();
        self.write(writes);
    }

    fn write(&mut self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        for (k, v) in writes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
    }

    fn run_one(&mut self, cmd: &Command) -> Outcome {
        let mut tx = Tx::new(self);
        let out = apply(&mut tx, cmd).unwrap();
        let writes = tx.into_writes();
        self.write(writes);
        out
    }
}

fn configure(secs: u64) -> Command {
    let registry = InitialRegistry {
        people: vec![person("admin", "admin"), person("admin2", "admin"), person("dora", "officer")],
        systems: vec![registry::SourceSystem { id: "cam-1".into(), filing: "F-1".into(), operator: "op".into(), location: "road".into() }],
        nodes: VOTERS.iter().map(|&v| binding(v)).collect(),
    };
    Command::Configure {
        config: ClusterConfig { cluster_id: "c1".into(), retention: RetentionPolicy::dev(secs), dev_auto_unseal: false },
        registry,
        time_ms: 0,
    }
}

fn person(name: &str, role: &str) -> registry::Person {
    registry::Person {
        name: name.into(),
        badge: format!("B-{name}"),
        unit: "unit".into(),
        roles: [role.parse().unwrap()].into_iter().collect(),
        public_key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of(name).public_key()),
        revoked: false,
    }
}

/// Each test person's own signing key, derived from their name.
fn key_of(name: &str) -> crate::crypto::SigningKey {
    crate::crypto::SigningKey::from_seed(&crate::crypto::sha256(name.as_bytes())).unwrap()
}

fn proposal(change: registry::RegistryChange, time_ms: u64) -> registry::Proposal {
    let nonce = hex::encode(&crate::crypto::sha256(format!("{change:?}{time_ms}").as_bytes())[..16]);
    registry::Proposal { change, nonce, expires_at_ms: time_ms + 3_600_000 }
}

fn signed(by: &str, p: &registry::Proposal) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of(by).sign(&p.signing_bytes().unwrap()))
}

fn propose(by: &str, p: &registry::Proposal, time_ms: u64) -> Command {
    Command::ProposeRegistry { proposal: p.clone(), by: by.into(), signature: signed(by, p), time_ms }
}

fn approve_change(by: &str, p: &registry::Proposal, time_ms: u64) -> Command {
    Command::ApproveRegistry { change: p.id().unwrap(), by: by.into(), signature: signed(by, p), time_ms }
}

/// A registry change as two administrators make it: `admin` files and signs
/// it, `admin2` approves it when it needs a second signature.
fn registry_change(s: &mut MemState, change: registry::RegistryChange, time_ms: u64) -> Outcome {
    let p = proposal(change, time_ms);
    match s.run(&propose("admin", &p, time_ms)) {
        Outcome::RegistryStatus { applied: false, .. } => s.run(&approve_change("admin2", &p, time_ms)),
        other => other,
    }
}

#[test]
fn only_administrators_change_the_registry_and_every_change_is_recorded() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let size = audit::size(&s).unwrap();
    let add = |p| registry::RegistryChange::AddPerson { person: p };
    // An unregistered user and a registered non-admin are refused; nothing changes.
    assert!(matches!(registry_change(&mut s, add(person("alice", "officer")), 1), Outcome::RegistryStatus { applied: true, .. }));
    assert_eq!(audit::size(&s).unwrap(), size + 2, "the filing and the change");
    for by in ["mallory", "alice"] {
        let before = s.0.clone();
        let out = s.run(&propose(by, &proposal(add(person("eve", "admin")), 2), 2));
        assert!(matches!(out, Outcome::Refused { reason: Refusal::NotPermitted, .. }), "{by} changed the registry: {out:?}");
        assert_eq!(s.0, before);
    }
    // A revoked admin can no longer change it (after a third took their place).
    registry_change(&mut s, add(person("root2", "admin")), 3);
    let p = proposal(registry::RegistryChange::RevokePerson { name: "admin".into() }, 4);
    s.run(&propose("root2", &p, 4));
    assert!(matches!(s.run(&approve_change("admin2", &p, 4)), Outcome::RegistryStatus { applied: true, .. }));
    let out = s.run(&propose("admin", &proposal(add(person("zed", "officer")), 5), 5));
    assert!(matches!(out, Outcome::Refused { reason: Refusal::NotPermitted, .. }), "{out:?}");
    assert!(registry::person(&s, "admin").unwrap().unwrap().revoked);
}

/// Issue 14: a change to people needs two administrators, each signing with their own key.
#[test]
fn a_change_to_people_needs_two_administrators_signatures() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let p = proposal(registry::RegistryChange::AddPerson { person: person("erin", "officer") }, 10);
    let Outcome::RegistryStatus { applied: false, change, .. } = s.run(&propose("admin", &p, 10)) else { panic!("not pending") };
    assert_eq!(change, p.id().unwrap());
    assert!(registry::person(&s, "erin").unwrap().is_none(), "one administrator's signature applied a change to people");
    // The proposer's own second signature does not count.
    let before = s.0.clone();
    let out = s.run(&approve_change("admin", &p, 11));
    assert!(matches!(out, Outcome::Refused { reason: Refusal::NotPermitted, .. }), "{out:?}");
    assert_eq!(s.0, before);
    // A signature the leader makes up (by another key) is refused, in apply, on every node.
    let mut forged = approve_change("admin2", &p, 11);
    if let Command::ApproveRegistry { signature, .. } = &mut forged {
        *signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of("leader").sign(&p.signing_bytes().unwrap()));
    }
    let out = s.run(&forged);
    assert!(matches!(out, Outcome::Refused { reason: Refusal::BadSignature, .. }), "{out:?}");
    let unsigned = Command::ProposeRegistry {
        proposal: proposal(registry::RegistryChange::RevokePerson { name: "dora".into() }, 12),
        by: "admin".into(),
        signature: String::new(),
        time_ms: 12,
    };
    let out = s.run(&unsigned);
    assert!(matches!(out, Outcome::Refused { reason: Refusal::BadSignature, .. }), "an unsigned change: {out:?}");
    assert_eq!(s.0, before);
    // The second administrator's signature applies it.
    assert!(matches!(s.run(&approve_change("admin2", &p, 12)), Outcome::RegistryStatus { applied: true, .. }));
    assert!(registry::person(&s, "erin").unwrap().is_some());
    assert!(registry::pending(&s, &p.id().unwrap()).unwrap().is_none(), "applied once");
    let out = s.run(&approve_change("admin2", &p, 13));
    assert!(matches!(out, Outcome::Refused { reason: Refusal::UnknownChange, .. }), "and never again: {out:?}");
    // A source system needs one signature.
    let sys = registry::SourceSystem { id: "cam-2".into(), filing: "F-2".into(), operator: "op".into(), location: "gate".into() };
    assert!(matches!(
        s.run(&propose("admin", &proposal(registry::RegistryChange::AddSystem { system: sys }, 14), 14)),
        Outcome::RegistryStatus { applied: true, .. }
    ));
    // Past its expiry a proposal no longer applies.
    let late = proposal(registry::RegistryChange::RevokePerson { name: "dora".into() }, 20);
    s.run(&propose("admin", &late, 20));
    let out = s.run(&approve_change("admin2", &late, late.expires_at_ms + 1));
    assert!(matches!(out, Outcome::Refused { reason: Refusal::Expired, .. }), "{out:?}");
}

#[test]
fn the_last_two_administrators_stay() {
    let mut s = MemState::default();
    s.run(&configure(100));
    for change in [
        registry::RegistryChange::RevokePerson { name: "admin2".into() },
        registry::RegistryChange::SetRoles { name: "admin2".into(), roles: [registry::Role::Officer].into_iter().collect() },
    ] {
        let out = s.run(&propose("admin", &proposal(change, 1), 1));
        assert!(matches!(&out, Outcome::Refused { reason: Refusal::LastAdministrators, detail } if detail.contains("last two")), "{out:?}");
    }
    // With a third, one may go; then the two left stay.
    registry_change(&mut s, registry::RegistryChange::AddPerson { person: person("admin3", "admin") }, 2);
    assert!(matches!(
        registry_change(&mut s, registry::RegistryChange::RevokePerson { name: "admin3".into() }, 3),
        Outcome::RegistryStatus { applied: true, .. }
    ));
    let out = s.run(&propose("admin", &proposal(registry::RegistryChange::RevokePerson { name: "admin2".into() }, 4), 4));
    assert!(matches!(out, Outcome::Refused { reason: Refusal::LastAdministrators, .. }), "{out:?}");
    // And a cluster cannot start with fewer than two.
    let mut one = MemState::default();
    let Command::Configure { config, mut registry, time_ms } = configure(100) else { unreachable!() };
    registry.people.retain(|p| p.name != "admin2");
    let out = one.run(&Command::Configure { config, registry, time_ms });
    assert!(matches!(out, Outcome::Refused { reason: Refusal::Invalid, .. }), "{out:?}");
}

#[test]
fn a_deposit_must_name_a_registered_source_system() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let mut m = manifest(1, 10);
    m.meta.system = "cam-unfiled".into();
    sign_manifest(&mut m, "dora");
    let out = s.run(&Command::Seal { manifest: m, time_ms: 1 });
    assert!(matches!(&out, Outcome::Refused { reason: Refusal::NotRegistered, detail } if detail.contains("not registered")), "{out:?}");
    assert!(matches!(s.run(&Command::Seal { manifest: manifest(1, 10), time_ms: 1 }), Outcome::Sealed { .. }));
}

fn manifest(tag: u8, size: u64) -> Manifest {
    let n = chunk_count(size, CHUNK_SIZE_BYTES);
    let mut left = size;
    let chunks = (0..n)
        .map(|i| {
            let plain = left.min(CHUNK_SIZE_BYTES);
            left -= plain;
            let mut d = [tag; 32];
            d[31] = i as u8;
            ChunkRef { name: ChunkName::from_digest(d), size: plain + GCM_TAG_BYTES }
        })
        .collect();
    let mut m = Manifest {
        item: ItemId::from_bytes([tag; 16]),
        sha256: "ab".repeat(32),
        size,
        chunk_size: CHUNK_SIZE_BYTES,
        chunks,
        nonce_prefix: "00010203".into(),
        holders: VOTERS
            .iter()
            .zip(1u8..)
            .map(|(&node, x)| crate::evidence::Holder {
                node,
                x,
                share_key: hex::encode(share_secret(node).public_key()),
                envelope: "ee".repeat(crate::crypto::shares::SHARE_ENVELOPE_BYTES),
                parts: Vec::new(),
            })
            .collect(),
        threshold: 2,
        key_commitment: "cd".repeat(32),
        meta: DepositMeta { case: "case-1".into(), system: "cam-1".into(), retention: Retention::Important, note: None },
        depositor: "dora".into(),
        signature: String::new(),
    };
    sign_manifest(&mut m, "dora");
    m
}

/// Signs `m` as `by` (the depositor's client does this).
fn sign_manifest(m: &mut Manifest, by: &str) {
    m.signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of(by).sign(&m.signing_bytes().unwrap()));
}

#[test]
fn seal_needs_a_configured_cluster() {
    let mut s = MemState::default();
    let out = s.run(&Command::Seal { manifest: manifest(1, 10), time_ms: 5 });
    assert!(matches!(out, Outcome::Refused { reason: Refusal::NotConfigured, .. }), "{out:?}");
    assert!(s.0.is_empty(), "a refused command changes nothing");
}

#[test]
fn seal_records_item_and_retention_from_stamped_time() {
    let mut s = MemState::default();
    assert_eq!(s.run(&configure(100)), Outcome::Configured);
    let m = manifest(1, 2 * CHUNK_SIZE_BYTES + 1);
    let out = s.run(&Command::Seal { manifest: m.clone(), time_ms: 1_000 });
    // important = 2 × dev period
    // leaves 0-4: the cluster record and the initial registry (three people, one system);
    // 5-8: the membership and three share keys; 9: the deposit
    assert_eq!(out, Outcome::Sealed { item: m.item, retain_until_ms: 1_000 + 200_000, seq: 0, leaf_index: 9 });
    let rec = query::item(&s, &m.item).unwrap().unwrap();
    assert_eq!(rec.manifest, m);
    assert_eq!(query::all_chunks(&s).unwrap().len(), 3);
    assert_eq!(query::chunk_owner(&s, &m.chunks[0].name).unwrap().unwrap(), m.item.to_string());
}

#[test]
fn a_second_configure_changes_nothing() {
    let mut s = MemState::default();
    s.run(&configure(100));
    assert_eq!(s.run(&configure(1)), Outcome::Done);
    assert_eq!(query::config(&s).unwrap().unwrap().retention, RetentionPolicy::dev(100));
}

#[test]
fn duplicate_items_and_shared_chunks_are_refused() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let m = manifest(1, 10);
    assert!(matches!(s.run(&Command::Seal { manifest: m.clone(), time_ms: 1 }), Outcome::Sealed { .. }));
    let before = s.0.clone();
    assert!(matches!(s.run(&Command::Seal { manifest: m.clone(), time_ms: 2 }), Outcome::Refused { reason: Refusal::Duplicate, .. }));
    let mut other = manifest(2, 10);
    other.chunks[0].name = m.chunks[0].name;
    sign_manifest(&mut other, "dora"); // refused for the chunk, not for a broken signature
    let out = s.run(&Command::Seal { manifest: other, time_ms: 3 });
    assert!(matches!(&out, Outcome::Refused { reason: Refusal::Duplicate, detail } if detail.contains("already belongs")), "{out:?}");
    assert_eq!(s.0, before);
}

#[test]
fn malformed_manifests_are_refused_inside_apply() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let mut m = manifest(1, 10);
    m.size = 11; // sizes no longer add up
    assert!(matches!(s.run(&Command::Seal { manifest: m, time_ms: 1 }), Outcome::Refused { reason: Refusal::Invalid, .. }));
    let mut m = manifest(1, CHUNK_SIZE_BYTES * 2);
    m.chunks.pop(); // truncated chunk list
    assert!(matches!(s.run(&Command::Seal { manifest: m, time_ms: 1 }), Outcome::Refused { reason: Refusal::Invalid, .. }));
    let mut m = manifest(1, 10);
    m.meta.case = String::new();
    assert!(matches!(s.run(&Command::Seal { manifest: m, time_ms: 1 }), Outcome::Refused { reason: Refusal::Invalid, .. }));
    assert!(query::items(&s).unwrap().is_empty());
}

#[test]
fn items_list_in_deposit_order() {
    let mut s = MemState::default();
    s.run(&configure(100));
    for tag in [9u8, 3, 5] {
        s.run(&Command::Seal { manifest: manifest(tag, 10), time_ms: tag as u64 });
    }
    let seqs: Vec<u8> = query::items(&s).unwrap().iter().map(|r| r.manifest.item.as_bytes()[0]).collect();
    assert_eq!(seqs, vec![9, 3, 5]);
}

#[test]
fn a_batch_applies_each_command_as_its_own_entry_would() {
    let sys = |id: &str| registry::RegistryChange::AddSystem {
        system: registry::SourceSystem { id: id.into(), filing: "F".into(), operator: "op".into(), location: "l".into() },
    };
    let cmds = vec![
        propose("admin", &proposal(sys("cam-a"), 1), 1),
        // Refused inside the batch: not an admin. The others still apply.
        propose("dora", &proposal(sys("cam-b"), 2), 2),
        propose("admin", &proposal(sys("cam-c"), 3), 3),
    ];
    // One at a time...
    let mut one = MemState::default();
    one.run(&configure(100));
    let singles: Vec<Outcome> = cmds.iter().map(|c| one.run(c)).collect();
    // ...and as one batch: the same outcomes and the same state, byte for byte.
    let mut batched = MemState::default();
    batched.run(&configure(100));
    let out = batched.run(&Command::Batch { commands: cmds });
    assert_eq!(out, Outcome::Batch { outcomes: singles.clone() });
    assert!(matches!(singles[1], Outcome::Refused { reason: Refusal::NotPermitted, .. }), "{:?}", singles[1]);
    assert_eq!(batched.0, one.0);
    assert!(registry::system(&batched, "cam-c").unwrap().is_some());
    assert!(registry::system(&batched, "cam-b").unwrap().is_none());
}

#[test]
fn a_batch_refuses_what_must_travel_alone() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let before = s.0.clone();
    let nested = Command::Batch { commands: vec![] };
    let seal = Command::Seal { manifest: manifest(1, 10), time_ms: 5 };
    let out = s.run(&Command::Batch { commands: vec![seal, nested] });
    let Outcome::Batch { outcomes } = out else { panic!("{out:?}") };
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Refused { reason: Refusal::Invalid, .. })), "{outcomes:?}");
    assert_eq!(s.0, before, "a refused batch member changed state");
}

mod golden;
mod rules;
