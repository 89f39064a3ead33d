//! The offline verifier against bundles built here, in process: a log of
//! real-shaped, really signed records (three people registered, a deposit,
//! a request signed by two officers and an approver, its grant, an access,
//! a retention extension and a hold), a Merkle tree, a checkpoint. Each rule
//! of `bundle::verify` is tested by a forgery it must reject, by name; and
//! parsing is fuzzed with proptest (bundle, checkpoint note, key file).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::bundle::{self, Bundle, LeafProof, TrustedKey};
use crate::crypto::SigningKey;
use crate::heads::ItemHead;
use crate::jcs::to_canonical_bytes;
use crate::merkle::{inclusion_proof, leaf_hash, MemStore};
use crate::note::{sign_note, Checkpoint, Note, Signer};
use crate::records::*;
use crate::trail::{rfc3339_ms, SignedRequest};

const ITEM: &str = "0123456789abcdef0123456789abcdef";
const T0: u64 = 1_800_000_000_000;
const SHA: &str = "f62df20cd206a5173236921e62005f07d2c80c05728ca07de40d4abfa43fb504";
const FETCH_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn person(name: &str) -> SigningKey {
    key(match name {
        "alice" => 1,
        "bob" => 2,
        "carol" => 3,
        _ => 4,
    })
}

fn b64(b: &[u8]) -> String {
    BASE64.encode(b)
}

fn rec(ms: u64, body: Body) -> Record {
    Record::new(rfc3339_ms(ms).unwrap(), body)
}

fn add(name: &str, roles: &[&str]) -> Record {
    rec(
        T0 - 1000,
        Body::Registry(Registry::Person(Applied {
            by: "cluster init".into(),
            action: PersonAction::Add {
                name: name.into(),
                badge: format!("B-{name}"),
                unit: "U".into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                public_key: b64(&person(name).public_key()),
            },
            change: None,
            proposal: None,
            signatures: None,
        })),
    )
}

fn deposit() -> Record {
    let statement = DepositStatement {
        item: ITEM.into(),
        sha256: SHA.into(),
        size: 10_000,
        chunk_size: 4 << 20,
        chunks: 1,
        chunks_sha256: SHA.into(),
        nonce_prefix: "00010203".into(),
        holders: (1..=3).map(|n| ListedHolder { node: n, x: n as u8, share_key: SHA.into() }).collect(),
        threshold: 2,
        key_commitment: SHA.into(),
        case: "case-15".into(),
        system: "cam-1".into(),
        retention: "standard".into(),
        depositor: "alice".into(),
        note: None,
    };
    let signed = [b"custody/deposit/v1\n".as_slice(), &statement.canonical_bytes().unwrap()].concat();
    let signature = b64(&person("alice").sign(&signed));
    rec(T0, Body::Deposit(Deposit { statement, retain_until: rfc3339_ms(T0 + 15 * 86_400_000).unwrap(), signature }))
}

/// A request for the item, its signed bytes and id.
fn request(participants: &[&str], action: &str) -> (SignedRequest, Vec<u8>, String) {
    request_with(participants, action, false)
}

fn request_with(participants: &[&str], action: &str, emergency: bool) -> (SignedRequest, Vec<u8>, String) {
    let r = SignedRequest {
        item: ITEM.into(),
        action: action.into(),
        purpose: "trial".into(),
        approval_doc: "DOC-1".into(),
        participants: participants.iter().map(|p| p.to_string()).collect(),
        emergency,
        expires_at_ms: T0 + 86_400_000,
        nonce: "00ff".into(),
        max_fetches: 1,
    };
    let signed = [b"custody/access-request/v1\n".as_slice(), &to_canonical_bytes(&serde_json::to_value(&r).unwrap()).unwrap()].concat();
    let id = hex::encode(&crate::crypto::sha256(&signed)[..16]);
    (r, signed, id)
}

fn sig(name: &str, signed: &[u8]) -> String {
    b64(&person(name).sign(signed))
}

/// A log and the `approvals` a bundle of it carries.
struct Log {
    records: Vec<Record>,
    approvals: Vec<Value>,
}

fn entry(id: &str, signer: &str, signed: &[u8]) -> Value {
    json!({ "request": id, "signer": signer, "public_key": b64(&person(signer).public_key()), "signature": sig(signer, signed), "signed": b64(signed) })
}

fn request_record(r: &SignedRequest, id: &str, signed: &[u8]) -> Record {
    rec(
        T0 + 10,
        Body::Request(Request {
            item: ITEM.into(),
            request: id.into(),
            action: r.action.clone(),
            officers: r.participants.clone(),
            purpose: r.purpose.clone(),
            approval_doc: r.approval_doc.clone(),
            emergency: r.emergency,
            expires_at: rfc3339_ms(r.expires_at_ms).unwrap(),
            by: r.participants[0].clone(),
            signature: sig(&r.participants[0], signed),
            max_fetches: r.max_fetches,
        }),
    )
}

fn approval_record(id: &str, signer: &str, signed_as: SignedAs, signed: &[u8], ms: u64) -> Record {
    rec(ms, Body::Approval(Approval { item: ITEM.into(), request: id.into(), signer: signer.into(), signed_as, signature: sig(signer, signed) }))
}

fn grant_record(r: &SignedRequest, id: &str, approver: &str, ms: u64) -> Record {
    rec(
        ms,
        Body::Grant(Grant {
            item: ITEM.into(),
            request: id.into(),
            officers: r.participants.clone(),
            approver: approver.into(),
            action: r.action.clone(),
            expires_at: rfc3339_ms(r.expires_at_ms).unwrap(),
            purpose: r.purpose.clone(),
            approval_doc: r.approval_doc.clone(),
            emergency: r.emergency,
            max_fetches: r.max_fetches,
        }),
    )
}

fn access_record(r: &SignedRequest, id: &str, by: &str, ms: u64) -> Record {
    let statement = json!({ "item": ITEM, "request": id, "fetcher": by, "fetch_key": FETCH_KEY });
    let signed = [b"custody/access/v1\n".as_slice(), &to_canonical_bytes(&statement).unwrap()].concat();
    rec(
        ms,
        Body::Access(Access {
            item: ITEM.into(),
            request: id.into(),
            officers: r.participants.clone(),
            purpose: r.purpose.clone(),
            approval_doc: r.approval_doc.clone(),
            action: r.action.clone(),
            by: by.into(),
            emergency: r.emergency,
            fetch: 1,
            max_fetches: r.max_fetches,
            fetch_key: FETCH_KEY.into(),
            signature: sig(by, &signed),
        }),
    )
}

/// The honest log: three people, a deposit, a granted request, an access,
/// a retention extension and a hold.
fn honest() -> Log {
    honest_with(false, &["approver"])
}

/// The honest log, for an emergency request or not, with carol holding `carol_roles`.
fn honest_with(emergency: bool, carol_roles: &[&str]) -> Log {
    let (r, signed, id) = request_with(&["alice", "bob"], "view", emergency);
    let records = vec![
        add("alice", &["officer"]),
        add("bob", &["officer"]),
        add("carol", carol_roles),
        deposit(),
        request_record(&r, &id, &signed),
        approval_record(&id, "bob", SignedAs::Participant, &signed, T0 + 20),
        approval_record(&id, "carol", SignedAs::Approver, &signed, T0 + 30),
        grant_record(&r, &id, "carol", T0 + 30),
        access_record(&r, &id, "bob", T0 + 40),
        rec(
            T0 + 50,
            Body::Retention(RetentionChange {
                item: ITEM.into(),
                from: "standard".into(),
                to: "important".into(),
                retain_until: rfc3339_ms(T0 + 365 * 86_400_000).unwrap(),
                by: "alice".into(),
            }),
        ),
        rec(T0 + 60, Body::Hold(Hold::Hold { item: ITEM.into(), reason: "appeal".into(), by: "alice".into() })),
    ];
    let approvals = vec![entry(&id, "alice", &signed), entry(&id, "bob", &signed), entry(&id, "carol", &signed)];
    Log { records, approvals }
}

fn node() -> Signer {
    Signer::from_seed("custody-test-node1", &[9; 32]).unwrap()
}

fn trusted() -> Vec<TrustedKey> {
    vec![TrustedKey::always(node().verifier_key())]
}

/// A bundle of `log`: the registry records, the first deposit, every other
/// record as the trail, each proved against a checkpoint the node signed.
fn build(log: &Log) -> Bundle {
    let leaves: Vec<Vec<u8>> = log.records.iter().map(|r| r.to_leaf().unwrap()).collect();
    let mut tree = MemStore::new();
    for l in &leaves {
        tree.append(&leaf_hash(l)).unwrap();
    }
    let size = tree.size();
    let root = tree.root().unwrap();
    let text = Checkpoint { origin: "custody.vault/test".into(), size, root, extensions: vec![] }.to_text().unwrap();
    let checkpoint = sign_note(&text, &[&node()]).unwrap();
    // The item-head statement (version 3): how many records about the item the log holds.
    let about: Vec<usize> = (0..leaves.len()).filter(|i| log.records[*i].item() == Some(ITEM)).collect();
    let h = ItemHead {
        origin: "custody.vault/test".into(),
        item: ITEM.into(),
        size,
        root,
        records: about.len() as u64,
        head: *about.last().unwrap() as u64,
    };
    let head = sign_note(&h.to_text(), &[&node()]).unwrap();
    let proof = |i: usize| LeafProof {
        index: i as u64,
        leaf: b64(&leaves[i]),
        inclusion: inclusion_proof(&tree, i as u64, size).unwrap().iter().map(|h| b64(h)).collect(),
    };
    let d = log.records.iter().position(|r| matches!(r.body, Body::Deposit(_))).unwrap();
    let registry = (0..leaves.len()).filter(|i| matches!(log.records[*i].body, Body::Registry(_))).map(proof).collect();
    let trail = (0..leaves.len()).filter(|i| *i != d && !matches!(log.records[*i].body, Body::Registry(_))).map(proof).collect();
    Bundle {
        format: bundle::BUNDLE_FORMAT.into(),
        version: bundle::BUNDLE_VERSION,
        checkpoint,
        item: json!({
            "item": ITEM, "sha256": SHA, "size": 10_000, "case": "case-15", "system": "cam-1", "depositor": "alice",
            "retention": "important", "deposited_at": rfc3339_ms(T0).unwrap(),
            "retain_until": rfc3339_ms(T0 + 365 * 86_400_000).unwrap(), "note": null,
        }),
        deposit: LeafProof { inclusion: vec![], ..proof(d) },
        inclusion: inclusion_proof(&tree, d as u64, size).unwrap().iter().map(|h| b64(h)).collect(),
        trail,
        approvals: log.approvals.clone(),
        registry,
        head,
        timestamp: None,
    }
}

fn failed(b: &Bundle) -> Vec<String> {
    bundle::verify(b, &trusted(), None).into_iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[track_caller]
fn rejected_by(what: &str, b: &Bundle, name: &str) {
    vector(what, b, None, None);
    let f = failed(b);
    assert!(f.iter().any(|n| n == name), "{what}: expected `{name}` to fail; failed: {f:?}");
}

fn leaf_json(p: &LeafProof) -> Value {
    serde_json::from_slice(&BASE64.decode(&p.leaf).unwrap()).unwrap()
}

#[test]
fn the_honest_bundle_verifies_and_every_check_is_named() {
    let b = build(&honest());
    vector("the honest bundle, with its clip", &b, Some(SHA), None);
    vector("the honest bundle, another clip", &b, Some(&SHA.replace('f', "e")), None);
    let checks = bundle::verify(&b, &trusted(), Some(SHA));
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    for n in [
        "checkpoint signatures",
        "deposit record",
        "deposit inclusion",
        "clip sha256",
        "item fields",
        "item case",
        "item retain_until",
        "deposit signature",
        "leaves distinct",
        "approval signature carol",
        "trail[0] request signature",
        "trail[0] request statement",
        "trail[2] approval as",
        "trail[3] grant request",
        "trail[3] grant signatures",
        "trail[4] access grant",
        "trail[4] access signature",
        "trail[5] retention order",
        "trail[6] hold kind",
    ] {
        assert!(names.contains(&n), "no check `{n}`: {names:?}");
    }
    // The bundle reads back from its own JSON, and the report names the deposit record's item.
    let text = serde_json::to_vec_pretty(&b).unwrap();
    assert_eq!(bundle::parse(&text).unwrap(), b);
    assert_eq!(bundle::reported_item(&b).as_deref(), Some(ITEM));
}

#[test]
fn item_metadata_is_bound_to_the_deposit_and_the_latest_retention_and_hold_records() {
    let good = build(&honest());
    for f in bundle::ITEM_FIELDS {
        let mut b = good.clone();
        b.item[f] = json!("forged");
        rejected_by(&format!("{f} changed"), &b, &format!("item {f}"));
        let mut b = good.clone();
        b.item.as_object_mut().unwrap().remove(f);
        rejected_by(&format!("{f} removed"), &b, &format!("item {f}"));
    }
    // The deposit's own retention, where a later retention record changed it, is stale.
    let mut b = good.clone();
    b.item["retention"] = json!("standard");
    rejected_by("retention as deposited", &b, "item retention");
    b.item["retain_until"] = json!(rfc3339_ms(T0 + 15 * 86_400_000).unwrap());
    rejected_by("retain_until as deposited", &b, "item retain_until");
    // A field no record binds.
    let mut b = good.clone();
    b.item["owner"] = json!("x");
    rejected_by("unknown field", &b, "item fields");
    // `hold`, when present, is the latest hold record's reason.
    let mut b = good.clone();
    b.item["hold"] = json!("appeal");
    vector("item hold as the latest hold record says", &b, None, None);
    assert!(failed(&b).is_empty(), "{:?}", failed(&b));
    b.item["hold"] = Value::Null;
    rejected_by("hold hidden", &b, "item hold");
    // The size as a float is another value.
    let mut b = good.clone();
    b.item["size"] = json!(10_000.0);
    rejected_by("size as a float", &b, "item size");
    // The report's item comes from the deposit record, whatever `item` says.
    let mut b = good.clone();
    b.item["item"] = json!("ffffffffffffffffffffffffffffffff");
    assert_eq!(bundle::reported_item(&b).as_deref(), Some(ITEM));
}

#[test]
fn every_grant_needs_the_logged_signatures_carried_in_the_bundle() {
    let good = build(&honest());
    let mut b = good.clone();
    b.approvals.clear();
    rejected_by("approvals emptied", &b, "trail[3] grant signatures");
    rejected_by("approvals emptied", &b, "trail[0] request signature");
    for who in ["alice", "bob", "carol"] {
        let mut b = good.clone();
        b.approvals.retain(|a| a["signer"] != who);
        rejected_by(&format!("{who}'s entry removed"), &b, "trail[3] grant signatures");
    }
    // An entry with a field no one checks, or a key other than the registered one.
    let mut b = good.clone();
    b.approvals[2]["comment"] = json!("ok");
    rejected_by("extra field", &b, "approval signature carol");
    let mut b = good.clone();
    b.approvals[2]["public_key"] = json!(b64(&key(7).public_key()));
    rejected_by("another key", &b, "approval signature carol");
    // Signed bytes of another request (the signature is the signer's own, over them).
    let (_, other, _) = request(&["alice", "bob"], "copy");
    let mut b = good.clone();
    b.approvals[2]["signed"] = json!(b64(&other));
    b.approvals[2]["signature"] = json!(sig("carol", &other));
    rejected_by("other signed bytes", &b, "approval signature carol");
}

#[test]
fn a_signed_request_must_be_strict_canonical_json() {
    let (_, signed, _) = request(&["alice", "bob"], "view");
    let text = String::from_utf8(signed.clone()).unwrap();
    for bad in [
        text.replacen("\"action\":\"view\"", "\"action\":\"copy\",\"action\":\"view\"", 1),
        text.replacen("\"action\":\"view\"", "\"action\": \"view\"", 1),
        text.replacen("\"action\":\"view\"", "\"action\":\"view\",\"zz\":1", 1),
    ] {
        let mut log = honest();
        let id = hex::encode(&crate::crypto::sha256(bad.as_bytes())[..16]);
        log.approvals[2] = entry(&id, "carol", bad.as_bytes());
        let b = build(&log);
        rejected_by(&bad, &b, "approval signature carol");
        let detail = bundle::verify(&b, &trusted(), None).into_iter().find(|c| c.name == "approval signature carol").unwrap().detail;
        assert!(detail.contains("strict JSON") || detail.contains("canonical") || detail.contains("not a request"), "{detail}");
    }
}

#[test]
fn every_access_needs_an_earlier_grant_of_its_request_and_action_and_a_participant() {
    let good = build(&honest());
    let mut b = good.clone();
    b.trail.retain(|t| leaf_json(t)["kind"] != "grant");
    rejected_by("grant removed", &b, "trail[3] access grant");

    // Logged by a vault that broke its own rules: the tree itself holds these.
    let (r, signed, id) = request(&["alice", "bob"], "view");
    let mut log = honest();
    log.records[8] = access_record(&r, &id, "carol", T0 + 40);
    rejected_by("a non-participant fetched", &build(&log), "trail[4] access grant");
    let mut log = honest();
    let g = log.records.remove(7);
    log.records.insert(8, g);
    rejected_by("the access before its grant", &build(&log), "trail[3] access grant");
    let mut log = honest();
    if let Body::Access(a) = &mut log.records[8].body {
        a.action = "copy".into();
    }
    rejected_by("another action", &build(&log), "trail[4] access grant");
    let mut log = honest();
    log.records[8].time = rfc3339_ms(r.expires_at_ms + 1).unwrap();
    rejected_by("after the grant expired", &build(&log), "trail[4] access grant");
    let mut log = honest();
    if let Body::Access(a) = &mut log.records[8].body {
        a.fetch_key = "22".repeat(32);
    }
    rejected_by("a fetch key the fetcher did not sign", &build(&log), "trail[4] access signature");
    // Carol, who approved, revoked before the access: the grant had ended.
    let mut log = honest();
    let revoke = rec(
        T0 + 35,
        Body::Registry(Registry::Person(Applied {
            by: "admin".into(),
            action: PersonAction::Revoke { name: "carol".into() },
            change: None,
            proposal: None,
            signatures: None,
        })),
    );
    log.records.insert(8, revoke);
    rejected_by("a signer revoked before the access", &build(&log), "trail[4] access grant");
    let mut log = honest();
    let again = log.records[8].clone();
    log.records.insert(9, again);
    rejected_by("the same fetch twice", &build(&log), "trail[5] access grant");
    let _ = signed;
}

#[test]
fn a_grant_needs_two_officers_and_a_non_participant_approver_with_their_roles() {
    let (r, signed, id) = request(&["alice", "bob"], "view");
    // The approver is a participant.
    let mut log = honest();
    log.records[7] = grant_record(&r, &id, "bob", T0 + 30);
    rejected_by("a participant as approver", &build(&log), "trail[3] grant signatures");
    // Bob never signed.
    let mut log = honest();
    log.records.remove(5);
    log.approvals.remove(1);
    rejected_by("one officer's signature", &build(&log), "trail[2] grant signatures");
    // Carol is no approver.
    let mut log = honest();
    log.records[2] = add("carol", &["officer"]);
    rejected_by("an approver without the role", &build(&log), "trail[3] grant signatures");
    // An emergency grant needs an emergency-approver; an ordinary one an approver.
    vector("an emergency grant by an emergency-approver", &build(&honest_with(true, &["emergency-approver"])), None, None);
    assert!(failed(&build(&honest_with(true, &["emergency-approver"]))).is_empty());
    rejected_by("an approver for an emergency", &build(&honest_with(true, &["approver"])), "trail[3] grant signatures");
    rejected_by("an emergency-approver for an ordinary request", &build(&honest_with(false, &["emergency-approver"])), "trail[3] grant signatures");
    // The approval record says carol signed as a participant.
    let mut log = honest();
    log.records[6] = approval_record(&id, "carol", SignedAs::Participant, &signed, T0 + 30);
    rejected_by("carol `as` participant", &build(&log), "trail[2] approval as");
    // A grant whose fields are not its request's.
    let mut log = honest();
    if let Body::Grant(g) = &mut log.records[7].body {
        g.max_fetches = 100;
    }
    rejected_by("a grant of more fetches", &build(&log), "trail[3] grant request");
    // A request record that is not what its signers signed.
    let mut log = honest();
    if let Body::Request(x) = &mut log.records[4].body {
        x.purpose = "something else".into();
    }
    rejected_by("a request record unlike the signed request", &build(&log), "trail[0] request statement");
}

#[test]
fn no_leaf_twice_only_item_kinds_and_everything_after_the_deposit() {
    let good = build(&honest());
    for i in 0..good.trail.len() {
        let mut b = good.clone();
        b.trail.insert(i + 1, good.trail[i].clone());
        rejected_by(&format!("trail[{i}] twice"), &b, "leaves distinct");
        rejected_by(&format!("trail[{i}] twice"), &b, &format!("trail[{}] {} order", i + 1, leaf_json(&good.trail[i])["kind"].as_str().unwrap()));
    }
    let mut b = good.clone();
    b.trail.push(LeafProof { inclusion: good.inclusion.clone(), ..good.deposit.clone() });
    rejected_by("the deposit in the trail", &b, "trail[7] deposit kind");
    rejected_by("the deposit in the trail", &b, "leaves distinct");
    let mut b = good.clone();
    b.trail.push(good.registry[0].clone());
    rejected_by("a registry record in the trail", &b, "trail[7] registry kind");
    let mut b = good.clone();
    b.trail.swap(0, 1);
    rejected_by("out of order", &b, "trail[1] request order");
    // A record logged before the deposit.
    let mut log = honest();
    let hold = log.records.pop().unwrap();
    log.records.insert(3, hold);
    rejected_by("a hold before the deposit", &build(&log), "trail[0] hold order");
    // The deposit's `inclusion` is the bundle's, never a second one.
    let mut b = good.clone();
    b.deposit.inclusion = b.inclusion.clone();
    rejected_by("a second deposit proof", &b, "deposit inclusion");
}

#[test]
fn duplicate_names_and_non_canonical_leaves_are_refused() {
    let good = build(&honest());
    let text = serde_json::to_string_pretty(&good).unwrap();
    for (anchor, forged) in [("\"case\":", "\"case\": \"forged\",\n"), ("\"index\":", "\"index\": 0,\n"), ("\"format\":", "\"format\": \"x\",\n")] {
        let at = text.find(anchor).unwrap();
        let bad = format!("{}{forged}{}", &text[..at], &text[at..]);
        let e = bundle::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("duplicate key"), "{anchor}: {e}");
    }
    let leaf = String::from_utf8(BASE64.decode(&good.deposit.leaf).unwrap()).unwrap();
    for bad in [leaf.replacen("\"case\":", "\"case\":\"forged\",\"case\":", 1), leaf.replacen("\"case\":", "\"case\" :", 1), format!("{leaf} ")] {
        let mut b = good.clone();
        b.deposit.leaf = b64(bad.as_bytes());
        rejected_by(&bad, &b, "deposit record");
    }
}

#[test]
fn checkpoint_lines_of_unknown_key_ids_are_ignored_and_duplicate_keys_count_once() {
    let nodes: Vec<Signer> = (1..=3u8).map(|i| Signer::from_seed(&format!("n{i}"), &[i; 32]).unwrap()).collect();
    let keys: Vec<TrustedKey> = nodes.iter().map(|s| TrustedKey::always(s.verifier_key())).collect();
    let text = Checkpoint { origin: "o".into(), size: 5, root: [1; 32], extensions: vec![] }.to_text().unwrap();
    let note = sign_note(&text, &nodes.iter().collect::<Vec<_>>()).unwrap();
    let mut n = Note::parse(&note).unwrap();
    n.signatures[0].key_id[0] ^= 1;
    let (_, signers, valid) = bundle::verify_checkpoint(&n.encode().unwrap(), &keys).unwrap();
    assert_eq!((signers.len(), valid), (2, 3), "the line of an unknown key id is ignored, the others count");
    n.signatures[1].key_id[0] ^= 1;
    assert!(bundle::verify_checkpoint(&n.encode().unwrap(), &keys).is_err(), "one of three is no majority");
    // A known key id whose signature fails still rejects the note.
    let mut n = Note::parse(&note).unwrap();
    n.signatures[0].signature[0] ^= 1;
    assert!(bundle::verify_checkpoint(&n.encode().unwrap(), &keys).is_err());

    // A key file with one key twice: counted once, so still 2 of 3 are needed.
    let lines: Vec<String> = keys.iter().map(|k| k.to_line()).collect();
    let twice = bundle::parse_keys(&format!("{}\n{}\n{}", lines.join("\n"), lines[0], lines[0])).unwrap();
    assert_eq!(bundle::keys_at(&twice, 5).len(), 3);
    let one = sign_note(&text, &[&nodes[0]]).unwrap();
    assert!(bundle::verify_checkpoint(&one, &twice).is_err(), "one signature of three keys, however often one is listed");
    let two = sign_note(&text, &[&nodes[0], &nodes[1]]).unwrap();
    assert_eq!(bundle::verify_checkpoint(&two, &twice).unwrap().2, 3);
    // One public key under two names is ambiguous: refused.
    let alias = crate::note::VerifierKey::from_public_key("alias", *nodes[0].verifier_key().public_key()).unwrap();
    assert!(bundle::parse_keys(&format!("{}\n{alias}", lines.join("\n"))).is_err());
}

/// Byte edits: flip a bit, insert a byte, delete a byte, at a position given as a fraction.
#[derive(Clone, Debug)]
enum Edit {
    Flip(f64, u8),
    Insert(f64, u8),
    Delete(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0f64, 0..8u8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        (0.0..1.0f64).prop_map(Edit::Delete),
    ]
}

fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut m = bytes.to_vec();
    for e in edits {
        let at = |p: f64, n: usize| ((p * n as f64) as usize).min(n.saturating_sub(1));
        match *e {
            Edit::Flip(p, bit) if !m.is_empty() => {
                let i = at(p, m.len());
                m[i] ^= 1 << bit;
            }
            Edit::Insert(p, b) => {
                let i = at(p, m.len() + 1);
                m.insert(i, b);
            }
            Edit::Delete(p) if !m.is_empty() => {
                let i = at(p, m.len());
                m.remove(i);
            }
            _ => {}
        }
    }
    m
}

fn good_bundle_bytes() -> &'static (Vec<u8>, Bundle) {
    static B: std::sync::OnceLock<(Vec<u8>, Bundle)> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let b = build(&honest());
        (serde_json::to_vec_pretty(&b).unwrap(), b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes: parsing never panics, and whatever parses verifies without panicking.
    #[test]
    fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(b) = bundle::parse(&bytes) {
            let _ = bundle::verify(&b, &trusted(), None);
        }
    }

    /// A valid bundle with a few bytes edited is refused by the parser, or
    /// reads as the same bundle (white space between tokens, say), or fails
    /// verification. Sound because the checkpoint has one trusted signer: a
    /// note whose signature lines changed cannot still carry a majority.
    #[test]
    fn an_edited_bundle_is_never_accepted_unless_it_reads_the_same(edits in proptest::collection::vec(edit(), 1..4)) {
        let (bytes, good) = good_bundle_bytes();
        let m = apply(bytes, &edits);
        if let Ok(b) = bundle::parse(&m) {
            if b != *good {
                let failed: Vec<String> = bundle::verify(&b, &trusted(), None).into_iter().filter(|c| !c.ok).map(|c| c.name).collect();
                prop_assert!(!failed.is_empty(), "an edited bundle verified: {}", String::from_utf8_lossy(&m));
            }
        }
    }

    /// Edits inside one JSON string of the bundle (the parts the byte edits
    /// above mostly break as JSON): the checkpoint, a leaf, an approvals entry.
    #[test]
    fn edited_strings_inside_the_bundle_are_never_accepted(which in 0..7usize, edits in proptest::collection::vec(edit(), 1..3)) {
        let (_, good) = good_bundle_bytes();
        let mut b = good.clone();
        let mut text = match which {
            0 => b.checkpoint.clone(),
            1 => b.deposit.leaf.clone(),
            2 => b.trail[3].leaf.clone(),
            3 => b.registry[2].leaf.clone(),
            4 => b.item["case"].as_str().unwrap().to_string(),
            5 => b.item["retain_until"].as_str().unwrap().to_string(),
            _ => b.approvals[2]["signer"].as_str().unwrap().to_string(),
        };
        let Ok(s) = String::from_utf8(apply(text.as_bytes(), &edits)) else { return Ok(()) };
        text = s;
        match which {
            0 => b.checkpoint = text,
            1 => b.deposit.leaf = text,
            2 => b.trail[3].leaf = text,
            3 => b.registry[2].leaf = text,
            4 => b.item["case"] = Value::from(text),
            5 => b.item["retain_until"] = Value::from(text),
            _ => b.approvals[2]["signer"] = Value::from(text),
        }
        if b != *good {
            prop_assert!(bundle::verify(&b, &trusted(), None).iter().any(|c| !c.ok));
        }
    }

    /// Notes: any text parses or fails without panic; an edited valid note
    /// never verifies under its one key.
    #[test]
    fn checkpoint_notes_never_panic_and_edits_never_verify(text in ".{0,300}", edits in proptest::collection::vec(edit(), 1..4)) {
        let _ = Note::parse(&text);
        let _ = bundle::verify_checkpoint(&text, &trusted());
        let (_, good) = good_bundle_bytes();
        let Ok(m) = String::from_utf8(apply(good.checkpoint.as_bytes(), &edits)) else { return Ok(()) };
        if m != good.checkpoint {
            prop_assert!(bundle::verify_checkpoint(&m, &trusted()).is_err(), "{m:?}");
        }
    }

    /// Key files: any text parses or fails without panic; an edited key file
    /// that still lets the note verify still trusts the key that signed it.
    #[test]
    fn key_files_never_panic_and_an_edit_trusts_no_other_key(text in ".{0,300}", edits in proptest::collection::vec(edit(), 1..4)) {
        let _ = bundle::parse_keys(&text);
        let (_, good) = good_bundle_bytes();
        let file = trusted().iter().map(|k| k.to_line()).collect::<Vec<_>>().join("\n") + "\n";
        let Ok(m) = String::from_utf8(apply(file.as_bytes(), &edits)) else { return Ok(()) };
        if let Ok(keys) = bundle::parse_keys(&m) {
            if let Ok((cp, ..)) = bundle::verify_checkpoint(&good.checkpoint, &keys) {
                prop_assert!(bundle::keys_at(&keys, cp.size).contains(&node().verifier_key()));
            }
        }
    }
}

// ---- The shared vectors (tests/vectors/bundles/, README there): the cases
// above as files, each with the verdict of every check, so that another
// verifier (the court's page, verify/page/verify.js, or one written by
// another team) can be held to this one. `CUSTODY_WRITE_VECTORS=1 cargo test
// -p custody-verify` writes them; `every_vector_is_this_verifiers_verdict`
// holds the files to this code.

fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundles")
}

/// Writes case `what` when `CUSTODY_WRITE_VECTORS` is set: the bundle, the
/// keys, the clip's SHA-256, witnesses, and the verdict and every check.
fn vector(what: &str, b: &Bundle, clip: Option<&str>, witnesses: Option<(&str, usize)>) {
    if std::env::var_os("CUSTODY_WRITE_VECTORS").is_none() {
        return;
    }
    let keys = trusted().iter().map(|k| k.to_line()).collect::<Vec<_>>().join("\n") + "\n";
    let v = json!({
        "description": what,
        "keys": keys,
        "clip_sha256": clip,
        "witness_keys": witnesses.map(|w| w.0),
        "min_witnesses": witnesses.map(|w| w.1),
        "bundle": b,
    });
    let v = with_verdict(v).unwrap();
    let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(48).collect();
    let digest = hex::encode(&crate::crypto::sha256(serde_json::to_string(&v).unwrap().as_bytes())[..4]);
    std::fs::create_dir_all(vectors_dir()).unwrap();
    std::fs::write(vectors_dir().join(format!("{}-{digest}.json", slug.trim_matches('-'))), serde_json::to_string_pretty(&v).unwrap() + "\n")
        .unwrap();
}

/// The vector `v` (inputs only) with this verifier's verdict: `valid`,
/// `item` and each check's `name` and `ok` (details are for people, and may
/// be worded otherwise by another verifier).
fn with_verdict(mut v: Value) -> Result<Value, String> {
    let bytes = serde_json::to_vec_pretty(&v["bundle"]).unwrap();
    let keys = bundle::parse_keys(v["keys"].as_str().unwrap()).map_err(|e| e.to_string())?;
    let b = bundle::parse(&bytes).map_err(|e| e.to_string())?;
    let mut checks = bundle::verify(&b, &keys, v["clip_sha256"].as_str());
    if let Some(w) = v["witness_keys"].as_str() {
        let wkeys = crate::cosignature::parse_witness_keys(w)?;
        let min = v["min_witnesses"].as_u64().unwrap_or(0) as usize;
        let ok = crate::cosignature::check_witnesses(&b.checkpoint, &wkeys, min).is_ok();
        checks.push(bundle::Check { name: "witness cosignatures".into(), ok, detail: String::new() });
    }
    v["valid"] = json!(checks.iter().all(|c| c.ok));
    v["item"] = json!(bundle::reported_item(&b));
    v["checks"] = checks.iter().map(|c| json!({ "name": c.name, "ok": c.ok })).collect();
    Ok(v)
}

#[test]
fn witness_vectors() {
    use crate::cosignature::Cosigner;
    let mut b = build(&honest());
    let w = Cosigner::new(Signer::from_seed("witness.example/w1", &[21; 32]).unwrap()).unwrap();
    let other = Cosigner::new(Signer::from_seed("witness.example/w2", &[22; 32]).unwrap()).unwrap();
    let text = Note::parse(&b.checkpoint).unwrap().text;
    b.checkpoint.push_str(&w.cosign(&text, 1_800_000_000).unwrap().to_line());
    let keys = format!("{}\n{}\n", w.key(), other.key());
    vector("cosigned by one of two witnesses, one needed", &b, None, Some((&keys, 1)));
    vector("cosigned by one of two witnesses, two needed", &b, None, Some((&keys, 2)));
    let mut bad = b.clone();
    let last = bad.checkpoint.trim_end().rsplit(' ').next().unwrap().to_string();
    let mut sig = BASE64.decode(&last).unwrap();
    sig[20] ^= 1;
    bad.checkpoint = bad.checkpoint.replace(&last, &b64(&sig));
    vector("a witness cosignature altered", &bad, None, Some((&keys, 0)));
    assert!(with_verdict(json!({"keys": bundle::parse_keys(&trusted()[0].to_line()).map(|_| trusted()[0].to_line()).unwrap(), "witness_keys": keys,
        "min_witnesses": 1, "bundle": b}))
    .unwrap()["valid"]
        .as_bool()
        .unwrap());
}

#[test]
fn every_vector_is_this_verifiers_verdict() {
    let mut n = 0;
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if v.get("checks").is_none() && std::env::var_os("CUSTODY_WRITE_VECTORS").is_some() {
            // Written by the vault's integration tests (tests/it/verify.rs), inputs only.
            std::fs::write(&path, serde_json::to_string_pretty(&with_verdict(v.clone()).unwrap()).unwrap() + "\n").unwrap();
            n += 1;
            continue;
        }
        let mut inputs = v.clone();
        for k in ["valid", "item", "checks"] {
            inputs.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(with_verdict(inputs).unwrap(), v, "{}: this verifier's verdict differs from the file's", path.display());
        n += 1;
    }
    assert!(n >= 60, "only {n} vectors in {}", vectors_dir().display());
}
