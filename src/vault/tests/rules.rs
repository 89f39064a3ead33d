//! Rules of issue 13 (§3–§5), each with the test that goes red without it:
//! no input makes apply panic, one key is one person, a refused command
//! changes nothing, only officers deposit, grants are bounded in time and in
//! fetches, and revoking a signer ends a grant.

use proptest::prelude::*;

use super::*;
use crate::approval::{AccessRequest, Action};
use crate::limits::{MAX_FETCHES_PER_GRANT, MAX_GRANT_SECS, MAX_NODE_ID, MAX_TIME_MS};

const NOW: u64 = 1_800_000_000_000;

/// A configured cluster with officers alice and bob, approver carol, court
/// dave and one item deposited by dora.
fn world() -> (MemState, ItemId) {
    let mut s = MemState::default();
    s.run(&configure(100));
    for (name, role) in [("alice", "officer"), ("bob", "officer"), ("carol", "approver"), ("dave", "court")] {
        let out = registry_change(&mut s, registry::RegistryChange::AddPerson { person: person(name, role) }, 1);
        assert!(matches!(out, Outcome::RegistryStatus { applied: true, .. }), "{out:?}");
    }
    let m = manifest(1, 10);
    assert!(matches!(s.run(&Command::Seal { manifest: m.clone(), time_ms: NOW }), Outcome::Sealed { .. }));
    (s, m.item)
}

fn request(item: ItemId, expires_at_ms: u64, max_fetches: u32) -> AccessRequest {
    AccessRequest {
        item,
        action: Action::Retrieve,
        purpose: "trial".into(),
        approval_doc: "DOC-1".into(),
        participants: vec!["alice".into(), "bob".into()],
        emergency: false,
        expires_at_ms,
        nonce: "ab".repeat(16),
        max_fetches,
    }
}

fn sig(name: &str, req: &AccessRequest) -> String {
    // Signs whatever it is given, valid or not: an attacker's client would.
    let bytes = req.signing_bytes().unwrap_or_else(|_| {
        let v = serde_json::to_value(req).unwrap();
        [crate::approval::SIGNING_CONTEXT, serde_json::to_string(&v).unwrap().as_bytes()].concat()
    });
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of(name).sign(&bytes))
}

fn file(s: &mut MemState, req: &AccessRequest, time_ms: u64) -> Outcome {
    s.run(&Command::FileRequest { request: req.clone(), by: "alice".into(), signature: sig("alice", req), time_ms })
}

fn approve(s: &mut MemState, req: &AccessRequest, by: &str, time_ms: u64) -> Outcome {
    s.run(&Command::Approve { request: req.id().unwrap(), by: by.into(), signature: sig(by, req), time_ms })
}

/// Files and grants `req` (alice files, bob and carol sign).
fn grant(s: &mut MemState, req: &AccessRequest) {
    assert!(matches!(file(s, req, NOW), Outcome::RequestStatus { granted: false, .. }));
    assert!(matches!(approve(s, req, "bob", NOW), Outcome::RequestStatus { granted: false, .. }));
    let out = approve(s, req, "carol", NOW);
    assert!(matches!(out, Outcome::RequestStatus { granted: true, .. }), "{out:?}");
}

fn access(s: &mut MemState, req: &AccessRequest, time_ms: u64) -> Outcome {
    s.run(&record_access(&req.id().unwrap(), req.item, "bob", time_ms))
}

/// A fetch key for the tests' accesses.
const FETCH_KEY: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";

/// An access to record, signed by `by` as their client signs it.
fn record_access(request: &str, item: ItemId, by: &str, time_ms: u64) -> Command {
    let statement = crate::evidence::AccessStatement { item, request: request.into(), fetcher: by.into(), fetch_key: FETCH_KEY.into() };
    let signature = match statement.signing_bytes() {
        Ok(b) => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of(by).sign(&b)),
        Err(_) => String::new(),
    };
    Command::RecordAccess { request: request.into(), item, by: by.into(), fetch_key: FETCH_KEY.into(), signature, time_ms }
}

fn refused_and_unchanged(s: &mut MemState, cmd: &Command) -> (Refusal, String) {
    let before = s.0.clone();
    let out = s.run(cmd);
    let Outcome::Refused { reason, detail } = out else { panic!("not refused: {out:?}") };
    assert_eq!(s.0, before, "a refused command changed state ({reason}: {detail})");
    (reason, detail)
}

/// The crash of issue 13 §3: an expiry near 2^53 passed the old checks, and
/// rendering it as RFC 3339 panicked inside apply, on every node.
#[test]
fn an_expiry_beyond_the_year_9999_is_refused_not_a_crash() {
    let (mut s, item) = world();
    let req = request(item, (1 << 53) - 1, 1);
    let cmd = Command::FileRequest { request: req.clone(), by: "alice".into(), signature: sig("alice", &req), time_ms: NOW };
    refused_and_unchanged(&mut s, &cmd);
    // A leader-stamped time that far out is refused too.
    let hold = Command::Hold { item, by: "alice".into(), reason: "r".into(), time_ms: u64::MAX };
    refused_and_unchanged(&mut s, &hold);
    let hold = Command::Hold { item, by: "alice".into(), reason: "r".into(), time_ms: MAX_TIME_MS };
    assert!(matches!(s.run(&hold), Outcome::RetentionChanged { .. }));
}

#[test]
fn a_membership_change_with_a_huge_node_id_is_still_recorded() {
    let (s, _) = world();
    let mut tx = Tx::new(&s);
    let leaf = record_membership(&mut tx, &[1, 1 << 53], &[u64::MAX]).expect("the record is written");
    let bytes = audit::leaf(&tx, leaf).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["voters"], serde_json::json!([1, "9007199254740992"]));
    // And nodes with such ids cannot register keys or scrub findings.
    let mut s = s;
    let cmd =
        Command::RecordScrub { node: MAX_NODE_ID + 1, chunk: manifest(1, 10).chunks[0].name, found: "missing".into(), repaired: false, time_ms: NOW };
    refused_and_unchanged(&mut s, &cmd);
}

#[test]
fn one_public_key_belongs_to_one_person() {
    let (mut s, _) = world();
    let mut twin = person("alice2", "officer");
    twin.public_key = person("alice", "officer").public_key;
    let cmd = propose("admin", &proposal(registry::RegistryChange::AddPerson { person: twin }, NOW), NOW);
    let (kind, why) = refused_and_unchanged(&mut s, &cmd);
    assert!(kind == Refusal::Duplicate && why.contains("alice"), "{why}");
    // Revoked people keep their key: it cannot be reissued under another name.
    let out = registry_change(&mut s, registry::RegistryChange::RevokePerson { name: "alice".into() }, NOW);
    assert!(matches!(out, Outcome::RegistryStatus { applied: true, .. }), "{out:?}");
    refused_and_unchanged(&mut s, &cmd);
}

/// Issue 13 §5: an approval refused because a participant was revoked
/// meanwhile appended its `approval` leaf all the same.
#[test]
fn a_refused_approval_appends_no_leaf() {
    let (mut s, item) = world();
    let req = request(item, NOW + 1000, 1);
    file(&mut s, &req, NOW);
    approve(&mut s, &req, "bob", NOW);
    registry_change(&mut s, registry::RegistryChange::RevokePerson { name: "bob".into() }, NOW);
    let size = audit::size(&s).unwrap();
    let cmd = Command::Approve { request: req.id().unwrap(), by: "carol".into(), signature: sig("carol", &req), time_ms: NOW };
    refused_and_unchanged(&mut s, &cmd);
    assert_eq!(audit::size(&s).unwrap(), size);
}

#[test]
fn only_officers_deposit() {
    let (mut s, _) = world();
    for who in ["dave", "carol", "admin", "nobody"] {
        let mut m = manifest(2, 10);
        m.depositor = who.into();
        sign_manifest(&mut m, who);
        refused_and_unchanged(&mut s, &Command::Seal { manifest: m, time_ms: NOW });
    }
    registry_change(&mut s, registry::RegistryChange::RevokePerson { name: "dora".into() }, NOW);
    refused_and_unchanged(&mut s, &Command::Seal { manifest: manifest(2, 10), time_ms: NOW });
}

#[test]
fn a_request_lives_at_most_the_longest_grant() {
    let (mut s, item) = world();
    let req = request(item, NOW + MAX_GRANT_SECS * 1000 + 1, 1);
    let cmd = Command::FileRequest { request: req.clone(), by: "alice".into(), signature: sig("alice", &req), time_ms: NOW };
    refused_and_unchanged(&mut s, &cmd);
    let req = request(item, NOW + MAX_GRANT_SECS * 1000, 1);
    assert!(matches!(file(&mut s, &req, NOW), Outcome::RequestStatus { .. }));
}

#[test]
fn a_grant_serves_as_many_fetches_as_its_request_names() {
    let (mut s, item) = world();
    let once = request(item, NOW + 1000, 1);
    grant(&mut s, &once);
    assert!(matches!(access(&mut s, &once, NOW + 1), Outcome::AccessRecorded { .. }));
    let cmd = record_access(&once.id().unwrap(), item, "bob", NOW + 2);
    let (kind, why) = refused_and_unchanged(&mut s, &cmd);
    assert!(kind == Refusal::GrantSpent && why.contains("all used"), "{why}");

    let mut thrice = request(item, NOW + 1000, 3);
    thrice.nonce = "cd".repeat(16);
    grant(&mut s, &thrice);
    for i in 0..3 {
        assert!(matches!(access(&mut s, &thrice, NOW + i), Outcome::AccessRecorded { .. }));
    }
    assert!(matches!(access(&mut s, &thrice, NOW + 4), Outcome::Refused { reason: Refusal::GrantSpent, .. }));
    // No request may name no fetch, or more than the limit.
    for n in [0, MAX_FETCHES_PER_GRANT + 1] {
        let r = request(item, NOW + 1000, n);
        let cmd = Command::FileRequest { request: r.clone(), by: "alice".into(), signature: sig("alice", &r), time_ms: NOW };
        refused_and_unchanged(&mut s, &cmd);
    }
}

#[test]
fn revoking_a_signer_ends_an_unused_grant() {
    for signer in ["alice", "bob", "carol"] {
        let (mut s, item) = world();
        let req = request(item, NOW + 1000, 2);
        grant(&mut s, &req);
        registry_change(&mut s, registry::RegistryChange::RevokePerson { name: signer.into() }, NOW);
        let by = if signer == "bob" { "alice" } else { "bob" };
        let cmd = record_access(&req.id().unwrap(), item, by, NOW + 1);
        let (kind, why) = refused_and_unchanged(&mut s, &cmd);
        assert!(kind == Refusal::NotGranted && why.contains("revoked"), "{signer}: {why}");
    }
}

/// Commands a registered officer's client could sign, with arbitrary fields.
fn arbitrary_command(item: ItemId) -> impl Strategy<Value = Command> {
    let text = prop_oneof![Just(String::new()), "[a-z ]{1,8}", "\\PC{0,40}", Just("x".repeat(2000))];
    let name = prop_oneof![Just("alice".to_string()), Just("bob".to_string()), Just("carol".to_string()), "[a-z0-9.\\-]{0,70}"];
    let time = prop_oneof![Just(NOW), any::<u64>(), (0..=MAX_TIME_MS), Just(MAX_TIME_MS + 1)];
    let req =
        (text.clone(), text.clone(), proptest::collection::vec(name.clone(), 0..20), any::<bool>(), time.clone(), any::<u32>(), "[0-9a-f]{30,34}")
            .prop_map(move |(purpose, approval_doc, participants, emergency, expires_at_ms, max_fetches, nonce)| AccessRequest {
                item,
                action: Action::Retrieve,
                purpose,
                approval_doc,
                participants,
                emergency,
                expires_at_ms,
                nonce,
                max_fetches: max_fetches % (MAX_FETCHES_PER_GRANT + 2),
            });
    (req, name, time, 0..4u8, text).prop_map(move |(request, by, time_ms, kind, reason)| {
        let signature = sig(&by, &request);
        let id = request.id().unwrap_or_else(|_| "00".repeat(16));
        match kind {
            0 => Command::FileRequest { request, by, signature, time_ms },
            1 => Command::Approve { request: id, by, signature, time_ms },
            2 => record_access(&id, item, &by, time_ms),
            _ => Command::Hold { item, by, reason, time_ms },
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Apply never panics or errs on well-signed input; what it refuses leaves
    /// state as it was; and what the limits forbid it refuses.
    #[test]
    fn apply_never_panics_and_refuses_what_the_rules_refuse(cmds in proptest::collection::vec(arbitrary_command(manifest(1, 10).item), 1..12)) {
        let (mut s, _) = world();
        for cmd in &cmds {
            let before = s.0.clone();
            let mut tx = Tx::new(&s);
            let out = apply(&mut tx, cmd).expect("apply errs only when state cannot be read");
            let writes = tx.into_writes();
            if let Outcome::Refused { .. } = out {
                prop_assert!(writes.is_empty(), "a refused command wrote {} keys", writes.len());
            }
            for (k, v) in writes {
                match v { Some(v) => s.0.insert(k, v), None => s.0.remove(&k) };
            }
            let forbidden = cmd.time_ms().is_some_and(|t| t > MAX_TIME_MS)
                || matches!(cmd, Command::FileRequest { request, time_ms, .. }
                    if request.max_fetches == 0
                        || request.max_fetches > MAX_FETCHES_PER_GRANT
                        || request.expires_at_ms > time_ms.saturating_add(MAX_GRANT_SECS * 1000)
                        || request.participants.len() < 2);
            if forbidden {
                prop_assert!(matches!(out, Outcome::Refused { .. }), "{cmd:?} gave {out:?}");
                prop_assert_eq!(&s.0, &before);
            }
        }
    }
}

/// Issue 14: state that cannot be read is an error, never "absent": apply
/// stops (the node halts on it) rather than deciding on a guess.
#[test]
fn corrupt_state_is_an_error_not_absent() {
    let (s, item) = world();
    let mut broken = MemState(s.0.clone());
    broken.0.insert(keys::CLOCK.to_vec(), b"x".to_vec());
    let hold = Command::Hold { item, by: "alice".into(), reason: "r".into(), time_ms: NOW };
    assert!(apply(&mut Tx::new(&broken), &hold).is_err(), "a corrupt clock read as 0");
    let mut broken = MemState(s.0.clone());
    let mut bob = registry::person(&s, "bob").unwrap().unwrap();
    bob.public_key = "not base64".into();
    broken.0.insert(registry::keys::person("bob"), serde_json::to_vec(&bob).unwrap());
    let req = request(item, NOW + 3_600_000, 1);
    let file = Command::FileRequest { request: req.clone(), by: "alice".into(), signature: sig("alice", &req), time_ms: NOW };
    assert!(apply(&mut Tx::new(&broken), &file).is_err(), "a corrupt registry entry read as unregistered");
}

/// Issue 14: the data key is split over exactly the voters, each share sealed to
/// the key that voter registered, and the depositor signs all of it: a leader
/// cannot slip in a key it holds, or make up a deposit.
#[test]
fn a_deposit_splits_its_key_over_the_voters_registered_keys_and_is_the_depositors() {
    let (mut s, _) = world();
    let mallory = crate::crypto::shares::ShareSecretKey::from_seed(&[9; 32]);
    let mut swapped = manifest(2, 10);
    swapped.holders[1].share_key = hex::encode(mallory.public_key());
    sign_manifest(&mut swapped, "dora");
    let (kind, why) = refused_and_unchanged(&mut s, &Command::Seal { manifest: swapped, time_ms: NOW });
    assert!(kind == Refusal::MembershipChanged && why.contains("has not registered"), "{why}");

    let mut fewer = manifest(2, 10);
    fewer.holders.pop();
    sign_manifest(&mut fewer, "dora");
    let (kind, why) = refused_and_unchanged(&mut s, &Command::Seal { manifest: fewer, time_ms: NOW });
    assert!(kind == Refusal::MembershipChanged && why.contains("voters"), "{why}");

    let mut forged = manifest(2, 10);
    sign_manifest(&mut forged, "leader");
    forged.depositor = "dora".into();
    let (kind, why) = refused_and_unchanged(&mut s, &Command::Seal { manifest: forged, time_ms: NOW });
    assert!(kind == Refusal::BadSignature && why.contains("not signed"), "{why}");

    // What the depositor signed is what is sealed: a changed hash no longer verifies.
    let mut altered = manifest(2, 10);
    altered.sha256 = "00".repeat(32);
    refused_and_unchanged(&mut s, &Command::Seal { manifest: altered, time_ms: NOW });
    assert!(matches!(s.run(&Command::Seal { manifest: manifest(2, 10), time_ms: NOW }), Outcome::Sealed { .. }), "the control");
}

/// Issue 14: an access names the key its shares go to, under the fetcher's own
/// signature, and the holders find it at its leaf.
#[test]
fn an_access_is_signed_by_its_fetcher_and_found_by_its_leaf() {
    let (mut s, item) = world();
    let req = request(item, NOW + 1000, 2);
    grant(&mut s, &req);
    let mut forged = record_access(&req.id().unwrap(), item, "bob", NOW + 1);
    if let Command::RecordAccess { signature, .. } = &mut forged {
        let statement = crate::evidence::AccessStatement { item, request: req.id().unwrap(), fetcher: "bob".into(), fetch_key: FETCH_KEY.into() };
        *signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_of("leader").sign(&statement.signing_bytes().unwrap()));
    }
    let (kind, why) = refused_and_unchanged(&mut s, &forged);
    assert!(kind == Refusal::BadSignature && why.contains("not signed"), "{why}");
    let mut other_key = record_access(&req.id().unwrap(), item, "bob", NOW + 1);
    if let Command::RecordAccess { fetch_key, .. } = &mut other_key {
        *fetch_key = "1e".repeat(32);
    }
    refused_and_unchanged(&mut s, &other_key);

    let Outcome::AccessRecorded { leaf_index } = access(&mut s, &req, NOW + 1) else { panic!("not recorded") };
    let a = super::access::access_at(&s, leaf_index).unwrap().unwrap();
    assert_eq!((a.item, a.by.as_str(), a.fetch_key.as_str()), (item, "bob", FETCH_KEY));
    assert!(super::access::access_at(&s, leaf_index - 1).unwrap().is_none(), "only access leaves are accesses");
}

/// Issue 14: each retention rule refuses with its own kind (the API's problem
/// type), and a refusal changes nothing.
#[test]
fn retention_refusals_name_their_rule() {
    let (mut s, item) = world(); // important: retained until NOW + 200 s
    let after = NOW + 300_000;
    let mut req = request(item, after + 1000, 1);
    req.action = Action::Purge;
    grant(&mut s, &req);
    let id = req.id().unwrap();
    let purge = |t| Command::Purge { item, request: id.clone(), by: "alice".into(), time_ms: t };
    assert_eq!(refused_and_unchanged(&mut s, &purge(NOW + 1)).0, Refusal::InsideRetention);
    let extend = |to| Command::Extend { item, retention: to, by: "alice".into(), time_ms: NOW + 2 };
    assert_eq!(refused_and_unchanged(&mut s, &extend(crate::evidence::Retention::Standard)).0, Refusal::RetentionShrinks);
    assert_eq!(refused_and_unchanged(&mut s, &extend(crate::evidence::Retention::Important)).0, Refusal::RetentionShrinks);
    let nothing = ItemId::from_bytes([0xee; 16]);
    let hold = |item| Command::Hold { item, by: "alice".into(), reason: "appeal".into(), time_ms: NOW + 3 };
    assert_eq!(refused_and_unchanged(&mut s, &hold(nothing)).0, Refusal::UnknownItem);
    let other = Command::Purge { item, request: "0".repeat(64), by: "alice".into(), time_ms: after };
    assert_eq!(refused_and_unchanged(&mut s, &other).0, Refusal::UnknownRequest);
    assert!(matches!(s.run(&hold(item)), Outcome::RetentionChanged { hold: true, .. }));
    assert_eq!(refused_and_unchanged(&mut s, &hold(item)).0, Refusal::AlreadyDone);
    assert_eq!(refused_and_unchanged(&mut s, &purge(after)).0, Refusal::OnHold);
    let release = |by: &str| Command::Release { item, by: by.into(), time_ms: after };
    assert_eq!(refused_and_unchanged(&mut s, &release("alice")).0, Refusal::NotPermitted, "an officer releases no hold");
    assert!(matches!(s.run(&release("carol")), Outcome::RetentionChanged { hold: false, .. }));
    assert_eq!(refused_and_unchanged(&mut s, &release("carol")).0, Refusal::AlreadyDone);
    let out = s.run(&purge(after));
    assert!(matches!(out, Outcome::Purged { .. }), "{out:?}");
}

/// Issue 14: purge takes every holder's share out of the state.
#[test]
fn purge_destroys_every_share() {
    let mut s = MemState::default();
    s.run(&configure(1));
    for (name, role) in [("alice", "officer"), ("bob", "officer"), ("carol", "approver")] {
        registry_change(&mut s, registry::RegistryChange::AddPerson { person: person(name, role) }, 1);
    }
    let m = manifest(3, 10);
    assert!(matches!(s.run(&Command::Seal { manifest: m.clone(), time_ms: 10 }), Outcome::Sealed { .. }));
    let mut req = request(m.item, NOW + 1000, 1);
    req.action = Action::Purge;
    grant(&mut s, &req);
    let out = s.run(&Command::Purge { item: m.item, request: req.id().unwrap(), by: "alice".into(), time_ms: NOW });
    assert!(matches!(out, Outcome::Purged { .. }), "{out:?}");
    let rec = query::item(&s, &m.item).unwrap().unwrap();
    assert_eq!(rec.manifest.holders.len(), 3);
    assert!(rec.manifest.holders.iter().all(|h| h.envelope.is_empty()), "a share outlived the purge");
    let envelope = &m.holders[0].envelope;
    assert!(!s.0.values().any(|v| String::from_utf8_lossy(v).contains(envelope.as_str())), "an envelope is still in the state");
}

/// Issue 14: when a voter joins, a threshold of the old holders deal their
/// shares anew (Desmedt–Jajodia); the new voters then hold the same key, any
/// majority of them rebuilds it, fewer do not, and the old envelopes are gone.
#[test]
fn resharing_hands_the_same_key_to_the_new_voters() {
    use crate::crypto::shares;
    let (mut s, _) = world();
    // A real deposit: a key split over voters 1..3, each share sealed to its voter.
    let key = crate::crypto::random_bytes::<32>().unwrap();
    let mut m = manifest(4, 10);
    let split = shares::split(&key, 3).unwrap();
    for (h, share) in m.holders.iter_mut().zip(&split) {
        let aad = shares::share_aad("c1", m.item.as_bytes(), h.node, h.x);
        h.envelope = hex::encode(shares::seal(&share_secret(h.node).public_key(), shares::SHARE_INFO, &aad, &share.to_bytes()).unwrap());
    }
    m.key_commitment = hex::encode(shares::key_commitment(m.item.as_bytes(), &key));
    sign_manifest(&mut m, "dora");
    assert!(matches!(s.run(&Command::Seal { manifest: m.clone(), time_ms: NOW }), Outcome::Sealed { .. }));
    // Node 4 joins as a voter and registers its key.
    let voters = vec![1, 2, 3, 4];
    assert!(matches!(
        registry_change(&mut s, registry::RegistryChange::BindNode { binding: binding(4) }, NOW),
        Outcome::RegistryStatus { applied: true, .. }
    ));
    s.members(&voters, &[]);
    // Each old holder deals its share over the four voters.
    let deal = |from: u64| {
        let h = m.holders.iter().find(|h| h.node == from).unwrap();
        let aad = shares::share_aad("c1", m.item.as_bytes(), from, h.x);
        let mine =
            shares::KeyShare::from_bytes(&share_secret(from).open(shares::SHARE_INFO, &aad, &hex::decode(&h.envelope).unwrap()).unwrap()).unwrap();
        let envelopes = shares::reshare(&mine, 4)
            .unwrap()
            .iter()
            .zip(&voters)
            .map(|(sub, &v)| {
                let aad = shares::reshare_aad("c1", m.item.as_bytes(), v, sub.x, h.x);
                hex::encode(shares::seal(&share_secret(v).public_key(), shares::RESHARE_INFO, &aad, &sub.to_bytes()).unwrap())
            })
            .collect::<Vec<_>>();
        Command::Reshare { item: m.item, from, voters: voters.clone(), envelopes, time_ms: NOW }
    };
    // Not yet for the old voter set, and not from a node that holds nothing.
    let mut wrong = deal(1);
    if let Command::Reshare { voters, .. } = &mut wrong {
        *voters = vec![1, 2, 3];
    }
    refused_and_unchanged(&mut s, &wrong);
    let mut stranger = deal(1);
    if let Command::Reshare { from, .. } = &mut stranger {
        *from = 4;
    }
    refused_and_unchanged(&mut s, &stranger);
    assert_eq!(s.run(&deal(3)), Outcome::Done, "one dealer of the two needed");
    assert_eq!(query::item(&s, &m.item).unwrap().unwrap().manifest.holders.len(), 3, "still the old holders");
    assert!(matches!(s.run(&deal(1)), Outcome::Recorded { .. }), "the second dealer completes it");
    let rec = query::item(&s, &m.item).unwrap().unwrap();
    assert_eq!(rec.manifest.holders.iter().map(|h| h.node).collect::<Vec<_>>(), voters);
    assert_eq!(rec.manifest.threshold, 3);
    assert!(rec.manifest.holders.iter().all(|h| h.envelope.is_empty() && h.parts.len() == 2), "the old envelopes are gone");
    assert!(super::reshare::pending(&s, &m.item).unwrap().is_none());
    // Each new holder combines what was dealt to it; any three rebuild the key, two do not.
    let new: Vec<shares::KeyShare> = rec
        .manifest
        .holders
        .iter()
        .map(|h| {
            let parts: Vec<(u8, shares::KeyShare)> = h
                .parts
                .iter()
                .map(|p| {
                    let aad = shares::reshare_aad("c1", m.item.as_bytes(), h.node, h.x, p.from_x);
                    let b = share_secret(h.node).open(shares::RESHARE_INFO, &aad, &hex::decode(&p.envelope).unwrap()).unwrap();
                    (p.from_x, shares::KeyShare::from_bytes(&b).unwrap())
                })
                .collect();
            shares::combine(&parts, 2, h.x).unwrap()
        })
        .collect();
    assert_eq!(shares::recover(&new[1..4], 3).unwrap(), key, "nodes 2, 3 and 4");
    assert_eq!(shares::recover(&[new[0].clone(), new[3].clone(), new[2].clone()], 3).unwrap(), key);
    assert!(shares::recover(&new[..2], 3).is_err(), "two of four");
    // Done is done: a late dealer changes nothing.
    refused_and_unchanged(&mut s, &deal(2));
}

/// docs/KEYS.md §7: a node's keys are registered only by an administrator's
/// signed change that carries the node's own two proofs; a leader that makes
/// one up, a non-administrator, a key the node does not hold or a
/// certificate of another node are refused, and nothing changes.
#[test]
fn a_node_key_needs_an_administrators_signature_and_the_nodes_own_proofs() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let bind = |b: nodes::NodeBinding| registry::RegistryChange::BindNode { binding: b };
    // The genesis bound the first members, each with its own key.
    let registered: Vec<u64> = query::node_keys(&s).unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(registered, VOTERS.to_vec());
    let p = proposal(bind(binding(4)), NOW);
    // Made up by a leader: no administrator signed it.
    let forged = Command::ProposeRegistry { proposal: p.clone(), by: "admin".into(), signature: signed("admin2", &p), time_ms: NOW };
    assert_eq!(
        refused_and_unchanged(&mut s, &forged),
        (Refusal::BadSignature, "the signature does not verify with admin's registered key".to_string())
    );
    // Signed, but by someone who is not an administrator.
    let (kind, why) = refused_and_unchanged(&mut s, &propose("dora", &p, NOW));
    assert!(kind == Refusal::NotPermitted && why.contains("not an administrator"), "{why}");
    // A checkpoint key the node does not hold: its proof does not verify.
    let mut stolen = binding(4);
    let name = nodes::checkpoint_key_name("c1", 4);
    stolen.keys.checkpoint_key =
        crate::audit::VerifierKey::from_public_key(&name, *checkpoint_signer(2).verifier_key().public_key()).unwrap().to_string();
    let (kind, why) = refused_and_unchanged(&mut s, &propose("admin", &proposal(bind(stolen), NOW), NOW));
    assert!(kind == Refusal::Invalid && why.contains("checkpoint proof does not verify"), "{why}");
    // Another node's share key slipped in: the proofs were over other bytes.
    let mut foreign_key = binding(4);
    foreign_key.keys.share_key = hex::encode(share_secret(1).public_key());
    let (kind, why) = refused_and_unchanged(&mut s, &propose("admin", &proposal(bind(foreign_key), NOW), NOW));
    assert!(kind == Refusal::Invalid && why.contains("proof does not verify"), "{why}");
    // Node 5's certificate (signed with its key) presented as node 4's.
    let other = binding_with_cert(4, 5);
    let (kind, why) = refused_and_unchanged(&mut s, &propose("admin", &proposal(bind(other), NOW), NOW));
    assert!(kind == Refusal::Invalid && why.contains("not node 4's"), "{why}");
    assert!(query::node_keys(&s).unwrap().iter().all(|(id, _)| *id != 4));
    // One administrator's signature over the node's own proofs: bound, and recorded.
    let b = binding(4);
    let out = s.run(&propose("admin", &proposal(bind(b.clone()), NOW), NOW));
    let Outcome::RegistryStatus { applied: true, leaf_index, .. } = out else { panic!("{out:?}") };
    assert_eq!(query::share_key(&s, 4).unwrap(), Some(share_secret(4).public_key()));
    let leaf: serde_json::Value = serde_json::from_slice(&audit::leaf(&s, leaf_index).unwrap().unwrap()).unwrap();
    assert_eq!((leaf["subject"].as_str(), leaf["action"].as_str(), leaf["node"].as_u64()), (Some("node"), Some("bind"), Some(4)));
    assert_eq!(leaf["proposal"]["change"]["binding"], serde_json::to_value(&b).unwrap(), "the record carries what the administrator signed");
}

/// A member that leaves stops counting: its checkpoint key's range closes at
/// the tree size it left at, and its session and share keys are forgotten.
#[test]
fn a_removed_nodes_keys_stop_at_the_size_it_left() {
    let mut s = MemState::default();
    s.run(&configure(100));
    let before = audit::size(&s).unwrap();
    s.members(&[1, 2], &[]);
    let ranges = nodes::key_ranges(&s).unwrap();
    let three: Vec<_> = ranges.iter().filter(|r| r.node == 3).collect();
    assert_eq!(three.len(), 1);
    assert_eq!(three[0].until_size, Some(before), "node 3's key signs no checkpoint past the size it left at");
    assert!(ranges.iter().filter(|r| r.node != 3).all(|r| r.until_size.is_none()));
    assert_eq!(query::share_key(&s, 3).unwrap(), None);
    assert_eq!(query::session_key(&s, 3).unwrap(), None);
    assert!(query::node_keys(&s).unwrap().iter().all(|(id, _)| *id != 3));
}

/// Issue 14: a snapshot is not a back door. A state a real cluster made passes
/// the check against its leaves; each forgery a leader could ship in a
/// snapshot is refused: a person, a grant, an access or a key the tree does not
/// record, a shortened retention, a lifted hold, and a chunk index entry
/// without its item (which would have orphan collectors delete footage).
#[test]
fn a_snapshot_state_is_what_its_leaves_say() {
    use super::snapshot::{check_against_leaves, SnapshotRefusal};
    let (mut s, item) = world();
    let req = request(item, NOW + 1000, 2);
    grant(&mut s, &req);
    assert!(matches!(access(&mut s, &req, NOW + 1), Outcome::AccessRecorded { .. }));
    let hold = Command::Hold { item, reason: "appeal".into(), by: "carol".into(), time_ms: NOW + 2 };
    assert!(matches!(s.run(&hold), Outcome::RetentionChanged { hold: true, .. }), "the hold was refused");
    let mut pending = request(item, NOW + 1000, 5);
    pending.purpose = "never approved".into();
    assert!(matches!(file(&mut s, &pending, NOW), Outcome::RequestStatus { granted: false, .. }));
    check_against_leaves(&s).expect("the state a cluster made checks out");

    let forge = |f: &dyn Fn(&mut MemState)| {
        let mut forged = MemState(s.0.clone());
        f(&mut forged);
        check_against_leaves(&forged).expect_err("a forged state was accepted")
    };
    let edit_json = |st: &mut MemState, key: Vec<u8>, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&st.0[&key]).unwrap();
        f(&mut v);
        st.0.insert(key, serde_json::to_vec(&v).unwrap());
    };

    // A person no registry record adds, with the leader's key.
    let mut mallory = person("mallory", "approver");
    mallory.public_key = person("leader", "approver").public_key;
    let e = forge(&|st| {
        st.0.insert(registry::keys::person("mallory"), serde_json::to_vec(&mallory).unwrap());
    });
    assert!(matches!(e, SnapshotRefusal::Person { .. }), "{e}");
    // An officer made an approver without a record.
    let e = forge(&|st| edit_json(st, registry::keys::person("alice"), &|v| v["roles"] = serde_json::json!(["officer", "approver"])));
    assert!(matches!(e, SnapshotRefusal::Person { .. }), "{e}");
    // A grant no approval made, and more fetches left than the tree shows.
    let id = pending.id().unwrap();
    let e = forge(&|st| {
        edit_json(st, super::access::keys::request(&id), &|v| v["grant"] = serde_json::json!({ "approver": "carol", "at_ms": NOW, "leaf_index": 3 }))
    });
    assert!(matches!(e, SnapshotRefusal::Request { .. }), "{e}");
    let e = forge(&|st| edit_json(st, super::access::keys::request(&req.id().unwrap()), &|v| v["fetches"] = serde_json::json!(0)));
    assert!(matches!(e, SnapshotRefusal::Request { .. }), "{e}");
    // An access a holder would release its share for, under another key.
    let (ac, _) = s.scan_prefix(super::access::keys::ACCESS_PREFIX).unwrap().remove(0);
    let e = forge(&|st| edit_json(st, ac.clone(), &|v| v["fetch_key"] = serde_json::json!("1e".repeat(32))));
    assert!(matches!(e, SnapshotRefusal::Access { .. }), "{e}");
    // Retention shortened, the hold lifted.
    let e = forge(&|st| edit_json(st, keys::item(&item), &|v| v["retain_until_ms"] = serde_json::json!(NOW)));
    assert!(matches!(e, SnapshotRefusal::Item { .. }), "{e}");
    let e = forge(&|st| edit_json(st, keys::item(&item), &|v| v["hold"] = serde_json::Value::Null));
    assert!(matches!(e, SnapshotRefusal::Item { .. }), "{e}");
    // The item's case or depositor's signature changed under its deposit record.
    let e = forge(&|st| edit_json(st, keys::item(&item), &|v| v["manifest"]["meta"]["case"] = serde_json::json!("OTHER-CASE")));
    assert!(matches!(&e, SnapshotRefusal::Item { detail, .. } if detail.contains("statement")), "{e}");
    // The item gone, its chunk index left: an orphan collector's bait.
    let e = forge(&|st| {
        st.0.remove(&keys::item(&item));
    });
    assert!(matches!(e, SnapshotRefusal::Item { .. }), "{e}");
    // A chunk of the item taken out of the index.
    let chunk = query::item(&s, &item).unwrap().unwrap().manifest.chunks[0].name;
    let e = forge(&|st| {
        st.0.remove(&keys::chunk(&chunk));
    });
    assert!(matches!(e, SnapshotRefusal::Item { .. }), "{e}");
    // A leaf that is not a record in its canonical encoding (the tree check
    // would catch a changed leaf too; this check does not lean on it).
    let e = forge(&|st| {
        let k = super::audit::keys::leaf(0);
        let mut bytes = st.0[&k].clone();
        bytes.push(b' ');
        st.0.insert(k, bytes);
    });
    assert!(matches!(e, SnapshotRefusal::Leaf { leaf: 0, .. }), "{e}");
    // A share key swapped for the leader's own.
    let e = forge(&|st| {
        st.0.insert(super::audit::keys::share_key(2), share_secret(9).public_key().to_vec());
    });
    assert!(matches!(e, SnapshotRefusal::Node { .. }), "{e}");
}

/// A request names an item that exists, and no access is recorded to an item
/// once it was purged, not even under a read grant made before the purge.
#[test]
fn requests_and_accesses_need_an_item_not_purged() {
    let (mut s, item) = world(); // important: retained until NOW + 200 s
    let nothing = request(ItemId::from_bytes([0xee; 16]), NOW + 1000, 1);
    let file_nothing = Command::FileRequest { request: nothing.clone(), by: "alice".into(), signature: sig("alice", &nothing), time_ms: NOW };
    assert_eq!(refused_and_unchanged(&mut s, &file_nothing).0, Refusal::UnknownItem);
    let after = NOW + 300_000;
    let read = request(item, after + 10_000, 2);
    grant(&mut s, &read);
    let mut purge = request(item, after + 1000, 1);
    purge.action = Action::Purge;
    grant(&mut s, &purge);
    let out = s.run(&Command::Purge { item, request: purge.id().unwrap(), by: "alice".into(), time_ms: after });
    assert!(matches!(out, Outcome::Purged { .. }), "{out:?}");
    assert_eq!(refused_and_unchanged(&mut s, &record_access(&read.id().unwrap(), item, "bob", after + 1)).0, Refusal::Purged);
}
